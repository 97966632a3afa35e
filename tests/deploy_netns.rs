//! `amqctl deploy` over SSH to a real-cluster-shaped set of hosts: three
//! network namespaces the test creates (own address, own sshd, own
//! /etc/hosts), with amqctl itself run inside a controller namespace whose
//! only routes lead to them. One ZooKeeper node per host and a replicated
//! master/slave group with one broker on each host.

mod deploy_support;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use amq_harness::netns::{HostSpec, TestNet};
use deploy_support::{assert_has, inventory, is_alive, Deployed};

const HOSTNAMES: [&str; 3] = ["amq-h1", "amq-h2", "amq-h3"];

struct Setup {
    tmp: tempfile::TempDir,
    known_hosts: std::path::PathBuf,
}

/// Writes the inventory for `net` with `vars` overriding the defaults.
fn cluster(net: &TestNet, name: &str, overrides: &[(&str, &str)]) -> (Setup, Deployed) {
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path().join("base");
    let known_hosts = tmp.path().join("known_hosts");
    std::fs::write(&known_hosts, net.known_hosts()).unwrap();
    let mut vars: BTreeMap<&str, String> = BTreeMap::from([
        ("name", name.to_string()),
        ("base", base.display().to_string()),
        ("manage_hosts", "true".to_string()),
        ("key", net.user_key().display().to_string()),
        ("known_hosts_policy", "strict".to_string()),
        ("known_hosts", known_hosts.display().to_string()),
        ("zk_install", "apt".to_string()),
    ]);
    for (k, v) in overrides {
        vars.insert(k, v.to_string());
    }
    let inv = tmp.path().join("inventory.toml");
    std::fs::write(&inv, inventory("deploy_netns.toml", &vars)).unwrap();
    let ctl = net.ctl().to_string();
    let d = Deployed {
        inventory: inv,
        base,
        logs: tmp.path().join("logs"),
        runner: Box::new(move || {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", &ctl, env!("CARGO_BIN_EXE_amqctl")]);
            c
        }),
    };
    (Setup { tmp, known_hosts }, d)
}

/// Hosts files that know none of the cluster's names, plus a line of the
/// operator's that must survive the hosts block.
fn bare_hosts_files(net: &TestNet) {
    for h in net.hosts() {
        std::fs::write(
            h.hosts_file(),
            "127.0.0.1 localhost\n10.1.2.3 operators-own-entry\n",
        )
        .unwrap();
    }
}

