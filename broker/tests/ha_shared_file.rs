//! Scenario 7: shared-file master/slave. Two `amq-broker` processes share
//! one kahaDB directory; the one holding `<dir>/lock` serves, the other
//! waits with its connectors closed. `kill -9` of the master under a
//! receipted persistent load: the slave takes the lock within
//! `lockAcquireSleepInterval` (+ recovery) and every receipted message is
//! still there.

mod ha_support;

use amq_harness::broker::{BrokerOptions, BrokerProcess};
use ha_support::*;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

fn shared_broker(dir: &std::path::Path) -> BrokerProcess {
    let mut opts = BrokerOptions::new("shared");
    opts.persistence = Some(format!(
        r#"<kahaDB directory="{}" lockKeepAlivePeriod="500"><locker><shared-file-locker lockAcquireSleepInterval="200"/></locker></kahaDB>"#,
        dir.display()
    ));
    let mut b = BrokerProcess::spawn(opts).expect("spawn");
    b.wait_status().expect("status endpoint");
    b
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_the_shared_file_master_and_the_slave_takes_over_with_every_receipted_message() {
    let shared = tempfile::tempdir().unwrap();
    let a = shared_broker(shared.path());
    assert!(
        wait_until(Duration::from_secs(10), || is_master(&a) && accepts_tcp(&a)),
        "a: {:?}",
        role(&a)
    );
    let mut b = shared_broker(shared.path());
    let mut a = a;
    // The slave waits: role slave, no client connector.
    assert!(wait_until(Duration::from_secs(5), || role(&b)
        .is_some_and(|(r, _)| r == "slave")));
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        !accepts_tcp(&b),
        "a shared-file slave must not accept clients"
    );
    assert!(
        b.log().contains("is locked by another server"),
        "{}",
        b.log()
    );

    let sent = Arc::new(Mutex::new(Sent::default()));
    let stop = Arc::new(AtomicBool::new(false));
    let url = failover_url(&[a.stomp_addr(), b.stomp_addr()]);
    let producer = tokio::spawn(produce(
        url,
        100_000,
        Duration::from_secs(40),
        sent.clone(),
        stop.clone(),
    ));
    assert!(wait_until(Duration::from_secs(20), || receipted(&sent) >= 300));

    let killed_at = Instant::now();
    a.kill9();
    assert!(
        wait_until(Duration::from_secs(10), || is_master(&b) && accepts_tcp(&b)),
        "slave did not take over: {:?}\n{}",
        role(&b),
        b.log()
    );
    let takeover = killed_at.elapsed();
    let before = receipted(&sent);
    assert!(wait_until(Duration::from_secs(20), || receipted(&sent) >= before + 300));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    producer.await.unwrap();

    let got = drain(&b.stomp_addr().to_string(), Duration::from_secs(2)).await;
    let sent = sent.lock().unwrap();
    let dups = assert_nothing_lost(&sent, &got);
    eprintln!(
        "shared-file takeover {takeover:?}, client pause {:?}, {} receipted, {dups} duplicates",
        longest_pause(&sent),
        sent.receipted.len()
    );
    assert!(
        takeover < Duration::from_secs(5),
        "takeover took {takeover:?}"
    );
    b.kill9();
}
