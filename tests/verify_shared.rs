//! verify on the bundled broker in shared-file master/slave, deployed
//! through the local executor: election passes (one master holding the
//! lock, the slave's connectors closed) and failover passes with the lock
//! changing hands both ways and nothing lost.

mod deploy_support;
mod verify_support;

use verify_support::{deployed_and_elected, failover, json_check};

#[test]
fn shared_file_pair_passes_election_and_failover() {
    let (_tmp, d, c) = deployed_and_elected("verify_shared.toml", "vshared");
    assert_eq!(c["every broker answers"].1, "p1 master, p2 slave", "{c:?}");
    assert!(
        c["p2 (slave) refuses clients"].1.contains("refused"),
        "{c:?}"
    );

    let (run, doc) = failover(&d, &["--kills", "2", "--settle", "1"], &[]);
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    assert_eq!(doc["lost"], 0, "{doc:#}");
    let rows = doc["rows"].as_array().unwrap();
    let hops: Vec<(&str, &str)> = rows
        .iter()
        .map(|r| {
            (
                r["killed"].as_str().unwrap(),
                r["new_master"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(hops, [("p1", "p2"), ("p2", "p1")], "{doc:#}");
    for r in rows {
        // Within the bound: lockAcquireSleepInterval (1 s) + 5 s.
        assert!(r["elected_ms"].as_f64().unwrap() < 6000.0, "{r:#}");
        assert!(r["client_pause_ms"].as_f64().is_some(), "{r:#}");
        assert!(r["rejoined_ms"].as_f64().is_some(), "{r:#}");
    }
    assert_eq!(doc["bound_ms"], 6000.0);
    assert_eq!(json_check(&doc, "never two masters")["ok"], true);
    assert!(doc["pause_median_ms"].as_f64().is_some());
}
