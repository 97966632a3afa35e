//! Wiring the replicated store's roles into the broker: the driver that
//! turns ZooKeeper views, session health and the master's replication
//! stream into [`election`] steps, and carries them out —
//! persisting the fencing promise, following a master, claiming and
//! promoting (catch-up first, then client connectors), demoting at once.
//!
//! Persistent per node, in the store directory: `ha-node.json` with the
//! node's id and `min_epoch` (written with fsync before anything that
//! relies on it is published).

use crate::broker::Broker;
use crate::config::{BrokerConfig, ReplicatedLevelDb};
use crate::coordination::{ElectedData, GroupView, Health, MemberData, Membership, ZkSettings};
use crate::election::{self, Local, Role as ElectionRole, Status, Step, Tip};
use crate::replication::{ReplicationError, ReplicationSettings, Replicator};
use crate::role::Role;
use crate::stomp::{encode_to_bytes, Frame, Version};
use serde::{Deserialize, Serialize};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

#[derive(Debug, thiserror::Error)]
pub enum HaError {
    #[error("{path}: {source}")]
    State {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot listen on {bind} for replication (<replicatedLevelDB bind>): {source}")]
    Bind {
        bind: String,
        #[source]
        source: io::Error,
    },
    #[error(transparent)]
    Coordination(#[from] crate::coordination::CoordinationError),
}

/// How long a slave keeps retrying a master that refuses it (it may not
/// have finished promoting) before it gives the master up.
const REFUSED_GRACE: Duration = Duration::from_millis(1000);
const TICK: Duration = Duration::from_millis(100);

/// `ha-node.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct NodeState {
    node_id: String,
    min_epoch: u64,
}

struct StateFile {
    path: PathBuf,
    state: NodeState,
}

impl StateFile {
    fn open(dir: &Path) -> Result<StateFile, HaError> {
        let path = dir.join("ha-node.json");
        let err = |source| HaError::State {
            path: path.clone(),
            source,
        };
        std::fs::create_dir_all(dir).map_err(err)?;
        let state = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| err(io::Error::other(e)))?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => NodeState {
                node_id: random_id().map_err(err)?,
                min_epoch: 0,
            },
            Err(e) => return Err(err(e)),
        };
        let mut f = StateFile { path, state };
        f.save()?;
        Ok(f)
    }

    /// Raises `min_epoch` durably (never lowers it).
    fn promise(&mut self, min_epoch: u64) -> Result<(), HaError> {
        if min_epoch > self.state.min_epoch {
            self.state.min_epoch = min_epoch;
            self.save()?;
        }
        Ok(())
    }

    fn save(&mut self) -> Result<(), HaError> {
        let err = |source| HaError::State {
            path: self.path.clone(),
            source,
        };
        let tmp = self.path.with_extension("json.tmp");
        let mut f = std::fs::File::create(&tmp).map_err(err)?;
        f.write_all(&serde_json::to_vec_pretty(&self.state).expect("serialisable"))
            .map_err(err)?;
        f.sync_all().map_err(err)?;
        std::fs::rename(&tmp, &self.path).map_err(err)?;
        if let Some(dir) = self.path.parent() {
            std::fs::File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(err)?;
        }
        Ok(())
    }
}

fn random_id() -> io::Result<String> {
    let mut b = [0u8; 16];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut b)?;
    Ok(b.iter().map(|x| format!("{x:02x}")).collect())
}

/// `host:port` from `tcp://host:port` (or as is).
fn host_port(uri: &str) -> &str {
    uri.split_once("://")
        .map_or(uri, |(_, rest)| rest)
        .split(['?', '/'])
        .next()
        .unwrap_or("")
}

fn advertised(host: &str, hostname: Option<&str>) -> String {
    match hostname {
        Some(h) => h.to_owned(),
        None if host == "0.0.0.0" || host == "::" || host == "[::]" => {
            std::fs::read_to_string("/proc/sys/kernel/hostname")
                .map(|h| h.trim().to_owned())
                .unwrap_or_else(|_| "localhost".into())
        }
        None => host.to_owned(),
    }
}

/// The replication settings a `<replicatedLevelDB>` asks for.
pub fn replication_settings(rl: &ReplicatedLevelDb) -> ReplicationSettings {
    ReplicationSettings {
        security_token: rl.security_token.clone(),
        replicas: rl.replicas as usize,
        sync: rl.sync,
        heartbeat: Duration::from_millis(100),
        write_timeout: (rl.zk_session_timeout * 5).max(Duration::from_secs(10)),
    }
}

