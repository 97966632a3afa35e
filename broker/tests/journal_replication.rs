//! The replication seams of the store, between two real journals: reading
//! positioned entries, appending them on a slave, truncating a divergent
//! tail, resetting a slave that fell behind a deleted segment, epochs.

mod journal_util;

use amq_broker::store::{
    Compaction, Entry, Epoch, Journal, JournalOptions, Position, Record, Store, StoreError,
};
use journal_util::*;
use std::time::Duration;

/// Ship everything the master has that the slave lacks.
async fn catch_up(master: &Journal, slave: &Journal) {
    loop {
        let entries = master.read_after(slave.position(), 4096).unwrap();
        if entries.is_empty() {
            return;
        }
        slave.append_replicated(entries).await.unwrap();
    }
}

fn all_entries(j: &Journal) -> Vec<Entry> {
    j.read_after(Position(j.first_position().0 - 1), usize::MAX)
        .unwrap()
}

#[tokio::test]
async fn slave_keeps_master_positions_and_epochs() {
    let (md, sd) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let master = open(md.path());
    let slave = open(sd.path());
    master.set_epoch(Epoch(7)).unwrap();
    for i in 0..50 {
        append(
            &master,
            vec![enq("q", &format!("m{i}")), enq("r", &format!("m{i}"))],
        )
        .await;
        if i % 3 == 0 {
            append(&master, vec![ack("q", &format!("m{i}"))]).await;
        }
    }
    catch_up(&master, &slave).await;
    assert_eq!(slave.position(), master.position());
    let shipped = all_entries(&slave);
    assert_eq!(shipped, all_entries(&master));
    assert!(shipped.iter().all(|e| e.epoch == Epoch(7)));
    let m = master.recover().unwrap();
    drop(slave);
    let s = open(sd.path()).recover().unwrap();
    assert_same(&s, &m);
    assert_eq!(s.epoch, Epoch(7));
}

#[tokio::test]
async fn reads_return_whole_batches_within_the_byte_budget() {
    let dir = tempfile::tempdir().unwrap();
    let j = open(dir.path());
    for b in 0..20 {
        let batch = (0..5).map(|i| enq("q", &format!("{b}-{i}"))).collect();
        append(&j, batch).await;
    }
    let first = j.read_after(Position::ZERO, 1).unwrap();
    assert_eq!(first.len(), 5, "at least one whole batch");
    assert!(first[4].batch_end && !first[3].batch_end);
    let some = j.read_after(Position(5), 2000).unwrap();
    assert_eq!(some.len() % 5, 0);
    assert_eq!(some[0].position, Position(6));
    assert!(j.read_after(Position(100), 1 << 20).unwrap().is_empty());
    // Reading from the middle of a batch starts right after the position.
    let mid = j.read_after(Position(7), 1).unwrap();
    assert_eq!(mid.first().map(|e| e.position), Some(Position(8)));
    assert!(mid.last().unwrap().batch_end);
}

#[tokio::test]
async fn subscribers_see_new_positions() {
    let dir = tempfile::tempdir().unwrap();
    let j = open(dir.path());
    let mut rx = j.subscribe();
    assert_eq!(*rx.borrow(), Position::ZERO);
    let fut = j.append(vec![enq("q", "1"), enq("q", "2")]);
    tokio::time::timeout(Duration::from_secs(5), rx.changed())
        .await
        .expect("notified")
        .unwrap();
    assert_eq!(*rx.borrow_and_update(), Position(2));
    fut.await.unwrap();
}

