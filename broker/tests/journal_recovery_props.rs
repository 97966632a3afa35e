//! Property tests: recovery over random truncation and corruption of the
//! journal's tail, and decoding of arbitrary bytes.
//!
//! Recovery must keep every record before the damage exactly once, bring
//! back nothing from the damaged batch or after it, refuse (not truncate)
//! damage that intact records follow, and never panic.

mod journal_util;

use amq_broker::message::{Destination, Message, MessageId, PropertyValue};
use amq_broker::store::{
    Compaction, Entry, Epoch, Journal, JournalOptions, Position, Record, Store, StoreError,
};
use bytes::Bytes;
use journal_util::*;
use proptest::prelude::*;
use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

/// One abstract operation: enqueue a new message (on queue `dest % 3`,
/// body of `size` bytes) or ack the `pick`-th live message.
#[derive(Debug, Clone)]
enum Op {
    Enqueue { dest: u8, size: u16 },
    Ack { pick: u16 },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (any::<u8>(), 0u16..400).prop_map(|(dest, size)| Op::Enqueue { dest, size }),
        2 => any::<u16>().prop_map(|pick| Op::Ack { pick }),
    ]
}

#[derive(Debug, Clone)]
enum Damage {
    /// Cut the newest segment at this fraction of its length.
    Truncate(f64),
    /// XOR one byte (at this fraction) with a non-zero mask.
    Flip(f64, u8),
    /// Garbage after the last record (a write that never completed).
    Garbage(Vec<u8>),
    /// Zeroes after the last record (file extended, data never written).
    Zeroes(u16),
}

fn damage() -> impl Strategy<Value = Damage> {
    prop_oneof![
        (0.0..1.0f64).prop_map(Damage::Truncate),
        (0.0..1.0f64, 1..=255u8).prop_map(|(at, x)| Damage::Flip(at, x)),
        proptest::collection::vec(any::<u8>(), 1..100).prop_map(Damage::Garbage),
        (1..5000u16).prop_map(Damage::Zeroes),
    ]
}

/// Turn abstract batches into valid records against a model of live ids.
fn records(batches: &[Vec<Op>]) -> Vec<Vec<Record>> {
    let mut live: Vec<(String, String)> = Vec::new();
    let mut n = 0;
    batches
        .iter()
        .map(|ops| {
            ops.iter()
                .map(|op| match op {
                    Op::Ack { pick } if !live.is_empty() => {
                        let (d, id) = live.remove(*pick as usize % live.len());
                        ack(&d, &id)
                    }
                    Op::Ack { pick: size } | Op::Enqueue { size, .. } => {
                        let d = format!(
                            "q{}",
                            if let Op::Enqueue { dest, .. } = op {
                                dest % 3
                            } else {
                                0
                            }
                        );
                        n += 1;
                        let id = format!("m{n}");
                        live.push((d.clone(), id.clone()));
                        Record::Enqueue(msg(&d, &id, &vec![b'b'; *size as usize % 400]))
                    }
                })
                .collect()
        })
        .collect()
}

/// Live ids per destination after replaying `batches`, leaving out
/// enqueues at positions for which `stored` is false (their segment was
/// deleted before the damage: fully acknowledged by then).
fn model(
    batches: &[Vec<Record>],
    stored: impl Fn(u64) -> bool,
) -> BTreeMap<Destination, Vec<String>> {
    let mut m: BTreeMap<Destination, Vec<String>> = BTreeMap::new();
    for (i, r) in batches.iter().flatten().enumerate() {
        match r {
            Record::Enqueue(msg) if stored(i as u64 + 1) => m
                .entry(msg.destination.clone())
                .or_default()
                .push(msg.id.0.clone()),
            Record::Enqueue(_) => {}
            Record::Ack { destination, id } => {
                if let Some(v) = m.get_mut(destination) {
                    v.retain(|x| *x != id.0);
                }
            }
        }
    }
    m.retain(|_, v| !v.is_empty());
    m
}

/// Frames of a segment file: (offset, length, position, batch_end).
fn frames(data: &[u8]) -> Vec<(usize, usize, u64, bool)> {
    let mut out = Vec::new();
    let mut off = 0;
    let end = records_len(data);
    assert!(
        data[end..].iter().all(|&b| b == 0),
        "undamaged segment decodes"
    );
    while off < end {
        let (e, len) = Entry::decode(&data[off..]).expect("undamaged segment decodes");
        out.push((off, len, e.position.0, e.batch_end));
        off += len;
    }
    out
}

