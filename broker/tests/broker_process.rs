//! `amq-broker` as a process: configuration errors stop it before anything
//! listens, SIGTERM shuts down cleanly, and `kill -9` loses no receipted
//! message.

mod stomp_support;

use amq_broker::stomp::{Command, Frame, Version};
use amq_harness::broker::{BrokerOptions, BrokerProcess};
use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use stomp_support::*;

fn binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_amq-broker"))
}

fn options(name: &str) -> BrokerOptions {
    let mut o = BrokerOptions::new(name);
    o.binary = Some(binary());
    o
}

#[test]
fn configuration_errors_exit_before_anything_listens() {
    let dir = tempfile::tempdir().unwrap();
    let port = amq_harness::free_port();
    let cases = [
        (
            format!(
                "<beans>\n<broker xmlns=\"http://activemq.apache.org/schema/core\">\n<transportConnectors>\n<transportConnector uri=\"stomp://127.0.0.1:{port}\"/>\n</transportConnectors>\n<persistenceAdapter><kahaDB/><kahaDB/></persistenceAdapter>\n</broker></beans>"
            ),
            "activemq.xml:6:",
        ),
        (
            format!("<broker xmlns=\"http://activemq.apache.org/schema/core\">\n<transportConnectors><transportConnector uri=\"stomp://127.0.0.1:{port}\">\n</broker>"),
            "malformed XML",
        ),
        (
            "<broker xmlns=\"http://activemq.apache.org/schema/core\"><transportConnectors><transportConnector uri=\"tcp://127.0.0.1:1\"/></transportConnectors></broker>".to_owned(),
            "no stomp:// transportConnector",
        ),
    ];
    for (xml, expected) in cases {
        let path = dir.path().join("activemq.xml");
        std::fs::write(&path, &xml).unwrap();
        let out = std::process::Command::new(binary())
            .arg("--config")
            .arg(format!("xbean:file:{}", path.display()))
            .arg(format!(
                "-Dactivemq.data={}",
                dir.path().join("data").display()
            ))
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{stderr}");
        assert!(stderr.contains(expected), "want {expected:?} in:\n{stderr}");
        assert!(
            std::net::TcpListener::bind(("127.0.0.1", port)).is_ok(),
            "port was taken"
        );
    }
    let missing = std::process::Command::new(binary())
        .args(["--config", "/nonexistent/activemq.xml"])
        .output()
        .unwrap();
    assert_eq!(missing.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("/nonexistent/activemq.xml"));
}

