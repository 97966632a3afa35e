//! Shared by the verify tests: run `amqctl verify ...` against a deployed
//! cluster and read its JSON or check list.
#![allow(dead_code)]

use std::collections::BTreeMap;

use crate::deploy_support::{Deployed, Run};

/// `amqctl verify election INVENTORY [ARGS]`.
pub fn election(d: &Deployed, args: &[&str]) -> Run {
    let mut a = vec!["verify", "election"];
    a.extend_from_slice(args);
    verify(d, &a, &[])
}

/// `amqctl verify failover INVENTORY --format json [ARGS]` with extra
/// environment (e.g. the unsafe journal mode for restarted brokers).
pub fn failover(d: &Deployed, args: &[&str], env: &[(&str, &str)]) -> (Run, serde_json::Value) {
    let mut a = vec!["verify", "failover", "--format", "json"];
    a.extend_from_slice(args);
    let run = verify(d, &a, env);
    let doc = serde_json::from_str(&run.stdout).unwrap_or_else(|e| {
        panic!(
            "verify failover JSON: {e}\nstdout:\n{}\nstderr:\n{}",
            run.stdout, run.stderr
        )
    });
    (run, doc)
}

/// `amqctl <a0> <a1> INVENTORY <rest> --plain --log-dir LOGS`.
fn verify(d: &Deployed, a: &[&str], env: &[(&str, &str)]) -> Run {
    let mut cmd = (d.runner)();
    cmd.arg(a[0])
        .arg(a[1])
        .arg(&d.inventory)
        .args(&a[2..])
        .arg("--plain")
        .arg("--log-dir")
        .arg(&d.logs);
    for (k, v) in env {
        cmd.env(k, v);
    }
    Run::of(cmd.output().expect("run amqctl verify"))
}

/// The check lines of a text report: name → (passed, evidence).
pub type Checks = BTreeMap<String, (bool, String)>;

/// The check lines of a text report (see [`Checks`]).
pub fn checks(stdout: &str) -> Checks {
    stdout
        .lines()
        .filter_map(|l| {
            let l = l.trim_start();
            let (ok, rest) = if let Some(r) = l.strip_prefix("✓ ") {
                (true, r)
            } else {
                (false, l.strip_prefix("✗ ")?)
            };
            let (name, evidence) = rest.split_once(": ")?;
            Some((name.to_string(), (ok, evidence.to_string())))
        })
        .collect()
}

/// The JSON check named `name` of a failover report.
pub fn json_check<'a>(doc: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    doc["checks"]["sections"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|s| s["checks"].as_array().unwrap())
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no check {name:?} in {doc:#}"))
}

/// A fixture with free ports under a temp dir, not yet deployed.
pub fn cluster(fixture: &str, name: &str) -> (tempfile::TempDir, Deployed) {
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path().join("base");
    let vars = BTreeMap::from([
        ("name", name.to_string()),
        ("base", base.display().to_string()),
    ]);
    let text = crate::deploy_support::inventory(fixture, &vars);
    let inv = tmp.path().join("inventory.toml");
    std::fs::write(&inv, text).unwrap();
    let d = Deployed {
        inventory: inv,
        base,
        logs: tmp.path().join("logs"),
        runner: Box::new(crate::deploy_support::amqctl),
    };
    (tmp, d)
}

/// The start of every scenario on a healthy cluster: `fixture` deployed
/// under free ports (see [`cluster`]) and a `verify election` that passes;
/// returns its checks.
pub fn deployed_and_elected(fixture: &str, name: &str) -> (tempfile::TempDir, Deployed, Checks) {
    let (tmp, d) = cluster(fixture, name);
    d.deploy(&[]).ok();
    let run = election(&d, &[]);
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    let c = checks(&run.stdout);
    (tmp, d, c)
}

/// Stops two of the three ZooKeeper nodes (`zk2`, `zk3`) and runs a
/// `verify election` that must fail on the lost quorum.
pub fn election_without_quorum(d: &Deployed) -> (Run, Checks) {
    d.amqctl(&["stop", "--node", "zk2"]).ok();
    d.amqctl(&["stop", "--node", "zk3"]).ok();
    let run = election(d, &[]);
    assert_eq!(run.code, 1, "{}\n{}", run.stdout, run.stderr);
    let c = checks(&run.stdout);
    assert!(!c["quorum"].0, "{c:?}");
    (run, c)
}
