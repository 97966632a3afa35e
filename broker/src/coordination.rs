//! Group membership in ZooKeeper for the replicated store, laid out as
//! ActiveMQ's replicated LevelDB laid it out:
//!
//! - `zkPath` (persistent) holds one **ephemeral sequential** child per live
//!   member, `zkPath/0000000017`, whose data is a JSON [`MemberData`] (node
//!   id, group = brokerName, weight, replication and client addresses, and
//!   the [`Status`] the election reads);
//! - `zkPath/elected-<group>` (persistent) holds the elected master and its
//!   epoch ([`ElectedData`]); it changes only by compare-and-set on its ZK
//!   version, which makes epochs strictly increasing.
//!
//! With `zkPassword` the session authenticates with the digest scheme and
//! every node it creates is readable and writable only by that identity.
//!
//! [`Membership`] runs the session in a task: it (re)connects, registers,
//! watches the whole path (one persistent recursive watch) and publishes a
//! fresh [`GroupView`] on every change. Its [`Health`] turns `Lost` when the
//! session expires, or stays disconnected longer than `fence_after` (a bound
//! below the session timeout), so a master can fence itself before ZooKeeper
//! lets the others elect a successor.

use crate::election::{Elected, Member, Status, Tip, View};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;
use zookeeper_client as zk;

/// The digest identity brokers of a group authenticate as with zkPassword.
/// Their nodes' ACLs grant only this identity, so a tool reading the group
/// (amqctl verify) must authenticate as it too.
pub const DIGEST_USER: &str = "amqctl";

/// `zkPath/elected-<group>`: the node holding `group`'s elected master.
/// Characters of `group` other than ASCII letters, digits, `-`, `_` and `.`
/// become `_`, so any brokerName gives one plain node name.
pub fn elected_path(zk_path: &str, group: &str) -> String {
    let group: String = group
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("{}/elected-{group}", zk_path.trim_end_matches('/'))
}

/// The sequence number of a member node, named `0` followed by ZooKeeper's
/// sequence digits (`00000000017` → 17); `None` for any other child of
/// zkPath, such as an elected node.
pub fn member_sequence(name: &str) -> Option<u64> {
    let digits = name.strip_prefix('0')?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

#[derive(Debug, thiserror::Error)]
pub enum CoordinationError {
    #[error("ZooKeeper at {address}: {source}")]
    Zk {
        address: String,
        #[source]
        source: zk::Error,
    },
    #[error("zkPath {0:?} must be an absolute ZooKeeper path like /activemq/leveldb-stores")]
    BadPath(String),
    #[error("the ZooKeeper session is gone")]
    SessionLost,
}

#[derive(Debug, Clone)]
pub struct ZkSettings {
    /// `host:port,host:port` (zkAddress).
    pub address: String,
    /// zkPassword: digest authentication and ACLs when set.
    pub password: Option<crate::config::Secret>,
    /// zkPath.
    pub path: String,
    /// zkSessionTimeout.
    pub session_timeout: Duration,
    /// The group (brokerName): several groups may share one zkPath.
    pub group: String,
    /// `replicas`: the group's size, which sets the quorum.
    pub replicas: usize,
}

impl ZkSettings {
    /// Disconnected this long, a member must consider its session lost: 3/4
    /// of the session timeout, so a master fences itself before ZooKeeper
    /// can expire it, yet rides out a ZooKeeper leader election (~0.4 s).
    pub fn fence_after(&self) -> Duration {
        self.session_timeout * 3 / 4
    }

    fn elected_path(&self) -> String {
        elected_path(&self.path, &self.group)
    }

    fn validate(&self) -> Result<(), CoordinationError> {
        let p = &self.path;
        if !p.starts_with('/') || p.len() < 2 || p.ends_with('/') || p.contains("//") {
            return Err(CoordinationError::BadPath(p.clone()));
        }
        Ok(())
    }
}

/// What a member publishes in its node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberData {
    pub id: String,
    /// brokerName.
    pub group: String,
    pub weight: i32,
    /// Replication address `tcp://host:port`.
    pub address: String,
    /// Client (STOMP) address `stomp://host:port`, for slave redirects and
    /// for operators.
    pub client: Option<String>,
    /// `master`, `slave` or `candidate`.
    pub role: String,
    /// Master: its epoch; slave: the epoch it follows.
    pub epoch: u64,
    /// The fencing promise.
    pub min_epoch: u64,
    pub position: u64,
    pub position_epoch: u64,
}

