//! The seam to the bundled broker: every activemq.xml amqctl renders for the
//! shipped inventories loads in `amq-broker`'s own config parser, without a
//! warning, and means what the topology says.

use std::path::Path;

use amq_broker::config::{BrokerConfig, Persistence, Placeholders, Protocol};
use amqctl::render::render;
use amqctl::topology::{Store, Topology};

fn env(name: &str) -> Option<String> {
    match name {
        "HOME" => Some("/home/operator".into()),
        n if n.starts_with("AMQCTL_") => Some(format!("value-of-{n}")),
        _ => None,
    }
}

#[test]
fn rendered_configs_load_in_the_bundled_broker() {
    let mut checked = 0;
    let mut entries: Vec<_> = std::fs::read_dir("inventories")
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    entries.sort();
    for inv in entries {
        let text = std::fs::read_to_string(&inv).unwrap();
        let (topo, _) = Topology::from_str(&inv, &text, &env).unwrap();
        let plan = render(&topo).unwrap();
        for group in &topo.groups {
            for b in &group.brokers {
                let (host, svc) = plan.service(&b.name).unwrap();
                let file = &svc.files[0];
                assert!(file.path.ends_with("activemq.xml"));
                let placeholders = Placeholders::for_config_file(&file.dest);
                let cfg = BrokerConfig::parse(&file.contents, Path::new(&file.path), &placeholders)
                    .unwrap_or_else(|e| panic!("{} does not load: {e}", file.path));
                // The one warning allowed: OpenWire is rendered (for clients to
                // come) but not served yet.
                let unexpected: Vec<_> = cfg
                    .warnings
                    .iter()
                    .filter(|w| !w.message.starts_with("OpenWire connector"))
                    .collect();
                assert!(unexpected.is_empty(), "{}: {unexpected:?}", file.path);
                assert_eq!(cfg.broker_name, group.broker_name(b));
                assert_eq!(cfg.data_directory, b.data_dir);
                let port = |p: Protocol| {
                    cfg.transport_connectors
                        .iter()
                        .find(|c| c.protocol == p)
                        .map(|c| (c.host.clone(), c.port))
                };
                assert_eq!(
                    port(Protocol::Stomp),
                    Some((host.address.clone(), b.stomp_port))
                );
                match (&group.store, &cfg.persistence) {
                    (Store::Replicated(r), Persistence::ReplicatedLevelDb(p)) => {
                        assert_eq!(p.replicas, r.replicas);
                        assert_eq!(p.hostname.as_deref(), Some(b.hostname.as_str()));
                        assert_eq!(p.weight, b.weight);
                        assert_eq!(p.slave_redirect, r.slave_redirect);
                        assert_eq!(
                            p.zk_address,
                            topo.zookeeper.as_ref().unwrap().connect_string(&topo)
                        );
                    }
                    (Store::SharedFile(s), Persistence::KahaDb(k)) => {
                        assert_eq!(k.directory, s.directory);
                        assert_eq!(
                            k.lock_keep_alive_period,
                            u64::from(s.lock_keep_alive_period)
                        );
                        let locker = k.shared_file_locker.as_ref().expect("locker");
                        assert_eq!(
                            locker.lock_acquire_sleep_interval,
                            u64::from(s.lock_acquire_sleep_interval)
                        );
                    }
                    (Store::Standalone, Persistence::KahaDb(k)) => {
                        assert_eq!(k.directory, b.data_dir.join("kahadb"));
                    }
                    (store, p) => panic!("{}: {} rendered as {p:?}", file.path, store.kind()),
                }
                let want_ncs = topo
                    .networks_of(&group.name)
                    .map(|n| match &n.kind {
                        amqctl::topology::NetworkKind::Static { from, to }
                            if *from == group.name =>
                        {
                            to.len()
                        }
                        amqctl::topology::NetworkKind::Static { .. } => 0,
                        amqctl::topology::NetworkKind::Multicast { .. } => 1,
                    })
                    .sum::<usize>();
                assert_eq!(cfg.network_connectors.len(), want_ncs, "{}", file.path);
                let users = cfg.authentication.as_ref().map_or(0, |a| a.users.len());
                assert_eq!(users, topo.users.len());
                checked += 1;
            }
        }
    }
    assert!(checked >= 12);
}
