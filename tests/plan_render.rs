//! Rendering of the shipped inventories: a snapshot of every file and of the
//! printed plan, determinism, and every activemq.xml parsed back with
//! quick-xml and checked against the topology it came from.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use amqctl::render::{render, FileKind, Launch, RenderedPlan};
use amqctl::topology::{NetworkKind, Store, Topology};
use quick_xml::events::Event;
use quick_xml::Reader;

/// The secrets the shipped inventories reference (test values, never real).
fn env(name: &str) -> Option<String> {
    match name {
        "AMQCTL_ZK_PASSWORD" => Some("test-zk-password".into()),
        "AMQCTL_SECURITY_TOKEN" => Some("test-security-token".into()),
        "AMQCTL_ADMIN_PASSWORD" => Some("test-admin-password".into()),
        "HOME" => Some("/home/operator".into()),
        _ => None,
    }
}

fn shipped() -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir("inventories")
        .expect("inventories/")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .map(|p| Path::new("inventories").join(p.file_name().unwrap()))
        .collect();
    v.sort();
    v
}

fn load(path: &Path) -> (Topology, RenderedPlan) {
    let text = std::fs::read_to_string(path).unwrap();
    let (topo, warnings) = Topology::from_str(path, &text, &env)
        .unwrap_or_else(|d| panic!("{} is invalid:\n{d}", path.display()));
    assert!(
        warnings.is_empty(),
        "{} has warnings: {warnings:?}",
        path.display()
    );
    let plan = render(&topo).expect("render");
    (topo, plan)
}

#[test]
fn all_five_example_inventories_are_shipped() {
    let names: Vec<String> = shipped()
        .iter()
        .map(|p| p.file_stem().unwrap().to_string_lossy().into_owned())
        .collect();
    for want in [
        "broker-cluster",
        "combined",
        "multicast",
        "pseudo-cluster",
        "real-cluster",
    ] {
        assert!(names.iter().any(|n| n == want), "missing {want}.toml");
    }
}

#[test]
fn snapshot_of_every_rendered_file_and_the_plan() {
    console::set_colors_enabled(false);
    for inv in shipped() {
        let (topo, plan) = load(&inv);
        let stem = inv.file_stem().unwrap().to_string_lossy().into_owned();
        for f in plan.files() {
            let name = format!("{stem}__{}", f.path.replace('/', "__"));
            insta::assert_snapshot!(name, &f.contents);
        }
        insta::assert_snapshot!(
            format!("{stem}__plan.txt"),
            amqctl::plan::render_text(&topo, &plan, None)
        );
        // The JSON document is an interface for scripts: changes show here.
        let json = amqctl::plan::render_json(&topo, &plan, &[], None);
        insta::assert_snapshot!(
            format!("{stem}__plan.json"),
            serde_json::to_string_pretty(&json).unwrap()
        );
    }
}

#[test]
fn rendering_is_deterministic() {
    for inv in shipped() {
        let (topo, a) = load(&inv);
        let (_, b) = load(&inv);
        let files = |p: &RenderedPlan| -> Vec<(String, String, String)> {
            p.files()
                .map(|f| (f.path.clone(), f.contents.clone(), f.sha256.clone()))
                .collect()
        };
        assert_eq!(files(&a), files(&b), "{}", inv.display());
        let ja = amqctl::plan::render_json(&topo, &a, &[], None).to_string();
        let jb = amqctl::plan::render_json(&topo, &b, &[], None).to_string();
        assert_eq!(ja, jb);
    }
}

#[test]
fn files_holding_secrets_are_marked_and_0600() {
    let (_, plan) = load(Path::new("inventories/real-cluster.toml"));
    for f in plan.files() {
        let has_secret = [
            "test-zk-password",
            "test-security-token",
            "test-admin-password",
        ]
        .iter()
        .any(|s| f.contents.contains(s));
        assert_eq!(f.secret, has_secret, "{}", f.path);
        assert_eq!(f.mode == 0o600, has_secret, "{} mode {:o}", f.path, f.mode);
    }
    // and the broker configs do hold them
    assert!(plan.files().filter(|f| f.secret).count() == 3);
}