fn live_ids(j: &Journal) -> BTreeMap<Destination, Vec<String>> {
    j.recover()
        .unwrap()
        .destinations
        .into_iter()
        .map(|(d, ms)| (d, ms.into_iter().map(|m| m.id.0).collect()))
        .collect()
}

fn newest_segment(dir: &Path) -> std::path::PathBuf {
    dir.join(segment_files(dir).last().expect("a segment"))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn recovery_keeps_exactly_the_records_before_tail_damage(
        batches in proptest::collection::vec(proptest::collection::vec(op(), 1..5), 1..25),
        segment_size in 600u64..5000,
        any_segment in any::<bool>(),
        preallocate in prop_oneof![Just(0u64), 1u64..3000],
        damage in damage(),
    ) {
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let batches = records(&batches);
        let opts = JournalOptions {
            compaction: if any_segment { Compaction::AnySegment } else { Compaction::Prefix },
            preallocate,
            ..small_segments(segment_size)
        };
        rt.block_on(async {
            let j = Journal::open(dir.path(), opts.clone()).unwrap();
            for b in &batches {
                j.append(b.clone()).await.unwrap();
            }
        });
        let total: u64 = batches.iter().map(|b| b.len() as u64).sum();
        // Position ranges of the segments still on disk.
        let ranges: Vec<(u64, u64)> = segment_files(dir.path())
            .iter()
            .filter_map(|f| {
                let l = frames(&fs::read(dir.path().join(f)).unwrap());
                Some((l.first()?.2, l.last()?.2))
            })
            .collect();
        let stored = |p: u64| ranges.iter().any(|&(a, b)| a <= p && p <= b);
        let file = newest_segment(dir.path());
        let mut data = fs::read(&file).unwrap();
        let layout = frames(&data);
        let first_in_newest = layout.first().map_or(total + 1, |f| f.2);

        // Where the damage starts and whether intact frames follow it.
        let (damaged_frame, followed) = match &damage {
            Damage::Truncate(at) => {
                let cut = (*at * data.len() as f64) as usize;
                data.truncate(cut);
                (layout.iter().position(|f| f.0 + f.1 > cut), false)
            }
            Damage::Flip(at, x) if !data.is_empty() => {
                let at = ((*at * data.len() as f64) as usize).min(data.len() - 1);
                data[at] ^= x;
                // In the zeroes after the records: garbage at the tail.
                match layout.iter().position(|f| f.0 + f.1 > at) {
                    Some(i) => (Some(i), i + 1 < layout.len()),
                    None => (None, false),
                }
            }
            Damage::Flip(..) => (None, false),
            Damage::Garbage(g) => {
                data.extend_from_slice(g);
                (None, false)
            }
            Damage::Zeroes(n) => {
                data.resize(data.len() + *n as usize, 0);
                (None, false)
            }
        };
        fs::write(&file, &data).unwrap();

        // Records that must survive: everything up to the last batch end
        // before the damaged frame.
        let survivors = match damaged_frame {
            None => total,
            Some(i) => layout[..i]
                .iter()
                .rev()
                .find(|f| f.3)
                .map_or(first_in_newest - 1, |f| f.2),
        };
        let mut kept = Vec::new();
        let mut count = 0;
        for b in &batches {
            if count + b.len() as u64 > survivors {
                break;
            }
            count += b.len() as u64;
            kept.push(b.clone());
        }
        prop_assert_eq!(count, survivors);

        match Journal::open(dir.path(), opts.clone()) {
            Err(StoreError::Corrupt { path, .. }) => {
                prop_assert!(followed, "refused a plain torn tail");
                prop_assert_eq!(path, file);
            }
            Err(e) => prop_assert!(false, "unexpected error {}", e),
            Ok(j) => {
                prop_assert!(!followed, "truncated damage that intact records follow");
                prop_assert_eq!(j.position(), Position(survivors));
                prop_assert_eq!(live_ids(&j), model(&kept, stored));
                // The journal continues cleanly after the truncation, and a
                // second recovery brings nothing from the damaged tail back.
                rt.block_on(j.append(vec![enq("q0", "after")])).unwrap();
                drop(j);
                let j = Journal::open(dir.path(), opts).unwrap();
                prop_assert_eq!(j.position(), Position(survivors + 1));
                kept.push(vec![enq("q0", "after")]);
                prop_assert_eq!(live_ids(&j), model(&kept, |p| p > survivors || stored(p)));
            }
        }
    }

    #[test]
    fn arbitrary_segment_contents_never_panic(
        data in proptest::collection::vec(any::<u8>(), 0..2000),
        prefix_valid in any::<bool>(),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let mut bytes = Vec::new();
        if prefix_valid {
            Entry { position: Position(1), epoch: Epoch(1), batch_end: true, record: enq("q", "1") }
                .encode(&mut bytes);
        }
        bytes.extend_from_slice(&data);
        fs::write(dir.path().join(format!("{:020}.log", 1)), &bytes).unwrap();
        if let Ok(j) = Journal::open(dir.path(), Default::default()) {
            let r = j.recover().unwrap();
            prop_assert!(r.message_count() <= 1);
        }
    }

    #[test]
    fn decoding_arbitrary_bytes_never_panics(data in proptest::collection::vec(any::<u8>(), 0..600)) {
        let _ = Entry::decode(&data);
    }

    #[test]
    fn entries_round_trip(entry in entry()) {
        let mut buf = Vec::new();
        entry.encode(&mut buf);
        let (back, len) = Entry::decode(&buf).unwrap();
        prop_assert_eq!(len, buf.len());
        prop_assert_eq!(back, entry);
    }

    #[test]
    fn any_single_byte_change_is_detected(entry in entry(), at in any::<prop::sample::Index>(), x in 1..=255u8) {
        let mut buf = Vec::new();
        entry.encode(&mut buf);
        let at = at.index(buf.len());
        buf[at] ^= x;
        prop_assert!(Entry::decode(&buf).is_err());
    }
}

