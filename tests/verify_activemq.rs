//! verify against Debian's ActiveMQ 5.17 in shared-file master/slave (the
//! brokers of an inventory run as ActiveMQ by bench/activemq-group.sh, in
//! the layout deploy gives its services): election and failover pass with
//! the lock taking over; and when the "shared" directory is not shared
//! (the second broker's mount missing: it opens a private kahaDB), the node
//! meant to be slave accepts writes and verify election fails with it.

mod deploy_support;
mod verify_support;

use std::path::{Path, PathBuf};
use std::process::Command;

use amq_harness::activemq::{activemq_installed, stomp_connected};
use deploy_support::Run;
use verify_support::{checks, cluster, election, failover, json_check};

/// Runs bench/activemq-group.sh; on drop kills every broker by its pid file.
struct Group {
    inventory: PathBuf,
}

impl Group {
    fn script(&self, cmd: &str) -> Run {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("bench/activemq-group.sh");
        Run::of(
            Command::new(script)
                .arg(cmd)
                .arg(&self.inventory)
                .env("AMQCTL", env!("CARGO_BIN_EXE_amqctl"))
                .env("HEAP", "192m")
                .output()
                .expect("run activemq-group.sh"),
        )
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        let _ = self.script("stop");
    }
}

#[test]
fn verify_works_on_activemq_shared_file_and_catches_an_unshared_store() {
    assert!(
        activemq_installed(),
        "Debian's activemq is not installed (scripts/test.sh installs it)"
    );
    let (_tmp, d) = cluster("verify_shared.toml", "vamq");
    let g = Group {
        inventory: d.inventory.clone(),
    };
    g.script("install").ok();
    g.script("start").ok();

    let run = election(&d, &[]);
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    let c = checks(&run.stdout);
    assert!(
        c["exactly one master"].1.starts_with("p1 is master"),
        "{c:?}"
    );
    assert!(c["p2 (slave) refuses clients"].0, "{c:?}");

    // Two takeovers of the lock, each way once. ActiveMQ polls the lock
    // every second here but recovers its journal first: a generous bound.
    let (run, doc) = failover(&d, &["--kills", "2", "--settle", "4", "--bound", "30"], &[]);
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    assert_eq!(doc["lost"], 0, "{doc:#}");
    let rows = doc["rows"].as_array().unwrap();
    assert_eq!(rows[0]["killed"], "p1");
    assert_eq!(rows[0]["new_master"], "p2");
    assert_eq!(rows[1]["killed"], "p2");
    assert_eq!(rows[1]["new_master"], "p1");
    assert_eq!(json_check(&doc, "never two masters")["ok"], true);

    // The second broker's share is not mounted: it opens a private, empty
    // kahaDB, takes that lock and serves — a slave that accepts writes.
    g.script("stop").ok();
    let xml = d.base.join("p2/activemq.xml");
    let text = std::fs::read_to_string(&xml).unwrap();
    let shared = d.base.join("shared").display().to_string();
    let private = d.base.join("p2/not-mounted").display().to_string();
    assert!(text.contains(&shared), "{text}");
    std::fs::write(&xml, text.replace(&shared, &private)).unwrap();
    g.script("start").ok();
    // Wait for it to serve: until then it looks like a slave (running,
    // connectors closed), which is all verify can see of ActiveMQ.
    let (topo, _) = amqctl::Topology::load(&d.inventory).unwrap();
    let p2 = topo.brokers().find(|b| b.name == "p2").unwrap().stomp_port;
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], p2));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !stomp_connected(addr) && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let run = election(&d, &[]);
    assert_eq!(run.code, 1, "{}\n{}", run.stdout, run.stderr);
    let c = checks(&run.stdout);
    let (ok, evidence) = &c["exactly one master"];
    assert!(!ok, "{c:?}");
    assert!(evidence.contains("2 masters at once: p1, p2"), "{evidence}");
}
