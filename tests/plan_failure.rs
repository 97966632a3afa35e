//! The failure-mode table is computed from the topology: quorum arithmetic
//! for ZooKeeper and replicated groups, lock takeover for shared-file pairs,
//! and the networks that lose a member.

use std::path::Path;

use amqctl::failure::{effects, failure_modes, Effect};
use amqctl::Topology;

fn env(name: &str) -> Option<String> {
    (name.starts_with("AMQCTL_") || name == "HOME").then(|| "/home/op".to_string())
}

fn shipped(name: &str) -> Topology {
    let path = Path::new("inventories").join(name);
    let text = std::fs::read_to_string(&path).unwrap();
    Topology::from_str(&path, &text, &env).unwrap().0
}

fn texts(e: &[Effect]) -> Vec<String> {
    e.iter().map(ToString::to_string).collect()
}

#[test]
fn pseudo_cluster_quorum_arithmetic() {
    let topo = shipped("pseudo-cluster.toml");
    assert_eq!(
        texts(&effects(&topo, &["zk2"])),
        ["ZooKeeper keeps quorum (2 of 3 up) but loses its fault tolerance"]
    );
    assert_eq!(
        effects(&topo, &["zk1", "zk3"]),
        [Effect::ZookeeperQuorumLost {
            groups: vec!["ha".into()]
        }]
    );
    assert_eq!(
        texts(&effects(&topo, &["zk1", "zk3"])),
        ["ZooKeeper quorum lost: group ha unavailable (no master can be elected)"]
    );
    assert_eq!(
        texts(&effects(&topo, &["amq2"])),
        [
            "group ha: if it was master, ZooKeeper elects the most up-to-date slave",
            "group ha loses high availability"
        ]
    );
    assert_eq!(
        texts(&effects(&topo, &["amq1", "amq2"])),
        ["group ha unavailable: quorum lost (1 of 3 up, needs 2)"]
    );
    // One machine: it takes everything with it.
    assert_eq!(
        failure_modes(&topo).len(),
        6,
        "no host rows for a single host"
    );
}

#[test]
fn five_brokers_tolerate_two() {
    let mut text = std::fs::read_to_string("inventories/pseudo-cluster.toml").unwrap();
    for (name, off) in [("amq4", 30), ("amq5", 40)] {
        text.push_str(&format!(
            "\n[[groups.brokers]]\nname = \"{name}\"\nhost = \"local\"\nport_offset = {off}\n"
        ));
    }
    let (topo, warnings) = Topology::from_str(Path::new("five.toml"), &text, &env).unwrap();
    assert!(warnings.is_empty());
    assert_eq!(
        effects(&topo, &["amq1"]),
        [Effect::Failover {
            group: "ha".into(),
            how: "ZooKeeper elects the most up-to-date slave".into()
        }],
        "quorum 3 of 5: one loss keeps high availability"
    );
    assert_eq!(
        texts(&effects(&topo, &["amq1", "amq2"])),
        [
            "group ha: if it was master, ZooKeeper elects the most up-to-date slave",
            "group ha loses high availability"
        ]
    );
    assert_eq!(
        texts(&effects(&topo, &["amq1", "amq2", "amq3"])),
        ["group ha unavailable: quorum lost (2 of 5 up, needs 3)"]
    );
}

#[test]
fn combined_network_and_shared_file_pair() {
    let topo = shipped("combined.toml");
    assert_eq!(
        texts(&effects(&topo, &["a"])),
        [
            "group edge unavailable: its only broker",
            "network edge-core loses load balancing (group edge is gone)"
        ]
    );
    assert_eq!(
        texts(&effects(&topo, &["b"])),
        [
            "group core: if it was master, a slave takes the lock (within lockAcquireSleepInterval = 1000 ms)",
            "group core loses high availability"
        ]
    );
    assert_eq!(
        texts(&effects(&topo, &["b", "c"])),
        [
            "group core unavailable: no broker left",
            "network edge-core loses load balancing (group core is gone)"
        ]
    );
    assert_eq!(texts(&effects(&topo, &[])), ["no effect"]);
}

#[test]
fn real_cluster_has_a_row_per_machine() {
    let topo = shipped("real-cluster.toml");
    let modes = failure_modes(&topo);
    let rows: Vec<(&str, &[String])> = modes
        .iter()
        .map(|m| (m.node.as_str(), m.dies.as_slice()))
        .collect();
    assert_eq!(rows.len(), 9);
    assert_eq!(rows[6].0, "host amq1");
    assert_eq!(rows[6].1, ["zk1", "broker1"]);
    assert_eq!(
        texts(&modes[7].effects),
        [
            "ZooKeeper keeps quorum (2 of 3 up) but loses its fault tolerance",
            "group orders: if it was master, ZooKeeper elects the most up-to-date slave",
            "group orders loses high availability"
        ]
    );
}

#[test]
fn multicast_members_lose_load_balancing() {
    let topo = shipped("multicast.toml");
    assert_eq!(
        texts(&effects(&topo, &["m2"])),
        [
            "group m2 unavailable: its only broker",
            "network discovery loses load balancing (group m2 is gone)"
        ]
    );
}
