//! The broker's STOMP semantics, driven in-process over TCP with the
//! broker's own codec: every frame type, ack modes, redelivery, dead letters,
//! expiry, transactions, topics, auth, malformed input, heart-beats, limits,
//! flow control and role changes.

mod stomp_support;

use amq_broker::broker::BrokerSettings;
use amq_broker::config::{
    Authentication, DestinationPattern, Policies, RedeliveryPolicy, Secret, User,
};
use amq_broker::connection::ConnectionSettings;
use amq_broker::role::Role;
use amq_broker::stomp::{Command, Frame, Limits, Version};
use amq_broker::store::{Journal, JournalOptions, Store};
use futures::SinkExt;
use std::sync::Arc;
use std::time::Duration;
use stomp_support::*;
use tokio::io::AsyncWriteExt;

const SHORT: Duration = Duration::from_millis(300);

#[tokio::test]
async fn negotiates_versions_and_refuses_unknown_ones() {
    let b = TestBroker::start().await;
    for v in [Version::V1_0, Version::V1_1, Version::V1_2] {
        let c = Client::connect(b.addr, v, &[]).await;
        let expected = (v != Version::V1_0).then_some(v.as_str());
        assert_eq!(c.connected.header("version"), expected);
        assert!(c.connected.header("session").is_some());
    }
    let mut tcp = tokio::net::TcpStream::connect(b.addr).await.unwrap();
    tcp.write_all(b"STOMP\naccept-version:2.0,3.0\nhost:x\n\n\0")
        .await
        .unwrap();
    let mut io = tokio_util::codec::Framed::new(tcp, amq_broker::stomp::Codec::default());
    let f = next_frame(&mut io).await.unwrap();
    assert_eq!(f.command, Command::Error);
    assert!(f.header("message").unwrap().contains("1.0,1.1,1.2"));
    assert!(next_frame(&mut io).await.is_none(), "closed after ERROR");
    b.stop().await;
}

#[tokio::test]
async fn send_and_receive_keep_headers_and_binary_bodies() {
    let b = TestBroker::start().await;
    let mut p = b.client().await;
    let mut c = b.client().await;
    c.subscribe("/queue/q", "s1", "auto", &[]).await;
    let binary: Vec<u8> = (0..=255u8).chain([0, 0, b'\n']).collect();
    p.send_frame(
        Frame::new(Command::Send)
            .with_header("destination", "/queue/q")
            .with_header("x-app", "v:with\\colon\nnewline")
            .with_header("reply-to", "/queue/replies")
            .with_header("correlation-id", "c42")
            .with_header("priority", "6")
            .with_header("receipt", "r")
            .with_body(binary.clone()),
    )
    .await;
    p.expect_receipt("r").await;
    let m = c.recv_message().await;
    assert_eq!(&m.body[..], &binary[..]);
    assert_eq!(m.header("x-app"), Some("v:with\\colon\nnewline"));
    assert_eq!(m.header("reply-to"), Some("/queue/replies"));
    assert_eq!(m.header("correlation-id"), Some("c42"));
    assert_eq!(m.header("priority"), Some("6"));
    assert_eq!(m.header("destination"), Some("/queue/q"));
    assert_eq!(m.header("subscription"), Some("s1"));
    assert!(m.header("message-id").unwrap().starts_with("ID:test-"));
    assert_eq!(m.header("redelivered"), None);
    assert_eq!(m.header("ack"), None, "ack:auto needs no ack header");
    c.disconnect().await;
    p.disconnect().await;
    let s = b.broker.status();
    let q = s.destinations.iter().find(|d| d.name == "q").unwrap();
    assert_eq!(
        (q.depth, q.counters.enqueued, q.counters.dequeued),
        (0, 1, 1)
    );
    b.stop().await;
}

#[tokio::test]
async fn queues_are_fifo_and_competing_consumers_share_by_prefetch() {
    let b = TestBroker::start().await;
    let mut p = b.client().await;
    let mut c1 = b.client().await;
    let mut c2 = b.client().await;
    let prefetch = [("activemq.prefetchSize", "1")];
    c1.subscribe("/queue/work", "a", "client-individual", &prefetch)
        .await;
    c2.subscribe("/queue/work", "b", "client-individual", &prefetch)
        .await;
    for i in 0..4 {
        p.send("/queue/work", &format!("m{i}"), &[]).await;
    }
    // One each (credit 1), nothing more until acknowledged.
    let m1 = c1.recv_message().await;
    let m2 = c2.recv_message().await;
    assert_eq!((body(&m1).as_str(), body(&m2).as_str()), ("m0", "m1"));
    c1.expect_nothing(SHORT).await;
    c1.ack(&m1).await;
    assert_eq!(body(&c1.recv_message().await), "m2");
    c2.ack(&m2).await;
    assert_eq!(body(&c2.recv_message().await), "m3");
    b.stop().await;
}