/// Starts the HA driver for `broker` (whose store is a
/// [`ReplicatedStore`](crate::replication::ReplicatedStore) over `repl`).
/// The broker must start as `Role::Slave { master: None }`; the driver sets
/// its role from then on. Runs until `shutdown`.
pub async fn start(
    config: &BrokerConfig,
    rl: &ReplicatedLevelDb,
    broker: Arc<Broker>,
    repl: Arc<Replicator>,
    shutdown: CancellationToken,
) -> Result<JoinHandle<()>, HaError> {
    let state = StateFile::open(&rl.directory)?;
    let bind = host_port(&rl.bind).to_owned();
    let listener = TcpListener::bind(&bind)
        .await
        .map_err(|source| HaError::Bind {
            bind: bind.clone(),
            source,
        })?;
    let port = listener.local_addr().map_err(|source| HaError::Bind {
        bind: bind.clone(),
        source,
    })?;
    let rhost = bind.rsplit_once(':').map_or("0.0.0.0", |(h, _)| h);
    let address = format!(
        "tcp://{}:{}",
        advertised(rhost, rl.hostname.as_deref()),
        port.port()
    );
    let stomp = config.stomp_connectors().next();
    let client = stomp.map(|c| {
        format!(
            "stomp://{}:{}",
            advertised(&c.host, rl.hostname.as_deref()),
            c.port
        )
    });
    let redirect_binds: Vec<String> = if rl.slave_redirect {
        config
            .stomp_connectors()
            .map(|c| c.bind_address())
            .collect()
    } else {
        Vec::new()
    };
    tokio::spawn(repl.clone().serve(listener, shutdown.clone()));

    let zk = ZkSettings {
        address: rl.zk_address.clone(),
        password: rl.zk_password.clone(),
        path: rl.zk_path.clone(),
        session_timeout: rl.zk_session_timeout,
        group: config.broker_name.clone(),
        replicas: rl.replicas as usize,
    };
    let local = Local {
        node_id: state.state.node_id.clone(),
        min_epoch: state.state.min_epoch,
        role: ElectionRole::Candidate,
    };
    let mut data = MemberData {
        id: local.node_id.clone(),
        group: config.broker_name.clone(),
        weight: rl.weight as i32,
        address: address.clone(),
        client: client.clone(),
        role: String::new(),
        epoch: 0,
        min_epoch: 0,
        position: 0,
        position_epoch: 0,
    };
    let tip = repl.tip();
    data.set_status(&local.status(tip), local.min_epoch, tip);
    let membership = Membership::start(zk.clone(), data)?;
    tracing::info!(node = %local.node_id, replication = %address, position = tip.position, "joining the replicated group");
    let driver = Driver {
        zk,
        local,
        state,
        membership,
        repl,
        broker,
        address,
        client,
        follow: None,
        promoting: None,
        redirect: Redirect::new(redirect_binds),
        shutdown,
    };
    Ok(tokio::spawn(driver.run()))
}

struct Follow {
    master: String,
    epoch: u64,
    stop: CancellationToken,
    task: JoinHandle<Result<(), ReplicationError>>,
    started: Instant,
}

struct Driver {
    zk: ZkSettings,
    local: Local,
    state: StateFile,
    membership: Membership,
    repl: Arc<Replicator>,
    broker: Arc<Broker>,
    address: String,
    client: Option<String>,
    follow: Option<Follow>,
    /// Master of this epoch, waiting for slaves to catch up to this position.
    promoting: Option<(u64, u64)>,
    redirect: Redirect,
    shutdown: CancellationToken,
}

