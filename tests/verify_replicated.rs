//! verify on the pseudo-cluster's shape — a 3-node ZooKeeper ensemble and a
//! 3-broker replicated group — deployed through the local executor: both
//! verifies pass (ZooKeeper's elected node and the status endpoints agree,
//! slaves refuse clients and follow the master, a new master within
//! zkSessionTimeout + 5 s, nothing lost); with two ZooKeeper nodes stopped
//! verify election fails on the quorum.

mod deploy_support;
mod verify_support;

use verify_support::{deployed_and_elected, election_without_quorum, failover, json_check};

#[test]
fn replicated_group_passes_both_verifies_and_fails_without_quorum() {
    let (_tmp, d, c) = deployed_and_elected("verify_replicated.toml", "vrep");
    let (ok, agrees) = &c["ZooKeeper agrees"];
    assert!(ok, "{c:?}");
    assert!(agrees.starts_with("elected: amq"), "{agrees}");
    assert!(c["slaves attached"].0, "{c:?}");
    let refusing = c
        .iter()
        .filter(|(k, (ok, _))| k.ends_with("(slave) refuses clients") && *ok)
        .count();
    assert_eq!(refusing, 2, "{c:?}");

    let (run, doc) = failover(&d, &["--kills", "2", "--settle", "1"], &[]);
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    assert_eq!(doc["lost"], 0, "{doc:#}");
    assert_eq!(doc["store"], "replicated");
    for r in doc["rows"].as_array().unwrap() {
        assert_ne!(r["new_master"], r["killed"], "{r:#}");
        let elected = r["elected_ms"].as_f64().unwrap();
        assert!(elected <= doc["bound_ms"].as_f64().unwrap(), "{r:#}");
        assert!(r["rejoined_ms"].as_f64().is_some(), "{r:#}");
    }
    assert_eq!(json_check(&doc, "never two masters")["ok"], true);

    let (_, c) = election_without_quorum(&d);
    assert!(!c["ZooKeeper agrees"].0, "{c:?}");
}