#[tokio::test]
async fn client_ack_is_cumulative_and_individual_is_not() {
    let b = TestBroker::start().await;
    let mut p = b.client().await;
    for i in 0..3 {
        p.send("/queue/cum", &format!("{i}"), &[]).await;
        p.send("/queue/ind", &format!("{i}"), &[]).await;
    }
    let mut c = b.client().await;
    c.subscribe("/queue/cum", "cum", "client", &[]).await;
    let ms: Vec<Frame> = vec![
        c.recv_message().await,
        c.recv_message().await,
        c.recv_message().await,
    ];
    c.ack(&ms[1]).await; // acknowledges 0 and 1
    let mut i = b.client().await;
    i.subscribe("/queue/ind", "ind", "client-individual", &[])
        .await;
    let ms2: Vec<Frame> = vec![
        i.recv_message().await,
        i.recv_message().await,
        i.recv_message().await,
    ];
    i.ack(&ms2[1]).await; // only 1
    let depth = |name: &str| {
        b.broker
            .status()
            .destinations
            .iter()
            .find(|d| d.name == name)
            .unwrap()
            .depth
    };
    assert_eq!(depth("cum"), 1);
    assert_eq!(depth("ind"), 2);
    // Closing redelivers the rest, flagged.
    drop(c);
    drop(i);
    let mut again = b.client().await;
    again.subscribe("/queue/cum", "x", "auto", &[]).await;
    let m = again.recv_message().await;
    assert_eq!(
        (body(&m).as_str(), m.header("redelivered")),
        ("2", Some("true"))
    );
    again.subscribe("/queue/ind", "y", "auto", &[]).await;
    let got: Vec<String> = vec![
        body(&again.recv_message().await),
        body(&again.recv_message().await),
    ];
    assert_eq!(got, ["0", "2"], "FIFO kept across redelivery");
    b.stop().await;
}

#[tokio::test]
async fn stomp_1_0_and_1_1_acknowledge_by_message_id() {
    let b = TestBroker::start().await;
    let mut p = b.client().await;
    p.send("/queue/old", "a", &[]).await;
    p.send("/queue/old", "b", &[]).await;
    for (v, name) in [(Version::V1_1, "v11"), (Version::V1_0, "v10")] {
        let mut c = Client::connect(b.addr, v, &[]).await;
        c.subscribe("/queue/old", name, "client", &[]).await;
        let m = c.recv_message().await;
        let id = m.header("message-id").unwrap().to_owned();
        c.request(Command::Ack, &[("message-id", &id), ("subscription", name)])
            .await;
        c.disconnect().await;
    }
    assert_eq!(b.broker.status().destinations[0].depth, 0);
    b.stop().await;
}

#[tokio::test]
async fn nack_redelivers_then_dead_letters_after_max_redeliveries() {
    let mut settings = settings();
    settings.policies.default_redelivery = RedeliveryPolicy {
        maximum_redeliveries: 2,
    };
    let b = TestBroker::with(settings, ConnectionSettings::default(), None).await;
    let mut p = b.client().await;
    p.send("/queue/poison", "bad", &[("persistent", "true")])
        .await;
    let mut c = b.client().await;
    c.subscribe("/queue/poison", "s", "client-individual", &[])
        .await;
    let first = c.recv_message().await;
    assert_eq!(first.header("redelivered"), None);
    c.nack(&first).await;
    for _ in 0..2 {
        let m = c.recv_message().await;
        assert_eq!(m.header("redelivered"), Some("true"));
        assert_eq!(m.header("message-id"), first.header("message-id"));
        c.nack(&m).await;
    }
    c.expect_nothing(SHORT).await;
    let mut d = b.client().await;
    d.subscribe("/queue/ActiveMQ.DLQ", "dlq", "auto", &[]).await;
    let dead = d.recv_message().await;
    assert_eq!(body(&dead), "bad");
    assert_eq!(dead.header("originalDestination"), Some("/queue/poison"));
    assert_eq!(dead.header("persistent"), Some("true"));
    b.stop().await;
}

