//! ZooKeeper's view of a replicated group, read the way the brokers write it
//! (`amq_broker::coordination`): one ephemeral sequential child
//! `zkPath/0000000017` per live member carrying a JSON
//! [`MemberData`], and `zkPath/elected-<group>` holding the elected master
//! ([`ElectedData`]).

use std::time::Duration;

use amq_broker::coordination::{
    elected_path, member_sequence, ElectedData, MemberData, DIGEST_USER,
};
use zookeeper_client as zk;

use crate::topology::{Broker, Group, Store, Topology};

#[derive(Debug, Clone, Default)]
pub struct GroupView {
    /// Live members of this group (sequence number, data), oldest first.
    pub members: Vec<(u64, MemberData)>,
    pub elected: Option<ElectedData>,
}

impl GroupView {
    /// The broker of `group` a member node stands for: matched by its client
    /// address, its replication address, or its id.
    pub fn broker_of<'g>(group: &'g Group, m: &MemberData) -> Option<&'g Broker> {
        let port_of = |uri: &str| uri.rsplit(':').next().and_then(|p| p.parse::<u16>().ok());
        group.brokers.iter().find(|b| {
            m.client.as_deref().and_then(port_of) == Some(b.stomp_port)
                || (b.replication_port.is_some() && port_of(&m.address) == b.replication_port)
                || m.id == b.name
        })
    }

    /// Member nodes serving as master of the elected epoch. A node that
    /// says `master` of another epoch is stale: a killed broker's node
    /// stays until its ZooKeeper session expires, and a deposed master
    /// rewrites its node only once it has noticed.
    pub fn masters(&self) -> Vec<&MemberData> {
        let Some(elected) = &self.elected else {
            return Vec::new();
        };
        self.members
            .iter()
            .map(|(_, m)| m)
            .filter(|m| m.role == "master" && m.epoch == elected.epoch)
            .collect()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ZkViewError {
    #[error("ZooKeeper at {address}: {source}")]
    Zk {
        address: String,
        #[source]
        source: zk::Error,
    },
    #[error("ZooKeeper at {address}: no answer within {timeout:?}")]
    Timeout { address: String, timeout: Duration },
}

/// A read-only session to the ensemble of `topo`.
pub struct ZkReader {
    client: zk::Client,
    address: String,
}

impl ZkReader {
    pub async fn connect(topo: &Topology, timeout: Duration) -> Result<ZkReader, ZkViewError> {
        let ensemble = topo
            .zookeeper
            .as_ref()
            .ok_or_else(|| ZkViewError::Timeout {
                address: "(no [zookeeper] in the inventory)".into(),
                timeout,
            })?;
        let address = ensemble.connect_string(topo);
        let mut connector = zk::Client::connector()
            .with_session_timeout(Duration::from_secs(4).max(timeout))
            .with_connection_timeout(timeout);
        if let Some(pw) = &ensemble.password {
            connector = connector.with_auth(
                "digest",
                format!("{DIGEST_USER}:{}", pw.expose()).as_bytes(),
            );
        }
        let client = tokio::time::timeout(timeout, connector.connect(&address))
            .await
            .map_err(|_| ZkViewError::Timeout {
                address: address.clone(),
                timeout,
            })?
            .map_err(|source| ZkViewError::Zk {
                address: address.clone(),
                source,
            })?;
        Ok(ZkReader { client, address })
    }

    fn err(&self, source: zk::Error) -> ZkViewError {
        ZkViewError::Zk {
            address: self.address.clone(),
            source,
        }
    }

    /// The group's members and elected master. A missing zkPath is an
    /// empty view (nobody registered yet).
    pub async fn group(&self, group: &Group) -> Result<GroupView, ZkViewError> {
        let Store::Replicated(r) = &group.store else {
            return Ok(GroupView::default());
        };
        let path = r.zk_path.trim_end_matches('/');
        let children = match self.client.list_children(path).await {
            Ok(c) => c,
            Err(zk::Error::NoNode) => return Ok(GroupView::default()),
            Err(e) => return Err(self.err(e)),
        };
        let mut view = GroupView::default();
        for child in &children {
            let Some(seq) = member_sequence(child) else {
                continue;
            };
            match self.client.get_data(&format!("{path}/{child}")).await {
                Ok((bytes, _)) => {
                    if let Ok(m) = serde_json::from_slice::<MemberData>(&bytes) {
                        if m.group == group.name {
                            view.members.push((seq, m));
                        }
                    }
                }
                Err(zk::Error::NoNode) => {} // left between list and read
                Err(e) => return Err(self.err(e)),
            }
        }
        view.members.sort_by_key(|(seq, _)| *seq);
        view.elected = match self.client.get_data(&elected_path(path, &group.name)).await {
            Ok((bytes, _)) => serde_json::from_slice(&bytes).ok(),
            Err(zk::Error::NoNode) => None,
            Err(e) => return Err(self.err(e)),
        };
        Ok(view)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(id: &str, role: &str, epoch: u64) -> MemberData {
        MemberData {
            id: id.into(),
            group: "ha".into(),
            weight: 1,
            address: format!("tcp://127.0.0.1:1/{id}"),
            client: None,
            role: role.into(),
            epoch,
            min_epoch: epoch,
            position: 0,
            position_epoch: 0,
        }
    }

    #[test]
    fn only_the_elected_epoch_has_a_master() {
        let mut view = GroupView {
            members: vec![
                // A killed master's node, until its session expires.
                (1, member("amq1", "master", 7)),
                (4, member("amq1", "master", 9)),
                (5, member("amq2", "slave", 9)),
            ],
            elected: None,
        };
        assert!(view.masters().is_empty(), "no elected node, no master");
        view.elected = Some(ElectedData {
            epoch: 9,
            id: "amq1".into(),
            address: String::new(),
            client: None,
        });
        let masters = view.masters();
        assert_eq!(masters.len(), 1);
        assert_eq!(masters[0].epoch, 9);
    }
}
