//! The replicated store elected through a real ZooKeeper 3.8 ensemble:
//! three `amq-broker` processes per group, scenarios 1–6 of the HA issue.

mod ha_support;

use amq_broker::client::{ConnectOptions, Connection, OutgoingMessage};
use ha_support::*;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const SESSION: Duration = Duration::from_secs(2);

/// Scenario 1: exactly one master, the others slaves; the master serves
/// STOMP, slaves do not (or, with slaveRedirect, name the master).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cold_start_elects_exactly_one_master_and_slaves_refuse_clients() {
    let _serial = serial().await;
    let g = Group::start(GroupOptions {
        slave_redirect: true,
        ..GroupOptions::default()
    });
    let m = g.wait_master(Duration::from_secs(30));
    // Stable: still exactly one master a moment later, the others slaves of it.
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(g.masters(), vec![m], "{}", g.describe());
    let master_addr = format!("stomp://{}", g.brokers[m].stomp_addr());
    for (i, b) in g.brokers.iter().enumerate().filter(|(i, _)| *i != m) {
        let ok = wait_until(Duration::from_secs(10), || {
            role(b) == Some(("slave".into(), Some(master_addr.clone())))
        });
        assert!(ok, "#{i}: {:?}\n{}", role(b), g.logs());
        let err = Connection::connect(&b.stomp_addr().to_string(), &ConnectOptions::default())
            .await
            .expect_err("a slave must not accept a client");
        assert!(
            err.to_string()
                .contains(&g.brokers[m].stomp_addr().to_string()),
            "{err}"
        );
    }
    let c = Connection::connect(
        &g.brokers[m].stomp_addr().to_string(),
        &ConnectOptions::default(),
    )
    .await
    .expect("the master serves");
    c.send_receipted(OutgoingMessage::new(QUEUE, "hello").persistent(true))
        .await
        .expect("receipted on the master");
}

/// One group at a time: each runs three JVMs and three brokers, and the
/// timing assertions need the machine not to be swamped.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

async fn serial() -> tokio::sync::MutexGuard<'static, ()> {
    SERIAL.lock().await
}

fn redirecting() -> Group {
    Group::start(GroupOptions {
        slave_redirect: true,
        ..GroupOptions::default()
    })
}

fn start_producer(
    g: &Group,
) -> (
    Arc<Mutex<Sent>>,
    Arc<AtomicBool>,
    tokio::task::JoinHandle<()>,
) {
    let sent = Arc::new(Mutex::new(Sent::default()));
    let stop = Arc::new(AtomicBool::new(false));
    let task = tokio::spawn(produce(
        g.failover_url(),
        1_000_000,
        Duration::from_secs(60),
        sent.clone(),
        stop.clone(),
    ));
    (sent, stop, task)
}

/// Drains the queue from broker `i` of `g` until it stays quiet for 2 s:
/// how often each `seq` arrived.
async fn drain_broker(g: &Group, i: usize) -> BTreeMap<u64, usize> {
    drain(
        &g.brokers[i].stomp_addr().to_string(),
        Duration::from_secs(2),
    )
    .await
}

/// Drains broker `i` and expects every message `sent` got a receipt for
/// (duplicates allowed); returns the duplicate count.
async fn expect_every_receipted(g: &Group, i: usize, sent: &Mutex<Sent>) -> usize {
    let got = drain_broker(g, i).await;
    assert_nothing_lost(&sent.lock().unwrap(), &got)
}

/// Drains broker `i` and expects exactly the messages `seqs`.
async fn expect_queue_holds(g: &Group, i: usize, seqs: &[u64]) {
    let got = drain_broker(g, i).await;
    assert_eq!(
        got.keys().copied().collect::<Vec<_>>(),
        seqs,
        "{}",
        g.logs()
    );
}