#[tokio::test]
async fn redelivery_policy_per_queue_and_unlimited() {
    let mut policies = Policies::default();
    policies.redelivery_entries.push((
        DestinationPattern::queue("forever.>"),
        RedeliveryPolicy {
            maximum_redeliveries: -1,
        },
    ));
    policies.default_redelivery = RedeliveryPolicy {
        maximum_redeliveries: 0,
    };
    let b = TestBroker::with(
        BrokerSettings {
            policies,
            ..settings()
        },
        ConnectionSettings::default(),
        None,
    )
    .await;
    let mut p = b.client().await;
    p.send("/queue/forever.a", "x", &[]).await;
    p.send("/queue/once", "y", &[]).await;
    let mut c = b.client().await;
    c.subscribe("/queue/forever.a", "f", "client-individual", &[])
        .await;
    for _ in 0..10 {
        let m = c.recv_message().await;
        c.nack(&m).await;
    }
    c.subscribe("/queue/once", "o", "client-individual", &[])
        .await;
    let mut seen_once = 0;
    // The forever-queue keeps coming; the other goes to the DLQ at the first NACK.
    for _ in 0..6 {
        let m = c.recv_message().await;
        if body(&m) == "y" {
            seen_once += 1;
        }
        c.nack(&m).await;
    }
    assert_eq!(seen_once, 1);
    b.stop().await;
}

#[tokio::test]
async fn expired_messages_are_not_delivered_and_go_to_the_dlq() {
    let b = TestBroker::start().await;
    let mut p = b.client().await;
    let past = (amq_broker::broker::now_ms() - 1000).to_string();
    let soon = (amq_broker::broker::now_ms() + 200).to_string();
    p.send("/queue/exp", "old", &[("expires", &past)]).await;
    p.send("/queue/exp", "soon", &[("expires", &soon)]).await;
    p.send("/queue/exp", "fresh", &[("expires", "0")]).await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    let mut c = b.client().await;
    c.subscribe("/queue/exp", "s", "auto", &[]).await;
    assert_eq!(body(&c.recv_message().await), "fresh");
    c.expect_nothing(SHORT).await;
    c.subscribe("/queue/ActiveMQ.DLQ", "d", "auto", &[]).await;
    let dead: Vec<String> = vec![body(&c.recv_message().await), body(&c.recv_message().await)];
    assert_eq!(dead, ["old", "soon"]);
    let exp = b
        .broker
        .status()
        .destinations
        .into_iter()
        .find(|d| d.name == "exp")
        .unwrap();
    assert_eq!(exp.counters.expired, 2);
    b.stop().await;
}

#[tokio::test]
async fn transactions_commit_and_abort_sends_and_acks() {
    let b = TestBroker::start().await;
    let mut c = b.client().await;
    c.subscribe("/queue/tx", "s", "client-individual", &[])
        .await;
    c.request(Command::Begin, &[("transaction", "t1")]).await;
    c.send("/queue/tx", "in-tx", &[("transaction", "t1")]).await;
    c.expect_nothing(SHORT).await;
    c.request(Command::Commit, &[("transaction", "t1")]).await;
    let m = c.recv_message().await;
    assert_eq!(body(&m), "in-tx");

    c.request(Command::Begin, &[("transaction", "t2")]).await;
    c.send("/queue/tx", "aborted", &[("transaction", "t2")])
        .await;
    let ack = m.header("ack").unwrap().to_owned();
    c.request(Command::Ack, &[("id", &ack), ("transaction", "t2")])
        .await;
    c.request(Command::Abort, &[("transaction", "t2")]).await;
    c.expect_nothing(SHORT).await;
    // The aborted ACK left the message unacknowledged: it comes back on close.
    let status = b.broker.status();
    assert_eq!(status.destinations[0].depth, 1);
    drop(c);
    let mut d = b.client().await;
    d.subscribe("/queue/tx", "s", "client-individual", &[])
        .await;
    let again = d.recv_message().await;
    assert_eq!(
        (body(&again).as_str(), again.header("redelivered")),
        ("in-tx", Some("true"))
    );
    d.request(Command::Begin, &[("transaction", "t3")]).await;
    let ack = again.header("ack").unwrap().to_owned();
    d.request(Command::Ack, &[("id", &ack), ("transaction", "t3")])
        .await;
    d.request(Command::Commit, &[("transaction", "t3")]).await;
    assert_eq!(b.broker.status().destinations[0].depth, 0);
    // Unknown transactions are protocol errors.
    d.send_frame(Frame::new(Command::Commit).with_header("transaction", "nope"))
        .await;
    d.expect_error_and_close().await;
    b.stop().await;
}

