//! Arbitrary bytes as the newest segment file: opening the journal either
//! recovers or fails with an error, never panics, and a recovered journal
//! accepts appends and reopens to the same position.
#![no_main]

use amq_broker::store::{Journal, JournalOptions, Store};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join(format!("{:020}.log", 1)), data).unwrap();
    let position = match Journal::open(dir.path(), JournalOptions::default()) {
        Ok(j) => {
            j.recover().unwrap();
            j.position()
        }
        Err(_) => return,
    };
    let j = Journal::open(dir.path(), JournalOptions::default()).unwrap();
    assert_eq!(j.position(), position);
});
