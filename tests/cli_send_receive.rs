//! `amqctl send`, `receive` and `bench` as an operator runs them: against
//! real brokers (amq-broker, and Debian's ActiveMQ 5.17, on free loopback
//! ports), with clear errors and exit codes for bad URLs and unreachable
//! brokers.

#[path = "../broker/tests/client_support/mod.rs"]
mod client_support;

use assert_cmd::Command;
use client_support::{start, unique_queue, Kind};
use predicates::prelude::*;

/// Runs `amqctl bench ... --json` and returns its report.
fn bench_json(args: &[&str]) -> serde_json::Value {
    let out = amqctl()
        .arg("bench")
        .args(args)
        .args(["--warmup", "0", "--json"])
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    serde_json::from_slice(&out).unwrap()
}

fn amqctl() -> Command {
    let mut cmd = Command::cargo_bin("amqctl").unwrap();
    cmd.timeout(std::time::Duration::from_secs(60));
    cmd
}

#[test]
fn send_then_receive_through_a_failover_url_amq_broker() {
    send_then_receive(Kind::AmqBroker);
}

#[test]
fn send_then_receive_through_a_failover_url_activemq() {
    send_then_receive(Kind::ActiveMq);
}

fn send_then_receive(kind: Kind) {
    let dir = tempfile::tempdir().unwrap();
    let amq = start(kind, dir.path(), &[]);
    let url = format!("failover:({})?maxReconnectAttempts=3", amq.url());
    let q = unique_queue("cli");

    amqctl()
        .args([
            "send",
            &url,
            &q,
            "--count",
            "5",
            "--persistent",
            "-H",
            "colour=blue",
        ])
        .assert()
        .success()
        .stdout(
            predicate::str::contains("sent 5 message(s)")
                .and(predicate::str::contains("5 receipted")),
        );

    let out = amqctl()
        .args([
            "receive", &url, &q, "--count", "5", "--print", "json", "--wait", "5",
        ])
        .assert()
        .success()
        .stderr(predicate::str::contains("received 5 message(s)"))
        .get_output()
        .stdout
        .clone();
    let lines: Vec<serde_json::Value> = String::from_utf8(out)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 5);
    for (i, m) in lines.iter().enumerate() {
        let n = i + 1;
        assert_eq!(m["body"], format!("message {n}"));
        assert_eq!(m["headers"]["amqctl-seq"], n.to_string());
        assert_eq!(m["headers"]["colour"], "blue");
        assert_eq!(m["headers"]["persistent"], "true");
    }

    // They were acknowledged: nothing is left, so waiting for one more fails.
    amqctl()
        .args(["receive", &amq.url(), &q, "--wait", "1"])
        .assert()
        .failure()
        .stderr(predicate::str::contains("received 0 of 1 message(s)"));

    // Body options and pipelined receipts.
    amqctl()
        .args([
            "send",
            &amq.url(),
            &q,
            "-n",
            "200",
            "--size",
            "1024",
            "--receipt",
            "--in-flight",
            "16",
        ])
        .assert()
        .success()
        .stdout(predicate::str::contains("200 receipted"));
    amqctl()
        .args([
            "receive",
            &amq.url(),
            &q,
            "-n",
            "200",
            "--print",
            "none",
            "--ack",
            "auto",
        ])
        .assert()
        .success();

    // The load tool against the real broker: nothing lost.
    let r = bench_json(&[&amq.url(), "-n", "500", "--persistent"]);
    assert_eq!(r["receipted"], 500);
    assert_eq!(r["consumed"], 500);
    assert_eq!(r["lost"], 0);
    assert!(r["receipt_latency"]["p50_ms"].as_f64().unwrap() > 0.0);
}

#[test]
fn login_refused_is_reported_without_the_password() {
    let dir = tempfile::tempdir().unwrap();
    let amq = start(Kind::AmqBroker, dir.path(), &[("app", "right")]);
    amqctl()
        .args(["send", &amq.url(), "/queue/x", "--user", "app"])
        .env("AMQ_PASSWORD", "wrong-secret")
        .assert()
        .failure()
        .stderr(
            predicate::str::contains("refused").and(predicate::str::contains("wrong-secret").not()),
        );
    let pw = dir.path().join("pw");
    std::fs::write(&pw, "right\n").unwrap();
    amqctl()
        .args([
            "send",
            &amq.url(),
            "/queue/x",
            "--user",
            "app",
            "--password-file",
        ])
        .arg(&pw)
        .env_remove("AMQ_PASSWORD")
        .assert()
        .success();
}

#[test]
fn bad_urls_name_the_problem() {
    for (url, expect) in [
        (
            "failover:(stomp://127.0.0.1:1)?backOffMultiplier=2",
            "reconnectDelayExponent",
        ),
        (
            "failover:(stomp://127.0.0.1:1)?maxReconectAttempts=2",
            "did you mean maxReconnectAttempts?",
        ),
        ("tcp://127.0.0.1:61616", "OpenWire"),
        ("failover:(stomp://127.0.0.1:1", "unbalanced parentheses"),
        (
            "failover:stomp://a:1,stomp://b:2?randomize=false",
            "failover:(stomp://a:1,stomp://b:2)?randomize=false",
        ),
    ] {
        amqctl()
            .args(["send", url, "/queue/x"])
            .assert()
            .code(1)
            .stderr(predicate::str::contains(expect));
    }
}

#[test]
fn unreachable_brokers_fail_after_the_configured_attempts() {
    let port = amq_harness::free_port();
    amqctl()
        .args([
            "send",
            &format!("failover:(stomp://127.0.0.1:{port})?startupMaxReconnectAttempts=2&initialReconnectDelay=1"),
            "/queue/x",
        ])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("after 2 attempt(s)").and(predicate::str::contains("giving up")));
}

#[test]
fn bench_against_the_sink_reports_receipted_throughput() {
    let r = bench_json(&[
        "--sink",
        "-n",
        "3000",
        "-p",
        "2",
        "-c",
        "2",
        "--in-flight",
        "4",
    ]);
    assert_eq!(r["receipted"], 3000);
    assert_eq!(r["consumed"], 3000);
    assert_eq!(r["lost"], 0);
    assert_eq!(r["duplicates"], 0);
    assert!(r["produce_rate"].as_f64().unwrap() > 0.0);
}