/// One message through a broker, sent and received from the controller namespace.
fn stomp_from_ctl(net: &TestNet, addr: &str, body: &str) -> String {
    let script = format!(
        r#"
import socket
s = socket.create_connection(("{host}", {port}), timeout=10)
s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
buf = b""
def frame():
    global buf
    while b"\0" not in buf:
        chunk = s.recv(65536)
        if not chunk: raise SystemExit("closed")
        buf += chunk
    f, buf = buf.split(b"\0", 1)
    return f.lstrip(b"\r\n").decode()
s.sendall(b"CONNECT\naccept-version:1.2\nhost:x\n\n\0"); assert frame().startswith("CONNECTED")
s.sendall(b"SEND\ndestination:/queue/netns\nreceipt:1\n\n{body}\0"); assert frame().startswith("RECEIPT")
s.sendall(b"SUBSCRIBE\ndestination:/queue/netns\nid:1\nack:auto\n\n\0")
m = frame(); assert m.startswith("MESSAGE"), m
print(m.split("\n\n", 1)[1])
"#,
        host = addr.split(':').next().unwrap(),
        port = addr.split(':').nth(1).unwrap(),
    );
    let out = net
        .ctl_command("python3")
        .arg("-c")
        .arg(script)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn deploys_a_three_host_cluster_over_ssh_with_hosts_blocks() {
    let net = TestNet::create(&HOSTNAMES).unwrap();
    bare_hosts_files(&net);

    // Without the hosts block the names do not resolve anywhere: preflight
    // says so for every host at once, and nothing is changed.
    let (_s0, d0) = cluster(&net, "nsfail", &[("manage_hosts", "false")]);
    let run = d0.deploy(&[]);
    assert_eq!(run.code, 1, "{}{}", run.stdout, run.stderr);
    for h in ["h1", "h2", "h3"] {
        assert!(
            run.stderr.contains(&format!(
                "{h}: `amq-h1` does not resolve (expected 10.98.0.11)"
            )),
            "{}",
            run.stderr
        );
    }
    assert_has(&run.stderr, "manage_hosts = true");
    assert!(!d0.base.exists(), "preflight failure must change nothing");
    drop(d0);

    let (_s, d) = cluster(&net, "nsok", &[]);
    let first = d.deploy(&[]).ok();
    assert_has(&first.stdout, "started: ");
    for h in net.hosts() {
        let hosts = std::fs::read_to_string(h.hosts_file()).unwrap();
        assert!(hosts.contains("10.1.2.3 operators-own-entry"), "{hosts}");
        assert!(hosts.contains("10.98.0.12 amq-h2"), "{hosts}");
        assert!(hosts.contains("# BEGIN amqctl nsok"), "{hosts}");
    }
    // Each host got its own files under its own base directory.
    assert!(d.base.join("h1/zk1/zoo.cfg").exists());
    assert!(d.base.join("h2/broker-b/activemq.xml").exists());
    assert!(!d.base.join("h1/broker-b").exists());

    let (code, st) = d.status();
    assert_eq!(code, 0, "{st:?}");
    assert_eq!(
        st.values().filter(|(_, r)| r == "leader").count(),
        1,
        "{st:?}"
    );
    assert_eq!(
        st.values().filter(|(_, r)| r == "follower").count(),
        2,
        "{st:?}"
    );
    let brokers = ["broker-a", "broker-b", "broker-c"];
    let masters: Vec<&str> = brokers
        .iter()
        .copied()
        .filter(|b| st[*b].1 == "master")
        .collect();
    let slaves = brokers.iter().filter(|b| st[**b].1 == "slave").count();
    assert_eq!(
        (masters.len(), slaves),
        (1, 2),
        "one master, two slaves: {st:?}"
    );
    let master_addr = match masters[0] {
        "broker-a" => "10.98.0.11:61613",
        "broker-b" => "10.98.0.12:61613",
        _ => "10.98.0.13:61613",
    };
    // ZooKeeper really formed across the hosts (server lines use the hostnames).
    let zoo = std::fs::read_to_string(d.base.join("h1/zk1/zoo.cfg")).unwrap();
    assert!(zoo.contains("amq-h2:2888:3888"), "{zoo}");
    assert_eq!(stomp_from_ctl(&net, master_addr, "over-ssh"), "over-ssh");
    // The replicated store advertises the host's name, resolved through the block.
    let xml = std::fs::read_to_string(d.base.join("h3/broker-c/activemq.xml")).unwrap();
    assert!(xml.contains("hostname=\"amq-h3\""), "{xml}");

    // The per-host log has every remote command.
    let log = deploy_support::read(&d.logs.join("h2.log"));
    assert!(log.contains("setsid"), "{log}");
    assert!(log.contains("put "), "{log}");

    // Again: nothing to do.
    let again = d.deploy(&[]).ok();
    assert_has(&again.stdout, "no changes");

    let pids = d.recorded_pids();
    assert_eq!(pids.len(), 6);
    d.amqctl(&["destroy", "--purge-data"]).ok();
    for pid in pids {
        assert!(!is_alive(pid), "{pid} survived destroy");
    }
    for h in net.hosts() {
        let hosts = std::fs::read_to_string(h.hosts_file()).unwrap();
        assert_eq!(hosts, "127.0.0.1 localhost\n10.1.2.3 operators-own-entry\n");
    }
}

#[test]
fn host_keys_are_checked_and_every_preflight_problem_is_reported() {
    let java = which_java();
    let specs = [
        HostSpec::new(HOSTNAMES[0]),
        HostSpec {
            hostname: HOSTNAMES[1].to_string(),
            hide: vec![java],
        },
        HostSpec::new(HOSTNAMES[2]),
    ];
    let net = TestNet::create_with(&specs).unwrap();
    let (s, d) = cluster(
        &net,
        "nskeys",
        &[("zk_install", "/opt/amqctl-test-no-zookeeper")],
    );

    // Unknown host keys: refused for every host, with the way out named.
    std::fs::write(&s.known_hosts, "").unwrap();
    let run = d.deploy(&[]);
    assert_eq!(run.code, 1, "{}{}", run.stdout, run.stderr);
    assert_has(&run.stderr, "cannot reach 3 host(s)");
    assert_has(&run.stderr, "h2: the host key of 10.98.0.12");
    assert_has(&run.stderr, "--accept-new-host-keys");
    assert_eq!(std::fs::read_to_string(&s.known_hosts).unwrap(), "");

    // Accepted (and recorded); now preflight reports all problems together:
    // no Java where ZooKeeper runs on h2, no ZooKeeper at the given path anywhere.
    let run = d.deploy(&["--accept-new-host-keys"]);
    assert_eq!(run.code, 1, "{}{}", run.stdout, run.stderr);
    assert!(
        run.stderr
            .contains("h2: `java` not found, but ZooKeeper zk2 runs here"),
        "{}",
        run.stderr
    );
    assert!(
        !run.stderr.contains("h1: `java` not found"),
        "{}",
        run.stderr
    );
    for h in ["h1", "h2", "h3"] {
        assert_has(
            &run.stderr,
            &format!("{h}: no ZooKeeper at /opt/amqctl-test-no-zookeeper"),
        );
    }
    let recorded = std::fs::read_to_string(&s.known_hosts).unwrap();
    assert_eq!(recorded.lines().count(), 3, "{recorded}");

    // A changed key is refused even when new keys may be accepted.
    let impostor =
        amq_harness::sshd::KeyPair::generate(&s.tmp.path().join("impostor"), "x").unwrap();
    let forged: String = recorded
        .lines()
        .map(|l| {
            if l.starts_with("10.98.0.11 ") {
                format!("10.98.0.11 {}\n", impostor.key_field())
            } else {
                format!("{l}\n")
            }
        })
        .collect();
    std::fs::write(&s.known_hosts, forged).unwrap();
    let run = d.deploy(&["--accept-new-host-keys"]);
    assert_eq!(run.code, 1);
    assert_has(&run.stderr, "h1: the host key of 10.98.0.11");
    assert_has(&run.stderr, "does not match");
    assert!(!d.base.exists(), "nothing deployed");

    // An address nobody answers on: a connect error naming the host.
    let text = std::fs::read_to_string(&d.inventory)
        .unwrap()
        .replace("10.98.0.13", "10.98.0.99");
    std::fs::write(&d.inventory, text).unwrap();
    let run = d.deploy(&["--accept-new-host-keys"]);
    assert_eq!(run.code, 1);
    assert_has(&run.stderr, "h3: cannot connect to 10.98.0.99");
}

fn which_java() -> std::path::PathBuf {
    let out = Command::new("sh")
        .args(["-c", "command -v java"])
        .output()
        .unwrap();
    let path = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(!path.is_empty(), "java must be installed for this test");
    Path::new(&path).to_path_buf()
}
