//! `amqctl plan` as a user runs it: exit codes, text and JSON output,
//! `--out` (files, modes, manifest), and secrets never printed.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use assert_cmd::Command;
use predicates::prelude::*;

const ZK: &str = "cli-zk-password-5e1f";
const TOKEN: &str = "cli-security-token-77ab";
const ADMIN: &str = "cli-admin-password-0c9d";

fn amqctl() -> Command {
    let mut cmd = Command::cargo_bin("amqctl").unwrap();
    cmd.env("AMQCTL_ZK_PASSWORD", ZK)
        .env("AMQCTL_SECURITY_TOKEN", TOKEN)
        .env("AMQCTL_ADMIN_PASSWORD", ADMIN)
        .env_remove("CLICOLOR_FORCE");
    cmd
}

fn no_secret(s: &str) {
    for secret in [ZK, TOKEN, ADMIN, "pseudo-cluster-token"] {
        assert!(!s.contains(secret), "secret {secret} printed:\n{s}");
    }
}

#[test]
fn plan_of_the_pseudo_cluster_succeeds() {
    let out = amqctl()
        .args(["plan", "inventories/pseudo-cluster.toml"])
        .assert()
        .success()
        .code(0)
        .get_output()
        .clone();
    let stdout = String::from_utf8(out.stdout).unwrap();
    for section in [
        "Plan for cluster pseudo",
        "Hosts",
        "Start order",
        "Failover URLs",
        "Failure modes (one node dies)",
        "local/amq1/activemq.xml  0600",
        "1.  zk1   zookeeper  on local",
        "6.  amq3  broker     on local",
        "failover:(stomp://127.0.0.1:61613,stomp://127.0.0.1:61623,stomp://127.0.0.1:61633)?",
        "ZooKeeper keeps quorum (2 of 3 up) but loses its fault tolerance",
        "securityToken *** (inline)",
    ] {
        assert!(
            stdout.contains(section),
            "missing {section:?} in:\n{stdout}"
        );
    }
    assert!(
        !stdout.contains('\x1b'),
        "no colours when stdout is not a terminal"
    );
    no_secret(&stdout);
}

#[test]
fn invalid_inventory_exits_1_with_positions() {
    let dir = tempfile::tempdir().unwrap();
    let inv = dir.path().join("bad.toml");
    std::fs::write(
        &inv,
        "[cluster]\nname = \"x\"\n\n[[hosts]]\nname = \"h\"\naddress = \"127.0.0.1\"\n\n[[groups]]\nname = \"g\"\n[[groups.brokers]]\nname = \"b\"\nhost = \"nope\"\nstomp_prot = 1\n",
    )
    .unwrap();
    let out = amqctl()
        .arg("plan")
        .arg(&inv)
        .assert()
        .code(1)
        .stdout("")
        .get_output()
        .clone();
    let stderr = String::from_utf8(out.stderr).unwrap();
    let file = inv.display();
    assert!(
        stderr.contains(&format!("error: unknown host `nope`\n  --> {file}:12:8\n")),
        "{stderr}"
    );
    assert!(
        stderr.contains("12 | host = \"nope\"\n   |        ^^^^^^\n"),
        "{stderr}"
    );
    assert!(stderr.contains(&format!(
        "error: unknown key `stomp_prot` in [groups.brokers]\n  --> {file}:13:1\n"
    )));
    assert!(stderr.contains("= help: did you mean `stomp_port`?"));
    assert!(stderr.ends_with("error: inventory is invalid: 2 errors, 0 warnings\n"));
}

#[test]
fn usage_errors_exit_2() {
    amqctl().assert().code(2);
    amqctl()
        .arg("plan")
        .assert()
        .code(2)
        .stderr(predicate::str::contains("INVENTORY"));
    amqctl()
        .args([
            "plan",
            "inventories/pseudo-cluster.toml",
            "--format",
            "yaml",
        ])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("text").and(predicate::str::contains("json")));
    amqctl().args(["no-such-command"]).assert().code(2);
    amqctl()
        .args(["plan", "inventories/pseudo-cluster.toml", "--bogus"])
        .assert()
        .code(2);
}