/// Scenarios 2 and 3: `kill -9` of the master under a receipted persistent
/// load; a new master within zkSessionTimeout + 2 s and nothing receipted
/// lost. The killed node restarts as a slave, catches up, and wins the next
/// election (given the higher weight).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_master_under_load_then_rejoin_and_win_again() {
    let _serial = serial().await;
    let mut g = redirecting();
    let m = g.wait_master(Duration::from_secs(30));
    let (sent, stop, producer) = start_producer(&g);
    assert!(
        wait_until(Duration::from_secs(20), || receipted(&sent) >= 300),
        "{}",
        g.logs()
    );

    let killed = Instant::now();
    g.brokers[m].kill9();
    let m2 = g.wait_master(SESSION + Duration::from_secs(2));
    let elected_after = killed.elapsed();
    assert_ne!(m2, m);
    let before = receipted(&sent);
    assert!(
        wait_until(Duration::from_secs(20), || receipted(&sent) >= before + 300),
        "{}",
        g.logs()
    );
    stop.store(true, Ordering::Relaxed);
    producer.await.unwrap();
    let pause = longest_pause(&sent.lock().unwrap());
    eprintln!("kill -9 → new master in {elected_after:?}; longest client pause {pause:?}");

    // Rejoin with a higher weight: a slave of m2 that catches up.
    let cfg = g.brokers[m].config_path();
    let xml = std::fs::read_to_string(&cfg)
        .unwrap()
        .replace("weight=\"1\"", "weight=\"10\"");
    std::fs::write(&cfg, xml).unwrap();
    g.brokers[m].restart().expect("restart the killed broker");
    let m2_addr = format!("stomp://{}", g.brokers[m2].stomp_addr());
    assert!(
        wait_until(Duration::from_secs(20), || {
            role(&g.brokers[m]) == Some(("slave".into(), Some(m2_addr.clone())))
                && journal_position(&g.brokers[m]) == journal_position(&g.brokers[m2])
        }),
        "rejoined node did not catch up: {} {:?} vs {:?}\n{}",
        g.describe(),
        journal_position(&g.brokers[m]),
        journal_position(&g.brokers[m2]),
        g.logs()
    );

    // Everything receipted is on the new master (duplicates allowed).
    let dups = expect_every_receipted(&g, m2, &sent).await;
    eprintln!("{} receipted, {dups} duplicates", receipted(&sent));

    // The rejoined node wins the next election.
    let marker = Connection::connect(
        &g.brokers[m2].stomp_addr().to_string(),
        &ConnectOptions::default(),
    )
    .await
    .unwrap();
    marker
        .send_receipted(
            OutgoingMessage::new(QUEUE, "after rejoin")
                .persistent(true)
                .header("seq", "999999999"),
        )
        .await
        .unwrap();
    // Tips tie once both slaves have everything; then the weight decides.
    // (Were the rejoined node behind, the other slave would rightly win.)
    let others: Vec<usize> = (0..3).filter(|&i| i != m2).collect();
    assert!(wait_until(Duration::from_secs(10), || others.iter().all(
        |&i| journal_position(&g.brokers[i]) == journal_position(&g.brokers[m2])
    )));
    g.brokers[m2].kill9();
    let m3 = g.wait_master(SESSION + Duration::from_secs(4));
    assert_eq!(
        m3,
        m,
        "the rejoined, caught-up, heavier node should win: {}",
        g.describe()
    );
    expect_queue_holds(&g, m3, &[999_999_999]).await;
}

/// Scenario 4: with one of three brokers left there is no quorum and no
/// master — not even the old master, if it is the one left; a second one
/// back, service resumes with the data.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn quorum_lost_means_no_master_until_a_second_broker_returns() {
    let _serial = serial().await;
    let mut g = redirecting();
    let m = g.wait_master(Duration::from_secs(30));
    let c = Connection::connect(
        &g.brokers[m].stomp_addr().to_string(),
        &ConnectOptions::default(),
    )
    .await
    .unwrap();
    c.send_receipted(
        OutgoingMessage::new(QUEUE, "kept")
            .persistent(true)
            .header("seq", "1"),
    )
    .await
    .unwrap();
    let slaves: Vec<usize> = (0..3).filter(|&i| i != m).collect();
    for &s in &slaves {
        g.brokers[s].kill9();
    }
    // Once the slaves' sessions expire the lone master steps down.
    assert!(
        wait_until(SESSION * 2 + Duration::from_secs(2), || !is_master(
            &g.brokers[m]
        )),
        "a lone broker must not stay master: {}",
        g.describe()
    );
    let r = tokio::time::timeout(
        Duration::from_secs(5),
        c.send_receipted(
            OutgoingMessage::new(QUEUE, "lost")
                .persistent(true)
                .header("seq", "2"),
        ),
    )
    .await;
    assert!(!matches!(r, Ok(Ok(()))), "no receipt without a quorum");
    std::thread::sleep(SESSION);
    assert!(!is_master(&g.brokers[m]), "{}", g.describe());
    let refused = Connection::connect(
        &g.brokers[m].stomp_addr().to_string(),
        &ConnectOptions::default(),
    )
    .await;
    assert!(refused.is_err(), "the lone broker must not serve");

    g.brokers[slaves[0]].restart().expect("restart");
    let back = g.wait_master(Duration::from_secs(20));
    assert!(back == m || back == slaves[0]);
    expect_queue_holds(&g, back, &[1]).await;
}