#[tokio::test]
async fn topics_reach_every_current_subscriber() {
    let b = TestBroker::start().await;
    let mut s1 = b.client().await;
    let mut s2 = b.client().await;
    s1.subscribe("/topic/news", "1", "auto", &[]).await;
    s2.subscribe("/topic/news", "2", "client", &[]).await;
    let mut p = b.client().await;
    p.send("/topic/news", "hello", &[]).await;
    assert_eq!(body(&s1.recv_message().await), "hello");
    let m2 = s2.recv_message().await;
    assert_eq!(
        (body(&m2).as_str(), m2.header("destination")),
        ("hello", Some("/topic/news"))
    );
    // Unsubscribed and late subscribers get nothing.
    s1.request(Command::Unsubscribe, &[("id", "1")]).await;
    let mut late = b.client().await;
    p.send("/topic/news", "second", &[]).await;
    late.subscribe("/topic/news", "3", "auto", &[]).await;
    assert_eq!(body(&s2.recv_message().await), "second");
    s1.expect_nothing(SHORT).await;
    late.expect_nothing(SHORT).await;
    b.stop().await;
}

#[tokio::test]
async fn authentication_refuses_bad_credentials() {
    let conn = ConnectionSettings {
        authentication: Some(Authentication {
            users: vec![User {
                username: "app".into(),
                password: Secret::new("pw"),
                groups: vec!["users".into()],
            }],
            anonymous_access_allowed: false,
        }),
        ..ConnectionSettings::default()
    };
    let b = TestBroker::with(settings(), conn, None).await;
    for creds in [
        vec![("login", "app"), ("passcode", "wrong")],
        vec![("login", "eve"), ("passcode", "pw")],
        vec![],
    ] {
        let (mut io, reply) = Client::try_connect(b.addr, Version::V1_2, &creds).await;
        assert_eq!(reply.command, Command::Error, "{creds:?}");
        assert!(reply.header("message").unwrap().contains("invalid"));
        assert!(next_frame(&mut io).await.is_none());
    }
    Client::connect(
        b.addr,
        Version::V1_2,
        &[("login", "app"), ("passcode", "pw")],
    )
    .await;
    b.stop().await;
}

#[tokio::test]
async fn malformed_frames_get_error_and_close_while_others_carry_on() {
    let b = TestBroker::start().await;
    let mut good = b.client().await;
    good.subscribe("/queue/carry", "s", "auto", &[]).await;
    let cases: Vec<&[u8]> = vec![
        b"BOGUS\n\n\0",
        b"SEND\nno-colon-here\n\n\0",
        b"SEND\ndestination:/queue/a\ncontent-length:2\n\nabc\0",
        b"SEND\ndestination:/queue/a\nbad:\\x\n\n\0",
        b"SEND\n\nno destination\0",
        b"SUBSCRIBE\ndestination:/queue/a\n\n\0",
        b"ACK\nid:999\n\n\0",
        b"SEND\ndestination:nowhere\n\n\0",
    ];
    for raw in cases {
        let mut bad = b.client().await;
        bad.io.get_mut().write_all(raw).await.unwrap();
        let err = bad.expect_error_and_close().await;
        assert!(err.header("message").is_some(), "{err:?}");
        good.send("/queue/carry", "still here", &[]).await;
        assert_eq!(body(&good.recv_message().await), "still here");
    }
    // The receipt of the offending frame is named in the ERROR.
    let mut bad = b.client().await;
    bad.send_frame(Frame::new(Command::Subscribe).with_header("receipt", "r9"))
        .await;
    let err = bad.expect_error_and_close().await;
    assert_eq!(err.header("receipt-id"), Some("r9"));
    b.stop().await;
}

#[tokio::test]
async fn limits_refuse_oversized_frames() {
    let conn = ConnectionSettings {
        limits: Limits {
            max_frame_size: 1024,
            max_headers: 10,
            max_header_length: 128,
        },
        ..ConnectionSettings::default()
    };
    let b = TestBroker::with(settings(), conn, None).await;
    let mut c = b.client().await;
    c.send("/queue/l", &"x".repeat(1000), &[]).await;
    c.send_frame(
        Frame::new(Command::Send)
            .with_header("destination", "/queue/l")
            .with_body(vec![b'y'; 5000]),
    )
    .await;
    let e = c.expect_error_and_close().await;
    assert!(amq_broker::stomp::Frame::header(&e, "message")
        .unwrap()
        .contains("malformed"));
    let mut c = b.client().await;
    let mut f = Frame::new(Command::Send).with_header("destination", "/queue/l");
    for i in 0..20 {
        f = f.with_header(format!("h{i}"), "v");
    }
    c.send_frame(f).await;
    c.expect_error_and_close().await;
    let mut c = b.client().await;
    c.send_frame(
        Frame::new(Command::Send)
            .with_header("destination", "/queue/l")
            .with_header("long", "z".repeat(500)),
    )
    .await;
    c.expect_error_and_close().await;
    b.stop().await;
}