impl Driver {
    async fn run(mut self) {
        let mut views = self.membership.views();
        let mut health = self.membership.health();
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut frozen = watch_for_freezes(self.zk.fence_after(), self.shutdown.clone());
        loop {
            let mut event: Option<Step> = None;
            tokio::select! {
                r = views.changed() => if r.is_err() { return },
                r = health.changed() => {
                    if r.is_err() { return }
                    if *health.borrow_and_update() == Health::Lost {
                        event = self.local.lost_session();
                    }
                }
                ended = follow_ended(&mut self.follow) => {
                    event = self.follow_failed(ended);
                }
                ok = promotion(&self.repl, self.promoting) => {
                    if ok { self.finish_promotion().await; } else { self.promoting = None; }
                }
                Some(gap) = frozen.recv() => {
                    // Frozen this long (SIGSTOP, swapping), its session may
                    // be gone already. Fence first.
                    tracing::warn!(?gap, "this process was frozen; fencing");
                    event = self.local.lost_session();
                }
                // Look at the view again now and then, events or not.
                _ = tick.tick() => {}
                _ = self.shutdown.cancelled() => {
                    self.stop_following().await;
                    self.repl.stop_master();
                    return;
                }
            }
            if let Some(step) = event {
                self.execute(step, None).await;
            }
            // Act on the view only while the session is healthy.
            if *health.borrow() != Health::Connected {
                if matches!(self.local.role, ElectionRole::Master { .. }) {
                    if let Some(step) = self.local.lost_session() {
                        self.execute(step, None).await;
                    }
                }
                continue;
            }
            let Some(view) = views.borrow_and_update().clone() else {
                continue;
            };
            // Several steps can follow from one view (fence, then follow).
            for _ in 0..3 {
                let Some(step) = self.local.react(&view.view) else {
                    break;
                };
                let claim = matches!(step, Step::Claim { .. });
                // After a claim this view is outdated: wait for the next.
                if !self.execute(step, Some(&view)).await || claim {
                    break;
                }
            }
            self.publish();
        }
    }

    fn publish(&self) {
        let mut data = self.membership.data();
        let mut tip = self.repl.tip();
        let status = self.local.status(tip);
        // Only a candidate's tip decides anything. A serving master's or
        // slave's position moves with every write: publishing it would be a
        // ZooKeeper write (fsynced by every ensemble member) that wakes every
        // member, which publishes its own position in turn - hundreds of
        // writes a second under load. It is refreshed on role changes.
        if !matches!(status, Status::Candidate { .. }) && data.status() == status {
            tip = Tip {
                epoch: data.position_epoch,
                position: data.position,
            };
        }
        data.set_status(&status, self.local.min_epoch, tip);
        self.membership.publish(data);
    }

    /// Carries out `step`; `false` if nothing changed (a lost claim).
    async fn execute(&mut self, step: Step, view: Option<&Arc<GroupView>>) -> bool {
        match &step {
            Step::Follow { epoch, master } => {
                let target = view
                    .and_then(|v| v.elected.as_ref())
                    .filter(|e| &e.id == master && e.epoch == *epoch)
                    .cloned();
                let Some(target) = target else { return false };
                self.stop_following().await;
                self.demote_if_master();
                if let Err(e) = self.state.promise(*epoch) {
                    return self.fail(e);
                }
                self.local.apply(&step);
                tracing::info!(epoch, master = %target.address, "following the master");
                self.start_following(&target);
                self.broker.set_role(Role::Slave {
                    master: target.client.clone(),
                });
                self.redirect.point_at(target.client.clone());
                true
            }
            Step::Fence { min_epoch } | Step::Demote { min_epoch } => {
                // Order matters: stop accepting the old epoch, then promise,
                // then publish (the caller publishes).
                self.stop_following().await;
                self.demote_if_master();
                if let Err(e) = self.state.promise(*min_epoch) {
                    return self.fail(e);
                }
                self.local.apply(&step);
                tracing::info!(min_epoch, "no master: candidate");
                self.broker.set_role(Role::Slave { master: None });
                self.redirect.point_at(None);
                true
            }
            Step::Claim { epoch, .. } => {
                let Some(view) = view else { return false };
                let data = ElectedData {
                    epoch: *epoch,
                    id: self.local.node_id.clone(),
                    address: self.address.clone(),
                    client: self.client.clone(),
                };
                match self.membership.claim(view.clone(), data).await {
                    Ok(true) => {}
                    Ok(false) => return false,
                    Err(e) => {
                        tracing::warn!("claiming mastership failed: {e}");
                        return false;
                    }
                }
                self.stop_following().await;
                if let Err(e) = self.state.promise(*epoch) {
                    return self.fail(e);
                }
                if let Err(e) = self.repl.start_master(*epoch) {
                    tracing::error!("cannot start epoch {epoch}: {e}");
                    self.broker.failed().cancel();
                    return false;
                }
                self.local.claimed(*epoch);
                let position = self.repl.store().position().0;
                let need = election::required_acks(self.repl.settings().replicas);
                tracing::info!(
                    epoch,
                    position,
                    "Promoted to master; waiting for {need} replica(s) to catch up"
                );
                self.promoting = Some((*epoch, position));
                true
            }
        }
    }

    fn fail(&mut self, e: HaError) -> bool {
        tracing::error!("{e}; stopping");
        self.broker.failed().cancel();
        false
    }

