//! Shared pieces of the HA scenarios: groups of real `amq-broker`
//! processes (replicated through a real ZooKeeper ensemble, or sharing one
//! kahaDB directory), their roles from `/status`, and a receipted
//! persistent load through the failover client that records what was
//! receipted, so no loss can hide.
#![allow(dead_code)] // each test binary uses a different part

use amq_broker::client::{AckMode, ConnectOptions, Connection, OutgoingMessage};
use amq_broker::failover::FailoverClient;
use amq_harness::broker::{BrokerOptions, BrokerProcess};
use amq_harness::{free_port, ZkEnsemble};
use std::collections::{BTreeMap, BTreeSet};
use std::net::TcpStream;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const QUEUE: &str = "/queue/ha.orders";

/// Role as `/status` reports it: (`master`|`slave`|`standalone`, master's
/// client address for a slave that knows it).
pub fn role(b: &BrokerProcess) -> Option<(String, Option<String>)> {
    let body = b.status().ok()?;
    let v: serde_json::Value = serde_json::from_str(&body).ok()?;
    Some((
        v["role"].as_str()?.to_owned(),
        v["master"].as_str().map(str::to_owned),
    ))
}

pub fn journal_position(b: &BrokerProcess) -> Option<u64> {
    let v: serde_json::Value = serde_json::from_str(&b.status().ok()?).ok()?;
    v["journal"]["position"].as_u64()
}

pub fn is_master(b: &BrokerProcess) -> bool {
    role(b).is_some_and(|(r, _)| r == "master")
}

pub fn accepts_tcp(b: &BrokerProcess) -> bool {
    TcpStream::connect_timeout(&b.stomp_addr(), Duration::from_millis(200)).is_ok()
}

/// Polls `cond` every 20 ms until it holds or `timeout` passes.
pub fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

pub fn signal(b: &BrokerProcess, sig: &str) {
    let ok = std::process::Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(b.pid().to_string())
        .status()
        .expect("kill(1)")
        .success();
    assert!(ok, "kill -{sig} {}", b.pid());
}

/// A replicated group: a ZooKeeper ensemble and `n` brokers.
pub struct Group {
    pub brokers: Vec<BrokerProcess>,
    pub zk: ZkEnsemble,
}

pub struct GroupOptions {
    pub size: usize,
    pub session_timeout: &'static str,
    pub slave_redirect: bool,
    pub sync: &'static str,
}

impl Default for GroupOptions {
    fn default() -> Self {
        GroupOptions {
            size: 3,
            session_timeout: "2s",
            slave_redirect: false,
            sync: "quorum_mem",
        }
    }
}

pub fn replicated_xml(
    zk: &str,
    path: &str,
    o: &GroupOptions,
    weight: u32,
    bind_port: u16,
) -> String {
    format!(
        r#"<replicatedLevelDB directory="${{activemq.data}}/leveldb" replicas="{replicas}" bind="tcp://127.0.0.1:{bind_port}" zkAddress="{zk}" zkPath="{path}" zkSessionTimeout="{timeout}" hostname="127.0.0.1" securityToken="t0k3n" sync="{sync}" weight="{weight}" slaveRedirect="{redirect}"/>"#,
        replicas = o.size.max(3),
        timeout = o.session_timeout,
        sync = o.sync,
        redirect = o.slave_redirect,
    )
}

impl Group {
    pub fn start(o: GroupOptions) -> Group {
        let zk = ZkEnsemble::start().expect("ZooKeeper ensemble");
        let brokers = (0..o.size)
            .map(|i| {
                let mut opts = BrokerOptions::new("ha-group");
                opts.persistence = Some(replicated_xml(
                    &zk.connect_string(),
                    "/amq/ha",
                    &o,
                    1,
                    free_port(),
                ));
                opts.env.push(("AMQ_LOG".into(), "info".into()));
                let mut b = BrokerProcess::spawn(opts).expect("spawn broker");
                b.wait_status()
                    .unwrap_or_else(|e| panic!("broker {i}: {e}"));
                b
            })
            .collect();
        Group { brokers, zk }
    }

    pub fn masters(&self) -> Vec<usize> {
        (0..self.brokers.len())
            .filter(|&i| is_master(&self.brokers[i]))
            .collect()
    }