impl MemberData {
    pub fn status(&self) -> Status {
        match self.role.as_str() {
            "master" => Status::Master { epoch: self.epoch },
            "slave" => Status::Following { epoch: self.epoch },
            _ => Status::Candidate {
                min_epoch: self.min_epoch,
                tip: Tip {
                    epoch: self.position_epoch,
                    position: self.position,
                },
            },
        }
    }

    pub fn set_status(&mut self, status: &Status, min_epoch: u64, tip: Tip) {
        self.min_epoch = min_epoch;
        self.position = tip.position;
        self.position_epoch = tip.epoch;
        (self.role, self.epoch) = match *status {
            Status::Master { epoch } => ("master".into(), epoch),
            Status::Following { epoch } => ("slave".into(), epoch),
            Status::Candidate { .. } => ("candidate".into(), 0),
        };
    }
}

/// The elected node's data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ElectedData {
    pub epoch: u64,
    pub id: String,
    pub address: String,
    pub client: Option<String>,
}

/// A snapshot of the group as ZooKeeper showed it.
#[derive(Debug, Clone)]
pub struct GroupView {
    pub view: View,
    /// Members of this group with their sequence numbers.
    pub members: Vec<(u64, MemberData)>,
    pub elected: Option<ElectedData>,
    /// The elected node's ZK version (`None`: no such node yet).
    elected_version: Option<i32>,
    /// This member's own sequence number in this session.
    pub my_seq: u64,
}

