//! The failover client's reconnect loop, observed through its events:
//! attempts counted per pass over the list, the back-off between passes,
//! `startupMaxReconnectAttempts`, `timeout` for sends while disconnected,
//! a plain `stomp://` URL not reconnecting, and following a slave's ERROR
//! that names the master. Unreachable members are real closed loopback
//! ports; brokers are real amq-broker processes.

mod client_support;
#[path = "ha_support/mod.rs"]
mod ha_support;

use amq_broker::client::{ClientError, ConnectOptions, OutgoingMessage};
use amq_broker::failover::{
    EventKind, FailoverClient, FailoverError, FailoverEvent, FailoverUri, MASTER_HEADER,
};
use amq_harness::free_ports;
use client_support::{start, unique_queue, Kind};
use std::time::{Duration, Instant};

fn kinds(events: &[FailoverEvent]) -> Vec<&EventKind> {
    events.iter().map(|e| &e.kind).collect()
}

#[tokio::test]
async fn startup_attempts_are_counted_per_pass_with_back_off_between() {
    let ports = free_ports(2); // nothing listens on them
    let url = format!(
        "failover:(stomp://127.0.0.1:{},stomp://127.0.0.1:{})?randomize=false\
         &startupMaxReconnectAttempts=3&initialReconnectDelay=20",
        ports[0], ports[1]
    );
    let client =
        FailoverClient::start(FailoverUri::parse(&url).unwrap(), ConnectOptions::default());
    let mut events = client.events();
    let started = Instant::now();
    let mut log = Vec::new();
    loop {
        let e = tokio::time::timeout(Duration::from_secs(10), events.recv())
            .await
            .unwrap()
            .unwrap();
        let done = matches!(e.kind, EventKind::GaveUp { .. });
        log.push(e);
        if done {
            break;
        }
    }
    let elapsed = started.elapsed();
    let k = kinds(&log);
    // Three passes over both members, in list order (randomize=false).
    let tried: Vec<(u16, u32)> = k
        .iter()
        .filter_map(|k| match k {
            EventKind::Connecting { endpoint, pass } => Some((endpoint.port, *pass)),
            _ => None,
        })
        .collect();
    assert_eq!(
        tried,
        vec![
            (ports[0], 1),
            (ports[1], 1),
            (ports[0], 2),
            (ports[1], 2),
            (ports[0], 3),
            (ports[1], 3)
        ]
    );
    assert_eq!(
        k.iter()
            .filter(|k| matches!(k, EventKind::ConnectFailed { .. }))
            .count(),
        6
    );
    // Back-off after the first two failed passes only: 20 ms, then 40 ms.
    let delays: Vec<u128> = k
        .iter()
        .filter_map(|k| match k {
            EventKind::PassFailed { delay, .. } => Some(delay.as_millis()),
            _ => None,
        })
        .collect();
    assert_eq!(delays, vec![20, 40]);
    assert!(elapsed >= Duration::from_millis(60), "{elapsed:?}");
    assert!(matches!(
        k.last(),
        Some(EventKind::GaveUp { passes: 3, .. })
    ));

    // The event log holds the same, and sends now fail with the cause.
    assert_eq!(client.event_log().len(), log.len());
    let err = client
        .send(OutgoingMessage::new("/queue/x", "x").persistent(true))
        .await
        .unwrap_err();
    match err {
        FailoverError::GaveUp { passes, last, uris } => {
            assert_eq!(passes, 3);
            assert!(matches!(last, ClientError::Connect { .. }), "{last:?}");
            assert!(uris.contains(&ports[0].to_string()));
        }
        e => panic!("expected GaveUp, got {e:?}"),
    }
}

