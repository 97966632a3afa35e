//! What amqctl renders for `broker = "activemq"` runs in the real thing:
//! each test installs the rendered files at their destinations (as deploy
//! does) and starts Debian's ActiveMQ 5.17 with the rendered `run.sh` — a
//! standalone broker `a` networked (duplex, `masterslave:`) with a
//! shared-file pair `b`/`c`, all on free loopback ports. Checks: `a` and `b` answer STOMP CONNECTED, `c` waits on
//! the lock as slave with its connectors closed, the bridge a→b comes up,
//! and after `kill -9` of `b` the slave `c` takes the lock and serves while
//! the bridge follows it.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use std::process::Command;

use amq_harness::activemq::{activemq_installed, stomp_connected, ActiveMq};
use amq_harness::free_ports;
use amqctl::render::{render, Launch, RenderedPlan};
use amqctl::Topology;

mod plan_support;
use plan_support::install;

/// Starts a broker of the plan through its rendered run.sh, optionally
/// inside a network namespace.
fn start(plan: &RenderedPlan, name: &str, netns: Option<&str>) -> ActiveMq {
    let (_, svc) = plan.service(name).unwrap();
    let Launch::Process { script, .. } = &svc.launch else {
        panic!("{name} is not launched as a process")
    };
    let cmd = match netns {
        Some(ns) => {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", ns]).arg(script);
            c
        }
        None => Command::new(script),
    };
    ActiveMq::start(name, cmd, &svc.dir, &svc.dir.join("activemq.log")).expect("run.sh")
}

fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

#[test]
fn rendered_configs_run_in_activemq_5_17() {
    assert!(
        activemq_installed(),
        "Debian's activemq is not installed (scripts/test.sh installs it)"
    );
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path().join("base");
    let p = free_ports(9);
    // Same shape as inventories/combined.toml, with free loopback ports and
    // a base directory of its own.
    let inventory = format!(
        r#"
[cluster]
name = "it"
base_dir = "{base}"
broker = "activemq"

[[hosts]]
name = "local"
address = "127.0.0.1"

[[groups]]
name = "edge"
[[groups.brokers]]
name = "a"
host = "local"
stomp_port = {}
openwire_port = {}
status_port = {}

[[groups]]
name = "core"
store = "shared-file"
lock_acquire_sleep_interval = 300
lock_keep_alive_period = 2000
[[groups.brokers]]
name = "b"
host = "local"
stomp_port = {}
openwire_port = {}
status_port = {}
[[groups.brokers]]
name = "c"
host = "local"
stomp_port = {}
openwire_port = {}
status_port = {}

[[networks]]
from = "edge"
to = ["core"]
duplex = true
"#,
        p[0],
        p[1],
        p[2],
        p[3],
        p[4],
        p[5],
        p[6],
        p[7],
        p[8],
        base = base.display()
    );
    let (topo, warnings) = Topology::from_str(Path::new("it.toml"), &inventory, &|_| None)
        .unwrap_or_else(|d| panic!("{d}"));
    assert!(warnings.is_empty(), "{warnings:?}");
    let plan = render(&topo).unwrap();
    install(&plan);
    let (a_stomp, b_stomp, c_stomp) = (addr(p[0]), addr(p[3]), addr(p[6]));

    let mut a = start(&plan, "a", None);
    let mut b = start(&plan, "b", None);
    a.wait_stomp(a_stomp, Duration::from_secs(60)).unwrap();
    b.wait_stomp(b_stomp, Duration::from_secs(60)).unwrap();
    assert!(
        b.log().contains("/shared/core/kahadb"),
        "b opened the shared kahaDB directory:\n{}",
        b.log()
    );

    // c waits on the lock: running, connectors closed.
    let mut c = start(&plan, "c", None);
    assert!(
        c.wait_log("is locked by another server", Duration::from_secs(60)),
        "c never waited on the lock:\n{}",
        c.log()
    );
    assert!(c.is_running());
    assert!(!stomp_connected(c_stomp), "a slave must not accept clients");

    // The masterslave: bridge from a reaches the master b.
    assert!(
        a.wait_log("(b) has been established", Duration::from_secs(30)),
        "bridge a→core never came up:\n{}",
        a.log()
    );

    // Master dies: c takes the lock (polled every 300 ms) and serves; the
    // bridge follows the new master.
    b.kill();
    c.wait_stomp(c_stomp, Duration::from_secs(30)).unwrap();
    assert!(
        a.wait_log("(c) has been established", Duration::from_secs(30)),
        "bridge did not follow the new master:\n{}",
        a.log()
    );
    assert!(stomp_connected(a_stomp));
    // every process is killed by PID when the guards drop
}

/// Multicast discovery as rendered (`discoveryUri` on the OpenWire connector,
/// a `multicast://` network connector, `interface = "lo"`), run inside a
/// namespace of its own so no datagram leaves it: two brokers find each
/// other and bridge.
#[test]
fn rendered_multicast_discovery_runs_in_activemq_5_17() {
    use amq_harness::activemq::LoopbackNetns;
    assert!(activemq_installed(), "Debian's activemq is not installed");
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path().join("base");
    // Inside the namespace every port is free; the group keeps other
    // runs' datagrams apart anyway.
    let inventory = format!(
        r#"
[cluster]
name = "mc{pid}"
base_dir = "{base}"
broker = "activemq"

[[hosts]]
name = "local"
address = "127.0.0.1"

[[groups]]
name = "m1"
[[groups.brokers]]
name = "m1"
host = "local"

[[groups]]
name = "m2"
[[groups.brokers]]
name = "m2"
host = "local"
port_offset = 10

[[networks]]
name = "discovery"
kind = "multicast"
members = ["m1", "m2"]
interface = "lo"
"#,
        pid = std::process::id(),
        base = base.display()
    );
    let (topo, _) = Topology::from_str(Path::new("mc.toml"), &inventory, &|_| None)
        .unwrap_or_else(|d| panic!("{d}"));
    let plan = render(&topo).unwrap();
    install(&plan);

    let ns = LoopbackNetns::create(&format!("amqctl-plan-mc-{}", std::process::id())).unwrap();
    let m1 = start(&plan, "m1", Some(ns.name()));
    let m2 = start(&plan, "m2", Some(ns.name()));
    for (b, peer) in [(&m1, "m2"), (&m2, "m1")] {
        assert!(
            b.wait_log(
                &format!("({peer}) has been established"),
                Duration::from_secs(60)
            ),
            "no bridge to {peer} discovered:\n{}",
            b.log()
        );
    }
    for (b, port) in [(&m1, 61613), (&m2, 61623)] {
        assert!(
            ns.wait_stomp(port, Duration::from_secs(30)),
            "no STOMP CONNECTED on {port} in the namespace:\n{}",
            b.log()
        );
    }
    drop((m1, m2)); // kill the JVMs before the namespace goes
}
