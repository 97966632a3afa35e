//! Shared by the network-of-brokers tests: real `amq-broker` processes with
//! network connectors, STOMP clients on the broker crate's client, and
//! polling of `/status` for bridge state.
#![allow(dead_code)]

use amq_broker::client::{AckMode, ConnectOptions, Connection, OutgoingMessage};
use amq_broker::failover::FailoverClient;
use amq_harness::broker::{BrokerOptions, BrokerProcess};
use serde_json::Value;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Brokers with journals in their temp dirs.
pub fn start(name: &str, extra_xml: &str) -> BrokerProcess {
    let mut o = BrokerOptions::new(name);
    o.extra_xml = extra_xml.to_owned();
    o.env.push(("AMQ_LOG".into(), "debug".into()));
    BrokerProcess::start(o).expect("broker starts")
}

/// `<networkConnectors>` with one connector.
pub fn connector(uri: &str, attrs: &str) -> String {
    format!(
        r#"<networkConnectors><networkConnector name="nc" uri="{}" {attrs}/></networkConnectors>"#,
        uri.replace('&', "&amp;")
    )
}

/// A static connector to `peer` that retries quickly.
pub fn static_to(peer: &BrokerProcess, attrs: &str) -> String {
    connector(
        &format!(
            "static:(stomp://{})?initialReconnectDelay=100&maxReconnectDelay=500",
            peer.stomp_addr()
        ),
        attrs,
    )
}

/// A destination policy letting stuck queue messages go back.
pub const REPLAY_POLICY: &str = r#"<destinationPolicy><policyMap><policyEntries>
  <policyEntry queue=">"><networkBridgeFilterFactory><conditionalNetworkBridgeFilterFactory replayWhenNoConsumers="true"/></networkBridgeFilterFactory></policyEntry>
</policyEntries></policyMap></destinationPolicy>"#;

pub fn status(b: &BrokerProcess) -> Value {
    serde_json::from_str(&b.status().expect("status")).expect("status JSON")
}

/// The broker's outbound bridges.
pub fn bridges(b: &BrokerProcess) -> Vec<Value> {
    status(b)["bridges"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter(|b| b["direction"] == "outbound")
        .collect()
}

/// Depth of a queue (0 if it does not exist).
pub fn depth(b: &BrokerProcess, queue: &str) -> u64 {
    status(b)["destinations"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|d| d["name"] == queue && d["type"] == "queue")
        .and_then(|d| d["depth"].as_u64())
        .unwrap_or(0)
}

/// Polls `cond` every 50 ms for up to `timeout`; panics with `what`.
pub fn wait_until(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if cond() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("timed out waiting for {what}");
}

/// Waits until `b` has an up bridge with at least `demand` demand subscriptions.
pub fn wait_demand(b: &BrokerProcess, demand: u64) {
    wait_until(
        &format!(
            "a bridge with {demand} demand subscriptions; log:\n{}",
            tail(b)
        ),
        Duration::from_secs(20),
        || {
            bridges(b).iter().any(|x| {
                x["state"] == "up" && x["demandSubscriptions"].as_u64().unwrap_or(0) >= demand
            })
        },
    );
}

pub fn tail(b: &BrokerProcess) -> String {
    let log = b.log();
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

pub async fn connect(addr: SocketAddr) -> Connection {
    Connection::connect(&addr.to_string(), &ConnectOptions::default())
        .await
        .expect("STOMP connect")
}

/// Sends `bodies` with receipts (pipelined); returns those receipted.
pub async fn produce(addr: SocketAddr, destination: &str, bodies: &[String]) -> Vec<String> {
    let c = connect(addr).await;
    let mut receipts = Vec::new();
    for b in bodies {
        let m = OutgoingMessage::new(destination, b.clone()).persistent(true);
        match c.request(m.to_frame()) {
            Ok(r) => receipts.push((b.clone(), r)),
            Err(_) => break,
        }
    }
    let mut done = Vec::new();
    for (b, r) in receipts {
        if r.await.is_ok() {
            done.push(b);
        }
    }
    let _ = c.disconnect().await;
    done
}

pub fn bodies(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}-{i:05}")).collect()
}

/// Receives on `sub` until `want` distinct bodies arrived or `idle` passes
/// without a message; acknowledges each. Returns body → times received.
pub async fn consume(
    conn: &Connection,
    sub: &mut amq_broker::client::Subscription,
    want: usize,
    idle: Duration,
) -> BTreeMap<String, usize> {
    let mut got: BTreeMap<String, usize> = BTreeMap::new();
    while got.len() < want {
        match tokio::time::timeout(idle, sub.recv()).await {
            Ok(Some(d)) => {
                *got.entry(String::from_utf8_lossy(d.body()).into_owned())
                    .or_default() += 1;
                if d.header("ack").is_some() {
                    let _ = conn.ack(&d);
                }
            }
            _ => break,
        }
    }
    got
}

pub async fn subscribe(
    conn: &Connection,
    destination: &str,
    ack: AckMode,
) -> amq_broker::client::Subscription {
    conn.subscribe(destination, ack, &[])
        .await
        .expect("subscribe")
}

pub fn duplicates(got: &BTreeMap<String, usize>) -> usize {
    got.values().map(|n| n - 1).sum()
}

pub type Got = Arc<Mutex<BTreeMap<String, usize>>>;

/// Consumes `destination` through a failover URL until `want` distinct
/// bodies arrived or nothing came for 15 s (a restart and the bridge's
/// reconnect take well under that).
pub fn spawn_consumer(
    url: String,
    destination: &str,
    want: usize,
) -> (Got, Arc<AtomicUsize>, tokio::task::JoinHandle<()>) {
    let got: Got = Arc::default();
    let count = Arc::new(AtomicUsize::new(0));
    let (g, c, destination) = (got.clone(), count.clone(), destination.to_owned());
    let task = tokio::spawn(async move {
        let client = FailoverClient::connect(&url, ConnectOptions::default())
            .await
            .expect("consumer connects");
        let mut sub = client
            .subscribe(&destination, AckMode::ClientIndividual, &[])
            .await
            .expect("subscribe");
        loop {
            if g.lock().unwrap().len() >= want {
                break;
            }
            match tokio::time::timeout(Duration::from_secs(15), sub.recv()).await {
                Ok(Some(d)) => {
                    let body = String::from_utf8_lossy(d.body()).into_owned();
                    *g.lock().unwrap().entry(body).or_default() += 1;
                    c.fetch_add(1, Ordering::Relaxed);
                    let _ = client.ack(&d);
                }
                _ => break,
            }
        }
        client.close().await;
    });
    (got, count, task)
}

pub async fn wait_count(count: &AtomicUsize, n: usize) {
    for _ in 0..400 {
        if count.load(Ordering::Relaxed) >= n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("the consumer did not reach {n} messages");
}

/// Panics naming the receipted messages that never arrived.
pub fn assert_nothing_lost(sent: &[String], got: &BTreeMap<String, usize>) {
    let missing: Vec<&String> = sent.iter().filter(|m| !got.contains_key(*m)).collect();
    assert!(
        missing.is_empty(),
        "{} receipted messages lost, e.g. {:?}",
        missing.len(),
        &missing[..missing.len().min(5)]
    );
}