#[tokio::test]
async fn heart_beats_flow_both_ways_and_silence_closes() {
    let conn = ConnectionSettings {
        min_heartbeat: Duration::from_millis(50),
        ..ConnectionSettings::default()
    };
    let b = TestBroker::with(settings(), conn, None).await;
    // We promise ours every 400 ms (and send far more often, so a loaded
    // machine cannot make us late) and want the broker's every 100 ms.
    let (mut io, reply) =
        Client::try_connect(b.addr, Version::V1_2, &[("heart-beat", "400,100")]).await;
    assert_eq!(reply.header("heart-beat"), Some("100,400"));
    let mut beats = 0;
    let start = tokio::time::Instant::now();
    // Keep our promise for a while and count the broker's beats.
    while start.elapsed() < Duration::from_millis(800) {
        io.send(amq_broker::stomp::HeartBeat).await.unwrap();
        if let Ok(Some(Ok(amq_broker::stomp::Transmission::HeartBeat))) =
            tokio::time::timeout(Duration::from_millis(50), futures::StreamExt::next(&mut io)).await
        {
            beats += 1;
        }
    }
    assert!(beats >= 3, "only {beats} heart-beats from the broker");
    // Now go silent: after 1.5 intervals (600 ms) the broker gives up on us.
    let silent = tokio::time::Instant::now();
    let closed = tokio::time::timeout(Duration::from_secs(3), async {
        loop {
            match futures::StreamExt::next(&mut io).await {
                None | Some(Err(_)) => return None,
                Some(Ok(amq_broker::stomp::Transmission::Frame(f))) => return Some(f),
                Some(Ok(_)) => {}
            }
        }
    })
    .await
    .expect("closed in time");
    assert_eq!(closed.map(|f| f.command), Some(Command::Error));
    assert!(
        silent.elapsed() >= Duration::from_millis(500),
        "closed too early"
    );
    b.stop().await;
}

#[tokio::test]
async fn memory_limit_slows_non_persistent_producers() {
    let b = TestBroker::with(
        BrokerSettings {
            memory_limit: 64 * 1024,
            ..settings()
        },
        ConnectionSettings::default(),
        None,
    )
    .await;
    let mut p = b.client().await;
    let body = "m".repeat(7 * 1024);
    // 64 KiB hold about 8 of these; the 20th send cannot complete...
    let producer = tokio::spawn(async move {
        for _ in 0..20 {
            p.send("/queue/mem", &body, &[]).await;
        }
        p
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!producer.is_finished(), "producer not held back");
    let s = b.broker.status();
    assert!(
        s.memory_used <= s.memory_limit,
        "{} > {}",
        s.memory_used,
        s.memory_limit
    );
    // ...until a consumer drains the queue.
    let mut c = b.client().await;
    c.subscribe("/queue/mem", "s", "auto", &[]).await;
    for _ in 0..20 {
        c.recv_message().await;
    }
    tokio::time::timeout(WAIT, producer)
        .await
        .expect("producer released")
        .unwrap();
    b.stop().await;
}

#[tokio::test]
async fn demotion_closes_clients_and_connectors_and_promotion_reopens() {
    let broker = amq_broker::broker::Broker::new(settings(), None, Role::Standalone).unwrap();
    let port = amq_harness::free_port();
    let connectors = vec![amq_broker::server::Connector {
        name: "stomp".into(),
        bind: format!("127.0.0.1:{port}"),
        settings: Arc::new(ConnectionSettings::default()),
        max_connections: None,
    }];
    let shutdown = tokio_util::sync::CancellationToken::new();
    let listeners = amq_broker::server::bind(&connectors).await.unwrap();
    let task = tokio::spawn(amq_broker::server::serve(
        broker.clone(),
        connectors,
        Some(listeners),
        shutdown.clone(),
    ));
    let addr = format!("127.0.0.1:{port}").parse().unwrap();
    let mut c = Client::connect(addr, Version::V1_2, &[]).await;
    broker.set_role(Role::Slave {
        master: Some("tcp://other:61619".into()),
    });
    let e = c.expect_error_and_close().await;
    assert!(e.header("message").unwrap().contains("stopped serving"));
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "a slave must refuse clients"
    );
    broker.set_role(Role::Master);
    let deadline = tokio::time::Instant::now() + WAIT;
    while tokio::net::TcpStream::connect(addr).await.is_err() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "not serving after promotion"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Client::connect(addr, Version::V1_2, &[]).await;
    shutdown.cancel();
    task.await.unwrap().unwrap();
}