    /// Waits until exactly one broker is master and it accepts STOMP.
    pub fn wait_master(&self, timeout: Duration) -> usize {
        let mut found = None;
        let ok = wait_until(timeout, || {
            let m = self.masters();
            found = (m.len() == 1 && accepts_tcp(&self.brokers[m[0]])).then(|| m[0]);
            found.is_some()
        });
        assert!(
            ok,
            "no single serving master within {timeout:?}: {}\n{}",
            self.describe(),
            self.logs()
        );
        found.unwrap()
    }

    pub fn describe(&self) -> String {
        self.brokers
            .iter()
            .enumerate()
            .map(|(i, b)| format!("#{i} {:?}", role(b)))
            .collect::<Vec<_>>()
            .join(", ")
    }

    pub fn logs(&self) -> String {
        self.brokers
            .iter()
            .enumerate()
            .map(|(i, b)| format!("===== broker #{i}\n{}", b.log()))
            .collect()
    }

    pub fn failover_url(&self) -> String {
        let addrs: Vec<_> = self.brokers.iter().map(|b| b.stomp_addr()).collect();
        failover_url(&addrs)
    }
}

pub fn failover_url(addrs: &[std::net::SocketAddr]) -> String {
    let members: Vec<String> = addrs.iter().map(|a| format!("stomp://{a}")).collect();
    format!(
        "failover:({})?randomize=false&initialReconnectDelay=10&maxReconnectDelay=100&timeout=30000",
        members.join(",")
    )
}

/// What a producer got receipts for, and when the last outage ended.
#[derive(Debug, Default)]
pub struct Sent {
    pub receipted: BTreeSet<u64>,
    /// Times of each receipt (for measuring the pause around a kill).
    pub receipt_times: Vec<(u64, Instant)>,
}

/// How many messages got a receipt so far.
pub fn receipted(sent: &Mutex<Sent>) -> usize {
    sent.lock().unwrap().receipted.len()
}

/// Sends persistent messages `0..count` through the failover client, one
/// receipt at a time, recording each receipt; stops early when `stop` is set
/// or after `limit`.
pub async fn produce(
    url: String,
    count: u64,
    limit: Duration,
    sent: Arc<Mutex<Sent>>,
    stop: Arc<std::sync::atomic::AtomicBool>,
) {
    let client = FailoverClient::connect(&url, ConnectOptions::default())
        .await
        .expect("failover client connects");
    let started = Instant::now();
    for n in 0..count {
        if stop.load(std::sync::atomic::Ordering::Relaxed) || started.elapsed() > limit {
            break;
        }
        let msg = OutgoingMessage::new(QUEUE, format!("order {n}"))
            .persistent(true)
            .header("seq", n.to_string());
        match client.send_receipted(msg).await {
            Ok(()) => {
                let mut s = sent.lock().unwrap();
                s.receipted.insert(n);
                s.receipt_times.push((n, Instant::now()));
            }
            Err(e) => panic!("send {n} failed for good: {e}"),
        }
    }
    client.close().await;
}

/// Drains `QUEUE` from `addr` (client acks), until `quiet` passes without
/// a message; returns how often each `seq` arrived.
pub async fn drain(addr: &str, quiet: Duration) -> BTreeMap<u64, usize> {
    let conn = Connection::connect(addr, &ConnectOptions::default())
        .await
        .expect("connect to drain");
    let mut sub = conn
        .subscribe(QUEUE, AckMode::ClientIndividual, &[])
        .await
        .expect("subscribe");
    let mut seen = BTreeMap::new();
    while let Ok(Some(m)) = tokio::time::timeout(quiet, sub.recv()).await {
        let seq: u64 = m
            .header("seq")
            .and_then(|s| s.parse().ok())
            .expect("seq header");
        *seen.entry(seq).or_insert(0) += 1;
        conn.ack(&m).expect("ack");
    }
    let _ = conn.disconnect().await;
    seen
}

/// Every receipted message arrived; returns the duplicate count.
pub fn assert_nothing_lost(sent: &Sent, got: &BTreeMap<u64, usize>) -> usize {
    let lost: Vec<u64> = sent
        .receipted
        .iter()
        .filter(|n| !got.contains_key(n))
        .copied()
        .collect();
    assert!(
        lost.is_empty(),
        "{} receipted messages lost (of {}): {:?}",
        lost.len(),
        sent.receipted.len(),
        &lost[..lost.len().min(20)]
    );
    got.values().map(|&c| c - 1).sum()
}

/// The longest gap between consecutive receipts.
pub fn longest_pause(sent: &Sent) -> Duration {
    sent.receipt_times
        .windows(2)
        .map(|w| w[1].1 - w[0].1)
        .max()
        .unwrap_or_default()
}
