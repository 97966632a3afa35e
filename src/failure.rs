//! The failure-mode table: for each node, what the cluster degrades to when
//! that node (alone) dies. Computed from the topology: ZooKeeper quorum
//! (`n/2+1`), replicated-group quorum (`replicas/2+1`), shared-file lock
//! takeover, and the networks that join groups for load balancing.

use std::fmt;

use serde::Serialize;

use crate::topology::{Store, Topology};

/// One row: a node and the effects of its death.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FailureMode {
    pub service: String,
    pub host: String,
    /// e.g. "ZooKeeper node 1 of 3" or "broker of replicated group ha (1 of 3)".
    pub role: String,
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
                "ZooKeeper quorum lost: no master can be elected in {}",
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

/// Every node's failure mode, in start order.
pub fn failure_modes(topo: &Topology) -> Vec<FailureMode> {
    let mut out = Vec::new();
    let replicated: Vec<String> = topo
        .groups
        .iter()
        .filter(|g| matches!(g.store, Store::Replicated(_)))
        .map(|g| g.name.clone())
        .collect();
    if let Some(zk) = &topo.zookeeper {
        let size = zk.nodes.len();
        for node in &zk.nodes {
            let up = size - 1;
            let mut effects = Vec::new();
            if up < zk.quorum() {
                effects.push(Effect::ZookeeperQuorumLost {
                    groups: replicated.clone(),
                });
                effects.extend(network_losses(topo, &replicated));
            } else {
                effects.push(Effect::ZookeeperDegraded {
                    up,
                    size,
                    tolerance_left: up - zk.quorum(),
                });
            }
            out.push(FailureMode {
                service: node.service.clone(),
                host: node.host.clone(),
                role: format!("ZooKeeper node {} of {size}", node.id),
                effects,
            });
        }
    }
    for group in &topo.groups {
        let n = group.brokers.len();
        for (i, broker) in group.brokers.iter().enumerate() {
            let up = n - 1;
            let needed = group.needed();
            let mut effects = Vec::new();
            if up < needed {
                let reason = match &group.store {
                    Store::Replicated(r) => {
                        format!("quorum lost ({up} of {} up, needs {needed})", r.replicas)
                    }
                    _ if n == 1 => "its only broker".to_string(),
                    _ => "no broker left".to_string(),
                };
                effects.push(Effect::GroupUnavailable {
                    group: group.name.clone(),
                    reason,
                });
                effects.extend(network_losses(topo, std::slice::from_ref(&group.name)));
            } else {
                let how = match &group.store {
                    Store::Replicated(_) => {
                        "ZooKeeper elects the most up-to-date slave".to_string()
                    }
                    Store::SharedFile(s) => format!(
                        "a slave takes the lock (within lockAcquireSleepInterval = {} ms)",
                        s.lock_acquire_sleep_interval
                    ),
                    Store::Standalone => unreachable!("a standalone group has one broker"),
                };
                effects.push(Effect::Failover {
                    group: group.name.clone(),
                    how,
                });
                if up == needed {
                    effects.push(Effect::LosesHighAvailability {
                        group: group.name.clone(),
                    });
                }
            }
            out.push(FailureMode {
                service: broker.name.clone(),
                host: broker.host.clone(),
                role: format!(
                    "broker of {} group {} ({} of {n})",
                    group.store.kind(),
                    group.name,
                    i + 1
                ),
                effects,
            });
        }
    }
    out
}

/// Networks that lose a member when `gone` groups stop serving.
fn network_losses(topo: &Topology, gone: &[String]) -> Vec<Effect> {
    let mut out = Vec::new();
    for net in &topo.networks {
        for g in net.groups() {
            if gone.iter().any(|x| x == g) {
                out.push(Effect::LosesLoadBalancing {
                    network: net.name.clone(),
                    group: g.to_string(),
                });
            }
        }
    }
    out
}