#[tokio::test]
async fn persistent_messages_survive_a_restart_of_the_journal() {
    let dir = tempfile::tempdir().unwrap();
    let open = || {
        Arc::new(Journal::open(dir.path(), JournalOptions::default()).unwrap()) as Arc<dyn Store>
    };
    let b = TestBroker::with(settings(), ConnectionSettings::default(), Some(open())).await;
    let mut p = b.client().await;
    for i in 0..5 {
        p.send(
            "/queue/durable",
            &format!("p{i}"),
            &[("persistent", "true")],
        )
        .await;
    }
    p.send("/queue/durable", "transient", &[]).await;
    let mut c = b.client().await;
    c.subscribe("/queue/durable", "s", "client-individual", &[])
        .await;
    let first = c.recv_message().await;
    c.ack(&first).await;
    let position = b.broker.status().journal.unwrap().position;
    assert_eq!(position, 6, "5 enqueues and 1 ack");
    drop((p, c));
    b.stop().await;

    let b = TestBroker::with(settings(), ConnectionSettings::default(), Some(open())).await;
    let mut c = b.client().await;
    c.subscribe("/queue/durable", "s", "auto", &[]).await;
    let mut bodies = Vec::new();
    for _ in 0..4 {
        bodies.push(body(&c.recv_message().await));
    }
    assert_eq!(bodies, ["p1", "p2", "p3", "p4"]);
    c.expect_nothing(SHORT).await;
    b.stop().await;
}

#[tokio::test]
async fn shutdown_tells_clients() {
    let b = TestBroker::start().await;
    let mut c = b.client().await;
    b.shutdown.cancel();
    let e = c.expect_error_and_close().await;
    assert!(e.header("message").unwrap().contains("stopped serving"));
    b.task.await.unwrap();
}

#[tokio::test]
async fn disconnect_receipt_comes_after_earlier_receipts() {
    let b = TestBroker::start().await;
    let mut c = b.client().await;
    for i in 0..50 {
        c.send_frame(
            Frame::new(Command::Send)
                .with_header("destination", "/queue/order")
                .with_header("receipt", format!("r{i}")),
        )
        .await;
    }
    c.send_frame(Frame::new(Command::Disconnect).with_header("receipt", "bye"))
        .await;
    for i in 0..50 {
        c.expect_receipt(&format!("r{i}")).await;
    }
    c.expect_receipt("bye").await;
    assert!(next_frame(&mut c.io).await.is_none());
    b.stop().await;
}

#[tokio::test]
async fn maximum_connections_refuses_the_extra_client() {
    let broker = amq_broker::broker::Broker::new(settings(), None, Role::Standalone).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let shutdown = tokio_util::sync::CancellationToken::new();
    let task = tokio::spawn(amq_broker::server::run(
        listener,
        broker,
        Arc::new(ConnectionSettings::default()),
        Some(1),
        shutdown.clone(),
    ));
    let first = Client::connect(addr, Version::V1_2, &[]).await;
    let (mut io, reply) = Client::try_connect(addr, Version::V1_2, &[]).await;
    assert_eq!(reply.command, Command::Error);
    assert!(reply
        .header("message")
        .unwrap()
        .contains("maximum connections"));
    assert!(next_frame(&mut io).await.is_none());
    first.disconnect().await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    Client::connect(addr, Version::V1_2, &[]).await;
    shutdown.cancel();
    task.await.unwrap();
}

#[tokio::test]
async fn persistent_topic_messages_count_against_memory() {
    let dir = tempfile::tempdir().unwrap();
    let journal =
        Arc::new(Journal::open(dir.path(), JournalOptions::default()).unwrap()) as Arc<dyn Store>;
    let b = TestBroker::with(settings(), ConnectionSettings::default(), Some(journal)).await;
    let mut slow = b.client().await;
    slow.subscribe("/topic/t", "s", "client", &[("activemq.prefetchSize", "1")])
        .await;
    let mut p = b.client().await;
    for _ in 0..10 {
        p.send("/topic/t", &"x".repeat(4096), &[("persistent", "true")])
            .await;
    }
    let s = b.broker.status();
    assert!(
        s.memory_used >= 9 * 4096,
        "topic messages not counted: {}",
        s.memory_used
    );
    assert_eq!(
        s.journal.unwrap().position,
        0,
        "topic messages are not journaled"
    );
    b.stop().await;
}

