//! amqctl is also the bundled broker: deploy ships it to the hosts as
//! `amq-broker`, and under that name it runs the broker's own command line.

use std::fs;
use std::path::Path;
use std::process::{Command, Output};

fn config_check(bin: &Path, config: &Path) -> Output {
    Command::new(bin)
        .args(["--check", "--config"])
        .arg(config)
        .output()
        .unwrap()
}

#[test]
fn amqctl_installed_as_amq_broker_is_the_broker() {
    let dir = tempfile::tempdir().unwrap();
    let bin = dir.path().join("amq-broker");
    fs::copy(env!("CARGO_BIN_EXE_amqctl"), &bin).unwrap();

    let version = Command::new(&bin).arg("--version").output().unwrap();
    let out = String::from_utf8_lossy(&version.stdout);
    assert!(
        version.status.success() && out.starts_with("amq-broker "),
        "{out}"
    );

    let good = dir.path().join("activemq.xml");
    fs::write(
        &good,
        r#"<broker xmlns="http://activemq.apache.org/schema/core" brokerName="multi">
  <transportConnectors>
    <transportConnector name="stomp" uri="stomp://127.0.0.1:0"/>
  </transportConnectors>
</broker>
"#,
    )
    .unwrap();
    let check = config_check(&bin, &good);
    let out = String::from_utf8_lossy(&check.stdout);
    assert!(
        check.status.success(),
        "{out}{}",
        String::from_utf8_lossy(&check.stderr)
    );
    assert!(out.contains("broker multi OK"), "{out}");

    // The broker's own errors: file and line, non-zero exit.
    let bad = dir.path().join("bad.xml");
    fs::write(&bad, "<broker xmlns=\"http://activemq.apache.org/schema/core\">\n  <transportConnectors>\n</broker>\n").unwrap();
    let check = config_check(&bin, &bad);
    let err = String::from_utf8_lossy(&check.stderr);
    assert_eq!(check.status.code(), Some(2), "{err}");
    assert!(err.contains("bad.xml:"), "{err}");

    // Under its own name it is amqctl.
    let amqctl = Command::new(env!("CARGO_BIN_EXE_amqctl"))
        .arg("--version")
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&amqctl.stdout).starts_with("amqctl "));
}
