//! The broker as a real process, driven by stomp.py (Debian's python3-stomp):
//! a client nobody here wrote. The scenarios live in `tests/py/`.

use amq_harness::broker::{BrokerOptions, BrokerProcess};
use std::path::{Path, PathBuf};
use std::process::Command;

/// A Python that can `import stomp` (Debian's python3 first: pyenv shims
/// may shadow it without the package).
fn python() -> PathBuf {
    for candidate in ["/usr/bin/python3", "python3"] {
        let ok = Command::new(candidate)
            .args(["-c", "import stomp"])
            .output()
            .is_ok_and(|o| o.status.success());
        if ok {
            return PathBuf::from(candidate);
        }
    }
    panic!("no python3 with stomp.py: install python3-stomp (scripts/test.sh does)");
}

fn broker() -> BrokerProcess {
    let mut opts = BrokerOptions::new("py").with_users(&[("app", "secret")]);
    opts.binary = Some(PathBuf::from(env!("CARGO_BIN_EXE_amq-broker")));
    opts.extra_xml.push_str(
        r#"<plugins><redeliveryPlugin><redeliveryPolicyMap><redeliveryPolicyMap>
             <defaultEntry><redeliveryPolicy maximumRedeliveries="1"/></defaultEntry>
           </redeliveryPolicyMap></redeliveryPolicyMap></redeliveryPlugin></plugins>"#,
    );
    BrokerProcess::start(opts).expect("broker starts")
}

fn run(b: &BrokerProcess, scenario: &str, user: &str, pass: &str) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/py/stomp_scenarios.py");
    let port = b.stomp_addr().port().to_string();
    let out = Command::new(python())
        .arg(script)
        .args(["127.0.0.1", &port, scenario, user, pass])
        .output()
        .expect("run python");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && text.contains(&format!("OK {scenario}")),
        "scenario {scenario} failed:\n{text}\nbroker log:\n{}",
        b.log()
    );
}

#[test]
fn stomp_py_scenarios_against_the_broker_process() {
    let b = broker();
    for scenario in [
        "every_frame",
        "ack_modes",
        "redelivery_on_disconnect",
        "dead_letter",
        "topics",
        "binary_body",
        "selectors",
        "request_reply",
    ] {
        run(&b, scenario, "app", "secret");
    }
    run(&b, "auth_refused", "app", "wrong");
    run(&b, "auth_refused", "nobody", "secret");
    // The broker kept serving through all of it.
    let status = b.status().unwrap();
    assert!(status.contains("\"brokerName\":\"py\""), "{status}");
}
