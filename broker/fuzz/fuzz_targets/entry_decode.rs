//! Arbitrary bytes never panic the entry decoder, and whatever decodes
//! re-encodes to exactly the bytes it came from.
#![no_main]

use amq_broker::store::Entry;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok((entry, len)) = Entry::decode(data) {
        let mut again = Vec::new();
        entry.encode(&mut again);
        assert_eq!(again, &data[..len]);
    }
});