#[tokio::test]
async fn replicated_entries_must_continue_the_log() {
    let (md, sd) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let master = open(md.path());
    let slave = open(sd.path());
    enqueue_numbered(&master, 4).await;
    let entries = master.read_after(Position(2), 1 << 20).unwrap();
    let err = slave.append_replicated(entries).await.unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::OutOfOrder {
                expected: Position(1),
                got: Position(3)
            }
        ),
        "{err}"
    );
    assert_eq!(slave.position(), Position::ZERO);
    // Epochs may not go backwards either.
    slave.set_epoch(Epoch(5)).unwrap();
    assert!(matches!(
        slave.set_epoch(Epoch(4)),
        Err(StoreError::EpochBackwards { .. })
    ));
    let mut old = master.read_after(Position::ZERO, 1 << 20).unwrap();
    for e in &mut old {
        e.epoch = Epoch(3);
    }
    slave.append_replicated(old.clone()).await.unwrap();
    let mut back = master.read_after(Position::ZERO, 1).unwrap();
    back[0].position = Position(5);
    back[0].epoch = Epoch(2);
    assert!(matches!(
        slave.append_replicated(back).await,
        Err(StoreError::EpochBackwards { .. })
    ));
}

#[tokio::test]
async fn divergent_tail_is_truncated_and_replaced_by_the_masters_history() {
    let (md, sd) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let master = open(md.path());
    let slave = open(sd.path());
    enqueue_numbered(&master, 10).await;
    catch_up(&master, &slave).await;
    // The slave was master for a while (old epoch) and wrote a tail the new
    // master never had: an ack and a new message.
    slave.set_epoch(Epoch(2)).unwrap();
    append(&slave, vec![ack("q", "0"), enq("q", "stale")]).await;
    master.set_epoch(Epoch(3)).unwrap();
    append(&master, vec![enq("q", "10")]).await;
    append(&master, vec![ack("q", "1")]).await;

    slave.truncate_after(Position(10)).await.unwrap();
    assert_eq!(slave.position(), Position(10));
    assert_eq!(*slave.subscribe().borrow(), Position(10));
    catch_up(&master, &slave).await;
    let want = master.recover().unwrap();
    assert_same(&slave.recover().unwrap(), &want);
    // "0" is live again (its ack was in the truncated tail), "stale" gone.
    assert_eq!(ids(&want, "q")[0], "0");
    drop(slave);
    assert_same(&open(sd.path()).recover().unwrap(), &want);
}

#[tokio::test]
async fn truncation_at_a_segment_boundary_and_noop_truncation() {
    let dir = tempfile::tempdir().unwrap();
    let j = Journal::open(dir.path(), small_segments(512)).unwrap();
    enqueue_numbered(&j, 20).await;
    let files = segment_files(dir.path());
    assert!(files.len() > 3);
    let boundary: u64 = files[2].trim_end_matches(".log").parse().unwrap();
    j.truncate_after(Position(boundary - 1)).await.unwrap();
    j.truncate_after(Position(1000)).await.unwrap();
    assert_eq!(j.position(), Position(boundary - 1));
    append(&j, vec![enq("q", "after")]).await;
    drop(j);
    let r = Journal::open(dir.path(), small_segments(512))
        .unwrap()
        .recover()
        .unwrap();
    assert_eq!(r.position, Position(boundary));
    assert_eq!(ids(&r, "q").len() as u64, boundary);
}

#[tokio::test]
async fn truncation_below_deleted_acknowledgements_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let j = Journal::open(dir.path(), small_segments(512)).unwrap();
    enqueue_numbered(&j, 10).await;
    for i in 0..10 {
        append(&j, vec![ack("q", &i.to_string())]).await;
    }
    // The enqueues' segments are gone; truncating before the acks would
    // need them back.
    let err = j.truncate_after(Position(12)).await.unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::TruncateBelowHorizon { .. } | StoreError::Compacted { .. }
        ),
        "{err}"
    );
    assert_eq!(j.position(), Position(20));
}

