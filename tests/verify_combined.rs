//! verify on inventories/combined.toml's shape (standalone `a` networked,
//! duplex, with the shared-file pair `b`/`c`): each kill degrades the
//! cluster as the plan's failure-mode table predicts — a core master's
//! death is a lock takeover, the edge broker's a restart — and the network
//! bridges to the new master again, nothing lost.

mod deploy_support;
mod verify_support;

use verify_support::{deployed_and_elected, failover};

#[test]
fn combined_cluster_degrades_as_predicted_and_bridges_again() {
    let (_tmp, d, c) = deployed_and_elected("verify_combined.toml", "vcomb");
    assert!(c["c (slave) refuses clients"].0, "{c:?}");

    let (run, doc) = failover(
        &d,
        &["--group", "core", "--kills", "2", "--settle", "1"],
        &[],
    );
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    assert_eq!(doc["lost"], 0, "{doc:#}");
    for r in doc["rows"].as_array().unwrap() {
        let predicted = r["predicted"].as_array().unwrap();
        assert!(
            predicted[0]
                .as_str()
                .unwrap()
                .contains("a slave takes the lock"),
            "{r:#}"
        );
        assert_ne!(r["new_master"], r["killed"]);
        assert_eq!(r["networks"][0][0], "edge-core", "{r:#}");
        assert!(r["networks"][0][1].as_f64().is_some(), "{r:#}");
    }

    let (run, doc) = failover(
        &d,
        &["--group", "edge", "--kills", "1", "--settle", "1"],
        &[],
    );
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    let r = &doc["rows"][0];
    assert_eq!(r["killed"], "a");
    assert_eq!(r["new_master"], "a", "a lone broker comes back itself");
    let predicted: Vec<&str> = r["predicted"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap())
        .collect();
    assert!(
        predicted
            .iter()
            .any(|p| p.contains("network edge-core loses load balancing")),
        "{predicted:?}"
    );
    assert!(r["networks"][0][1].as_f64().is_some(), "{r:#}");
}