/// Scenario 5: the master is frozen (SIGSTOP) longer than its session: the
/// others elect a new master; when it resumes it never receipts a write.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_frozen_master_is_replaced_and_never_receipts_after_it_resumes() {
    let _serial = serial().await;
    let g = redirecting();
    let m = g.wait_master(Duration::from_secs(30));
    let addr = g.brokers[m].stomp_addr().to_string();
    let old = Connection::connect(&addr, &ConnectOptions::default())
        .await
        .unwrap();
    old.send_receipted(
        OutgoingMessage::new(QUEUE, "before")
            .persistent(true)
            .header("seq", "1"),
    )
    .await
    .unwrap();

    signal(&g.brokers[m], "STOP");
    let stopped = Instant::now();
    let mut m2 = None;
    let replaced = wait_until(SESSION + Duration::from_secs(4), || {
        let ms: Vec<usize> = (0..3)
            .filter(|&i| i != m && is_master(&g.brokers[i]))
            .collect();
        m2 = (ms.len() == 1 && accepts_tcp(&g.brokers[ms[0]])).then(|| ms[0]);
        m2.is_some()
    });
    let took = stopped.elapsed();
    let frozen_long = SESSION + Duration::from_secs(1);
    if took < frozen_long {
        std::thread::sleep(frozen_long - took);
    }
    signal(&g.brokers[m], "CONT");
    assert!(
        replaced,
        "no new master while the old one was frozen: {}\n{}",
        g.describe(),
        g.logs()
    );
    let m2 = m2.unwrap();
    eprintln!("frozen master replaced after {took:?}");

    // The resumed old master: a write on the connection it had never gets a
    // receipt (ERROR, closed connection, or no answer).
    let r = tokio::time::timeout(
        Duration::from_secs(5),
        old.send_receipted(
            OutgoingMessage::new(QUEUE, "after")
                .persistent(true)
                .header("seq", "2"),
        ),
    )
    .await;
    assert!(
        !matches!(r, Ok(Ok(()))),
        "the old master receipted a write after resuming"
    );
    assert!(
        wait_until(Duration::from_secs(10), || role(&g.brokers[m])
            .is_some_and(|(r, _)| r == "slave")),
        "old master did not demote: {}",
        g.describe()
    );
    assert_eq!(g.masters(), vec![m2]);
    expect_queue_holds(&g, m2, &[1]).await;
}

/// Scenario 6: killing the ZooKeeper leader does not disturb the brokers:
/// the master stays master and receipts keep coming.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn killing_the_zookeeper_leader_does_not_interrupt_service() {
    let _serial = serial().await;
    let mut g = redirecting();
    let m = g.wait_master(Duration::from_secs(30));
    let (sent, stop, producer) = start_producer(&g);
    assert!(wait_until(Duration::from_secs(20), || receipted(&sent) >= 200));
    let leader = g.zk.kill_leader().unwrap();
    let t0 = Instant::now();
    let mut masters_seen = std::collections::BTreeSet::new();
    while t0.elapsed() < Duration::from_secs(4) {
        for i in g.masters() {
            masters_seen.insert(i);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    g.zk.restart(leader).unwrap();
    let before = receipted(&sent);
    assert!(wait_until(Duration::from_secs(10), || receipted(&sent) >= before + 100));
    stop.store(true, Ordering::Relaxed);
    producer.await.unwrap();
    assert_eq!(
        masters_seen.into_iter().collect::<Vec<_>>(),
        vec![m],
        "{}",
        g.logs()
    );
    assert_eq!(g.masters(), vec![m]);
    // No failover happened (above); receipts kept coming. The pause is
    // printed, not asserted tightly: this machine's load sets it.
    let pause = longest_pause(&sent.lock().unwrap());
    eprintln!("longest receipt gap with the ZooKeeper leader killed: {pause:?}");
    assert!(
        pause < SESSION * 2,
        "receipts paused {pause:?} around the ZooKeeper leader kill"
    );
    expect_every_receipted(&g, m, &sent).await;
}