#[test]
fn start_order_is_zookeeper_then_brokers_in_inventory_order() {
    let (_, plan) = load(Path::new("inventories/combined.toml"));
    let order: Vec<&str> = plan
        .start_order
        .iter()
        .map(|s| s.service.as_str())
        .collect();
    assert_eq!(order, ["a", "b", "c"]);
    let (_, plan) = load(Path::new("inventories/pseudo-cluster.toml"));
    let order: Vec<&str> = plan
        .start_order
        .iter()
        .map(|s| s.service.as_str())
        .collect();
    assert_eq!(order, ["zk1", "zk2", "zk3", "amq1", "amq2", "amq3"]);
}

#[test]
fn launch_units_follow_the_service_manager() {
    let (_, plan) = load(Path::new("inventories/pseudo-cluster.toml"));
    for h in &plan.hosts {
        for s in &h.services {
            let Launch::Process { script, .. } = &s.launch else {
                panic!("{} should be a process", s.name)
            };
            let f = s.files.iter().find(|f| f.kind == FileKind::Launch).unwrap();
            assert_eq!(&f.dest, script);
            assert_eq!(f.mode, 0o755);
            assert!(f.contents.starts_with("#!/bin/sh\n"));
            assert!(
                f.contents.contains("\nexec "),
                "run.sh must exec the service"
            );
        }
    }
    let (_, plan) = load(Path::new("inventories/real-cluster.toml"));
    let (_, s) = plan.service("broker1").unwrap();
    let Launch::Systemd { unit } = &s.launch else {
        panic!("real hosts use systemd")
    };
    assert_eq!(unit, "amqctl-prod-broker1.service");
    let f = s.files.iter().find(|f| f.kind == FileKind::Launch).unwrap();
    assert_eq!(
        f.dest,
        Path::new("/etc/systemd/system/amqctl-prod-broker1.service")
    );
    assert!(f.contents.contains(
        "ExecStart=/var/lib/amqctl/bin/amq-broker --config /var/lib/amqctl/broker1/activemq.xml --status 10.10.2.20:8161"
    ));
}

#[test]
fn zookeeper_files() {
    let (topo, plan) = load(Path::new("inventories/real-cluster.toml"));
    let zk = topo.zookeeper.as_ref().unwrap();
    for node in &zk.nodes {
        let (_, s) = plan.service(&node.service).unwrap();
        let myid = s.files.iter().find(|f| f.path.ends_with("/myid")).unwrap();
        assert_eq!(myid.contents, format!("{}\n", node.id));
        assert_eq!(myid.dest, node.data_dir.join("myid"));
        let cfg = s
            .files
            .iter()
            .find(|f| f.path.ends_with("/zoo.cfg"))
            .unwrap();
        let lines: Vec<&str> = cfg.contents.lines().collect();
        for want in [
            "4lw.commands.whitelist=srvr,stat,ruok,mntr,conf",
            "server.1=amq1:2888:3888",
            "server.2=amq2:2888:3888",
            "server.3=amq3:2888:3888",
        ] {
            assert!(lines.contains(&want), "{want} missing in {}", cfg.path);
        }
        assert!(lines.contains(&format!("dataDir={}", node.data_dir.display()).as_str()));
    }
    // the hosts block names every host, on every host
    let blocks: Vec<_> = plan
        .files()
        .filter(|f| f.kind == FileKind::HostsBlock)
        .collect();
    assert_eq!(blocks.len(), 3);
    assert!(blocks[0].contents.contains("\n10.10.2.21 amq2\n"));
    assert!(blocks.iter().all(|b| b.contents == blocks[0].contents));
}

// ---- activemq.xml parsed back ---------------------------------------------

/// An element: name, attributes (unescaped), children.
#[derive(Debug, Default)]
struct El {
    name: String,
    attrs: BTreeMap<String, String>,
    children: Vec<El>,
}

