//! Master → slave streaming of journal records, and the store that makes a
//! persistent send wait for the `sync` policy.
//!
//! # Protocol (TCP, one connection per slave)
//! Frames are length-delimited (4-byte big-endian length), their first byte
//! says what they are:
//!
//! | kind | from | payload |
//! |---|---|---|
//! | `L` login | slave | JSON `Login`: securityToken, node id, the epoch it follows, its epoch history |
//! | `A` accept | master | JSON `Accept`: where the slave truncates (or resets), the master's position |
//! | `R` refuse | master | UTF-8 reason |
//! | `E` entries | master | epoch (u64 BE) then journal entry frames (`Entry::encode`) |
//! | `H` heartbeat | master | epoch, position (u64 BE each) |
//! | `K` ack | slave | epoch, written, durable (u64 BE each) |
//!
//! Every `E` and `H` frame names the master's epoch and the slave checks it
//! against the epoch it follows, and every entry's epoch against that: a
//! stale master's records are refused. The slave truncates its log to where
//! it leaves the master's history (epoch histories compared, see
//! [`EpochHistory::common_prefix`]) before it appends anything, and acks
//! only after that, so an ack always vouches for a prefix of the master's
//! log.

use crate::config::{Secret, SyncTo};
use crate::election::{EpochHistory, Tip};
use crate::store::{
    AppendFuture, Entry, Epoch, Position, Record, Recovered, Store, StoreError, StoreStats,
};
use bytes::{Buf, BufMut, Bytes, BytesMut};
use futures::future::BoxFuture;
use futures::{SinkExt, StreamExt};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio_util::codec::{Framed, LengthDelimitedCodec};
use tokio_util::sync::CancellationToken;

const MAX_FRAME: usize = 16 * 1024 * 1024;
/// How much journal a master ships per `E` frame at most.
const BATCH_BYTES: usize = 1024 * 1024;

#[derive(Debug, Clone)]
pub struct ReplicationSettings {
    pub security_token: Secret,
    /// `replicas`: a receipt needs `replicas/2` slave acks.
    pub replicas: usize,
    pub sync: SyncTo,
    /// How often an idle master says it is alive; a slave that hears nothing
    /// for 4 of these gives the master up.
    pub heartbeat: Duration,
    /// How long a persistent send waits for its acks before it fails.
    pub write_timeout: Duration,
}

/// An ack from one slave.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct SlaveAck {
    pub epoch: u64,
    /// Appended to its journal (in memory).
    pub written: u64,
    /// Fsynced.
    pub durable: u64,
}

/// Not `Debug`: it carries the securityToken.
#[derive(Serialize, Deserialize)]
struct Login {
    security_token: String,
    node_id: String,
    epoch: u64,
    runs: Vec<(u64, u64)>,
    first: u64,
    last: u64,
}