#[test]
fn missing_inventory_file_exits_1() {
    amqctl()
        .args(["plan", "inventories/does-not-exist.toml"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains(
            "error: cannot read inventory: No such file or directory",
        ));
}

#[test]
fn unset_secret_variable_is_an_error_naming_it() {
    amqctl()
        .env_remove("AMQCTL_ZK_PASSWORD")
        .args(["plan", "inventories/real-cluster.toml"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains(
            "environment variable AMQCTL_ZK_PASSWORD (the ZooKeeper password) is not set",
        ))
        .stderr(predicate::str::contains(
            "inventories/real-cluster.toml:40:12",
        ));
}

#[test]
fn warnings_do_not_fail_the_plan() {
    let dir = tempfile::tempdir().unwrap();
    let inv = dir.path().join("warn.toml");
    let text = std::fs::read_to_string("inventories/pseudo-cluster.toml")
        .unwrap()
        .replace(
            "[[groups.brokers]]\nname = \"amq3\"\nhost = \"local\"\nport_offset = 20\n",
            "",
        );
    std::fs::write(&inv, text).unwrap();
    amqctl()
        .arg("plan")
        .arg(&inv)
        .assert()
        .code(0)
        .stderr(predicate::str::contains(
            "warning: replicated group `ha` has 2 broker(s): no failover tolerated",
        ))
        .stdout(predicate::str::contains(
            "group ha unavailable: quorum lost (1 of 2 up, needs 2)",
        ));
}

#[test]
fn json_output_is_the_same_plan_without_secrets() {
    let out = amqctl()
        .args(["plan", "inventories/real-cluster.toml", "--format", "json"])
        .assert()
        .code(0)
        .get_output()
        .clone();
    let stdout = String::from_utf8(out.stdout.clone()).unwrap();
    no_secret(&stdout);
    no_secret(&String::from_utf8(out.stderr).unwrap());
    let doc: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(doc["valid"], true);
    assert_eq!(doc["cluster"], "prod");
    assert_eq!(doc["hosts"].as_array().unwrap().len(), 3);
    let broker1 = &doc["hosts"][0]["services"][1];
    assert_eq!(broker1["name"], "broker1");
    assert_eq!(broker1["ports"]["stomp"], 61613);
    assert_eq!(broker1["launch"]["kind"], "systemd");
    let xml = &broker1["files"][0];
    assert_eq!(xml["path"], "amq1/broker1/activemq.xml");
    assert_eq!(xml["mode"], "0600");
    assert_eq!(xml["secret"], true);
    assert_eq!(xml["sha256"], "***");
    let unit = &broker1["files"][1];
    assert_eq!(unit["secret"], false);
    assert_eq!(unit["sha256"].as_str().unwrap().len(), 64);
    assert_eq!(doc["zookeeper"]["password"], "***");
    assert_eq!(doc["groups"][0]["store"]["security_token"], "***");
    assert_eq!(doc["users"][0]["password"], "***");
    let order: Vec<&str> = doc["start_order"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["service"].as_str().unwrap())
        .collect();
    assert_eq!(
        order,
        ["zk1", "zk2", "zk3", "broker1", "broker2", "broker3"]
    );
    assert!(doc["failover_urls"][0]["openwire"]
        .as_str()
        .unwrap()
        .starts_with("failover:(tcp://amq1:61616,tcp://amq2:61616,tcp://amq3:61616)?"));
    let modes = doc["failure_modes"].as_array().unwrap();
    assert_eq!(modes.len(), 9, "6 services + 3 hosts");
    assert_eq!(modes[6]["node"], "host amq1");
    assert_eq!(modes[6]["dies"], serde_json::json!(["zk1", "broker1"]));
}

#[test]
fn json_output_of_an_invalid_inventory() {
    let out = amqctl()
        .env_remove("AMQCTL_ADMIN_PASSWORD")
        .args(["plan", "inventories/real-cluster.toml", "--format", "json"])
        .assert()
        .code(1)
        .get_output()
        .clone();
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["valid"], false);
    let errors = doc["errors"].as_array().unwrap();
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0]["severity"], "error");
    assert_eq!(errors[0]["location"]["line"], 82);
    assert_eq!(errors[0]["location"]["column"], 12);
    assert!(errors[0]["message"]
        .as_str()
        .unwrap()
        .contains("AMQCTL_ADMIN_PASSWORD"));
}

/// Every file under `dir` with its mode and contents.
fn tree(dir: &Path) -> BTreeMap<String, (u32, Vec<u8>)> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o7777;
                let rel = p.strip_prefix(dir).unwrap().display().to_string();
                out.insert(rel, (mode, std::fs::read(&p).unwrap()));
            }
        }
    }
    out
}

