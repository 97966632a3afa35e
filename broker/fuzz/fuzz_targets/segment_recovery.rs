//! Damaged segment files: opening the journal either recovers or fails with
//! an error, never panics, and a recovered journal reopens to the same
//! position. The first input byte picks the shape: the input as the whole
//! file, intact records followed by the input, or intact records with the
//! input XORed over them (so damage lands on real frames).
#![no_main]

use amq_broker::message::{Destination, Message, MessageId};
use amq_broker::store::{Entry, Epoch, Journal, JournalOptions, Position, Record, Store};
use libfuzzer_sys::fuzz_target;

fn intact(n: u64) -> Vec<u8> {
    let mut out = Vec::new();
    for p in 1..=n {
        let record = if p % 3 == 0 {
            Record::ack(
                Destination::Queue("q".into()),
                MessageId(format!("m{}", p - 1)),
            )
        } else {
            Record::Enqueue(Message {
                id: MessageId(format!("m{p}")),
                destination: Destination::Queue("q".into()),
                persistent: true,
                priority: 4,
                expires: None,
                timestamp: p,
                reply_to: None,
                correlation_id: None,
                properties: Default::default(),
                body: vec![b'x'; 20].into(),
                redelivery_count: 0,
                broker_path: Vec::new(),
            })
        };
        Entry {
            position: Position(p),
            epoch: Epoch(1),
            batch_end: p % 2 == 0,
            record,
        }
        .encode(&mut out);
    }
    out
}

fuzz_target!(|data: &[u8]| {
    let Some((&shape, rest)) = data.split_first() else {
        return;
    };
    let file = match shape % 3 {
        0 => rest.to_vec(),
        1 => [intact(6), rest.to_vec()].concat(),
        _ => {
            let mut f = intact(6);
            for (i, b) in rest.iter().enumerate() {
                let at = i % f.len();
                f[at] ^= b;
            }
            f
        }
    };
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join(format!("{:020}.log", 1)), file).unwrap();
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