#[derive(Debug, Serialize, Deserialize)]
struct Accept {
    epoch: u64,
    /// Drop everything after this position...
    truncate_after: u64,
    /// ...or, when the master no longer has what follows the slave's log,
    /// discard the whole log and continue at this position.
    reset_to: Option<u64>,
    master_position: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum ReplicationError {
    #[error("replication connection: {0}")]
    Io(#[from] std::io::Error),
    #[error("the master refused us: {0}")]
    Refused(String),
    #[error("protocol violation: {0}")]
    Protocol(String),
    #[error("record of epoch {got} from the master of epoch {expected}: refused")]
    StaleEpoch { expected: u64, got: u64 },
    #[error("no word from the master for {0:?}")]
    Silent(Duration),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The replication side of one node: its store, whether it is master (and
/// of which epoch), and the acks its slaves sent.
pub struct Replicator {
    store: Arc<dyn Store>,
    settings: ReplicationSettings,
    master_epoch: watch::Sender<Option<u64>>,
    acks: watch::Sender<BTreeMap<String, SlaveAck>>,
    /// Serialises appends with reading the position they got.
    append_lock: Mutex<()>,
}

impl Replicator {
    pub fn new(store: Arc<dyn Store>, settings: ReplicationSettings) -> Arc<Replicator> {
        Arc::new(Replicator {
            store,
            settings,
            master_epoch: watch::channel(None).0,
            acks: watch::channel(BTreeMap::new()).0,
            append_lock: Mutex::new(()),
        })
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    pub fn settings(&self) -> &ReplicationSettings {
        &self.settings
    }

    /// The store's epoch history.
    pub fn history(&self) -> EpochHistory {
        history_of(&*self.store)
    }

    pub fn tip(&self) -> Tip {
        self.history().tip()
    }

    pub fn master_epoch(&self) -> Option<u64> {
        *self.master_epoch.borrow()
    }

    /// Becomes master of `epoch`: new records carry it, slaves of it may
    /// attach.
    pub fn start_master(&self, epoch: u64) -> Result<(), StoreError> {
        self.store.set_epoch(Epoch(epoch))?;
        self.acks.send_replace(BTreeMap::new());
        self.master_epoch.send_replace(Some(epoch));
        Ok(())
    }

    /// Stops being master: slave streams close, pending writes never get
    /// their acks.
    pub fn stop_master(&self) {
        self.master_epoch.send_replace(None);
        self.acks.send_replace(BTreeMap::new());
    }

    /// The slaves attached now and what they acked.
    pub fn slaves(&self) -> BTreeMap<String, SlaveAck> {
        self.acks.borrow().clone()
    }

    /// Waits until `need` slaves of `epoch` acked `position` (written, or
    /// durable if `durable`).
    pub async fn wait_acks(&self, epoch: u64, position: u64, need: usize, durable: bool) -> bool {
        if need == 0 {
            return true;
        }
        let mut rx = self.acks.subscribe();
        let mut master = self.master_epoch.subscribe();
        let enough = async {
            rx.wait_for(|acks| {
                acks.values()
                    .filter(|a| {
                        a.epoch == epoch && if durable { a.durable } else { a.written } >= position
                    })
                    .count()
                    >= need
            })
            .await
            .is_ok()
        };
        tokio::select! {
            ok = enough => ok,
            _ = until_not_master(&mut master, epoch) => false,
        }
    }

    /// Serves slaves on `listener` until `shutdown`.
    pub async fn serve(self: Arc<Self>, listener: TcpListener, shutdown: CancellationToken) {
        loop {
            let (stream, peer) = tokio::select! {
                a = listener.accept() => match a {
                    Ok(a) => a,
                    Err(e) => {
                        tracing::warn!("replication accept failed: {e}");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
                _ = shutdown.cancelled() => return,
            };
            let this = self.clone();
            let shutdown = shutdown.clone();
            tokio::spawn(async move {
                if let Err(e) = this.serve_slave(stream, shutdown).await {
                    tracing::info!(%peer, "replication session ended: {e}");
                }
            });
        }
    }

    async fn serve_slave(
        self: Arc<Self>,
        stream: TcpStream,
        shutdown: CancellationToken,
    ) -> Result<(), ReplicationError> {
        stream.set_nodelay(true)?;
        let mut framed = framed(stream);
        let login: Login = match tokio::time::timeout(Duration::from_secs(5), framed.next()).await {
            Ok(Some(frame)) => parse_json(b'L', &frame?)?,
            _ => return Err(ReplicationError::Protocol("no login".into())),
        };
        if !constant_time_eq(
            login.security_token.as_bytes(),
            self.settings.security_token.expose().as_bytes(),
        ) {
            let _ = framed.send(frame(b'R', b"Invalid security_token")).await;
            return Err(ReplicationError::Refused(format!(
                "{}: invalid security_token",
                login.node_id
            )));
        }
        let Some(epoch) = self.master_epoch().filter(|&e| e == login.epoch) else {
            let reason = format!(
                "not the master of epoch {} (master of {:?})",
                login.epoch,
                self.master_epoch()
            );
            let _ = framed.send(frame(b'R', reason.as_bytes())).await;
            return Err(ReplicationError::Refused(reason));
        };
        let mine = self.history();
        let theirs = EpochHistory::from_runs(login.runs, login.first, login.last);
        let common = mine.common_prefix(&theirs);
        let (truncate_after, reset_to, mut cursor) = if common + 1 < mine.first() {
            (0, Some(mine.first()), mine.first() - 1)
        } else {
            (common, None, common)
        };
        let accept = Accept {
            epoch,
            truncate_after,
            reset_to,
            master_position: self.store.position().0,
        };
        framed.send(json_frame(b'A', &accept)).await?;
        tracing::info!(slave = %login.node_id, epoch, from = cursor, "slave attached");

        let (mut sink, mut stream) = framed.split();
        let node = login.node_id.clone();
        let acks = self.acks.clone();
        let reader = async move {
            while let Some(f) = stream.next().await {
                let f = f?;
                let (ack_epoch, written, durable) = parse_ack(&f)?;
                if ack_epoch != epoch {
                    return Err(ReplicationError::StaleEpoch {
                        expected: epoch,
                        got: ack_epoch,
                    });
                }
                acks.send_modify(|m| {
                    m.insert(
                        node.clone(),
                        SlaveAck {
                            epoch,
                            written,
                            durable,
                        },
                    );
                });
            }
            Ok::<_, ReplicationError>(())
        };
        let mut appended = self.store.subscribe();
        let mut master = self.master_epoch.subscribe();
        let writer = async {
            let mut heartbeat = tokio::time::interval(self.settings.heartbeat);
            loop {
                // Read only when the journal moved past what was shipped.
                let available = appended.borrow_and_update().0;
                if available > cursor {
                    // Fresh records come from memory; a slave further
                    // behind is served from the files, off the async task.
                    let entries = match self.store.read_recent(Position(cursor), BATCH_BYTES) {
                        Some(r) => r,
                        None => tokio::task::block_in_place(|| {
                            self.store.read_after(Position(cursor), BATCH_BYTES)
                        }),
                    }?;
                    if let Some(last) = entries.last() {
                        cursor = last.position.0;
                        let mut v = Vec::with_capacity(BATCH_BYTES / 8);
                        v.push(b'E');
                        v.extend_from_slice(&epoch.to_be_bytes());
                        for e in &entries {
                            e.encode(&mut v);
                        }
                        sink.send(Bytes::from(v)).await?;
                        continue;
                    }
                }
                tokio::select! {
                    r = async { appended.wait_for(|p| p.0 > cursor).await.map(|_| ()) } => {
                        r.map_err(|_| StoreError::Closed)?;
                    }
                    _ = heartbeat.tick() => {
                        let mut buf = BytesMut::with_capacity(17);
                        buf.put_u8(b'H');
                        buf.put_u64(epoch);
                        buf.put_u64(cursor);
                        sink.send(buf.freeze()).await?;
                    }
                    _ = until_not_master(&mut master, epoch) => return Ok(()),
                    _ = shutdown.cancelled() => return Ok(()),
                }
            }
        };
        let outcome = tokio::select! {
            r = reader => r,
            r = writer => r,
        };
        self.acks.send_modify(|m| {
            m.remove(&login.node_id);
        });
        outcome
    }

    /// Follows the master at `address` (`tcp://host:port` or `host:port`)
    /// in `epoch` until the stream ends or `stop` is cancelled (`Ok`). Every
    /// record lands in the local store with its position and epoch.
    pub async fn follow(
        self: Arc<Self>,
        address: String,
        node_id: String,
        epoch: u64,
        stop: CancellationToken,
    ) -> Result<(), ReplicationError> {
        let addr = address.trim_start_matches("tcp://");
        let stream = tokio::time::timeout(Duration::from_secs(2), TcpStream::connect(addr))
            .await
            .map_err(|_| {
                std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!("connecting to {addr}"),
                )
            })??;
        stream.set_nodelay(true)?;
        let mut framed = framed(stream);
        let history = self.history();
        let login = Login {
            security_token: self.settings.security_token.expose().to_owned(),
            node_id,
            epoch,
            runs: history.runs().to_vec(),
            first: history.first(),
            last: history.tip().position,
        };
        framed.send(json_frame(b'L', &login)).await?;
        let silence = self.settings.heartbeat * 4;
        let reply =
            match tokio::time::timeout(silence.max(Duration::from_secs(2)), framed.next()).await {
                Ok(Some(f)) => f?,
                Ok(None) => {
                    return Err(ReplicationError::Protocol(
                        "master closed the connection".into(),
                    ))
                }
                Err(_) => return Err(ReplicationError::Silent(silence)),
            };
        if reply.first() == Some(&b'R') {
            return Err(ReplicationError::Refused(
                String::from_utf8_lossy(&reply[1..]).into_owned(),
            ));
        }
        let accept: Accept = parse_json(b'A', &reply)?;
        if accept.epoch != epoch {
            return Err(ReplicationError::StaleEpoch {
                expected: epoch,
                got: accept.epoch,
            });
        }
        match accept.reset_to {
            Some(next) => self.store.reset(Position(next)).await?,
            None if accept.truncate_after < self.store.position().0 => {
                tracing::warn!(
                    from = accept.truncate_after,
                    to = self.store.position().0,
                    "truncating records the master never had"
                );
                self.store
                    .truncate_after(Position(accept.truncate_after))
                    .await?;
            }
            None => {}
        }
        tracing::info!(epoch, position = self.store.position().0, master_position = accept.master_position, %address, "attached to the master");

        let (mut sink, mut stream) = framed.split();
        let (ack_tx, mut ack_rx) = mpsc::unbounded_channel::<()>();
        let durable = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let store = self.store.clone();
        let durable_w = durable.clone();
        // Acks go out in order from one task: written now, durable later.
        let acker = async move {
            while ack_rx.recv().await.is_some() {
                while ack_rx.try_recv().is_ok() {}
                let mut buf = BytesMut::with_capacity(25);
                buf.put_u8(b'K');
                buf.put_u64(epoch);
                buf.put_u64(store.position().0);
                buf.put_u64(durable_w.load(std::sync::atomic::Ordering::Acquire));
                sink.send(buf.freeze()).await?;
            }
            Ok::<_, ReplicationError>(())
        };
        let _ = ack_tx.send(());
        let receiver = async {
            loop {
                let f = tokio::select! {
                    f = tokio::time::timeout(silence, stream.next()) => match f {
                        Ok(Some(f)) => f?,
                        Ok(None) => return Err(ReplicationError::Protocol("master closed the stream".into())),
                        Err(_) => return Err(ReplicationError::Silent(silence)),
                    },
                    _ = stop.cancelled() => return Ok(()),
                };
                let mut body = &f[..];
                let kind = body.get_u8_checked()?;
                let their_epoch = body.get_u64_checked()?;
                if their_epoch != epoch {
                    return Err(ReplicationError::StaleEpoch {
                        expected: epoch,
                        got: their_epoch,
                    });
                }
                match kind {
                    b'H' => {
                        let _ = ack_tx.send(());
                    }
                    b'E' => {
                        let entries = decode_entries(body)?;
                        let expected = self.store.position().0 + 1;
                        match entries.first() {
                            Some(first) if first.position.0 != expected => {
                                return Err(ReplicationError::Protocol(format!(
                                    "entries start at {}, expected {expected}",
                                    first.position
                                )))
                            }
                            _ => {}
                        }
                        if let Some(bad) = entries.iter().find(|e| e.epoch.0 > epoch) {
                            return Err(ReplicationError::StaleEpoch {
                                expected: epoch,
                                got: bad.epoch.0,
                            });
                        }
                        let fut = self.store.append_replicated(entries);
                        let _ = ack_tx.send(());
                        let durable = durable.clone();
                        let ack_tx = ack_tx.clone();
                        let sync_remote = self.settings.sync.remote_disk;
                        tokio::spawn(async move {
                            if let Ok(p) = fut.await {
                                durable.fetch_max(p.0, std::sync::atomic::Ordering::AcqRel);
                                if sync_remote {
                                    let _ = ack_tx.send(());
                                }
                            }
                        });
                    }
                    other => {
                        return Err(ReplicationError::Protocol(format!(
                            "unexpected frame kind {other}"
                        )))
                    }
                }
            }
        };
        tokio::select! {
            r = receiver => r,
            r = acker => r,
        }
    }
}

/// The store a replicated broker writes to: the local journal, with every
/// append waiting for the `sync` policy on top. While not master it writes
/// nothing: such an append never completes (the demotion closes the client
/// connection that made it, without a receipt).
pub struct ReplicatedStore {
    repl: Arc<Replicator>,
}

impl ReplicatedStore {
    pub fn new(repl: Arc<Replicator>) -> Arc<ReplicatedStore> {
        Arc::new(ReplicatedStore { repl })
    }
}

impl Store for ReplicatedStore {
    fn append(&self, records: Vec<Record>) -> AppendFuture {
        let repl = self.repl.clone();
        let Some(epoch) = repl.master_epoch() else {
            return Box::pin(std::future::pending());
        };
        let (local, position) = {
            let _g = repl.append_lock.lock().unwrap_or_else(|e| e.into_inner());
            let f = repl.store.append(records);
            (f, repl.store.position())
        };
        let s = &repl.settings;
        let need = if s.sync.remote_mem || s.sync.remote_disk {
            crate::election::required_acks(s.replicas)
        } else {
            0
        };
        let durable = s.sync.remote_disk;
        let local_disk = s.sync.local_disk;
        let timeout = s.write_timeout;
        Box::pin(async move {
            // Without local_disk (quorum_mem, remote_*), the master's own
            // copy only has to be in memory: its fsync finishes in the
            // background, and a failure there is sticky (the journal refuses
            // every later append, so the broker stops).
            let local = async move {
                if local_disk {
                    local.await.map(|_| ())
                } else {
                    tokio::spawn(async move {
                        if let Err(e) = local.await {
                            tracing::error!("journal write failed after the quorum had it: {e}");
                        }
                    });
                    Ok(())
                }
            };
            let remote =
                tokio::time::timeout(timeout, repl.wait_acks(epoch, position.0, need, durable));
            let (local, remote) = tokio::join!(local, remote);
            local?;
            match remote {
                Ok(true) => Ok(position),
                Ok(false) => Err(StoreError::NotReplicated(format!(
                    "no longer master of epoch {epoch}: position {position} not replicated"
                ))),
                Err(_) => Err(StoreError::NotReplicated(format!(
                    "fewer than {need} slave(s) acknowledged position {position} within {timeout:?}; \
                     is a quorum of the group up?"
                ))),
            }
        })
    }

    fn recover(&self) -> Result<Recovered, StoreError> {
        self.repl.store.recover()
    }
    fn position(&self) -> Position {
        self.repl.store.position()
    }
    fn first_position(&self) -> Position {
        self.repl.store.first_position()
    }
    fn epoch(&self) -> Epoch {
        self.repl.store.epoch()
    }
    fn set_epoch(&self, epoch: Epoch) -> Result<(), StoreError> {
        self.repl.store.set_epoch(epoch)
    }
    fn subscribe(&self) -> watch::Receiver<Position> {
        self.repl.store.subscribe()
    }
    fn read_after(&self, after: Position, max_bytes: usize) -> Result<Vec<Entry>, StoreError> {
        self.repl.store.read_after(after, max_bytes)
    }

    fn read_recent(
        &self,
        after: Position,
        max_bytes: usize,
    ) -> Option<Result<Vec<Entry>, StoreError>> {
        self.repl.store.read_recent(after, max_bytes)
    }
    fn append_replicated(&self, entries: Vec<Entry>) -> AppendFuture {
        self.repl.store.append_replicated(entries)
    }
    fn truncate_after(&self, position: Position) -> BoxFuture<'static, Result<(), StoreError>> {
        self.repl.store.truncate_after(position)
    }
    fn reset(&self, next: Position) -> BoxFuture<'static, Result<(), StoreError>> {
        self.repl.store.reset(next)
    }
    fn epoch_history(&self) -> Vec<(Epoch, Position)> {
        self.repl.store.epoch_history()
    }
    fn stats(&self) -> StoreStats {
        self.repl.store.stats()
    }
}

async fn until_not_master(master: &mut watch::Receiver<Option<u64>>, epoch: u64) {
    let _ = master.wait_for(|m| *m != Some(epoch)).await;
}

fn history_of(store: &dyn Store) -> EpochHistory {
    let runs = store
        .epoch_history()
        .into_iter()
        .map(|(e, p)| (e.0, p.0))
        .collect();
    EpochHistory::from_runs(runs, store.first_position().0, store.position().0)
}

fn framed(stream: TcpStream) -> Framed<TcpStream, LengthDelimitedCodec> {
    LengthDelimitedCodec::builder()
        .max_frame_length(MAX_FRAME)
        .new_framed(stream)
}

fn frame(kind: u8, body: &[u8]) -> Bytes {
    let mut b = BytesMut::with_capacity(1 + body.len());
    b.put_u8(kind);
    b.extend_from_slice(body);
    b.freeze()
}

fn json_frame<T: Serialize>(kind: u8, value: &T) -> Bytes {
    frame(kind, &serde_json::to_vec(value).expect("serialisable"))
}

fn parse_json<T: for<'de> Deserialize<'de>>(kind: u8, f: &[u8]) -> Result<T, ReplicationError> {
    match f.split_first() {
        Some((&k, body)) if k == kind => serde_json::from_slice(body)
            .map_err(|e| ReplicationError::Protocol(format!("bad {} frame: {e}", kind as char))),
        Some((&b'R', reason)) => Err(ReplicationError::Refused(
            String::from_utf8_lossy(reason).into_owned(),
        )),
        _ => Err(ReplicationError::Protocol(format!(
            "expected a {} frame",
            kind as char
        ))),
    }
}

fn parse_ack(f: &[u8]) -> Result<(u64, u64, u64), ReplicationError> {
    let mut b = f;
    if b.get_u8_checked()? != b'K' {
        return Err(ReplicationError::Protocol("expected an ack".into()));
    }
    Ok((
        b.get_u64_checked()?,
        b.get_u64_checked()?,
        b.get_u64_checked()?,
    ))
}

fn decode_entries(mut body: &[u8]) -> Result<Vec<Entry>, ReplicationError> {
    let mut out = Vec::new();
    while !body.is_empty() {
        let (e, used) = Entry::decode(body)
            .map_err(|e| ReplicationError::Protocol(format!("bad entry from the master: {e}")))?;
        out.push(e);
        body = &body[used..];
    }
    Ok(out)
}

trait CheckedBuf {
    fn get_u8_checked(&mut self) -> Result<u8, ReplicationError>;
    fn get_u64_checked(&mut self) -> Result<u64, ReplicationError>;
}

impl CheckedBuf for &[u8] {
    fn get_u8_checked(&mut self) -> Result<u8, ReplicationError> {
        if self.remaining() < 1 {
            return Err(ReplicationError::Protocol("short frame".into()));
        }
        Ok(self.get_u8())
    }
    fn get_u64_checked(&mut self) -> Result<u64, ReplicationError> {
        if self.remaining() < 8 {
            return Err(ReplicationError::Protocol("short frame".into()));
        }
        Ok(self.get_u64())
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
