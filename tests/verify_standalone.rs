//! verify election and verify failover on a deployed cluster of a 3-node
//! ZooKeeper ensemble and one standalone broker (whose failover is its
//! restart), through the local executor: both pass when healthy; failover
//! reports the loss of a broker that receipts before its journal write
//! (AMQ_JOURNAL_UNSAFE_RECEIPT_BEFORE_WRITE) when it is killed; election
//! fails on the ensemble's quorum once two of its three nodes are stopped.

mod deploy_support;
mod verify_support;

use verify_support::{deployed_and_elected, election_without_quorum, failover, json_check};

#[test]
fn verify_passes_when_healthy_and_fails_on_loss_and_lost_quorum() {
    // Healthy: every check passes.
    let (_tmp, d, c) = deployed_and_elected("verify_standalone.toml", "vsolo");
    assert!(c["one leader"].0 && c["quorum"].0, "{c:?}");
    assert!(c["quorum"].1.contains("3 of 3 nodes serve"), "{c:?}");
    assert!(c["solo1 accepts clients"].0, "{c:?}");

    let (run, doc) = failover(&d, &["--kills", "2", "--settle", "1"], &[]);
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    assert_eq!(doc["lost"], 0, "{doc:#}");
    assert!(doc["receipted"].as_u64().unwrap() > 100, "{doc:#}");
    let rows = doc["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 2);
    let mut pids = Vec::new();
    for r in rows {
        assert_eq!(r["killed"], "solo1");
        assert_eq!(r["new_master"], "solo1", "a lone broker comes back itself");
        assert!(r["client_pause_ms"].as_f64().is_some(), "{r:#}");
        assert!(r["problems"].as_array().unwrap().is_empty(), "{r:#}");
        pids.push(r["pid"].as_u64().unwrap());
    }
    assert_ne!(
        pids[0], pids[1],
        "the second kill hit the restarted process"
    );
    for pid in pids {
        assert!(
            !deploy_support::is_alive(pid as u32),
            "pid {pid} survived kill -9"
        );
    }

    // A lossy broker: it receipts persistent sends before writing them.
    // Restarted by verify with the same environment, so it stays lossy.
    let unsafe_env = [("AMQ_JOURNAL_UNSAFE_RECEIPT_BEFORE_WRITE", "1")];
    d.amqctl(&["stop", "--node", "solo1"]).ok();
    let mut start = (d.runner)();
    start
        .args(["start"])
        .arg(&d.inventory)
        .args(["--node", "solo1", "--plain", "--log-dir"])
        .arg(&d.logs)
        .env(unsafe_env[0].0, unsafe_env[0].1);
    deploy_support::Run::of(start.output().unwrap()).ok();
    // Whether a kill lands inside the unsafe write window depends on timing
    // (a stalled producer on a loaded machine may have nothing unwritten), so
    // give the loss up to three kills per attempt and three attempts; a safe
    // broker never loses one, as the healthy run above shows.
    let mut attempt = 0;
    let (run, doc) = loop {
        attempt += 1;
        let (run, doc) = failover(&d, &["--kills", "3", "--settle", "2"], &unsafe_env);
        if run.code != 0 || attempt == 3 {
            break (run, doc);
        }
    };
    assert_eq!(
        run.code, 1,
        "loss must fail verify (attempt {attempt}):\n{}\n{}",
        run.stdout, run.stderr
    );
    assert!(doc["lost"].as_u64().unwrap() > 0, "{doc:#}");
    let lost = json_check(&doc, "no receipted message lost");
    assert_eq!(lost["ok"], false);
    assert!(
        lost["evidence"].as_str().unwrap().contains(" lost (e.g. #"),
        "{lost}"
    );
    // Only the loss is wrong: the broker did come back.
    assert_eq!(json_check(&doc, "never two masters")["ok"], true);

    // Quorum lost: two of three ZooKeeper nodes stopped.
    let (run, c) = election_without_quorum(&d);
    assert!(
        c["quorum"].1.contains("0 of 3 nodes serve") || c["quorum"].1.contains("1 of 3"),
        "{c:?}"
    );
    assert!(!c["one leader"].0, "{c:?}");
    assert!(c["one leader"].1.contains("zk2 not serving"), "{c:?}");
    assert!(run.stdout.contains("checks failed"), "{}", run.stdout);
}