/// Random garbage (after a valid CONNECT, and instead of one) never takes
/// the broker down: each bad connection ends, a good client keeps working.
#[tokio::test]
async fn random_garbage_never_disturbs_other_clients() {
    let b = TestBroker::start().await;
    let mut good = b.client().await;
    good.subscribe("/queue/steady", "s", "client-individual", &[])
        .await;
    let mut seed: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for round in 0..40 {
        let len = (next() % 2048) as usize;
        let mut garbage: Vec<u8> = (0..len).map(|_| next() as u8).collect();
        // Bias towards STOMP-looking bytes so the parser gets deep.
        for _ in 0..len / 8 {
            let at = (next() as usize) % len.max(1);
            if let Some(b) = garbage.get_mut(at) {
                *b = b"\n:\\\0SENDACK"[(next() % 11) as usize];
            }
        }
        let mut tcp = tokio::net::TcpStream::connect(b.addr).await.unwrap();
        if round % 2 == 0 {
            tcp.write_all(b"CONNECT\naccept-version:1.2\nhost:x\n\n\0")
                .await
                .unwrap();
        }
        let _ = tcp.write_all(&garbage).await;
        let _ = tcp.shutdown().await;
        let mut sink = Vec::new();
        let _ = tokio::time::timeout(
            WAIT,
            tokio::io::AsyncReadExt::read_to_end(&mut tcp, &mut sink),
        )
        .await;
        good.send("/queue/steady", &format!("{round}"), &[]).await;
        let m = good.recv_message().await;
        assert_eq!(body(&m), format!("{round}"));
        good.ack(&m).await;
    }
    b.stop().await;
}

#[tokio::test]
async fn selectors_route_queue_and_topic_messages() {
    let b = TestBroker::start().await;
    let mut eu = b.client().await;
    let mut rest = b.client().await;
    eu.subscribe(
        "/queue/orders",
        "eu",
        "auto",
        &[("selector", "region = 'eu' AND amount > 100")],
    )
    .await;
    rest.subscribe(
        "/queue/orders",
        "rest",
        "auto",
        &[("selector", "region <> 'eu' OR amount <= 100")],
    )
    .await;
    let mut t = b.client().await;
    t.subscribe(
        "/topic/prices",
        "t",
        "auto",
        &[("selector", "symbol LIKE 'AC%'")],
    )
    .await;
    let mut p = b.client().await;
    for (region, amount) in [("eu", "500"), ("us", "500"), ("eu", "50"), ("eu", "101")] {
        p.send(
            "/queue/orders",
            &format!("{region}-{amount}"),
            &[("region", region), ("amount", amount)],
        )
        .await;
    }
    for sym in ["ACME", "BETA", "ACE"] {
        p.send("/topic/prices", sym, &[("symbol", sym)]).await;
    }
    assert_eq!(body(&eu.recv_message().await), "eu-500");
    assert_eq!(body(&eu.recv_message().await), "eu-101");
    assert_eq!(body(&rest.recv_message().await), "us-500");
    assert_eq!(body(&rest.recv_message().await), "eu-50");
    assert_eq!(body(&t.recv_message().await), "ACME");
    assert_eq!(body(&t.recv_message().await), "ACE");
    eu.expect_nothing(SHORT).await;
    t.expect_nothing(SHORT).await;
    // A message nobody selects waits in the queue.
    p.send("/queue/orders", "nobody", &[("amount", "x")]).await;
    rest.expect_nothing(SHORT).await;
    let depth = b
        .broker
        .status()
        .destinations
        .into_iter()
        .find(|d| d.name == "orders")
        .unwrap()
        .depth;
    assert_eq!(depth, 1);
    // A malformed selector is refused with the position.
    let mut bad = b.client().await;
    bad.send_frame(
        Frame::new(Command::Subscribe)
            .with_header("destination", "/queue/orders")
            .with_header("id", "x")
            .with_header("selector", "region = "),
    )
    .await;
    let e = bad.expect_error_and_close().await;
    assert!(
        e.header("message")
            .unwrap()
            .contains("invalid selector at character 9"),
        "{e:?}"
    );
    b.stop().await;
}

#[tokio::test]
async fn shutdown_reaches_a_producer_held_by_flow_control() {
    let b = TestBroker::with(
        BrokerSettings {
            memory_limit: 16 * 1024,
            ..settings()
        },
        ConnectionSettings::default(),
        None,
    )
    .await;
    let mut p = b.client().await;
    for i in 0..10 {
        p.send_frame(
            Frame::new(Command::Send)
                .with_header("destination", "/queue/full")
                .with_header("receipt", format!("r{i}"))
                .with_body(vec![b'x'; 4096]),
        )
        .await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let started = tokio::time::Instant::now();
    b.shutdown.cancel();
    let mut receipts = 0;
    loop {
        let f = p.recv().await;
        match f.command {
            Command::Receipt => receipts += 1,
            Command::Error => break,
            other => panic!("unexpected {other}"),
        }
    }
    assert!(receipts < 10, "flow control did not hold the producer");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "took {:?}",
        started.elapsed()
    );
    b.task.await.unwrap();
}

