//! Networks of brokers over static connectors, with real broker processes
//! on loopback: forwarding on demand, local consumers first, topics without
//! duplicates, networkTTL on a line of three, stuck messages replayed.

mod network_support;

use amq_broker::client::AckMode;
use network_support::*;
use std::time::Duration;

const IDLE: Duration = Duration::from_secs(10);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn produced_on_one_consumed_on_two() {
    let b2 = start("b2", "");
    let b1 = start("b1", &static_to(&b2, ""));
    let c2 = connect(b2.stomp_addr()).await;
    let mut sub = subscribe(&c2, "/queue/orders", AckMode::ClientIndividual).await;
    wait_demand(&b1, 1);

    let sent = produce(b1.stomp_addr(), "/queue/orders", &bodies("m", 500)).await;
    assert_eq!(sent.len(), 500);
    let got = consume(&c2, &mut sub, 500, IDLE).await;
    assert_eq!(got.len(), 500, "received {} of 500", got.len());
    assert_eq!(duplicates(&got), 0);
    assert!(sent.iter().all(|b| got.contains_key(b)));

    wait_until("the acks to settle", Duration::from_secs(5), || {
        depth(&b1, "orders") == 0 && depth(&b2, "orders") == 0
    });
    let bridge = &bridges(&b1)[0];
    assert_eq!(bridge["peer"], "b2");
    assert_eq!(bridge["forwardedOut"], 500);
    let inbound = status(&b2)["bridges"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["direction"] == "inbound")
        .cloned()
        .expect("b2 lists the inbound bridge");
    assert_eq!(inbound["peer"], "b1");
    assert_eq!(inbound["forwardedIn"], 500);

    // No demand, no forwarding: with b2's consumer gone, messages stay on b1.
    c2.disconnect().await.unwrap();
    wait_until("demand to go", Duration::from_secs(5), || {
        bridges(&b1)[0]["demandSubscriptions"] == 0
    });
    produce(b1.stomp_addr(), "/queue/orders", &bodies("later", 20)).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(depth(&b1, "orders"), 20);
    assert_eq!(depth(&b2, "orders"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn local_consumers_are_preferred() {
    let b2 = start("b2", "");
    let b1 = start("b1", &static_to(&b2, ""));
    let c2 = connect(b2.stomp_addr()).await;
    let mut remote = subscribe(&c2, "/queue/work", AckMode::ClientIndividual).await;
    wait_demand(&b1, 1);
    let c1 = connect(b1.stomp_addr()).await;
    let mut local = subscribe(&c1, "/queue/work", AckMode::ClientIndividual).await;

    // The local consumer's prefetch (1000) has room for all of them.
    produce(b1.stomp_addr(), "/queue/work", &bodies("w", 300)).await;
    let got_local = consume(&c1, &mut local, 300, IDLE).await;
    assert_eq!(got_local.len(), 300);
    let got_remote = consume(&c2, &mut remote, 1, Duration::from_millis(500)).await;
    assert!(
        got_remote.is_empty(),
        "{got_remote:?} went to the network consumer"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn topics_reach_every_subscriber_once_over_a_duplex_bridge() {
    let b2 = start("b2", "");
    let b1 = start("b1", &static_to(&b2, r#"duplex="true""#));
    let c1 = connect(b1.stomp_addr()).await;
    let c2 = connect(b2.stomp_addr()).await;
    let mut s1 = subscribe(&c1, "/topic/prices", AckMode::Auto).await;
    let mut s2a = subscribe(&c2, "/topic/prices", AckMode::Auto).await;
    let mut s2b = subscribe(&c2, "/topic/prices", AckMode::Auto).await;
    // Conduit: one demand each way for the topic.
    wait_demand(&b1, 2);

    let from1 = bodies("one", 100);
    let from2 = bodies("two", 100);
    let (a, b) = tokio::join!(
        produce(b1.stomp_addr(), "/topic/prices", &from1),
        produce(b2.stomp_addr(), "/topic/prices", &from2)
    );
    assert_eq!((a.len(), b.len()), (100, 100));
    for (name, conn, sub) in [
        ("b1", &c1, &mut s1),
        ("b2 a", &c2, &mut s2a),
        ("b2 b", &c2, &mut s2b),
    ] {
        let got = consume(conn, sub, 200, Duration::from_secs(3)).await;
        assert_eq!(
            got.len(),
            200,
            "subscriber on {name} got {} of 200",
            got.len()
        );
        assert_eq!(duplicates(&got), 0, "subscriber on {name} got duplicates");
    }
    wait_until("100 forwarded each way", Duration::from_secs(5), || {
        let b = &bridges(&b1)[0];
        b["duplex"] == true && b["forwardedOut"] == 100 && b["forwardedIn"] == 100
    });
}

/// a → b → c, consumer on c, producer on a: with networkTTL 1 the consumer
/// on c is not visible to a (consumerTTL) and nothing moves; with 2 it is.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn network_ttl_on_a_line_of_three() {
    for ttl in [1, 2] {
        let attrs = format!(r#"networkTTL="{ttl}""#);
        let c = start("c", "");
        let b = start("b", &static_to(&c, &attrs));
        let a = start("a", &static_to(&b, &attrs));
        let cc = connect(c.stomp_addr()).await;
        let mut sub = subscribe(&cc, "/queue/line", AckMode::ClientIndividual).await;
        wait_demand(&b, 1);
        if ttl == 2 {
            wait_demand(&a, 1);
        } else {
            tokio::time::sleep(Duration::from_secs(1)).await;
            assert_eq!(
                bridges(&a)[0]["demandSubscriptions"],
                0,
                "ttl 1: a must not see c's consumer"
            );
        }
        produce(a.stomp_addr(), "/queue/line", &bodies("l", 50)).await;
        let idle = if ttl == 1 {
            Duration::from_secs(2)
        } else {
            IDLE
        };
        let got = consume(&cc, &mut sub, 50, idle).await;
        if ttl == 1 {
            assert!(
                got.is_empty(),
                "ttl 1: {} messages crossed two hops",
                got.len()
            );
            assert_eq!(depth(&a, "line"), 50);
        } else {
            assert_eq!(got.len(), 50, "ttl 2: got {} of 50", got.len());
            assert_eq!(duplicates(&got), 0);
        }
    }
}

/// Messages forwarded b1 → b2 follow the consumer back to b1 when the queue
/// has the replayWhenNoConsumers policy, and stay stuck on b2 without it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn stuck_messages_follow_a_moving_consumer() {
    for replay in [true, false] {
        let policy = if replay { REPLAY_POLICY } else { "" };
        let b2 = start("b2", policy);
        let b1 = start(
            "b1",
            &format!("{}{policy}", static_to(&b2, r#"duplex="true""#)),
        );
        let c2 = connect(b2.stomp_addr()).await;
        let mut sub = subscribe(&c2, "/queue/moving", AckMode::ClientIndividual).await;
        wait_demand(&b1, 1);
        produce(b1.stomp_addr(), "/queue/moving", &bodies("mv", 100)).await;
        let first = consume(&c2, &mut sub, 30, IDLE).await;
        assert_eq!(first.len(), 30);
        wait_until(
            "everything forwarded to b2",
            Duration::from_secs(10),
            || depth(&b1, "moving") == 0,
        );
        c2.disconnect().await.unwrap();
        wait_until("b2 to hold the rest", Duration::from_secs(10), || {
            depth(&b2, "moving") == 70
        });

        let c1 = connect(b1.stomp_addr()).await;
        let mut sub1 = subscribe(&c1, "/queue/moving", AckMode::ClientIndividual).await;
        let idle = if replay { IDLE } else { Duration::from_secs(2) };
        let rest = consume(&c1, &mut sub1, 70, idle).await;
        if replay {
            assert_eq!(rest.len(), 70, "replayed {} of 70", rest.len());
            assert!(rest.keys().all(|k| !first.contains_key(k)));
            assert_eq!(duplicates(&rest), 0);
            wait_until("b2 to be empty", Duration::from_secs(5), || {
                depth(&b2, "moving") == 0
            });
        } else {
            assert!(
                rest.is_empty(),
                "without the policy {} messages went back",
                rest.len()
            );
            assert_eq!(depth(&b2, "moving"), 70);
        }
    }
}