#[tokio::test]
async fn max_reconnect_attempts_limits_startup_when_startup_limit_is_unset() {
    let port = free_ports(1)[0];
    let url = format!(
        "failover:(stomp://127.0.0.1:{port})?maxReconnectAttempts=2&initialReconnectDelay=1"
    );
    let err = FailoverClient::connect(&url, ConnectOptions::default())
        .await
        .err()
        .expect("no broker listens");
    assert!(
        matches!(err, FailoverError::GaveUp { passes: 2, .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("after 2 attempt(s)"), "{err}");
}

#[tokio::test]
async fn sends_while_disconnected_fail_after_timeout_but_the_client_keeps_trying() {
    let port = free_ports(1)[0];
    let url = format!("failover:(stomp://127.0.0.1:{port})?timeout=300&maxReconnectDelay=50");
    let client =
        FailoverClient::start(FailoverUri::parse(&url).unwrap(), ConnectOptions::default());
    for persistent in [true, false] {
        let started = Instant::now();
        let err = client
            .send(OutgoingMessage::new("/queue/x", "x").persistent(persistent))
            .await
            .unwrap_err();
        let waited = started.elapsed();
        assert_eq!(err, FailoverError::Timeout(Duration::from_millis(300)));
        assert_eq!(err.to_string(), "failover timeout of 300 ms reached");
        assert!(
            waited >= Duration::from_millis(290) && waited < Duration::from_secs(3),
            "{waited:?}"
        );
    }
    // Nothing is left tracked for a send that failed.
    assert_eq!(client.unreceipted(), 0);
    let passes = client
        .event_log()
        .iter()
        .filter(|e| matches!(e.kind, EventKind::PassFailed { .. }))
        .count();
    assert!(passes >= 3, "still reconnecting: {passes} passes");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_stomp_url_does_not_reconnect_and_failover_url_waits_for_the_broker() {
    let dir = tempfile::tempdir().unwrap();
    let mut amq = start(Kind::AmqBroker, dir.path(), &[]);
    let q = unique_queue("plain");

    let plain = FailoverClient::connect(&amq.url(), ConnectOptions::default())
        .await
        .unwrap();
    let failover = FailoverClient::connect(
        &format!("failover:({})?maxReconnectDelay=100", amq.url()),
        ConnectOptions::default(),
    )
    .await
    .unwrap();
    plain
        .send(OutgoingMessage::new(q.clone(), "1").persistent(true))
        .await
        .unwrap();

    amq.kill();
    // The failover client's send waits through the outage (no timeout set)...
    let f2 = failover.clone();
    let q2 = q.clone();
    let pending = tokio::spawn(async move {
        f2.send(OutgoingMessage::new(q2, "during outage").persistent(true))
            .await
    });
    // ...while the plain URL reports the loss.
    let err = tokio::time::timeout(
        Duration::from_secs(10),
        plain.send(OutgoingMessage::new(q.clone(), "2").persistent(true)),
    )
    .await
    .unwrap()
    .unwrap_err();
    assert!(matches!(err, FailoverError::ConnectionLost(_)), "{err:?}");

    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!pending.is_finished());
    amq.restart();
    tokio::time::timeout(Duration::from_secs(20), pending)
        .await
        .expect("receipted after the broker came back")
        .unwrap()
        .unwrap();
    let reconnected = failover
        .event_log()
        .iter()
        .any(|e| matches!(&e.kind, EventKind::Reconnected { resent: 1, .. }));
    assert!(reconnected, "{:?}", kinds(&failover.event_log()));
    failover.close().await;
}

/// A slave that accepts STOMP connections answers CONNECT with an ERROR
/// naming the master (`MASTER_HEADER`). The client goes there next, even
/// though the master is not in its list. The slave here is a stand-in
/// speaking exactly that contract; the master is a real amq-broker.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follows_a_slaves_error_naming_the_master() {
    let dir = tempfile::tempdir().unwrap();
    let master = start(Kind::AmqBroker, dir.path(), &[]);
    let slave = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let slave_port = slave.local_addr().unwrap().port();
    let master_url = master.url();
    tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        while let Ok((mut s, _)) = slave.accept().await {
            let mut buf = vec![0u8; 4096];
            let _ = s.read(&mut buf).await;
            let frame = format!(
                "ERROR\n{MASTER_HEADER}:{}\nmessage:not the master\n\n\0",
                master_url.replace(':', "\\c")
            );
            let _ = s.write_all(frame.as_bytes()).await;
        }
    });
    let url = format!("failover:(stomp://127.0.0.1:{slave_port})?randomize=false");
    let client = FailoverClient::connect(&url, ConnectOptions::default())
        .await
        .unwrap();
    assert_eq!(client.connected_to().unwrap().port, master.stomp_port());
    let log = client.event_log();
    assert!(
        log.iter()
            .any(|e| matches!(&e.kind, EventKind::Redirected { from, to }
            if from.port == slave_port && to.port == master.stomp_port())),
        "{:?}",
        kinds(&log)
    );
    client
        .send(OutgoingMessage::new(unique_queue("redirect"), "x").persistent(true))
        .await
        .unwrap();

    // reconnectSupported=false ignores the hint.
    let url = format!(
        "failover:(stomp://127.0.0.1:{slave_port})?reconnectSupported=false&maxReconnectAttempts=1"
    );
    let err = FailoverClient::connect(&url, ConnectOptions::default())
        .await
        .err()
        .unwrap();
    match err {
        FailoverError::GaveUp {
            last: ClientError::NotMaster { master: m, .. },
            ..
        } => {
            assert_eq!(m.unwrap().port, master.stomp_port())
        }
        e => panic!("expected GaveUp with NotMaster, got {e:?}"),
    }
    client.close().await;
}