impl El {
    fn child(&self, name: &str) -> Option<&El> {
        self.children.iter().find(|c| c.name == name)
    }
    fn all(&self, name: &str) -> Vec<&El> {
        self.children.iter().filter(|c| c.name == name).collect()
    }
    fn attr(&self, name: &str) -> &str {
        self.attrs
            .get(name)
            .unwrap_or_else(|| panic!("<{}> has no {name}", self.name))
    }
}

/// Parses a whole document strictly (end names checked); panics if it is not
/// well-formed.
fn parse(xml: &str) -> El {
    let mut reader = Reader::from_str(xml);
    reader.config_mut().check_end_names = true;
    let mut stack = vec![El::default()];
    let element = |e: &quick_xml::events::BytesStart| El {
        name: e.name().as_ref().to_string(),
        attrs: e
            .attributes()
            .map(|a| {
                let a = a.expect("well-formed attribute");
                (
                    a.key.as_ref().to_string(),
                    a.normalized_value(quick_xml::XmlVersion::Implicit1_0)
                        .expect("valid escapes")
                        .into_owned(),
                )
            })
            .collect(),
        children: Vec::new(),
    };
    loop {
        match reader.read_event().expect("well-formed XML") {
            Event::Start(e) => stack.push(element(&e)),
            Event::Empty(e) => {
                let el = element(&e);
                stack.last_mut().unwrap().children.push(el);
            }
            Event::End(_) => {
                let el = stack.pop().unwrap();
                stack.last_mut().unwrap().children.push(el);
            }
            Event::Eof => break,
            _ => {}
        }
    }
    assert_eq!(stack.len(), 1, "unclosed elements");
    let mut root = stack.pop().unwrap();
    assert_eq!(root.children.len(), 1, "one root element");
    root.children.pop().unwrap()
}

