//! kill -9 of either broker while a persistent stream is forwarded over the
//! bridge: nothing receipted is lost, and copies the sender forwards again
//! after a crash are dropped by the receiver's audit.

mod network_support;

use amq_broker::client::AckMode;
use network_support::*;
use std::time::Duration;

const N: usize = 3000;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn receiver_killed_mid_stream_loses_nothing() {
    let mut b2 = start("b2", "");
    let b1 = start("b1", &static_to(&b2, ""));
    let url = format!(
        "failover:(stomp://{})?initialReconnectDelay=50&maxReconnectDelay=200",
        b2.stomp_addr()
    );
    let (got, count, consumer) = spawn_consumer(url, "/queue/stream", N);
    wait_demand(&b1, 1);
    let sent = produce(b1.stomp_addr(), "/queue/stream", &bodies("s", N)).await;
    assert_eq!(sent.len(), N);

    wait_count(&count, 300).await;
    b2.kill9();
    tokio::time::sleep(Duration::from_millis(300)).await;
    b2.restart().expect("b2 restarts");
    consumer.await.unwrap();

    let got = got.lock().unwrap().clone();
    assert_nothing_lost(&sent, &got);
    // b2's audit died with it: a message it stored and delivered just before
    // the kill, whose receipt b1 never saw, comes again. Only such copies
    // may be left (on b2, or on b1 still to be forwarded).
    let c2 = connect(b2.stomp_addr()).await;
    let mut sub = subscribe(&c2, "/queue/stream", AckMode::ClientIndividual).await;
    wait_until("b1 to drain", Duration::from_secs(30), || {
        depth(&b1, "stream") == 0
    });
    let left = consume(&c2, &mut sub, N, Duration::from_secs(1)).await;
    assert!(
        left.keys().all(|b| got.contains_key(b)),
        "new messages after the drain: {left:?}"
    );
    wait_until("b2 to drain", Duration::from_secs(30), || {
        depth(&b2, "stream") == 0
    });
    let bridge = &bridges(&b1)[0];
    assert!(
        bridge["connects"].as_u64().unwrap() >= 2,
        "the bridge reconnected: {bridge}"
    );
    eprintln!(
        "receiver crash: {} received, {} redelivered to the consumer, {} copies left after the crash, {} copies dropped by b2's audit",
        got.len(),
        duplicates(&got),
        left.len(),
        status(&b2)["networkDuplicates"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sender_killed_mid_stream_loses_nothing_and_duplicates_are_dropped() {
    let b2 = start("b2", "");
    let mut b1 = start("b1", &static_to(&b2, ""));
    let (got, count, consumer) =
        spawn_consumer(format!("stomp://{}", b2.stomp_addr()), "/queue/stream", N);
    wait_demand(&b1, 1);
    let addr = b1.stomp_addr();
    let producer =
        tokio::spawn(async move { produce(addr, "/queue/stream", &bodies("s", N)).await });

    wait_count(&count, 300).await;
    b1.kill9();
    let sent = producer.await.unwrap();
    // b1 dispatches before its fsync, so the consumer may hold messages
    // whose receipts never reached the producer: those may come twice.
    assert!(!sent.is_empty());
    b1.restart().expect("b1 restarts");
    consumer.await.unwrap();

    let got = got.lock().unwrap().clone();
    assert_nothing_lost(&sent, &got);
    // b2 never crashed, so its consumer sees no copy of a receipted message.
    let copies: Vec<_> = sent.iter().filter(|b| got[*b] > 1).collect();
    assert!(copies.is_empty(), "copies reached the consumer: {copies:?}");
    wait_until("both queues to drain", Duration::from_secs(30), || {
        depth(&b1, "stream") == 0 && depth(&b2, "stream") == 0
    });
    eprintln!(
        "sender crash: {} receipted, {} received, {} copies dropped by b2's audit",
        sent.len(),
        got.len(),
        status(&b2)["networkDuplicates"]
    );
}
