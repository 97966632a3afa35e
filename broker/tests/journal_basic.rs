//! The journal on real files: append, recover, batches, validation, group
//! commit, segment roll-over and deletion, torn tails and corruption.

mod journal_util;

use amq_broker::store::{
    Compaction, Journal, JournalOptions, Position, Record, Store, StoreError, SyncPolicy,
};
use journal_util::*;
use std::fs;
use std::sync::Arc;

#[tokio::test]
async fn recovers_live_messages_per_destination_in_order() {
    let dir = tempfile::tempdir().unwrap();
    {
        let j = open(dir.path());
        assert_eq!(j.recover().unwrap().position, Position::ZERO);
        assert_eq!(append(&j, vec![enq("a", "1")]).await, 1);
        assert_eq!(append(&j, vec![enq("b", "x"), enq("a", "2")]).await, 3);
        assert_eq!(append(&j, vec![enq("a", "3")]).await, 4);
        assert_eq!(append(&j, vec![ack("a", "2")]).await, 5);
        assert_eq!(j.position(), Position(5));
    }
    let j = open(dir.path());
    let r = j.recover().unwrap();
    assert_eq!(r.position, Position(5));
    assert_eq!(ids(&r, "a"), ["1", "3"]);
    assert_eq!(ids(&r, "b"), ["x"]);
    // Every field of the message comes back.
    let got = &r.destinations[&queue("b")][0];
    assert_eq!(*got, msg("b", "x", b"body of x"));
    // Positions continue after a restart.
    assert_eq!(append(&j, vec![ack("b", "x")]).await, 6);
}

#[tokio::test]
async fn refused_batches_leave_no_trace() {
    let dir = tempfile::tempdir().unwrap();
    let j = open(dir.path());
    append(&j, vec![enq("q", "1")]).await;
    let dup = j.append(vec![enq("q", "2"), enq("q", "1")]).await;
    assert!(
        matches!(dup, Err(StoreError::DuplicateMessage { .. })),
        "{dup:?}"
    );
    let unknown = j.append(vec![enq("q", "3"), ack("q", "nope")]).await;
    assert!(
        matches!(unknown, Err(StoreError::UnknownMessage { .. })),
        "{unknown:?}"
    );
    assert!(matches!(
        j.append(vec![]).await,
        Err(StoreError::EmptyBatch)
    ));
    assert_eq!(j.position(), Position(1));
    // A message may be acked and re-enqueued in one batch (DLQ move keeps
    // the id on another destination; same destination works too).
    append(&j, vec![ack("q", "1"), enq("q", "1"), enq("q", "2")]).await;
    drop(j);
    let r = open(dir.path()).recover().unwrap();
    assert_eq!(ids(&r, "q"), ["1", "2"]);
    assert_eq!(r.position, Position(4));
}