#[test]
fn out_writes_every_file_with_its_mode_and_a_manifest() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("plan");
    amqctl()
        .args(["plan", "inventories/real-cluster.toml", "--out"])
        .arg(&out)
        .assert()
        .code(0)
        .stdout(predicate::str::contains("Wrote 19 files to"));
    let files = tree(&out);
    assert_eq!(files.len(), 20, "19 files + manifest: {:?}", files.keys());
    let (mode, xml) = &files["amq2/broker2/activemq.xml"];
    assert_eq!(*mode, 0o600);
    let xml = String::from_utf8(xml.clone()).unwrap();
    assert!(xml.contains(&format!("zkPassword=\"{ZK}\"")));
    assert!(xml.contains(&format!("securityToken=\"{TOKEN}\"")));
    assert!(xml.contains(&format!("password=\"{ADMIN}\"")));
    assert_eq!(files["amq2/zk2/zoo.cfg"].0, 0o644);
    assert_eq!(files["amq2/zk2/myid"].1, b"2\n");
    assert_eq!(files["amq2/hosts.block"].0, 0o644);
    assert_eq!(files["clients/failover-urls.toml"].0, 0o644);
    // The manifest verifies with the standard tool.
    let check = std::process::Command::new("sha256sum")
        .args(["--check", "--strict", amqctl::plan::MANIFEST])
        .current_dir(&out)
        .output()
        .unwrap();
    assert!(check.status.success(), "{check:?}");
    assert_eq!(String::from_utf8_lossy(&check.stdout).lines().count(), 19);
}

#[test]
fn out_is_byte_identical_across_runs_and_run_scripts_are_executable() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    for d in [&a, &b] {
        amqctl()
            .args(["plan", "inventories/pseudo-cluster.toml", "--out"])
            .arg(d)
            .assert()
            .code(0);
    }
    let (ta, tb) = (tree(&a), tree(&b));
    assert_eq!(ta, tb);
    assert_eq!(ta["local/amq1/run.sh"].0, 0o755);
    assert_eq!(
        ta["local/amq1/activemq.xml"].0, 0o600,
        "holds the inline token"
    );
    assert_eq!(ta["local/zk1/run.sh"].0, 0o755);
}

#[test]
fn out_removes_files_the_inventory_no_longer_renders() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("plan");
    amqctl()
        .args(["plan", "inventories/combined.toml", "--out"])
        .arg(&out)
        .assert()
        .code(0);
    assert!(out.join("local/c/activemq.xml").exists());
    // Operator-owned files next to the plan are left alone.
    std::fs::write(out.join("NOTES"), "mine").unwrap();
    let inv = dir.path().join("smaller.toml");
    let text = std::fs::read_to_string("inventories/combined.toml")
        .unwrap()
        .replace(
            "[[groups.brokers]]\nname = \"c\"\nhost = \"local\"\nport_offset = 20\n",
            "",
        );
    std::fs::write(&inv, text).unwrap();
    amqctl()
        .arg("plan")
        .arg(&inv)
        .arg("--out")
        .arg(&out)
        .assert()
        .code(0);
    assert!(!out.join("local/c/activemq.xml").exists());
    assert!(!out.join("local/c/run.sh").exists());
    assert!(out.join("local/b/activemq.xml").exists());
    assert!(out.join("NOTES").exists());
}

#[test]
fn out_leaves_unchanged_files_alone() {
    use std::os::unix::fs::MetadataExt;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("plan");
    let run = || {
        amqctl()
            .args(["plan", "inventories/combined.toml", "--out"])
            .arg(&out)
            .assert()
            .code(0);
    };
    run();
    let ino = |p: &str| std::fs::metadata(out.join(p)).unwrap().ino();
    let before = (ino("local/a/activemq.xml"), ino("local/b/run.sh"));
    // A file someone changed by hand is put back; the others stay untouched.
    std::fs::write(out.join("local/b/run.sh"), "edited").unwrap();
    run();
    assert_eq!(
        ino("local/a/activemq.xml"),
        before.0,
        "unchanged file rewritten"
    );
    let run_sh = std::fs::read_to_string(out.join("local/b/run.sh")).unwrap();
    assert!(run_sh.starts_with("#!/bin/sh\n"), "edited file restored");
    let mode = std::fs::metadata(out.join("local/b/run.sh"))
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o755);
}