    /// Opens client connectors once enough slaves have the master's log.
    async fn finish_promotion(&mut self) {
        let Some((epoch, _)) = self.promoting.take() else {
            return;
        };
        if self.local.role != (ElectionRole::Master { epoch }) {
            return;
        }
        self.redirect.stop().await;
        let broker = self.broker.clone();
        match tokio::task::spawn_blocking(move || broker.restore()).await {
            Ok(Ok(n)) => {
                tracing::info!(epoch, messages = n, "replicas caught up: serving clients");
                self.broker.set_role(Role::Master);
            }
            Ok(Err(e)) => {
                tracing::error!("recovering the store on promotion: {e}");
                self.broker.failed().cancel();
            }
            Err(e) => tracing::error!("recovery task: {e}"),
        }
    }

    fn demote_if_master(&mut self) {
        if matches!(self.local.role, ElectionRole::Master { .. }) {
            tracing::warn!("Demoted to slave");
            self.repl.stop_master();
            self.promoting = None;
            self.broker.set_role(Role::Slave { master: None });
            self.broker.close_all("this broker is no longer the master");
        }
    }

    fn start_following(&mut self, target: &ElectedData) {
        let stop = CancellationToken::new();
        let repl = self.repl.clone();
        let address = target.address.clone();
        let node_id = self.local.node_id.clone();
        let epoch = target.epoch;
        let s = stop.clone();
        let task = tokio::spawn(async move { repl.follow(address, node_id, epoch, s).await });
        self.follow = Some(Follow {
            master: target.id.clone(),
            epoch,
            stop,
            task,
            started: Instant::now(),
        });
    }

    async fn stop_following(&mut self) {
        if let Some(f) = self.follow.take() {
            f.stop.cancel();
            let _ = f.task.await;
        }
    }

    /// The stream to the master ended. Retry a master that is still
    /// promoting; give up one that is dead, silent or demoted.
    fn follow_failed(&mut self, ended: Result<(), ReplicationError>) -> Option<Step> {
        let f = self.follow.take()?;
        let retry = matches!(&ended, Err(ReplicationError::Refused(_)))
            && f.started.elapsed() < REFUSED_GRACE;
        match ended {
            Ok(()) => tracing::info!("stopped following"),
            Err(e) => tracing::warn!(epoch = f.epoch, "replication from the master failed: {e}"),
        }
        if retry {
            let target = ElectedData {
                epoch: f.epoch,
                id: f.master.clone(),
                address: self.membership_address(&f.master).unwrap_or_default(),
                client: None,
            };
            let started = f.started;
            let stop = CancellationToken::new();
            let repl = self.repl.clone();
            let node_id = self.local.node_id.clone();
            let s = stop.clone();
            let task = tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(50)).await;
                repl.follow(target.address, node_id, target.epoch, s).await
            });
            self.follow = Some(Follow {
                master: f.master,
                epoch: f.epoch,
                stop,
                task,
                started,
            });
            return None;
        }
        self.local.lost_master()
    }

    fn membership_address(&self, node_id: &str) -> Option<String> {
        let views = self.membership.views();
        let v = views.borrow();
        let v = v.as_ref()?;
        v.elected
            .as_ref()
            .filter(|e| e.id == node_id)
            .map(|e| e.address.clone())
            .or_else(|| v.member(node_id).map(|m| m.address.clone()))
    }
}

async fn follow_ended(follow: &mut Option<Follow>) -> Result<(), ReplicationError> {
    match follow {
        Some(f) => match (&mut f.task).await {
            Ok(r) => r,
            Err(e) => Err(ReplicationError::Protocol(format!("follow task: {e}"))),
        },
        None => std::future::pending().await,
    }
}

/// Resolves `true` once `replicas/2` slaves acked the promotion position
/// (`false` if mastership ended first); pending when not promoting.
async fn promotion(repl: &Arc<Replicator>, promoting: Option<(u64, u64)>) -> bool {
    let Some((epoch, position)) = promoting else {
        return std::future::pending().await;
    };
    let need = election::required_acks(repl.settings().replicas);
    let wait = repl.wait_acks(epoch, position, need, false);
    tokio::pin!(wait);
    loop {
        tokio::select! {
            ok = &mut wait => return ok,
            _ = tokio::time::sleep(Duration::from_secs(1)) => {
                tracing::info!(
                    "Store update waiting on {need} replica(s) to catch up to log position {position}."
                );
            }
        }
    }
}

/// `slaveRedirect`: while slave, accept STOMP connections and answer with
/// an ERROR frame whose `master` header names the master's client address,
/// so a failover client can go straight there.
struct Redirect {
    binds: Vec<String>,
    master: tokio::sync::watch::Sender<Option<String>>,
    stop: Option<(CancellationToken, Vec<JoinHandle<()>>)>,
}

