//! Benchmarks for `bench/ha.sh` (ignored in the normal test run; speed is
//! measured here, not asserted): replicated-group persistent throughput as a
//! ratio of a standalone broker's, and the failover pause a failover client
//! sees over repeated `kill -9`s of the master.

mod ha_support;

use amq_broker::client::{ConnectOptions, Connection, OutgoingMessage};
use amq_harness::broker::{BrokerOptions, BrokerProcess};
use ha_support::*;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// `producers` connections, each sending receipted persistent messages one
/// at a time, `total` in all (bounded to 60 s); messages per second.
async fn throughput(addr: String, producers: u64, total: u64) -> f64 {
    let per = total / producers;
    let t0 = Instant::now();
    let tasks: Vec<_> = (0..producers)
        .map(|p| {
            let addr = addr.clone();
            tokio::spawn(async move {
                let c = Connection::connect(&addr, &ConnectOptions::default())
                    .await
                    .unwrap();
                let mut n = 0;
                while n < per && t0.elapsed() < Duration::from_secs(60) {
                    let m = OutgoingMessage::new(format!("/queue/bench.{p}"), vec![b'x'; 1024])
                        .persistent(true);
                    c.send_receipted(m).await.expect("receipted");
                    n += 1;
                }
                n
            })
        })
        .collect();
    let mut sent = 0;
    for t in tasks {
        sent += t.await.unwrap();
    }
    sent as f64 / t0.elapsed().as_secs_f64()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: bench/ha.sh"]
async fn bench_replicated_throughput_vs_standalone() {
    let producers = env_num("HA_BENCH_PRODUCERS", 8);
    let total = env_num("HA_BENCH_MESSAGES", 20000);
    let reps = env_num("HA_BENCH_REPS", 5).max(1);
    // Everything up at once and the runs interleaved, so that drift in the
    // machine's load hits standalone and replicated alike.
    let alone = BrokerProcess::start(BrokerOptions::new("standalone")).unwrap();
    let policies = ["quorum_mem", "quorum_disk"];
    let groups: Vec<Group> = policies
        .iter()
        .map(|&sync| {
            Group::start(GroupOptions {
                sync,
                ..GroupOptions::default()
            })
        })
        .collect();
    let mut targets = vec![alone.stomp_addr().to_string()];
    for g in &groups {
        let m = g.wait_master(Duration::from_secs(30));
        targets.push(g.brokers[m].stomp_addr().to_string());
    }
    for addr in &targets {
        throughput(addr.clone(), producers, total / 10).await;
    }
    let mut rates: Vec<Vec<f64>> = vec![Vec::new(); targets.len()];
    for _ in 0..reps {
        for (addr, r) in targets.iter().zip(&mut rates) {
            r.push(throughput(addr.clone(), producers, total).await);
        }
    }
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let standalone = &rates[0];
    for (sync, replicated) in policies.iter().zip(&rates[1..]) {
        // Run i of each saw the same moment: the median of per-run ratios.
        let ratio = median(
            replicated
                .iter()
                .zip(standalone)
                .map(|(r, s)| r / s)
                .collect(),
        );
        println!(
            "RESULT throughput producers={producers} messages={total} reps={reps} size=1KiB standalone={:.0}/s replicated_{sync}={:.0}/s ratio={ratio:.2} (runs: standalone {:?}, replicated {:?})",
            median(standalone.clone()),
            median(replicated.clone()),
            standalone.iter().map(|r| r.round()).collect::<Vec<_>>(),
            replicated.iter().map(|r| r.round()).collect::<Vec<_>>(),
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: bench/ha.sh"]
async fn bench_failover_pause_over_repeated_kills() {
    let kills = env_num("HA_BENCH_KILLS", 20) as usize;
    let mut g = Group::start(GroupOptions {
        slave_redirect: true,
        ..GroupOptions::default()
    });
    let mut master = g.wait_master(Duration::from_secs(30));
    let sent = Arc::new(Mutex::new(Sent::default()));
    let stop = Arc::new(AtomicBool::new(false));
    let producer = tokio::spawn(produce(
        g.failover_url(),
        u64::MAX,
        Duration::from_secs(600),
        sent.clone(),
        stop.clone(),
    ));
    let mut elections = Vec::new();
    let mut pauses = Vec::new();
    for round in 0..kills {
        let before = receipted(&sent);
        assert!(wait_until(Duration::from_secs(20), || receipted(&sent) >= before + 50));
        let killed_at = Instant::now();
        g.brokers[master].kill9();
        let new_master = g.wait_master(Duration::from_secs(20));
        elections.push(killed_at.elapsed());
        assert!(wait_until(Duration::from_secs(20), || {
            sent.lock()
                .unwrap()
                .receipt_times
                .last()
                .is_some_and(|(_, t)| *t > killed_at)
        }));
        // The client's pause: the gap in receipts that spans the kill.
        let first = {
            let s = sent.lock().unwrap();
            let last_before = s
                .receipt_times
                .iter()
                .rev()
                .find(|(_, t)| *t <= killed_at)
                .map(|(_, t)| *t);
            let first_after = s
                .receipt_times
                .iter()
                .find(|(_, t)| *t > killed_at)
                .map(|(_, t)| *t);
            match (last_before, first_after) {
                (Some(b), Some(a)) => a - b,
                _ => Duration::ZERO,
            }
        };
        pauses.push(first);
        eprintln!(
            "round {round}: new master #{new_master} after {:?}, client pause {first:?}",
            elections[round]
        );
        // The killed broker rejoins as a slave and catches up before the next kill.
        g.brokers[master].restart().expect("restart");
        let new_addr = format!("stomp://{}", g.brokers[new_master].stomp_addr());
        let old = master;
        assert!(wait_until(Duration::from_secs(30), || {
            role(&g.brokers[old]) == Some(("slave".into(), Some(new_addr.clone())))
        }));
        master = new_master;
    }
    stop.store(true, Ordering::Relaxed);
    producer.await.unwrap();
    let got = drain(
        &g.brokers[master].stomp_addr().to_string(),
        Duration::from_secs(3),
    )
    .await;
    let dups = assert_nothing_lost(&sent.lock().unwrap(), &got);
    let stats = |v: &mut Vec<Duration>| {
        v.sort();
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        (ms(v[v.len() / 2]), ms(v[0]), ms(v[v.len() - 1]))
    };
    let (em, emin, emax) = stats(&mut elections);
    let (pm, pmin, pmax) = stats(&mut pauses);
    println!(
        "RESULT failover kills={kills} new_master_ms median={em:.0} min={emin:.0} max={emax:.0}"
    );
    println!("RESULT failover kills={kills} client_pause_ms (gap in receipts spanning the kill) median={pm:.0} min={pmin:.0} max={pmax:.0}");
    println!(
        "RESULT failover receipted={} lost=0 duplicates={dups}",
        receipted(&sent)
    );
}