#[tokio::test]
async fn slave_behind_a_deleted_segment_resets_and_copies_everything() {
    let opts = JournalOptions {
        compaction: Compaction::Prefix,
        ..small_segments(600)
    };
    let (md, sd) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let master = Journal::open(md.path(), opts.clone()).unwrap();
    let slave = Journal::open(sd.path(), opts.clone()).unwrap();
    enqueue_numbered(&master, 30).await;
    let early = master.read_after(Position::ZERO, 1).unwrap();
    slave.append_replicated(early).await.unwrap();
    // The slave goes away; the master acknowledges and deletes segments.
    for i in 0..20 {
        append(&master, vec![ack("q", &i.to_string())]).await;
    }
    append(&master, vec![enq("q", "late")]).await;
    let first = master.first_position();
    assert!(first > Position(2), "nothing was deleted: {first}");
    let err = master.read_after(slave.position(), 4096).unwrap_err();
    let StoreError::Compacted {
        first_available, ..
    } = err
    else {
        panic!("{err}")
    };
    assert_eq!(first_available, first);
    slave.reset(first_available).await.unwrap();
    assert_eq!(slave.position(), Position(first.0 - 1));
    catch_up(&master, &slave).await;
    let want = master.recover().unwrap();
    assert_same(&slave.recover().unwrap(), &want);
    assert_eq!(ids(&want, "q").len(), 11);
    drop(slave);
    let reopened = Journal::open(sd.path(), opts).unwrap();
    assert_same(&reopened.recover().unwrap(), &want);
    assert_eq!(reopened.first_position(), first);
}

#[tokio::test]
async fn reset_survives_a_restart_before_anything_arrives() {
    let dir = tempfile::tempdir().unwrap();
    {
        let j = open(dir.path());
        append(&j, vec![enq("q", "old")]).await;
        j.reset(Position(500)).await.unwrap();
    }
    let j = open(dir.path());
    let r = j.recover().unwrap();
    assert_eq!(r.position, Position(499));
    assert_eq!(r.message_count(), 0);
    assert_eq!(j.first_position(), Position(500));
}

#[tokio::test]
async fn a_batch_received_in_pieces_never_spans_segments() {
    let (md, sd) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let master = open(md.path());
    let slave = Journal::open(sd.path(), small_segments(300)).unwrap();
    let batch = (0..6).map(|i| enq("q", &format!("t{i}"))).collect();
    append(&master, batch).await;
    append(&master, vec![enq("q", "single")]).await;
    // Ship record by record, as a sender cutting at byte budgets might.
    for e in master.read_after(Position::ZERO, usize::MAX).unwrap() {
        slave.append_replicated(vec![e]).await.unwrap();
    }
    drop(slave);
    let reopened = Journal::open(sd.path(), small_segments(300)).unwrap();
    assert_same(&reopened.recover().unwrap(), &master.recover().unwrap());
    assert!(segment_files(sd.path()).len() >= 2);
}

#[tokio::test]
async fn an_unfinished_replicated_batch_is_dropped_on_recovery() {
    let (md, sd) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let master = open(md.path());
    let slave = open(sd.path());
    append(&master, vec![enq("q", "a")]).await;
    append(&master, vec![enq("q", "b"), enq("q", "c")]).await;
    let entries = master.read_after(Position::ZERO, usize::MAX).unwrap();
    slave
        .append_replicated(entries[..2].to_vec())
        .await
        .unwrap();
    assert_eq!(slave.position(), Position(2));
    drop(slave);
    // The master crashed before sending the batch's end: none of it counts.
    let slave = open(sd.path());
    assert_eq!(ids(&slave.recover().unwrap(), "q"), ["a"]);
    assert_eq!(slave.position(), Position(1));
}