#[tokio::test]
async fn cumulative_nack_on_a_topic_redelivers_in_order() {
    let b = TestBroker::start().await;
    let mut s = b.client().await;
    s.subscribe("/topic/ordered", "s", "client", &[]).await;
    let mut p = b.client().await;
    for i in 0..3 {
        p.send("/topic/ordered", &format!("{i}"), &[]).await;
    }
    let got: Vec<Frame> = vec![
        s.recv_message().await,
        s.recv_message().await,
        s.recv_message().await,
    ];
    s.nack(&got[2]).await;
    for i in 0..3 {
        let m = s.recv_message().await;
        assert_eq!(
            (body(&m), m.header("redelivered")),
            (format!("{i}"), Some("true"))
        );
    }
    b.stop().await;
}

#[tokio::test]
async fn temporary_queues_carry_replies_and_vanish_with_their_connection() {
    let b = TestBroker::start().await;
    let mut service = b.client().await;
    service
        .subscribe("/queue/service", "svc", "auto", &[])
        .await;
    let mut requester = b.client().await;
    let mut other = b.client().await;
    requester
        .subscribe("/temp-queue/replies", "r", "auto", &[])
        .await;
    other
        .subscribe("/temp-queue/replies", "r", "auto", &[])
        .await;
    requester
        .send(
            "/queue/service",
            "ping",
            &[("reply-to", "/temp-queue/replies")],
        )
        .await;
    let request = service.recv_message().await;
    let reply_to = request.header("reply-to").unwrap().to_owned();
    assert!(reply_to.starts_with("/queue/ID:test-"), "{reply_to}");
    service.send(&reply_to, "pong", &[]).await;
    assert_eq!(body(&requester.recv_message().await), "pong");
    other.expect_nothing(SHORT).await;
    // The ActiveMQ spelling for the replier works too.
    let remote = reply_to.replace("/queue/", "/remote-temp-queue/");
    service.send(&remote, "pong2", &[]).await;
    assert_eq!(body(&requester.recv_message().await), "pong2");
    let temp_queues = |b: &TestBroker| {
        b.broker
            .status()
            .destinations
            .iter()
            .filter(|d| d.name.starts_with("ID:"))
            .count()
    };
    assert_eq!(temp_queues(&b), 2);
    requester.disconnect().await;
    other.disconnect().await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        temp_queues(&b),
        0,
        "temporary queues outlived their connections"
    );
    b.stop().await;
}

#[tokio::test]
async fn expiry_sweep_drops_waiting_topic_messages_and_counts_them() {
    let b = TestBroker::start().await;
    let mut slow = b.client().await;
    slow.subscribe(
        "/topic/ticks",
        "s",
        "client",
        &[("activemq.prefetchSize", "1")],
    )
    .await;
    let mut p = b.client().await;
    let soon = (amq_broker::broker::now_ms() + 100).to_string();
    for i in 0..3 {
        p.send("/topic/ticks", &format!("{i}"), &[("expires", &soon)])
            .await;
    }
    let first = slow.recv_message().await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let _ = b.broker.expire();
    let t = b
        .broker
        .status()
        .destinations
        .into_iter()
        .find(|d| d.name == "ticks")
        .unwrap();
    assert_eq!((t.counters.expired, t.depth), (2, 1), "{t:?}");
    slow.ack(&first).await;
    slow.expect_nothing(SHORT).await;
    b.stop().await;
}

/// An ACK nobody waits for rides on a later batch, but reaches the journal
/// within milliseconds anyway.
#[tokio::test]
async fn acks_without_receipt_reach_the_journal_soon() {
    let dir = tempfile::tempdir().unwrap();
    let journal =
        Arc::new(Journal::open(dir.path(), JournalOptions::default()).unwrap()) as Arc<dyn Store>;
    let b = TestBroker::with(settings(), ConnectionSettings::default(), Some(journal)).await;
    let mut c = b.client().await;
    c.send("/queue/lazy", "m", &[("persistent", "true")]).await;
    c.subscribe("/queue/lazy", "s", "client-individual", &[])
        .await;
    let m = c.recv_message().await;
    let id = m.header("ack").unwrap().to_owned();
    c.send_frame(Frame::new(Command::Ack).with_header("id", id))
        .await;
    let position = || b.broker.status().journal.unwrap().position;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(1);
    while position() < 2 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the ack never reached the journal"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(position(), 2);
    b.stop().await;
}