#[test]
fn check_prints_warnings_with_lines() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("activemq.xml");
    std::fs::write(
        &path,
        "<beans xmlns=\"http://www.springframework.org/schema/beans\">\n<broker xmlns=\"http://activemq.apache.org/schema/core\" brokerName=\"w\" dataDirectory=\"${activemq.data}\">\n<transportConnectors>\n<transportConnector name=\"openwire\" uri=\"tcp://0.0.0.0:61616\"/>\n<transportConnector name=\"stomp\" uri=\"stomp://0.0.0.0:61613\"/>\n</transportConnectors>\n<frobnicator/>\n</broker></beans>",
    )
    .unwrap();
    let out = std::process::Command::new(binary())
        .arg("--check")
        .arg("--config")
        .arg(&path)
        .env("ACTIVEMQ_DATA", dir.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("activemq.xml:4: OpenWire connector tcp://0.0.0.0:61616 is not served yet"),
        "{stderr}"
    );
    assert!(stderr.contains("activemq.xml:7: <frobnicator>"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_tells_clients_and_keeps_receipted_messages() {
    let mut b = BrokerProcess::start(options("term")).unwrap();
    let mut c = Client::connect(b.stomp_addr(), Version::V1_2, &[]).await;
    c.send("/queue/kept", "durable", &[("persistent", "true")])
        .await;
    let status = tokio::task::block_in_place(|| b.terminate(Duration::from_secs(10)));
    assert!(
        status.is_some_and(|s| s.success()),
        "exit: {status:?}\n{}",
        b.log()
    );
    let e = c.expect_error_and_close().await;
    assert_eq!(e.command, Command::Error);
    assert!(b.log().contains("journal synced"), "{}", b.log());
    tokio::task::block_in_place(|| b.restart()).unwrap();
    let mut c = Client::connect(b.stomp_addr(), Version::V1_2, &[]).await;
    c.subscribe("/queue/kept", "s", "auto", &[]).await;
    assert_eq!(body(&c.recv_message().await), "durable");
}

/// The crash test: 10,000 receipted persistent messages, a consumer
/// acknowledging concurrently, `kill -9` in the middle, restart, and every
/// receipted message is consumed exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_loses_no_receipted_message() {
    const TOTAL: usize = 10_000;
    const WINDOW: usize = 200;
    let mut b = BrokerProcess::start(options("crash")).unwrap();
    let addr = b.stomp_addr();

    // Producer: pipelined sends, each with a receipt; records what was receipted.
    let receipted = Arc::new(Mutex::new(Vec::<String>::new()));
    let receipt_count = Arc::new(AtomicUsize::new(0));
    let producer = tokio::spawn(produce(
        addr,
        (0..TOTAL).collect(),
        "a",
        receipted.clone(),
        receipt_count.clone(),
        WINDOW,
    ));
    // Consumer: acknowledges each message with a receipt; only a receipted
    // ACK is known to be durable.
    let durably_acked = Arc::new(Mutex::new(Vec::<String>::new()));
    let maybe_acked = Arc::new(Mutex::new(Vec::<String>::new()));
    let consumer = tokio::spawn(consume_acking(
        addr,
        durably_acked.clone(),
        maybe_acked.clone(),
    ));

    while receipt_count.load(Ordering::Relaxed) < TOTAL / 2 {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    tokio::task::block_in_place(|| b.kill9());
    let unsent: Vec<usize> = producer.await.unwrap();
    let _ = consumer.await;
    let receipted_before = receipted.lock().unwrap().len();
    assert!(
        (TOTAL / 2..TOTAL).contains(&receipted_before),
        "{receipted_before}"
    );

    tokio::task::block_in_place(|| b.restart()).unwrap();
    // Whatever was not receipted is sent again (a new attempt, a new body).
    let receipted_idx: HashSet<usize> = receipted
        .lock()
        .unwrap()
        .iter()
        .map(|s| s.split('-').next().unwrap().parse().unwrap())
        .collect();
    let retry: Vec<usize> = (0..TOTAL).filter(|i| !receipted_idx.contains(i)).collect();
    assert!(unsent.iter().all(|i| !receipted_idx.contains(i)));
    let again = produce(
        b.stomp_addr(),
        retry,
        "b",
        receipted.clone(),
        receipt_count,
        WINDOW,
    )
    .await;
    assert!(again.is_empty(), "sends failed after restart");

    // Drain everything that is left.
    let mut c = Client::connect(b.stomp_addr(), Version::V1_2, &[]).await;
    c.subscribe("/queue/crash", "drain", "auto", &[]).await;
    let mut drained = Vec::new();
    while let Ok(f) = tokio::time::timeout(Duration::from_secs(2), c.recv()).await {
        drained.push(body(&f));
    }

    let durable: Vec<String> = durably_acked.lock().unwrap().clone();
    let maybe: HashSet<String> = maybe_acked.lock().unwrap().iter().cloned().collect();
    let mut seen: HashMap<&str, usize> = HashMap::new();
    for m in durable.iter().chain(&drained) {
        *seen.entry(m.as_str()).or_default() += 1;
    }
    let receipted = receipted.lock().unwrap();
    assert_eq!(
        receipted.len(),
        TOTAL,
        "every index receipted once in the end"
    );
    for m in receipted.iter() {
        let n = seen.get(m.as_str()).copied().unwrap_or(0);
        // An ACK in flight at the crash may or may not have reached the disk.
        let ok = n == 1 || (n == 0 && maybe.contains(m));
        assert!(ok, "receipted message {m} consumed {n} times");
    }
    for (m, n) in &seen {
        assert_eq!(*n, 1, "{m} consumed {n} times");
    }
    eprintln!(
        "crash test: {receipted_before} receipted before kill -9, {} acked durably before, {} drained after",
        durable.len(),
        drained.len()
    );
}

/// Sends `indexes` as persistent messages `"<i>-<attempt>"` with receipts, at
/// most `window` unanswered; returns the indexes whose receipts never came.
async fn produce(
    addr: std::net::SocketAddr,
    indexes: Vec<usize>,
    attempt: &str,
    receipted: Arc<Mutex<Vec<String>>>,
    count: Arc<AtomicUsize>,
    window: usize,
) -> Vec<usize> {
    use futures::{SinkExt, StreamExt};
    let c = Client::connect(addr, Version::V1_2, &[]).await;
    let (mut tx, mut rx) = c.io.split();
    let (sent_tx, mut sent_rx) = tokio::sync::mpsc::channel::<usize>(window);
    let attempt = attempt.to_owned();
    let writer = tokio::spawn({
        let attempt = attempt.clone();
        async move {
            for i in indexes {
                let f = Frame::new(Command::Send)
                    .with_header("destination", "/queue/crash")
                    .with_header("persistent", "true")
                    .with_header("receipt", i.to_string())
                    .with_body(format!("{i}-{attempt}").into_bytes());
                if sent_tx.send(i).await.is_err() || tx.send(f).await.is_err() {
                    break;
                }
            }
        }
    });
    let mut outstanding = Vec::new();
    loop {
        let Some(i) = sent_rx.recv().await else { break };
        outstanding.push(i);
        // Receipts come in order: wait for the oldest.
        match rx.next().await {
            Some(Ok(amq_broker::stomp::Transmission::Frame(f)))
                if f.command == Command::Receipt =>
            {
                let id: usize = f.header("receipt-id").unwrap().parse().unwrap();
                assert_eq!(id, outstanding[0], "receipts out of order");
                outstanding.remove(0);
                receipted.lock().unwrap().push(format!("{id}-{attempt}"));
                count.fetch_add(1, Ordering::Relaxed);
            }
            _ => break,
        }
    }
    writer.abort();
    let mut unanswered = outstanding;
    while let Ok(i) = sent_rx.try_recv() {
        unanswered.push(i);
    }
    unanswered
}

/// Consumes `/queue/crash` with client-individual acks, each with a receipt.
async fn consume_acking(
    addr: std::net::SocketAddr,
    durable: Arc<Mutex<Vec<String>>>,
    maybe: Arc<Mutex<Vec<String>>>,
) {
    use futures::{SinkExt, StreamExt};
    let mut c = Client::connect(addr, Version::V1_2, &[]).await;
    c.subscribe(
        "/queue/crash",
        "c",
        "client-individual",
        &[("activemq.prefetchSize", "100")],
    )
    .await;
    let mut in_flight: HashMap<String, String> = HashMap::new();
    while let Some(Ok(t)) = c.io.next().await {
        let amq_broker::stomp::Transmission::Frame(f) = t else {
            continue;
        };
        match f.command {
            Command::Message => {
                let b = body(&f);
                let ack = f.header("ack").unwrap().to_owned();
                in_flight.insert(ack.clone(), b.clone());
                maybe.lock().unwrap().push(b);
                let frame = Frame::new(Command::Ack)
                    .with_header("id", ack.clone())
                    .with_header("receipt", ack);
                if c.io.send(frame).await.is_err() {
                    break;
                }
            }
            Command::Receipt => {
                let id = f.header("receipt-id").unwrap();
                if let Some(b) = in_flight.remove(id) {
                    durable.lock().unwrap().push(b);
                }
            }
            _ => break,
        }
    }
}

#[test]
fn status_and_metrics_describe_the_broker() {
    let b = BrokerProcess::start(options("stat")).unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let mut c = Client::connect(b.stomp_addr(), Version::V1_2, &[]).await;
        c.subscribe("/queue/watched", "s", "client-individual", &[])
            .await;
        c.send("/queue/watched", "m", &[("persistent", "true")])
            .await;
        c.recv_message().await;
        let status: serde_json::Value = serde_json::from_str(&b.status().unwrap()).unwrap();
        assert_eq!(status["brokerName"], "stat");
        assert_eq!(status["role"], "standalone");
        assert_eq!(status["connections"], 1);
        assert!(status["uptimeSeconds"].as_f64().unwrap() > 0.0);
        assert_eq!(status["journal"]["position"], 1);
        let q = &status["destinations"][0];
        assert_eq!(
            (q["name"].as_str(), q["type"].as_str()),
            (Some("watched"), Some("queue"))
        );
        assert_eq!(
            (
                q["depth"].as_u64(),
                q["consumers"].as_u64(),
                q["enqueued"].as_u64()
            ),
            (Some(1), Some(1), Some(1))
        );
        let metrics = b.http_get("/metrics").unwrap();
        assert!(
            metrics.contains(
                "amq_destination_depth{broker=\"stat\",type=\"queue\",destination=\"watched\"} 1"
            ),
            "{metrics}"
        );
        assert!(
            metrics.contains("amq_role{broker=\"stat\",role=\"standalone\"} 1"),
            "{metrics}"
        );
        assert!(
            metrics.contains("amq_journal_position{broker=\"stat\"} 1"),
            "{metrics}"
        );
        c.disconnect().await;
    });
}