impl GroupView {
    pub fn member(&self, node_id: &str) -> Option<&MemberData> {
        self.members
            .iter()
            .filter(|(_, m)| m.id == node_id)
            .max_by_key(|(seq, _)| *seq)
            .map(|(_, m)| m)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Health {
    /// No session yet (or a new one being set up after a loss).
    Connecting,
    /// Registered, and the view is current.
    Connected,
    /// Expired, or disconnected longer than `fence_after`.
    Lost,
}

enum Command {
    Claim {
        view: Arc<GroupView>,
        data: ElectedData,
        reply: oneshot::Sender<Result<bool, CoordinationError>>,
    },
}

/// A running membership; dropping it closes the session (the member node
/// disappears at once).
pub struct Membership {
    data: watch::Sender<MemberData>,
    commands: mpsc::UnboundedSender<Command>,
    views: watch::Receiver<Option<Arc<GroupView>>>,
    health: watch::Receiver<Health>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Membership {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Membership {
    pub fn start(settings: ZkSettings, data: MemberData) -> Result<Membership, CoordinationError> {
        settings.validate()?;
        let (data_tx, data_rx) = watch::channel(data);
        let (cmd_tx, cmd_rx) = mpsc::unbounded_channel();
        let (views_tx, views_rx) = watch::channel(None);
        let (health_tx, health_rx) = watch::channel(Health::Connecting);
        let task = tokio::spawn(run(settings, data_rx, cmd_rx, views_tx, health_tx));
        Ok(Membership {
            data: data_tx,
            commands: cmd_tx,
            views: views_rx,
            health: health_rx,
            task,
        })
    }

    /// Replaces what this member publishes (written at once if connected,
    /// else on registration).
    pub fn publish(&self, data: MemberData) {
        self.data.send_if_modified(|d| {
            let changed = *d != data;
            *d = data;
            changed
        });
    }

    pub fn data(&self) -> MemberData {
        self.data.borrow().clone()
    }

    pub fn views(&self) -> watch::Receiver<Option<Arc<GroupView>>> {
        self.views.clone()
    }

    pub fn health(&self) -> watch::Receiver<Health> {
        self.health.clone()
    }

    /// Compare-and-set of the elected node from what `view` showed: `true`
    /// if this member now is the elected master of `data.epoch`.
    pub async fn claim(
        &self,
        view: Arc<GroupView>,
        data: ElectedData,
    ) -> Result<bool, CoordinationError> {
        let (reply, rx) = oneshot::channel();
        self.commands
            .send(Command::Claim { view, data, reply })
            .map_err(|_| CoordinationError::SessionLost)?;
        rx.await.map_err(|_| CoordinationError::SessionLost)?
    }
}

async fn run(
    settings: ZkSettings,
    mut data: watch::Receiver<MemberData>,
    mut commands: mpsc::UnboundedReceiver<Command>,
    views: watch::Sender<Option<Arc<GroupView>>>,
    health: watch::Sender<Health>,
) {
    let mut backoff = Duration::from_millis(50);
    loop {
        match connect(&settings).await {
            Ok(client) => {
                backoff = Duration::from_millis(50);
                let outcome = session(
                    &settings,
                    &client,
                    &mut data,
                    &mut commands,
                    &views,
                    &health,
                )
                .await;
                if let Err(e) = outcome {
                    tracing::warn!("ZooKeeper session ended: {e}");
                }
            }
            Err(e) => {
                tracing::warn!("{e}; retrying in {backoff:?}");
            }
        }
        health.send_replace(Health::Lost);
        views.send_replace(None);
        // Refuse claims made on views of the old session.
        while let Ok(Command::Claim { reply, .. }) = commands.try_recv() {
            let _ = reply.send(Err(CoordinationError::SessionLost));
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(2));
    }
}

fn zk_err(settings: &ZkSettings) -> impl Fn(zk::Error) -> CoordinationError + '_ {
    move |source| CoordinationError::Zk {
        address: settings.address.clone(),
        source,
    }
}

async fn connect(settings: &ZkSettings) -> Result<zk::Client, CoordinationError> {
    let mut connector = zk::Client::connector()
        .with_session_timeout(settings.session_timeout)
        .with_connection_timeout(settings.session_timeout / 2);
    if let Some(pw) = &settings.password {
        connector = connector.with_auth(
            "digest",
            format!("{DIGEST_USER}:{}", pw.expose()).as_bytes(),
        );
    }
    connector
        .connect(&settings.address)
        .await
        .map_err(zk_err(settings))
}

fn acls(settings: &ZkSettings) -> zk::Acls<'static> {
    if settings.password.is_some() {
        zk::Acls::creator_all()
    } else {
        zk::Acls::anyone_all()
    }
}

async fn session(
    settings: &ZkSettings,
    client: &zk::Client,
    data: &mut watch::Receiver<MemberData>,
    commands: &mut mpsc::UnboundedReceiver<Command>,
    views: &watch::Sender<Option<Arc<GroupView>>>,
    health: &watch::Sender<Health>,
) -> Result<(), CoordinationError> {
    let err = zk_err(settings);
    let acls = acls(settings);
    data.borrow_and_update();
    match client
        .mkdir(&settings.path, &zk::CreateMode::Persistent.with_acls(acls))
        .await
    {
        Ok(()) | Err(zk::Error::NodeExists) => {}
        Err(e) => return Err(err(e)),
    }
    let mut state = client.state_watcher();
    let mut watcher = client
        .watch(&settings.path, zk::AddWatchMode::PersistentRecursive)
        .await
        .map_err(&err)?;
    let json = serde_json::to_vec(&*data.borrow_and_update()).expect("serialisable");
    let (_, seq) = client
        .create(
            &format!("{}/0", settings.path),
            &json,
            &zk::CreateMode::EphemeralSequential.with_acls(acls),
        )
        .await
        .map_err(&err)?;
    let my_seq = seq.into_i64() as u64;
    let my_path = format!("{}/0{seq}", settings.path);
    tracing::info!(path = %my_path, "registered in ZooKeeper");

    // Connected before the first view goes out: whoever sees a view may act.
    health.send_replace(Health::Connected);
    // A request can fail with the connection while the session lives on:
    // then it is retried (after reconnecting), and only a dead session ends
    // this function.
    let mut view_stale = true;
    let mut data_stale = false;
    let mut disconnected_since: Option<Instant> = None;
    loop {
        if disconnected_since.is_none() && view_stale {
            match read_view(client, settings, my_seq).await {
                Ok(v) => {
                    views.send_replace(Some(Arc::new(v)));
                    view_stale = false;
                }
                Err(e) => transient(e, settings)?,
            }
        }
        if disconnected_since.is_none() && data_stale {
            let json = serde_json::to_vec(&*data.borrow_and_update()).expect("serialisable");
            match client.set_data(&my_path, &json, None).await {
                Ok(_) => data_stale = false,
                Err(e) => transient(e, settings)?,
            }
        }
        let fence_at = disconnected_since.map(|t| t + settings.fence_after());
        let retry = view_stale || data_stale;
        tokio::select! {
            ev = watcher.changed() => {
                if ev.event_type == zk::EventType::Session {
                    if ev.session_state.is_terminated() {
                        return Err(CoordinationError::SessionLost);
                    }
                } else {
                    view_stale = true;
                }
            }
            s = state.changed() => match s {
                zk::SessionState::Disconnected => {
                    disconnected_since.get_or_insert_with(Instant::now);
                }
                zk::SessionState::SyncConnected | zk::SessionState::ConnectedReadOnly => {
                    disconnected_since = None;
                    view_stale = true;
                    health.send_replace(Health::Connected);
                }
                _ => return Err(CoordinationError::SessionLost),
            },
            _ = sleep_until(fence_at), if fence_at.is_some() && *health.borrow() != Health::Lost => {
                tracing::warn!(after = ?settings.fence_after(), "ZooKeeper disconnected too long: session considered lost");
                health.send_replace(Health::Lost);
            }
            _ = tokio::time::sleep(Duration::from_millis(100)), if retry => {}
            changed = data.changed() => {
                if changed.is_err() {
                    return Ok(()); // the Membership was dropped
                }
                data_stale = true;
            }
            cmd = commands.recv() => {
                let Some(Command::Claim { view, data, reply }) = cmd else { return Ok(()) };
                let outcome = claim(client, settings, &view, &data).await;
                let _ = reply.send(outcome);
            }
        }
    }
}

/// Whether a failed request leaves the session usable (`Ok`: retry later).
fn transient(e: zk::Error, settings: &ZkSettings) -> Result<(), CoordinationError> {
    match e {
        zk::Error::SessionExpired
        | zk::Error::AuthFailed
        | zk::Error::NoAuth
        | zk::Error::NoNode
        | zk::Error::ClientClosed => Err(zk_err(settings)(e)),
        other => {
            tracing::debug!("ZooKeeper request failed, will retry: {other}");
            Ok(())
        }
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

async fn claim(
    client: &zk::Client,
    settings: &ZkSettings,
    view: &GroupView,
    data: &ElectedData,
) -> Result<bool, CoordinationError> {
    let json = serde_json::to_vec(data).expect("serialisable");
    let path = settings.elected_path();
    let outcome = match view.elected_version {
        None => client
            .create(
                &path,
                &json,
                &zk::CreateMode::Persistent.with_acls(acls(settings)),
            )
            .await
            .map(|_| ()),
        Some(version) => client
            .set_data(&path, &json, Some(version))
            .await
            .map(|_| ()),
    };
    match outcome {
        Ok(()) => Ok(true),
        Err(zk::Error::NodeExists | zk::Error::BadVersion | zk::Error::NoNode) => Ok(false),
        Err(e) => Err(zk_err(settings)(e)),
    }
}

async fn read_view(
    client: &zk::Client,
    settings: &ZkSettings,
    my_seq: u64,
) -> Result<GroupView, zk::Error> {
    let children = client.list_children(&settings.path).await?;
    let reads: Vec<_> = children
        .iter()
        .filter_map(|c| member_sequence(c).map(|seq| (seq, format!("{}/{c}", settings.path))))
        .map(|(seq, path)| {
            let client = client.clone();
            async move { (seq, client.get_data(&path).await) }
        })
        .collect();
    let elected_path = settings.elected_path();
    let (results, elected) = tokio::join!(
        futures::future::join_all(reads),
        client.get_data(&elected_path)
    );
    let mut members = Vec::new();
    for (seq, r) in results {
        match r {
            Ok((bytes, _)) => match serde_json::from_slice::<MemberData>(&bytes) {
                Ok(m) if m.group == settings.group => members.push((seq, m)),
                Ok(_) => {}
                Err(e) => tracing::warn!(seq, "ignoring a member node that is not ours: {e}"),
            },
            Err(zk::Error::NoNode) => {} // left between list and read
            Err(e) => return Err(e),
        }
    }
    let (elected, elected_version) = match elected {
        Ok((bytes, stat)) => match serde_json::from_slice::<ElectedData>(&bytes) {
            Ok(e) => (Some(e), Some(stat.version)),
            Err(e) => {
                tracing::warn!(path = %elected_path, "unreadable elected node, treating as none: {e}");
                (None, Some(stat.version))
            }
        },
        Err(zk::Error::NoNode) => (None, None),
        Err(e) => return Err(e),
    };
    let view = View {
        replicas: settings.replicas,
        elected: elected.as_ref().map(|e| Elected {
            epoch: e.epoch,
            node_id: e.id.clone(),
        }),
        members: members
            .iter()
            .map(|(seq, m)| Member {
                node_id: m.id.clone(),
                seq: *seq,
                weight: m.weight,
                status: m.status(),
            })
            .collect(),
    };
    Ok(GroupView {
        view,
        members,
        elected,
        elected_version,
        my_seq,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn member_names_are_zero_then_digits() {
        assert_eq!(member_sequence("00000000017"), Some(17));
        assert_eq!(member_sequence("0"), None);
        assert_eq!(member_sequence("elected-x"), None);
        assert_eq!(member_sequence("1000"), None);
        assert_eq!(member_sequence("0000000001a"), None);
        // The elected node of any group, even one named in digits, is told
        // from the members.
        let elected = elected_path("/amq", "0000000017");
        assert_eq!(member_sequence(elected.rsplit('/').next().unwrap()), None);
    }

    #[test]
    fn the_elected_node_sits_beside_the_members() {
        assert_eq!(elected_path("/amq/ha", "ha"), "/amq/ha/elected-ha");
        assert_eq!(elected_path("/amq/ha/", "ha"), "/amq/ha/elected-ha");
        assert_eq!(elected_path("/amq", "b 1/x"), "/amq/elected-b_1_x");
    }

    #[test]
    fn status_round_trips_through_member_data() {
        let mut d = MemberData {
            id: "n".into(),
            group: "g".into(),
            weight: 1,
            address: "tcp://127.0.0.1:1".into(),
            client: None,
            role: String::new(),
            epoch: 0,
            min_epoch: 0,
            position: 0,
            position_epoch: 0,
        };
        let tip = Tip {
            epoch: 2,
            position: 40,
        };
        for s in [
            Status::Master { epoch: 3 },
            Status::Following { epoch: 3 },
            Status::Candidate { min_epoch: 4, tip },
        ] {
            d.set_status(&s, 4, tip);
            assert_eq!(d.status(), s);
        }
    }
}