impl Redirect {
    fn new(binds: Vec<String>) -> Self {
        let mut r = Redirect {
            binds,
            master: tokio::sync::watch::channel(None).0,
            stop: None,
        };
        r.ensure_running();
        r
    }

    fn point_at(&mut self, master: Option<String>) {
        self.master.send_replace(master);
        self.ensure_running();
    }

    fn ensure_running(&mut self) {
        if self.binds.is_empty() || self.stop.is_some() {
            return;
        }
        let stop = CancellationToken::new();
        let tasks = self
            .binds
            .iter()
            .map(|b| {
                tokio::spawn(redirect_loop(
                    b.clone(),
                    self.master.subscribe(),
                    stop.clone(),
                ))
            })
            .collect();
        self.stop = Some((stop, tasks));
    }

    /// Releases the client ports (before the server binds them as master).
    async fn stop(&mut self) {
        if let Some((stop, tasks)) = self.stop.take() {
            stop.cancel();
            for t in tasks {
                let _ = t.await;
            }
        }
    }
}

async fn redirect_loop(
    bind: String,
    master: tokio::sync::watch::Receiver<Option<String>>,
    stop: CancellationToken,
) {
    // The server may still be releasing the port after a demotion.
    let listener = loop {
        match TcpListener::bind(&bind).await {
            Ok(l) => break l,
            Err(_) => tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(50)) => {}
                _ = stop.cancelled() => return,
            },
        }
    };
    loop {
        let (mut stream, _) = tokio::select! {
            a = listener.accept() => match a { Ok(a) => a, Err(_) => continue },
            _ = stop.cancelled() => return,
        };
        let m = master.borrow().clone();
        tokio::spawn(async move {
            let mut frame = Frame::error(
                "this broker is a slave",
                "this broker is a slave of a replicated group and accepts no clients; connect to the master",
            );
            if let Some(m) = m {
                frame = frame.with_header("master", m);
            }
            if let Ok(bytes) = encode_to_bytes(&frame, Version::V1_2) {
                let _ = stream.write_all(&bytes).await;
                let _ = stream.shutdown().await;
            }
        });
    }
}

/// Gaps longer than `limit` between the ticks of a task of its own: the
/// process (or its runtime) was frozen. Measured apart from the driver,
/// whose loop may be busy for a while without any freeze (a promotion
/// rebuilding a large backlog) and must not mistake that for one.
fn watch_for_freezes(
    limit: Duration,
    shutdown: CancellationToken,
) -> tokio::sync::mpsc::UnboundedReceiver<Duration> {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last = Instant::now();
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = shutdown.cancelled() => return,
            }
            let gap = last.elapsed();
            last = Instant::now();
            if gap > limit && tx.send(gap).is_err() {
                return;
            }
        }
    });
    rx
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_file_keeps_the_node_id_and_only_raises_the_promise() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = StateFile::open(dir.path()).unwrap();
        let id = s.state.node_id.clone();
        assert_eq!(id.len(), 32);
        s.promise(5).unwrap();
        s.promise(3).unwrap();
        let again = StateFile::open(dir.path()).unwrap();
        assert_eq!(again.state.node_id, id);
        assert_eq!(again.state.min_epoch, 5);
    }

    /// A long await (the driver promoting over a large backlog) is no
    /// freeze; a runtime that cannot run at all for longer than the limit
    /// (SIGSTOP, or a blocked worker) is.
    #[tokio::test(flavor = "current_thread")]
    async fn freezes_are_stalls_of_the_runtime_not_long_awaits() {
        let shutdown = CancellationToken::new();
        let limit = Duration::from_secs(1);
        let mut frozen = watch_for_freezes(limit, shutdown.clone());
        tokio::time::sleep(limit * 2).await;
        assert!(frozen.try_recv().is_err(), "an await taken for a freeze");
        std::thread::sleep(limit * 2);
        let gap = tokio::time::timeout(limit, frozen.recv())
            .await
            .expect("the stall is reported")
            .expect("watch running");
        assert!(gap >= limit * 2, "{gap:?}");
        shutdown.cancel();
    }

    #[test]
    fn addresses() {
        assert_eq!(host_port("tcp://0.0.0.0:61619"), "0.0.0.0:61619");
        assert_eq!(host_port("127.0.0.1:5"), "127.0.0.1:5");
        assert_eq!(advertised("127.0.0.1", None), "127.0.0.1");
        assert_eq!(advertised("0.0.0.0", Some("amq1")), "amq1");
    }
}
