//! The replication protocol between real journals over loopback TCP:
//! catch-up and streaming, truncation of a divergent tail, refusal of stale
//! epochs and wrong tokens, and writes gated by the `sync` policy.

use amq_broker::config::SyncTo;
use amq_broker::message::{Destination, Message, MessageId};
use amq_broker::replication::{ReplicatedStore, ReplicationError, ReplicationSettings, Replicator};
use amq_broker::store::{Journal, JournalOptions, Record, Store, StoreError};
use bytes::Bytes;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

fn settings(token: &str) -> ReplicationSettings {
    ReplicationSettings {
        security_token: amq_broker::config::Secret::new(token),
        replicas: 3,
        sync: SyncTo::QUORUM_MEM,
        heartbeat: Duration::from_millis(50),
        write_timeout: Duration::from_secs(10),
    }
}

fn node(dir: &tempfile::TempDir, token: &str) -> Arc<Replicator> {
    let j = Journal::open(dir.path(), JournalOptions::default()).expect("journal");
    Replicator::new(Arc::new(j) as Arc<dyn Store>, settings(token))
}

fn enqueue(n: u32) -> Record {
    Record::Enqueue(Message {
        id: MessageId(format!("ID:test-{n}")),
        destination: Destination::Queue("q".into()),
        persistent: true,
        priority: 4,
        expires: None,
        timestamp: 0,
        reply_to: None,
        correlation_id: None,
        properties: Default::default(),
        body: Bytes::from(format!("body {n}")),
        redelivery_count: 0,
        broker_path: Vec::new(),
    })
}

async fn serve(master: &Arc<Replicator>) -> (String, CancellationToken) {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = format!("tcp://{}", l.local_addr().unwrap());
    let stop = CancellationToken::new();
    tokio::spawn(master.clone().serve(l, stop.clone()));
    (addr, stop)
}

fn ids(r: &Arc<Replicator>) -> Vec<String> {
    let rec = r.store().recover().unwrap();
    rec.destinations
        .values()
        .flatten()
        .map(|m| m.id.0.clone())
        .collect()
}

