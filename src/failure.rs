//! The failure-mode table: for each node, what the cluster degrades to when
//! that node (alone) dies. Computed from the topology: ZooKeeper quorum
//! (`n/2+1`), replicated-group quorum (`replicas/2+1`), shared-file lock
//! takeover, and the networks that join groups for load balancing.

use std::fmt;

use serde::Serialize;

use crate::topology::{Store, Topology};

/// One row: a node (a service, or a whole host when services share hosts)
/// and the effects of its death.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FailureMode {
    /// The service name, or `host <name>` for a whole machine.
    pub node: String,
    pub host: String,
    /// e.g. "ZooKeeper node 1 of 3", "broker of replicated group ha (1 of 3)".
    pub role: String,
    /// The services that die with it.
    pub dies: Vec<String>,
    pub effects: Vec<Effect>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "effect", rename_all = "kebab-case")]
pub enum Effect {
    /// Nothing a client notices.
    NoEffect,
    /// The ensemble keeps quorum; `tolerance_left` more node deaths are survivable.
    ZookeeperDegraded {
        up: usize,
        size: usize,
        tolerance_left: usize,
    },
    /// Fewer than `n/2+1` ZooKeeper nodes: no election, replicated masters demote.
    ZookeeperQuorumLost { groups: Vec<String> },
    /// If this broker was the master, another member takes over.
    Failover { group: String, how: String },
    /// The group still serves, but one more failure takes it down.
    LosesHighAvailability { group: String },
    /// The group stops serving clients.
    GroupUnavailable { group: String, reason: String },
    /// A network loses a member group: its messages no longer spread there.
    LosesLoadBalancing { network: String, group: String },
}

impl fmt::Display for Effect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Effect::NoEffect => write!(f, "no effect"),
            Effect::ZookeeperDegraded {
                up,
                size,
                tolerance_left: 0,
            } => write!(
                f,
                "ZooKeeper keeps quorum ({up} of {size} up) but loses its fault tolerance"
            ),
            Effect::ZookeeperDegraded {
                up,
                size,
                tolerance_left,
            } => write!(
                f,
                "ZooKeeper keeps quorum ({up} of {size} up; tolerates {tolerance_left} more)"
            ),
            Effect::ZookeeperQuorumLost { groups } if groups.is_empty() => {
                write!(f, "ZooKeeper quorum lost")
            }
            Effect::ZookeeperQuorumLost { groups } => write!(
                f,
                "ZooKeeper quorum lost: group{} {} unavailable (no master can be elected)",
                if groups.len() == 1 { "" } else { "s" },
                groups.join(", ")
            ),
            Effect::Failover { group, how } => {
                write!(f, "group {group}: if it was master, {how}")
            }
            Effect::LosesHighAvailability { group } => {
                write!(f, "group {group} loses high availability")
            }
            Effect::GroupUnavailable { group, reason } => {
                write!(f, "group {group} unavailable: {reason}")
            }
            Effect::LosesLoadBalancing { network, group } => write!(
                f,
                "network {network} loses load balancing (group {group} is gone)"
            ),
        }
    }
}

/// Every service's failure mode in start order, then (when the cluster
/// spans several hosts) every host's: a machine takes all its services down.
pub fn failure_modes(topo: &Topology) -> Vec<FailureMode> {
    let mut out = Vec::new();
    if let Some(zk) = &topo.zookeeper {
        for node in &zk.nodes {
            out.push(FailureMode {
                node: node.service.clone(),
                host: node.host.clone(),
                role: format!("ZooKeeper node {} of {}", node.id, zk.nodes.len()),
                dies: vec![node.service.clone()],
                effects: effects(topo, &[node.service.as_str()]),
            });
        }
    }
    for group in &topo.groups {
        for (i, broker) in group.brokers.iter().enumerate() {
            out.push(FailureMode {
                node: broker.name.clone(),
                host: broker.host.clone(),
                role: format!(
                    "broker of {} group {} ({} of {})",
                    group.store.kind(),
                    group.name,
                    i + 1,
                    group.brokers.len()
                ),
                dies: vec![broker.name.clone()],
                effects: effects(topo, &[broker.name.as_str()]),
            });
        }
    }
    if topo.hosts.len() > 1 {
        for host in &topo.hosts {
            let dies: Vec<&str> = topo
                .zookeeper
                .iter()
                .flat_map(|z| &z.nodes)
                .filter(|n| n.host == host.name)
                .map(|n| n.service.as_str())
                .chain(
                    topo.brokers()
                        .filter(|b| b.host == host.name)
                        .map(|b| b.name.as_str()),
                )
                .collect();
            if dies.len() < 2 {
                continue; // its one service already has a row
            }
            out.push(FailureMode {
                node: format!("host {}", host.name),
                host: host.name.clone(),
                role: format!("machine running {}", dies.join(", ")),
                dies: dies.iter().map(ToString::to_string).collect(),
                effects: effects(topo, &dies),
            });
        }
    }
    out
}

/// What the cluster degrades to when the services in `dead` die together.
pub fn effects(topo: &Topology, dead: &[&str]) -> Vec<Effect> {
    let mut out = Vec::new();
    let mut unavailable: Vec<String> = Vec::new();
    if let Some(zk) = &topo.zookeeper {
        let size = zk.nodes.len();
        let up = zk
            .nodes
            .iter()
            .filter(|n| !dead.contains(&n.service.as_str()))
            .count();
        if up < zk.quorum() {
            let groups: Vec<String> = topo
                .groups
                .iter()
                .filter(|g| matches!(g.store, Store::Replicated(_)))
                .map(|g| g.name.clone())
                .collect();
            unavailable.extend(groups.iter().cloned());
            out.push(Effect::ZookeeperQuorumLost { groups });
        } else if up < size {
            out.push(Effect::ZookeeperDegraded {
                up,
                size,
                tolerance_left: up - zk.quorum(),
            });
        }
    }
    for group in &topo.groups {
        let n = group.brokers.len();
        let down = group
            .brokers
            .iter()
            .filter(|b| dead.contains(&b.name.as_str()))
            .count();
        if down == 0 || unavailable.contains(&group.name) {
            continue;
        }
        let up = n - down;
        let needed = group.needed();
        if up < needed {
            let reason = match &group.store {
                Store::Replicated(r) => {
                    format!("quorum lost ({up} of {} up, needs {needed})", r.replicas)
                }
                _ if n == 1 => "its only broker".to_string(),
                _ => "no broker left".to_string(),
            };
            out.push(Effect::GroupUnavailable {
                group: group.name.clone(),
                reason,
            });
            unavailable.push(group.name.clone());
            continue;
        }
        let how = match &group.store {
            Store::Replicated(_) => "ZooKeeper elects the most up-to-date slave".to_string(),
            Store::SharedFile(s) => format!(
                "a slave takes the lock (within lockAcquireSleepInterval = {} ms)",
                s.lock_acquire_sleep_interval
            ),
            Store::Standalone => unreachable!("a standalone group has one broker"),
        };
        out.push(Effect::Failover {
            group: group.name.clone(),
            how,
        });
        if up == needed {
            out.push(Effect::LosesHighAvailability {
                group: group.name.clone(),
            });
        }
    }
    for net in &topo.networks {
        for g in net.groups() {
            if unavailable.iter().any(|x| x == g) {
                out.push(Effect::LosesLoadBalancing {
                    network: net.name.clone(),
                    group: g.to_string(),
                });
            }
        }
    }
    if out.is_empty() {
        out.push(Effect::NoEffect);
    }
    out
}
