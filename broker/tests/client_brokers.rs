//! The STOMP client against real brokers, each scenario run against both
//! amq-broker and Debian's ActiveMQ 5.17: every frame type the client sends,
//! typed errors, and the failover client moving between two brokers (one
//! killed with `kill -9`) without losing a receipted message.

mod client_support;

use amq_broker::client::{AckMode, ClientError, ConnectOptions, Connection, OutgoingMessage};
use amq_broker::failover::{EventKind, FailoverClient, FailoverError};
use client_support::{start, unique_queue, Kind};
use std::collections::BTreeMap;
use std::time::Duration;
use tokio::time::timeout;

const T: Duration = Duration::from_secs(10);

async fn recv(sub: &mut amq_broker::client::Subscription) -> amq_broker::client::Delivery {
    timeout(T, sub.recv())
        .await
        .expect("a message within 10 s")
        .expect("subscription open")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_client_frame_against_amq_broker() {
    every_client_frame(Kind::AmqBroker, "amq-broker").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_client_frame_against_activemq() {
    every_client_frame(Kind::ActiveMq, "ActiveMQ").await;
}

async fn every_client_frame(kind: Kind, server: &str) {
    let dir = tempfile::tempdir().unwrap();
    let amq = start(kind, dir.path(), &[]);
    let conn = Connection::connect(&amq.addr(), &ConnectOptions::default())
        .await
        .unwrap();
    let info = conn.server_info().clone();
    assert_eq!(info.version, amq_broker::stomp::Version::V1_2);
    assert!(
        info.server.as_deref().unwrap_or("").contains(server),
        "{info:?}"
    );
    // Heart-beats were negotiated both ways.
    assert!(
        !info.heart_beat.0.is_zero() && !info.heart_beat.1.is_zero(),
        "{info:?}"
    );

    // SEND with receipt, custom headers and a binary body with NULs and
    // newlines; SUBSCRIBE client-individual; ACK.
    let q = unique_queue("roundtrip");
    let mut sub = conn
        .subscribe(&q, AckMode::ClientIndividual, &[])
        .await
        .unwrap();
    let body: Vec<u8> = (0..=255u8).chain([0, b'\n', 0]).collect();
    conn.send_receipted(
        OutgoingMessage::new(q.clone(), body.clone())
            .persistent(true)
            .header("colour", "blue: with colon")
            .header("seq", "1"),
    )
    .await
    .unwrap();
    let m = recv(&mut sub).await;
    assert_eq!(m.body().as_ref(), body.as_slice());
    assert_eq!(m.header("colour"), Some("blue: with colon"));
    assert_eq!(m.header("persistent"), Some("true"));
    assert_eq!(m.destination(), q);
    assert!(!m.message_id().is_empty());
    conn.ack(&m).unwrap();

    // NACK is accepted and the connection carries on.
    conn.send(OutgoingMessage::new(q.clone(), "to-nack"))
        .await
        .unwrap();
    let m = recv(&mut sub).await;
    conn.nack(&m).unwrap();

    // UNSUBSCRIBE: nothing arrives on it any more.
    sub.unsubscribe().await.unwrap();

    // Transactions: ABORT drops the sends, COMMIT delivers them.
    let tq = unique_queue("tx");
    let mut tsub = conn.subscribe(&tq, AckMode::Auto, &[]).await.unwrap();
    conn.begin("t1").await.unwrap();
    let mut aborted = OutgoingMessage::new(tq.clone(), "aborted");
    aborted.transaction = Some("t1".into());
    conn.send(aborted).await.unwrap();
    conn.abort("t1").await.unwrap();
    conn.begin("t2").await.unwrap();
    let mut committed = OutgoingMessage::new(tq.clone(), "committed");
    committed.transaction = Some("t2".into());
    conn.send(committed).await.unwrap();
    conn.commit("t2").await.unwrap();
    let m = recv(&mut tsub).await;
    assert_eq!(m.body().as_ref(), b"committed");
    assert!(
        timeout(Duration::from_millis(300), tsub.recv())
            .await
            .is_err(),
        "the aborted message must not arrive"
    );

    // Many receipted sends in flight at once: all confirmed, order kept.
    let pq = unique_queue("pipelined");
    let mut psub = conn.subscribe(&pq, AckMode::Auto, &[]).await.unwrap();
    let receipts: Vec<_> = (0..200)
        .map(|i| {
            conn.request(
                OutgoingMessage::new(pq.clone(), format!("{i}"))
                    .persistent(true)
                    .to_frame(),
            )
            .unwrap()
        })
        .collect();
    for r in receipts {
        timeout(T, r).await.unwrap().unwrap();
    }
    for i in 0..200 {
        assert_eq!(
            recv(&mut psub).await.body().as_ref(),
            format!("{i}").as_bytes()
        );
    }

    // A message cannot be acknowledged over another connection.
    let other = Connection::connect(&amq.addr(), &ConnectOptions::default())
        .await
        .unwrap();
    conn.send_receipted(OutgoingMessage::new(pq.clone(), "x"))
        .await
        .unwrap();
    let m = recv(&mut psub).await;
    assert!(matches!(other.ack(&m), Err(ClientError::Protocol { .. })));

    // DISCONNECT is receipted; afterwards the connection is closed.
    conn.disconnect().await.unwrap();
    assert!(conn.is_closed());
    assert_eq!(
        conn.send(OutgoingMessage::new(pq.clone(), "late")).await,
        Err(ClientError::Closed)
    );
    other.disconnect().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_is_checked_and_refusal_is_typed_amq_broker() {
    login_is_checked(Kind::AmqBroker).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_is_checked_and_refusal_is_typed_activemq() {
    login_is_checked(Kind::ActiveMq).await;
}

async fn login_is_checked(kind: Kind) {
    let dir = tempfile::tempdir().unwrap();
    let amq = start(kind, dir.path(), &[("app", "s3cret")]);
    let bad = ConnectOptions {
        login: Some("app".into()),
        passcode: Some("wrong".into()),
        ..ConnectOptions::default()
    };
    let err = Connection::connect(&amq.addr(), &bad).await.unwrap_err();
    assert!(matches!(err, ClientError::Refused { .. }), "{err:?}");
    // The passcode never shows up in errors or Debug output.
    assert!(!format!("{err} {err:?} {bad:?}").contains("wrong"));

    let good = ConnectOptions {
        passcode: Some("s3cret".into()),
        ..bad
    };
    let conn = Connection::connect(&amq.addr(), &good).await.unwrap();
    conn.send_receipted(OutgoingMessage::new(unique_queue("auth"), "ok"))
        .await
        .unwrap();
    conn.disconnect().await.unwrap();

    // Through a failover URL the refusal is tried on every pass, then reported.
    let url = format!(
        "failover:({})?startupMaxReconnectAttempts=2&initialReconnectDelay=1",
        amq.url()
    );
    let refused = ConnectOptions {
        passcode: Some("wrong".into()),
        ..good
    };
    match FailoverClient::connect(&url, refused).await {
        Err(FailoverError::GaveUp { passes, last, .. }) => {
            assert_eq!(passes, 2);
            assert!(matches!(last, ClientError::Refused { .. }), "{last:?}");
        }
        Err(e) => panic!("expected GaveUp, got {e:?}"),
        Ok(_) => panic!("expected GaveUp, got a connection"),
    }
}

/// Two standalone ActiveMQ brokers; a producer on a failover URL sends
/// receipted persistent messages with 16 in flight; broker A is killed with
/// `kill -9` half-way. The client moves to B, re-sends what had no receipt,
/// and every receipted message is found afterwards (A restarted from its
/// store, both drained). Duplicates are allowed and counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failover_between_amq_brokers_loses_no_receipted_message() {
    failover_loses_nothing(Kind::AmqBroker).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failover_between_activemq_brokers_loses_no_receipted_message() {
    failover_loses_nothing(Kind::ActiveMq).await;
}

async fn failover_loses_nothing(kind: Kind) {
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut a = start(kind, da.path(), &[]);
    let b = start(kind, db.path(), &[]);
    let url = format!(
        "failover:({},{})?randomize=false&maxReconnectDelay=200&timeout=20000",
        a.url(),
        b.url()
    );
    let client = FailoverClient::connect(&url, ConnectOptions::default())
        .await
        .unwrap();
    assert_eq!(client.connected_to().unwrap().port, a.stomp_port());

    // A consumer on the same failover URL, subscribed before the kill: its
    // subscription must be restored on B.
    let consumer = FailoverClient::connect(&url, ConnectOptions::default())
        .await
        .unwrap();
    let q = unique_queue("failover");
    let topic = format!("/topic/{}", &q["/queue/".len()..]);
    let mut live = consumer
        .subscribe(&topic, AckMode::Auto, &[])
        .await
        .unwrap();

    const N: usize = 3000;
    let mut tasks = tokio::task::JoinSet::new();
    let next = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let receipted = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    for _ in 0..16 {
        let (client, next, receipted, q) =
            (client.clone(), next.clone(), receipted.clone(), q.clone());
        tasks.spawn(async move {
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= N {
                    return;
                }
                let msg = OutgoingMessage::new(q.clone(), vec![b'x'; 1024])
                    .persistent(true)
                    .header("seq", i.to_string());
                client
                    .send(msg)
                    .await
                    .unwrap_or_else(|e| panic!("send {i}: {e}"));
                receipted.lock().unwrap().push(i);
            }
        });
    }
    while receipted.lock().unwrap().len() < N / 3 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    a.kill();
    let killed_at = std::time::Instant::now();
    while let Some(r) = tasks.join_next().await {
        r.unwrap();
    }
    assert_eq!(receipted.lock().unwrap().len(), N);
    assert_eq!(client.connected_to().unwrap().port, b.stomp_port());
    assert_eq!(client.unreceipted(), 0);

    let events = client.event_log();
    for e in &events {
        eprintln!("{e}");
    }
    let reconnect = events
        .iter()
        .find_map(|e| match &e.kind {
            EventKind::Reconnected {
                endpoint, outage, ..
            } => Some((endpoint.clone(), *outage, e.instant)),
            _ => None,
        })
        .expect("a Reconnected event");
    assert_eq!(reconnect.0.port, b.stomp_port());
    assert!(
        reconnect.2 > killed_at && reconnect.1 < Duration::from_secs(5),
        "{reconnect:?}"
    );
    assert!(events.iter().any(|e| matches!(&e.kind, EventKind::Disconnected { endpoint, .. } if endpoint.port == a.stomp_port())));

    // The consumer's topic subscription was restored on B.
    let probe = FailoverClient::connect(
        &format!("failover:({})", b.url()),
        ConnectOptions::default(),
    )
    .await
    .unwrap();
    let mut got = false;
    for _ in 0..50 {
        probe
            .send(OutgoingMessage::new(topic.clone(), "after failover"))
            .await
            .unwrap();
        if let Ok(Some(m)) = timeout(Duration::from_millis(200), live.recv()).await {
            assert_eq!(m.body().as_ref(), b"after failover");
            got = true;
            break;
        }
    }
    assert!(got, "the restored subscription received nothing on B");
    client.close().await;
    consumer.close().await;
    probe.close().await;

    // Restart A from its store and drain both brokers.
    a.restart();
    let mut seen: BTreeMap<usize, usize> = BTreeMap::new();
    for addr in [a.addr(), b.addr()] {
        let conn = Connection::connect(&addr, &ConnectOptions::default())
            .await
            .unwrap();
        let mut sub = conn.subscribe(&q, AckMode::Auto, &[]).await.unwrap();
        while let Ok(Some(m)) = timeout(Duration::from_secs(3), sub.recv()).await {
            let seq: usize = m.header("seq").unwrap().parse().unwrap();
            *seen.entry(seq).or_default() += 1;
        }
        conn.disconnect().await.unwrap();
    }
    let lost: Vec<usize> = (0..N).filter(|i| !seen.contains_key(i)).collect();
    let dups: usize = seen.values().map(|c| c - 1).sum();
    assert!(lost.is_empty(), "receipted messages lost: {lost:?}");
    eprintln!("failover: {N} receipted, 0 lost, {dups} duplicate(s)");
}
