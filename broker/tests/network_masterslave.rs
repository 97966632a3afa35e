//! A bridge to a shared-file master/slave pair (`masterslave:(b,c)`) follows
//! the pair through its failover: kill -9 the master mid-stream, the slave
//! takes the lock, the bridge reconnects to it, and every message the
//! producer had receipted reaches the consumer (which follows the pair on a
//! failover URL).

mod network_support;

use amq_harness::broker::{BrokerOptions, BrokerProcess};
use network_support::*;
use std::net::TcpStream;
use std::time::Duration;

const N: usize = 1000;

fn shared_file(name: &str, dir: &std::path::Path) -> BrokerProcess {
    let mut o = BrokerOptions::new(name);
    o.persistence = Some(format!(
        r#"<kahaDB directory="{}" lockKeepAlivePeriod="500"><locker><shared-file-locker lockAcquireSleepInterval="200"/></locker></kahaDB>"#,
        dir.display()
    ));
    let mut b = BrokerProcess::spawn(o).expect("spawn");
    b.wait_status().expect("status endpoint");
    b
}

fn serving(b: &BrokerProcess) -> bool {
    TcpStream::connect_timeout(&b.stomp_addr(), Duration::from_millis(200)).is_ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_bridge_to_a_master_slave_pair_survives_its_failover() {
    let shared = tempfile::tempdir().unwrap();
    let mut b = shared_file("b", shared.path());
    wait_until("b to become master", Duration::from_secs(10), || {
        serving(&b)
    });
    let c = shared_file("c", shared.path());
    std::thread::sleep(Duration::from_millis(500));
    assert!(!serving(&c), "c must wait as slave");

    let pair = format!("stomp://{},stomp://{}", b.stomp_addr(), c.stomp_addr());
    let a = start(
        "a",
        &connector(
            &format!("masterslave:({pair})?initialReconnectDelay=100&maxReconnectDelay=500"),
            "",
        ),
    );
    let (got, count, consumer) = spawn_consumer(
        format!("failover:({pair})?randomize=false&initialReconnectDelay=50&maxReconnectDelay=200"),
        "/queue/ha",
        N,
    );
    wait_demand(&a, 1);
    assert_eq!(bridges(&a)[0]["peer"], "b");
    let sent = produce(a.stomp_addr(), "/queue/ha", &bodies("ha", N)).await;
    assert_eq!(sent.len(), N);

    wait_count(&count, 200).await;
    b.kill9();
    wait_until("c to take over", Duration::from_secs(10), || serving(&c));
    wait_until(
        &format!("the bridge to reach c; a's log:\n{}", tail(&a)),
        Duration::from_secs(15),
        || {
            bridges(&a)
                .iter()
                .any(|x| x["peer"] == "c" && x["state"] == "up")
        },
    );
    consumer.await.unwrap();

    let got = got.lock().unwrap().clone();
    assert_nothing_lost(&sent, &got);
    // What a re-queued when the bridge to b dropped (forwarded, receipt
    // lost with b) still goes to c; it can only be copies.
    let cc = connect(c.stomp_addr()).await;
    let mut sub = subscribe(
        &cc,
        "/queue/ha",
        amq_broker::client::AckMode::ClientIndividual,
    )
    .await;
    wait_until("a to drain", Duration::from_secs(10), || {
        depth(&a, "ha") == 0
    });
    let left = consume(&cc, &mut sub, N, Duration::from_secs(1)).await;
    assert!(left.keys().all(|m| got.contains_key(m)), "{left:?}");
    let bridge = &bridges(&a)[0];
    assert!(bridge["connects"].as_u64().unwrap() >= 2, "{bridge}");
    assert!(bridge["uri"].as_str().unwrap().starts_with("failover:("));
}