async fn wait_position(r: &Arc<Replicator>, p: u64) {
    tokio::time::timeout(Duration::from_secs(10), async {
        while r.store().position().0 < p {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("slave reaches the position");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slave_catches_up_streams_and_its_acks_release_receipts() {
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let master = node(&da, "tok");
    master.start_master(2).unwrap();
    let store = ReplicatedStore::new(master.clone());
    // Written before any slave is attached: waits for the ack.
    let early = store.append(vec![enqueue(0), enqueue(1)]);
    let (addr, _stop) = serve(&master).await;
    let slave = node(&db, "tok");
    let follow = tokio::spawn(slave.clone().follow(
        addr.clone(),
        "s1".into(),
        2,
        CancellationToken::new(),
    ));
    assert_eq!(early.await.unwrap().0, 2, "receipted once the slave acked");
    for n in 2..50 {
        store.append(vec![enqueue(n)]).await.unwrap();
    }
    wait_position(&slave, 50).await;
    assert_eq!(ids(&slave), ids(&master));
    assert_eq!(
        slave.store().epoch_history(),
        master.store().epoch_history()
    );
    assert_eq!(master.slaves()["s1"].written, 50);

    // Demotion ends the stream; the slave sees it end.
    master.stop_master();
    let ended = tokio::time::timeout(Duration::from_secs(5), follow)
        .await
        .unwrap()
        .unwrap();
    assert!(ended.is_err(), "{ended:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_masters_tail_is_truncated_to_the_new_masters_history() {
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let master = node(&da, "tok");
    let slave = node(&db, "tok");
    master.start_master(2).unwrap();
    let (addr, _stop) = serve(&master).await;
    let stop = CancellationToken::new();
    let f = tokio::spawn(
        slave
            .clone()
            .follow(addr.clone(), "s1".into(), 2, stop.clone()),
    );
    let store = ReplicatedStore::new(master.clone());
    for n in 0..3 {
        store.append(vec![enqueue(n)]).await.unwrap();
    }
    wait_position(&slave, 3).await;
    stop.cancel();
    f.await.unwrap().unwrap();

    // The slave, briefly a stale master of epoch 3, wrote records nobody else has.
    slave.start_master(3).unwrap();
    for n in 100..104 {
        slave.store().append(vec![enqueue(n)]).await.unwrap();
    }
    slave.stop_master();
    assert_eq!(slave.store().position().0, 7);

    // Meanwhile the real history went on in epoch 4.
    master.start_master(4).unwrap();
    // Receipted once the slave, truncated, acks them.
    let pending: Vec<_> = (3..5).map(|n| store.append(vec![enqueue(n)])).collect();
    let stop = CancellationToken::new();
    let f = tokio::spawn(
        slave
            .clone()
            .follow(addr.clone(), "s1".into(), 4, stop.clone()),
    );
    tokio::time::timeout(Duration::from_secs(10), async {
        while slave.store().epoch_history() != master.store().epoch_history()
            || slave.store().position() != master.store().position()
        {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("slave converges on the master's history");
    for p in pending {
        p.await.expect("receipted after the slave's ack");
    }
    assert_eq!(ids(&slave), ids(&master));
    assert!(!ids(&slave).iter().any(|id| id.ends_with("-100")));
    stop.cancel();
    f.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_epochs_and_wrong_tokens_are_refused() {
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let master = node(&da, "right");
    master.start_master(5).unwrap();
    let (addr, _stop) = serve(&master).await;
    let slave = node(&db, "right");
    let r = slave
        .clone()
        .follow(addr.clone(), "s1".into(), 4, CancellationToken::new())
        .await;
    assert!(
        matches!(r, Err(ReplicationError::Refused(ref why)) if why.contains("epoch 4")),
        "{r:?}"
    );
    let intruder = node(&tempfile::tempdir().unwrap(), "wrong");
    let r = intruder
        .follow(addr.clone(), "s2".into(), 5, CancellationToken::new())
        .await;
    assert!(
        matches!(r, Err(ReplicationError::Refused(ref why)) if why.contains("security_token")),
        "{r:?}"
    );
    assert!(master.slaves().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_enough_slaves_writes_time_out_and_never_count_as_receipted() {
    let da = tempfile::tempdir().unwrap();
    let j = Journal::open(da.path(), JournalOptions::default()).unwrap();
    let mut s = settings("tok");
    s.write_timeout = Duration::from_millis(300);
    let master = Replicator::new(Arc::new(j) as Arc<dyn Store>, s);
    master.start_master(2).unwrap();
    let store = ReplicatedStore::new(master.clone());
    let t0 = std::time::Instant::now();
    let r = store.append(vec![enqueue(1)]).await;
    assert!(matches!(r, Err(StoreError::NotReplicated(_))), "{r:?}");
    assert!(t0.elapsed() >= Duration::from_millis(300));

    // Losing mastership fails a waiting write at once.
    let pending = store.append(vec![enqueue(2)]);
    master.stop_master();
    let r = tokio::time::timeout(Duration::from_millis(200), pending)
        .await
        .unwrap();
    assert!(matches!(r, Err(StoreError::NotReplicated(_))), "{r:?}");

    // local_mem / local_disk need no slave at all.
    let db = tempfile::tempdir().unwrap();
    let j = Journal::open(db.path(), JournalOptions::default()).unwrap();
    let mut s = settings("tok");
    s.sync = SyncTo {
        local_disk: true,
        remote_mem: false,
        remote_disk: false,
    };
    let alone = Replicator::new(Arc::new(j) as Arc<dyn Store>, s);
    alone.start_master(2).unwrap();
    ReplicatedStore::new(alone)
        .append(vec![enqueue(1)])
        .await
        .unwrap();
}