#[tokio::test]
async fn concurrent_appends_share_fsyncs() {
    let dir = tempfile::tempdir().unwrap();
    let j: Arc<dyn Store> = Arc::new(open(dir.path()));
    let tasks: Vec<_> = (0..8)
        .map(|t| {
            let j = j.clone();
            tokio::spawn(async move {
                for i in 0..200 {
                    j.append(vec![enq("q", &format!("{t}-{i}"))]).await.unwrap();
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let s = j.stats();
    assert_eq!(s.appends, 1600);
    assert_eq!(s.records, 1600);
    assert!(
        s.fsyncs >= 1 && s.fsyncs < s.appends,
        "no group commit: {s:?}"
    );
    assert_eq!(s.live_messages, 1600);
    drop(j);
    let r = open(dir.path()).recover().unwrap();
    assert_eq!(r.message_count(), 1600);
    // Each producer's messages stay in its own order.
    for t in 0..8 {
        let mine: Vec<String> = ids(&r, "q")
            .into_iter()
            .filter(|id| id.starts_with(&format!("{t}-")))
            .collect();
        let want: Vec<String> = (0..200).map(|i| format!("{t}-{i}")).collect();
        assert_eq!(mine, want);
    }
}

#[tokio::test]
async fn fully_acknowledged_segments_are_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let j = Journal::open(dir.path(), small_segments(4096)).unwrap();
    enqueue_numbered(&j, 200).await;
    let before = segment_files(dir.path()).len();
    assert!(before > 5, "segments did not roll: {before}");
    for i in 0..200 {
        append(&j, vec![ack("q", &i.to_string())]).await;
    }
    // Everything acked: only the active segment (holding acks) may stay.
    let after = segment_files(dir.path());
    assert!(after.len() < before / 2, "{after:?}");
    assert_eq!(j.stats().live_messages, 0);
    assert_eq!(
        j.first_position(),
        Position(after[0].trim_end_matches(".log").parse().unwrap())
    );
    drop(j);
    let r = Journal::open(dir.path(), small_segments(4096))
        .unwrap()
        .recover()
        .unwrap();
    assert_eq!(r.message_count(), 0);
    assert_eq!(r.position, Position(400));
}

/// The deletion rule: an ack must outlive its enqueue's segment.
#[tokio::test]
async fn ack_segment_is_kept_while_its_enqueue_segment_exists() {
    let dir = tempfile::tempdir().unwrap();
    let big = vec![b'x'; 3000];
    let opts = JournalOptions {
        compaction: Compaction::AnySegment,
        ..small_segments(4096)
    };
    {
        let j = Journal::open(dir.path(), opts.clone()).unwrap();
        // Segment 1: m1 and m2 (m2 stays unacknowledged for a while).
        append(
            &j,
            vec![
                Record::Enqueue(msg("q", "m1", &big[..1000])),
                Record::Enqueue(msg("q", "m2", &big[..1000])),
            ],
        )
        .await;
        // Segment 2: m3, and the ack of m1.
        append(&j, vec![Record::Enqueue(msg("q", "m3", &big))]).await;
        append(&j, vec![ack("q", "m1")]).await;
        // Segment 3: m4, and the ack of m3: segment 2 has no live message
        // but holds the ack of m1 whose segment 1 still exists.
        append(&j, vec![Record::Enqueue(msg("q", "m4", &big))]).await;
        append(&j, vec![ack("q", "m3")]).await;
        assert_eq!(segment_files(dir.path()).len(), 3, "segment 2 must be kept");
    }
    {
        let j = Journal::open(dir.path(), opts.clone()).unwrap();
        assert_eq!(
            ids(&j.recover().unwrap(), "q"),
            ["m2", "m4"],
            "m1 resurrected"
        );
        // Acking m2 frees segment 1, which unpins segment 2: both go.
        append(&j, vec![ack("q", "m2")]).await;
        assert_eq!(segment_files(dir.path()).len(), 1);
    }
    let r = Journal::open(dir.path(), opts).unwrap().recover().unwrap();
    assert_eq!(ids(&r, "q"), ["m4"]);
}

#[tokio::test]
async fn prefix_compaction_keeps_positions_contiguous() {
    let dir = tempfile::tempdir().unwrap();
    let opts = JournalOptions {
        compaction: Compaction::Prefix,
        ..small_segments(2048)
    };
    let j = Journal::open(dir.path(), opts).unwrap();
    let body = vec![b'y'; 1500];
    for id in ["a", "b", "c"] {
        append(&j, vec![Record::Enqueue(msg("q", id, &body))]).await;
    }
    let n = segment_files(dir.path()).len();
    assert_eq!(n, 3);
    // b's segment is free but a's, older, is not: nothing may go yet.
    append(&j, vec![ack("q", "b")]).await;
    assert_eq!(segment_files(dir.path()).len(), n);
    assert_eq!(j.first_position(), Position(1));
    append(&j, vec![ack("q", "a")]).await;
    assert_eq!(segment_files(dir.path()).len(), n - 2);
    assert_eq!(j.first_position(), Position(3));
}

#[tokio::test]
async fn torn_tail_is_truncated_and_appends_continue() {
    let dir = tempfile::tempdir().unwrap();
    {
        let j = open(dir.path());
        enqueue_numbered(&j, 10).await;
    }
    let file = dir.path().join(&segment_files(dir.path())[0]);
    let len = records_len(&fs::read(&file).unwrap()) as u64;
    let f = fs::OpenOptions::new().write(true).open(&file).unwrap();
    f.set_len(len - 7).unwrap();
    drop(f);
    {
        let (j, log) = with_log(|| open(dir.path()));
        assert!(log.contains("torn tail") && log.contains("WARN"), "{log}");
        let r = j.recover().unwrap();
        assert_eq!(r.position, Position(9));
        assert_eq!(ids(&r, "q").len(), 9);
        append(&j, vec![enq("q", "new")]).await;
    }
    let r = open(dir.path()).recover().unwrap();
    assert_eq!(ids(&r, "q").last().map(String::as_str), Some("new"));
    assert_eq!(r.position, Position(10));
}

#[tokio::test]
async fn unfinished_batch_at_the_tail_is_dropped_whole() {
    let dir = tempfile::tempdir().unwrap();
    {
        let j = open(dir.path());
        append(&j, vec![enq("q", "kept")]).await;
        append(&j, vec![enq("q", "t1"), enq("q", "t2"), enq("q", "t3")]).await;
    }
    // Cut inside the last record of the batch: t1 and t2 are intact frames
    // but the batch never ended, so none of it may come back.
    let file = dir.path().join(&segment_files(dir.path())[0]);
    let len = records_len(&fs::read(&file).unwrap()) as u64;
    fs::OpenOptions::new()
        .write(true)
        .open(&file)
        .unwrap()
        .set_len(len - 3)
        .unwrap();
    let r = open(dir.path()).recover().unwrap();
    assert_eq!(ids(&r, "q"), ["kept"]);
    assert_eq!(r.position, Position(1));
}

#[tokio::test]
async fn corruption_in_an_older_segment_is_an_error_naming_file_and_offset() {
    let dir = tempfile::tempdir().unwrap();
    {
        let j = Journal::open(dir.path(), small_segments(1024)).unwrap();
        enqueue_numbered(&j, 30).await;
    }
    let files = segment_files(dir.path());
    assert!(files.len() > 2);
    let victim = dir.path().join(&files[0]);
    let mut data = fs::read(&victim).unwrap();
    let at = data.len() / 2;
    data[at] ^= 0x40;
    fs::write(&victim, &data).unwrap();
    let err = Journal::open(dir.path(), small_segments(1024))
        .err()
        .expect("refused");
    match &err {
        StoreError::Corrupt { path, offset, .. } => {
            assert_eq!(path, &victim);
            assert!(
                *offset <= at as u64,
                "offset {offset} after the damage {at}"
            );
        }
        other => panic!("wrong error: {other}"),
    }
    assert!(err.to_string().contains(&files[0]), "{err}");
}

#[tokio::test]
async fn damage_in_the_middle_of_the_newest_segment_is_refused_unless_repair() {
    let dir = tempfile::tempdir().unwrap();
    {
        let j = open(dir.path());
        enqueue_numbered(&j, 10).await;
    }
    let file = dir.path().join(&segment_files(dir.path())[0]);
    let mut data = fs::read(&file).unwrap();
    let frame = records_len(&data) / 10;
    data[3 * frame + 40] ^= 1;
    fs::write(&file, &data).unwrap();
    let err = Journal::open(dir.path(), JournalOptions::default())
        .err()
        .expect("refused");
    assert!(err.to_string().contains("intact records follow"), "{err}");
    // The refused open changed nothing on disk.
    assert_eq!(fs::read(&file).unwrap(), data);
    let repaired = Journal::open(
        dir.path(),
        JournalOptions {
            repair: true,
            ..JournalOptions::default()
        },
    )
    .unwrap();
    assert_eq!(ids(&repaired.recover().unwrap(), "q"), ["0", "1", "2"]);
}

#[tokio::test]
async fn unsafe_mode_acknowledges_before_writing() {
    let dir = tempfile::tempdir().unwrap();
    let j = Journal::open(
        dir.path(),
        JournalOptions {
            sync: SyncPolicy::UnsafeReceiptBeforeWrite,
            ..JournalOptions::default()
        },
    )
    .unwrap();
    append(&j, vec![enq("q", "1")]).await;
    // Resolved, yet not on disk: exactly the bug verify must catch.
    let on_disk: u64 = segment_files(dir.path())
        .iter()
        .map(|f| fs::metadata(dir.path().join(f)).unwrap().len())
        .sum();
    assert_eq!(on_disk, 0);
    assert_eq!(j.stats().fsyncs, 0);
    drop(j);
    // A clean close still writes it.
    assert_eq!(ids(&open(dir.path()).recover().unwrap(), "q"), ["1"]);
}

#[tokio::test]
async fn one_journal_per_directory() {
    let dir = tempfile::tempdir().unwrap();
    let j = open(dir.path());
    let err = Journal::open(dir.path(), JournalOptions::default())
        .err()
        .expect("second open refused");
    assert!(matches!(err, StoreError::Locked { .. }), "{err}");
    assert!(
        err.to_string().contains(&std::process::id().to_string()),
        "{err}"
    );
    drop(j);
    open(dir.path());
}

/// A record whose checksum holds but whose flags this version does not know
/// (written by a newer broker) is refused, never truncated away as a torn
/// tail.
#[tokio::test]
async fn records_of_an_unknown_format_are_refused_not_truncated() {
    let dir = tempfile::tempdir().unwrap();
    {
        let j = open(dir.path());
        append(&j, vec![enq("q", "1")]).await;
        append(&j, vec![enq("q", "2")]).await;
    }
    let file = dir.path().join(&segment_files(dir.path())[0]);
    let mut data = fs::read(&file).unwrap();
    let (_, first_len) = amq_broker::store::Entry::decode(&data).unwrap();
    let end = records_len(&data);
    let last = &mut data[first_len..end];
    last[29] |= 0x80;
    let crc = crc32c::crc32c(&last[12..]);
    last[8..12].copy_from_slice(&crc.to_le_bytes());
    fs::write(&file, &data).unwrap();
    let err = Journal::open(dir.path(), JournalOptions::default())
        .err()
        .expect("refused");
    assert!(
        matches!(&err, StoreError::Corrupt { offset, .. } if *offset == first_len as u64),
        "{err}"
    );
    assert_eq!(fs::read(&file).unwrap(), data, "nothing truncated");
}

#[tokio::test]
async fn missing_segment_files_are_reported() {
    let dir = tempfile::tempdir().unwrap();
    {
        let j = Journal::open(dir.path(), small_segments(512)).unwrap();
        enqueue_numbered(&j, 20).await;
    }
    let files = segment_files(dir.path());
    assert!(files.len() > 3);
    fs::remove_file(dir.path().join(&files[1])).unwrap();
    let (j, log) = with_log(|| Journal::open(dir.path(), small_segments(512)).unwrap());
    assert!(log.contains("are missing"), "{log}");
    assert_eq!(j.position(), Position(20));
}

/// Zeroes written ahead (preallocation) end the records without being
/// damage: a reopen keeps them (no truncation, no warning) and continues
/// after the last record; garbage in them is a torn tail like any other.
#[tokio::test]
async fn zeroes_written_ahead_end_the_records() {
    let dir = tempfile::tempdir().unwrap();
    let opts = JournalOptions {
        preallocate: 64 << 10,
        ..small_segments(1 << 20)
    };
    let j = Journal::open(dir.path(), opts.clone()).unwrap();
    for i in 0..10 {
        append(&j, vec![enq("q", &i.to_string())]).await;
    }
    drop(j);
    let file = dir.path().join(&segment_files(dir.path())[0]);
    let data = fs::read(&file).unwrap();
    let records = records_len(&data);
    assert!(
        data.len() >= records + (32 << 10),
        "only {} bytes after {records} bytes of records",
        data.len() - records
    );

    let j = Journal::open(dir.path(), opts.clone()).unwrap();
    assert_eq!(j.position(), Position(10));
    assert_eq!(fs::metadata(&file).unwrap().len(), data.len() as u64);
    append(&j, vec![ack("q", "0"), enq("q", "10")]).await;
    drop(j);
    let j = Journal::open(dir.path(), opts.clone()).unwrap();
    let r = j.recover().unwrap();
    assert_eq!(r.position, Position(12));
    assert_eq!(
        ids(&r, "q"),
        (1..=10).map(|i| i.to_string()).collect::<Vec<_>>()
    );
    drop(j);

    // A write that reached the zero tail only in part.
    let mut data = fs::read(&file).unwrap();
    let end = records_len(&data);
    data[end + 100..end + 140].fill(0xA5);
    fs::write(&file, &data).unwrap();
    let j = Journal::open(dir.path(), opts).unwrap();
    assert_eq!(j.position(), Position(12));
    assert_eq!(fs::metadata(&file).unwrap().len(), end as u64);
    assert_eq!(append(&j, vec![enq("q", "11")]).await, 13);
}