#[tokio::test]
async fn epoch_history_follows_appends_truncation_restarts_and_deletion() {
    let (md, sd) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let master = Journal::open(md.path(), small_segments(400)).unwrap();
    assert!(master.epoch_history().is_empty());
    append(&master, vec![enq("q", "a"), enq("q", "b")]).await;
    master.set_epoch(Epoch(3)).unwrap();
    append(&master, vec![enq("q", "c")]).await;
    append(&master, vec![enq("q", "d")]).await;
    master.set_epoch(Epoch(5)).unwrap();
    append(&master, vec![enq("q", "e")]).await;
    let want = vec![
        (Epoch::STANDALONE, Position(1)),
        (Epoch(3), Position(3)),
        (Epoch(5), Position(5)),
    ];
    assert_eq!(master.epoch_history(), want);
    let slave = open(sd.path());
    catch_up(&master, &slave).await;
    assert_eq!(slave.epoch_history(), want);
    assert_eq!(
        slave.epoch(),
        Epoch(5),
        "the slave follows the newest epoch"
    );
    slave.truncate_after(Position(3)).await.unwrap();
    assert_eq!(slave.epoch_history(), want[..2]);
    drop(slave);
    assert_eq!(open(sd.path()).epoch_history(), want[..2]);
    // Deleting the oldest segments clips the history to what is stored.
    for id in ["a", "b", "c"] {
        append(&master, vec![ack("q", id)]).await;
    }
    let first = master.first_position();
    assert!(first > Position(1));
    let h = master.epoch_history();
    assert_eq!(h[0].1, first);
    assert_eq!(h.last(), Some(&(Epoch(5), Position(5))));
    drop(master);
    assert_eq!(
        Journal::open(md.path(), small_segments(400))
            .unwrap()
            .epoch_history(),
        h
    );
}

/// Reads far behind the tail (sparse offset marks) and near it (exact
/// offsets of the latest batches) start at the right record.
#[tokio::test]
async fn reads_start_right_after_any_position() {
    let dir = tempfile::tempdir().unwrap();
    let j = open(dir.path());
    // Sequenced now, made durable together (group commit).
    let pending: Vec<_> = (0..3000)
        .map(|i| j.append(vec![enq("q", &i.to_string())]))
        .collect();
    futures::future::try_join_all(pending).await.unwrap();
    for after in [0u64, 1, 2, 500, 1975, 1976, 1977, 2500, 2998, 2999] {
        let got = j.read_after(Position(after), 1).unwrap();
        assert_eq!(got.len(), 1, "after {after}");
        assert_eq!(got[0].position, Position(after + 1));
        let Record::Enqueue(m) = &got[0].record else {
            panic!("not an enqueue")
        };
        assert_eq!(m.id.0, after.to_string());
    }
    assert!(j.read_after(Position(3000), 1).unwrap().is_empty());
}

/// Fresh records are served from memory (also before the writer wrote
/// them), exactly as the files serve them after a restart; history beyond
/// the memory's few MiB comes from the files.
#[tokio::test]
async fn fresh_entries_come_from_memory_and_match_the_files() {
    let dir = tempfile::tempdir().unwrap();
    let j = open(dir.path());
    for b in 0..20 {
        let batch = (0..5).map(|i| enq("q", &format!("{b}-{i}"))).collect();
        append(&j, batch).await;
    }
    let reads = [(0, 1), (5, 2000), (7, 1), (42, 1 << 20), (100, 1 << 20)];
    let from_memory: Vec<Vec<Entry>> = reads
        .iter()
        .map(|&(after, max)| {
            j.read_recent(Position(after), max)
                .expect("in memory")
                .unwrap()
        })
        .collect();
    drop(j);
    let j = open(dir.path());
    for (&(after, max), memory) in reads.iter().zip(&from_memory) {
        assert!(
            j.read_recent(Position(after), max).is_none(),
            "after a restart"
        );
        assert_eq!(&j.read_after(Position(after), max).unwrap(), memory);
    }
    // Readable as soon as `append` returns, before it is durable.
    let pending = j.append(vec![enq("q", "new")]);
    let fresh = j.read_recent(Position(100), 1).expect("in memory").unwrap();
    assert_eq!(fresh.len(), 1);
    assert_eq!(fresh[0].position, Position(101));
    pending.await.unwrap();
    // A few MiB later the start is read from the files again.
    let body = vec![b'x'; 64 << 10];
    for i in 0..64 {
        append(&j, vec![Record::Enqueue(msg("big", &i.to_string(), &body))]).await;
    }
    assert!(j.read_recent(Position(100), 1).is_none());
    assert_eq!(j.read_after(Position(100), 1).unwrap(), fresh);
}