#[test]
fn every_activemq_xml_parses_back_to_its_topology() {
    let mut checked = 0;
    for inv in shipped() {
        let (topo, plan) = load(&inv);
        for group in &topo.groups {
            for b in &group.brokers {
                let (host, svc) = plan.service(&b.name).unwrap();
                let f = svc
                    .files
                    .iter()
                    .find(|f| f.path.ends_with("/activemq.xml"))
                    .unwrap();
                let beans = parse(&f.contents);
                assert_eq!(beans.name, "beans");
                let broker = beans.child("broker").expect("<broker>");
                assert_eq!(
                    broker.attr("xmlns"),
                    "http://activemq.apache.org/schema/core"
                );
                let want_name = match group.store {
                    Store::Replicated(_) => group.name.as_str(),
                    _ => b.name.as_str(),
                };
                assert_eq!(broker.attr("brokerName"), want_name);
                assert_eq!(broker.attr("dataDirectory"), b.data_dir.to_str().unwrap());

                let tcs = broker.child("transportConnectors").unwrap();
                let uris: BTreeMap<&str, &str> = tcs
                    .all("transportConnector")
                    .iter()
                    .map(|t| (t.attr("name"), t.attr("uri")))
                    .collect();
                assert_eq!(
                    uris["openwire"],
                    format!("tcp://{}:{}", host.address, b.openwire_port)
                );
                assert_eq!(
                    uris["stomp"],
                    format!("stomp://{}:{}", host.address, b.stomp_port)
                );

                let pa = broker.child("persistenceAdapter").unwrap();
                assert_eq!(pa.children.len(), 1);
                let store = &pa.children[0];
                match &group.store {
                    Store::Replicated(r) => {
                        assert_eq!(store.name, "replicatedLevelDB");
                        let zk = topo.zookeeper.as_ref().unwrap();
                        assert_eq!(store.attr("replicas"), r.replicas.to_string());
                        assert_eq!(store.attr("zkAddress"), zk.connect_string(&topo));
                        assert_eq!(store.attr("zkPath"), r.zk_path);
                        assert_eq!(store.attr("zkSessionTimeout"), r.zk_session_timeout);
                        assert_eq!(store.attr("hostname"), b.hostname);
                        assert_eq!(store.attr("sync"), r.sync);
                        assert_eq!(store.attr("weight"), b.weight.to_string());
                        assert_eq!(
                            store.attr("bind"),
                            format!("tcp://{}:{}", host.address, b.replication_port.unwrap())
                        );
                        assert_eq!(
                            store.attrs.get("securityToken").map(String::as_str),
                            r.security_token.as_ref().map(|s| s.expose())
                        );
                        assert_eq!(
                            store.attrs.get("zkPassword").map(String::as_str),
                            zk.password.as_ref().map(|s| s.expose())
                        );
                    }
                    Store::SharedFile(s) => {
                        assert_eq!(store.name, "kahaDB");
                        assert_eq!(store.attr("directory"), s.directory.to_str().unwrap());
                        assert_eq!(
                            store.attr("lockKeepAlivePeriod"),
                            s.lock_keep_alive_period.to_string()
                        );
                        let locker = store
                            .child("locker")
                            .and_then(|l| l.child("shared-file-locker"))
                            .expect("<locker><shared-file-locker>");
                        assert_eq!(
                            locker.attr("lockAcquireSleepInterval"),
                            s.lock_acquire_sleep_interval.to_string()
                        );
                    }
                    Store::Standalone => {
                        assert_eq!(store.name, "kahaDB");
                        assert!(store.children.is_empty());
                    }
                }

                let ncs: Vec<&El> = broker
                    .child("networkConnectors")
                    .map(|n| n.all("networkConnector"))
                    .unwrap_or_default();
                let mut want = Vec::new();
                for net in topo.networks_of(&group.name) {
                    match &net.kind {
                        NetworkKind::Static { from, to } if *from == group.name => {
                            for t in to {
                                let tg = topo.group(t);
                                // amq-broker bridges speak STOMP
                                let members: Vec<String> = tg
                                    .brokers
                                    .iter()
                                    .map(|x| format!("stomp://{}:{}", x.hostname, x.stomp_port))
                                    .collect();
                                let scheme = if tg.brokers.len() > 1 {
                                    "masterslave"
                                } else {
                                    "static"
                                };
                                want.push(format!("{scheme}:({})", members.join(",")));
                            }
                        }
                        NetworkKind::Static { .. } => {}
                        NetworkKind::Multicast { uri, .. } => want.push(uri.clone()),
                    }
                }
                let got: Vec<&str> = ncs.iter().map(|n| n.attr("uri")).collect();
                assert_eq!(got, want, "{}", f.path);
                for n in ncs {
                    for a in [
                        "name",
                        "networkTTL",
                        "duplex",
                        "conduitSubscriptions",
                        "decreaseNetworkConsumerPriority",
                    ] {
                        n.attr(a);
                    }
                }
                let users = broker
                    .child("plugins")
                    .and_then(|p| p.child("simpleAuthenticationPlugin"))
                    .and_then(|p| p.child("users"))
                    .map(|u| u.all("authenticationUser").len())
                    .unwrap_or(0);
                assert_eq!(users, topo.users.len());
                checked += 1;
            }
        }
    }
    assert!(checked >= 12, "only {checked} brokers checked");
}

#[test]
fn values_are_xml_escaped() {
    let text = r#"
[cluster]
name = "esc"
allow_inline_secrets = true

[[hosts]]
name = "local"
address = "127.0.0.1"

[[groups]]
name = "g"
[[groups.brokers]]
name = "b1"
host = "local"

[[users]]
name = "app"
password = { value = "p<&>\"'x" }
groups = ["users"]
"#;
    let (topo, _) = Topology::from_str(Path::new("esc.toml"), text, &env).unwrap();
    let plan = render(&topo).unwrap();
    let (_, s) = plan.service("b1").unwrap();
    let xml = &s.files[0].contents;
    assert!(
        xml.contains(r#"password="p&lt;&amp;&gt;&quot;&apos;x""#),
        "{xml}"
    );
    let user = parse(xml)
        .child("broker")
        .and_then(|b| b.child("plugins"))
        .and_then(|p| p.child("simpleAuthenticationPlugin"))
        .and_then(|p| p.child("users"))
        .and_then(|u| u.child("authenticationUser"))
        .map(|u| u.attr("password").to_string());
    assert_eq!(user.as_deref(), Some("p<&>\"'x"));
    assert!(s.files[0].secret);
}