fn destination() -> impl Strategy<Value = Destination> {
    prop_oneof![
        "[a-zA-Z0-9.]{0,20}".prop_map(Destination::Queue),
        ".{0,20}".prop_map(Destination::Topic),
    ]
}

fn property() -> impl Strategy<Value = PropertyValue> {
    prop_oneof![
        ".{0,30}".prop_map(PropertyValue::String),
        any::<bool>().prop_map(PropertyValue::Bool),
        any::<i32>().prop_map(PropertyValue::Int),
        any::<i64>().prop_map(PropertyValue::Long),
        proptest::num::f64::NORMAL.prop_map(PropertyValue::Double),
        proptest::collection::vec(any::<u8>(), 0..50).prop_map(|b| PropertyValue::Bytes(b.into())),
    ]
}

fn message() -> impl Strategy<Value = Message> {
    (
        (
            ".{0,40}",
            destination(),
            any::<bool>(),
            0..10u8,
            any::<Option<u64>>(),
            any::<u64>(),
        ),
        (
            proptest::option::of(destination()),
            proptest::option::of(".{0,20}"),
            proptest::collection::btree_map(".{0,20}", property(), 0..6),
            proptest::collection::vec(any::<u8>(), 0..300),
            any::<u32>(),
            proptest::collection::vec("[a-z]{1,10}", 0..3),
        ),
    )
        .prop_map(
            |(
                (id, destination, persistent, priority, expires, timestamp),
                (reply_to, correlation_id, properties, body, redelivery_count, broker_path),
            )| Message {
                id: MessageId(id),
                destination,
                persistent,
                priority,
                expires,
                timestamp,
                reply_to,
                correlation_id,
                properties,
                body: Bytes::from(body),
                redelivery_count,
                broker_path,
            },
        )
}

fn entry() -> impl Strategy<Value = Entry> {
    let record = prop_oneof![
        message().prop_map(Record::Enqueue),
        (destination(), ".{0,40}").prop_map(|(d, id)| Record::ack(d, MessageId(id))),
    ];
    (any::<u64>(), any::<u64>(), any::<bool>(), record).prop_map(|(p, e, batch_end, record)| {
        Entry {
            position: Position(p),
            epoch: Epoch(e),
            batch_end,
            record,
        }
    })
}