/// `priorityBackup`: connected to a non-priority broker because the first
/// one is down, the client keeps probing it and moves back once it is up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn priority_backup_moves_back_to_the_first_broker() {
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut a = start(Kind::AmqBroker, da.path(), &[]);
    let b = start(Kind::AmqBroker, db.path(), &[]);
    a.kill();
    let url = format!(
        "failover:({},{})?randomize=false&priorityBackup=true&maxReconnectDelay=200",
        a.url(),
        b.url()
    );
    let client = FailoverClient::connect(&url, ConnectOptions::default())
        .await
        .unwrap();
    assert_eq!(client.connected_to().unwrap().port, b.stomp_port());
    let q = unique_queue("priority");
    client
        .send(OutgoingMessage::new(q.clone(), "on b").persistent(true))
        .await
        .unwrap();

    a.restart();
    let deadline = Instant::now() + Duration::from_secs(10);
    while client.connected_to().map(|e| e.port) != Some(a.stomp_port()) {
        assert!(
            Instant::now() < deadline,
            "{:?}",
            kinds(&client.event_log())
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let log = client.event_log();
    assert!(log.iter().any(|e| matches!(&e.kind,
        EventKind::PriorityBackup { from, to } if from.port == b.stomp_port() && to.port == a.stomp_port())));
    client
        .send(OutgoingMessage::new(q, "on a").persistent(true))
        .await
        .unwrap();
    client.close().await;
}

/// A transaction open when the connection fails over was rolled back by the
/// broker: its COMMIT says so instead of pretending, and nothing of it is
/// delivered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_transaction_is_reported_rolled_back_after_failover() {
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut a = start(Kind::AmqBroker, da.path(), &[]);
    let b = start(Kind::AmqBroker, db.path(), &[]);
    let url = format!("failover:({},{})?randomize=false", a.url(), b.url());
    let client = FailoverClient::connect(&url, ConnectOptions::default())
        .await
        .unwrap();
    let q = unique_queue("tx");
    let tx = client.begin().await.unwrap();
    tx.send(OutgoingMessage::new(q.clone(), "in tx").persistent(true))
        .await
        .unwrap();
    a.kill();
    let deadline = Instant::now() + Duration::from_secs(10);
    while client.connected_to().map(|e| e.port) != Some(b.stomp_port()) {
        assert!(Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let err = tx.commit().await.unwrap_err();
    assert!(
        matches!(err, FailoverError::TransactionRolledBack(_)),
        "{err:?}"
    );

    // A new transaction on the new broker commits.
    let tx = client.begin().await.unwrap();
    tx.send(OutgoingMessage::new(q.clone(), "committed").persistent(true))
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let mut sub = client
        .subscribe(&q, amq_broker::client::AckMode::Auto, &[])
        .await
        .unwrap();
    let m = tokio::time::timeout(Duration::from_secs(5), sub.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(m.body().as_ref(), b"committed");
    client.close().await;
}

/// The same against a real slave: a replicated group (real ZooKeeper) with
/// `slaveRedirect`; the client's list names only a slave, and it lands on
/// the master.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_slave_sends_the_client_to_the_master() {
    let g = ha_support::Group::start(ha_support::GroupOptions {
        slave_redirect: true,
        ..Default::default()
    });
    let m = g.wait_master(Duration::from_secs(30));
    let master_port = g.brokers[m].stomp_addr().port();
    let slave = (0..g.brokers.len()).find(|&i| i != m).unwrap();
    // The slave learns the master's address from ZooKeeper.
    assert!(
        ha_support::wait_until(Duration::from_secs(10), || {
            matches!(ha_support::role(&g.brokers[slave]), Some((r, Some(_))) if r == "slave")
        }),
        "{}",
        g.describe()
    );
    let url = format!(
        "failover:(stomp://{})?maxReconnectAttempts=3",
        g.brokers[slave].stomp_addr()
    );
    let client = FailoverClient::connect(&url, ConnectOptions::default())
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", g.describe()));
    assert_eq!(client.connected_to().unwrap().port, master_port);
    assert!(client.event_log().iter().any(|e| matches!(&e.kind,
        EventKind::Redirected { to, .. } if to.port == master_port)));
    client
        .send(OutgoingMessage::new(unique_queue("via-slave"), "x").persistent(true))
        .await
        .unwrap();
    client.close().await;
}
