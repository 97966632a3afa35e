//! The broker core, protocol-neutral: destinations, subscriptions, dispatch by
//! prefetch credit, acknowledgement modes, redelivery and dead letters,
//! expiry, transactions and memory flow control for non-persistent messages.
//!
//! All state sits behind one mutex with short critical sections (no I/O and no
//! awaiting inside). Persistent changes are appended to the [`Store`] while
//! the lock is held, so the journal order is the order the broker decided;
//! the durability future is awaited after the lock is released
//! ([`Completion`]).

use crate::config::Policies;
use crate::message::{Destination, Message, MessageId, PropertyValue};
use crate::role::{self, Role, RoleSender, RoleWatch};
use crate::store::{AppendFuture, Record, Store, StoreError};
use serde::Serialize;
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::{mpsc, Semaphore};
use tokio_util::sync::CancellationToken;

/// Identifies a client connection inside the broker.
pub type ConnId = u64;
/// Identifies a subscription inside the broker.
pub type SubId = u64;

/// ActiveMQ's default queue prefetch for STOMP subscriptions.
pub const DEFAULT_PREFETCH: usize = 1000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AckMode {
    /// Acknowledged once written to the client.
    Auto,
    /// An ACK acknowledges every earlier message of the subscription too.
    Client,
    /// An ACK acknowledges exactly one message.
    ClientIndividual,
}

/// How a client names the message it acknowledges: a delivery tag (STOMP
/// 1.2's `ack` header) or the message id (1.0/1.1, optionally with the
/// subscription).
#[derive(Debug, Clone, Copy)]
pub enum AckRef<'a> {
    Tag(u64),
    MessageId {
        id: &'a str,
        subscription: Option<&'a str>,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    #[error("subscription id {0:?} is already in use on this connection")]
    DuplicateSubscription(String),
    #[error("no subscription with id {0:?} on this connection")]
    UnknownSubscription(String),
    #[error("no delivered, unacknowledged message matches {0}")]
    UnknownAck(String),
    #[error("ACK or NACK on subscription {0:?}, which uses ack:auto")]
    AckOnAutoSubscription(String),
    #[error("transaction {0:?} is already open")]
    DuplicateTransaction(String),
    #[error("no open transaction {0:?}")]
    UnknownTransaction(String),
    #[error("the connection is closed")]
    NotConnected,
    #[error("store: {0}")]
    Store(#[from] StoreError),
}

/// Holds a non-persistent message's share of the memory limit; returned when
/// the last reference to the message is dropped (acked, expired, dropped).
#[derive(Debug)]
struct MemoryTicket {
    memory: Arc<Memory>,
    permits: u32,
    bytes: u64,
}

impl Drop for MemoryTicket {
    fn drop(&mut self) {
        self.memory.used.fetch_sub(self.bytes, Ordering::Relaxed);
        self.memory.semaphore.add_permits(self.permits as usize);
    }
}

/// The memory limit, in KiB permits.
#[derive(Debug)]
struct Memory {
    semaphore: Semaphore,
    total_permits: u32,
    limit: u64,
    used: AtomicU64,
}

impl Memory {
    fn new(limit: u64) -> Arc<Memory> {
        let total = (limit / 1024).clamp(1, u32::MAX as u64) as u32;
        Arc::new(Memory {
            semaphore: Semaphore::new(total as usize),
            total_permits: total,
            limit,
            used: AtomicU64::new(0),
        })
    }

    fn cost(&self, message: &Message) -> (u32, u64) {
        let bytes = message.body.len() as u64 + 256;
        let permits = bytes.div_ceil(1024).min(self.total_permits as u64) as u32;
        (permits, bytes)
    }

    /// Waits until the message fits under the limit: producer flow control.
    async fn acquire(self: &Arc<Self>, message: &Message) -> MemoryTicket {
        let (permits, bytes) = self.cost(message);
        self.semaphore
            .acquire_many(permits)
            .await
            .expect("the memory semaphore is never closed")
            .forget();
        self.used.fetch_add(bytes, Ordering::Relaxed);
        MemoryTicket {
            memory: self.clone(),
            permits,
            bytes,
        }
    }

    /// Without waiting, for copies the broker makes itself (dead letters).
    fn try_acquire(self: &Arc<Self>, message: &Message) -> Option<MemoryTicket> {
        let (permits, bytes) = self.cost(message);
        self.semaphore.try_acquire_many(permits).ok()?.forget();
        self.used.fetch_add(bytes, Ordering::Relaxed);
        Some(MemoryTicket {
            memory: self.clone(),
            permits,
            bytes,
        })
    }
}

/// A message held by the broker, shared by every subscription it is queued
/// for.
#[derive(Debug)]
pub struct Queued {
    pub message: Message,
    _ticket: Option<MemoryTicket>,
}

/// A message handed to a connection to write.
#[derive(Debug)]
pub struct Delivery {
    pub sub: SubId,
    /// The client's subscription id.
    pub subscription: Arc<str>,
    /// Connection-unique tag the client acknowledges with.
    pub tag: u64,
    pub message: Arc<Queued>,
    pub redelivered: bool,
    pub ack: AckMode,
}

/// What the broker sends to a connection.
#[derive(Debug)]
pub enum Outbound {
    Deliver(Delivery),
    /// Tell the client why (ERROR) and close: shutdown, demotion.
    Close(String),
}

/// Resolves when the persistent part of an operation is durable.
#[must_use = "a receipt must wait for the completion"]
pub struct Completion(Option<AppendFuture>);

impl Completion {
    pub fn done() -> Completion {
        Completion(None)
    }

    /// Whether there is anything to wait for.
    pub fn is_pending(&self) -> bool {
        self.0.is_some()
    }

    pub async fn wait(self) -> Result<(), BrokerError> {
        match self.0 {
            None => Ok(()),
            Some(f) => f.await.map(|_| ()).map_err(BrokerError::Store),
        }
    }
}

/// How a subscription takes messages beyond its ack mode and prefetch:
/// ActiveMQ's consumer priority (higher first; a consumer gets messages only
/// while every higher one is out of prefetch credit), and for a network
/// bridge's demand subscription where its messages go ([`crate::network`]).
#[derive(Debug, Clone, Default)]
pub struct SubscribeOptions {
    /// Clients 0; network demand -5 and lower with
    /// decreaseNetworkConsumerPriority, so local consumers win.
    pub priority: i32,
    pub network: Option<NetworkTarget>,
    /// A JMS selector: only matching messages are delivered.
    pub selector: Option<Arc<crate::selector::Selector>>,
}

/// The far end of a network demand subscription.
#[derive(Debug, Clone)]
pub struct NetworkTarget {
    /// The broker the messages are forwarded to. A message whose broker path
    /// already holds it is not sent there (no loops), unless the
    /// destination's replayWhenNoConsumers policy lets stuck messages go back.
    pub remote: String,
    /// The demand's broker path (the remote broker first): what advisories
    /// report, so peers can apply consumerTTL.
    pub path: Vec<String>,
    /// messageTTL: a message that already passed this many brokers is not
    /// forwarded; negative means unlimited.
    pub message_ttl: i32,
}

impl NetworkTarget {
    /// ActiveMQ's `NetworkBridgeFilter` plus `conditionalNetworkBridgeFilterFactory`:
    /// `replay` says whether a queue message may go back to a broker on its
    /// path (no local consumer left and the replay delay passed).
    fn accepts(&self, m: &Message, replay: bool) -> bool {
        if m.broker_path.contains(&self.remote) {
            return replay;
        }
        self.message_ttl < 0 || (m.broker_path.len() as i64) < i64::from(self.message_ttl)
    }
}

/// A consumer as network bridges learn of it (ActiveMQ's `ConsumerInfo`
/// advisory).
#[derive(Debug, Clone, PartialEq)]
pub struct ConsumerInfo {
    pub sub: SubId,
    pub destination: Destination,
    pub priority: i32,
    /// Empty for a client; the demand's broker path for a network consumer.
    pub path: Vec<String>,
}

/// Consumer add/remove notifications ([`Broker::watch_consumers`]).
#[derive(Debug, Clone, PartialEq)]
pub enum ConsumerEvent {
    Added(ConsumerInfo),
    Removed {
        sub: SubId,
        destination: Destination,
    },
}

/// Messages that arrived over a network bridge, by (id, hops): a bridge that
/// lost a receipt sends the same message again, and the copy is dropped. The
/// hop count is part of the key so that a message replayed back through this
/// broker (a longer path) is not mistaken for a copy.
struct NetworkAudit {
    seen: HashSet<(MessageId, usize)>,
    order: VecDeque<(MessageId, usize)>,
    duplicates: u64,
}

impl NetworkAudit {
    /// Remembered arrivals; a resend comes within seconds, far fewer.
    const DEPTH: usize = 65_536;

    fn new() -> Self {
        NetworkAudit {
            seen: HashSet::new(),
            order: VecDeque::new(),
            duplicates: 0,
        }
    }

    /// Whether `m` is new (and remembers it).
    fn admit(&mut self, m: &Message) -> bool {
        let key = (m.id.clone(), m.broker_path.len());
        if self.seen.contains(&key) {
            self.duplicates += 1;
            return false;
        }
        if self.order.len() == Self::DEPTH {
            if let Some(old) = self.order.pop_front() {
                self.seen.remove(&old);
            }
        }
        self.seen.insert(key.clone());
        self.order.push_back(key);
        true
    }
}

/// What the broker needs from the configuration.
#[derive(Debug, Clone)]
pub struct BrokerSettings {
    pub name: String,
    pub policies: Policies,
    /// Bytes of non-persistent messages held before producers wait.
    pub memory_limit: u64,
    /// Let acknowledgements nobody waits for ride on the next journal batch
    /// (`State::lazy`). Off for the replicated store: there every write
    /// is shipped to a quorum and elections compare positions, so acks go
    /// out as they come.
    pub lazy_acks: bool,
}

impl BrokerSettings {
    pub fn from_config(config: &crate::config::BrokerConfig) -> Self {
        BrokerSettings {
            name: config.broker_name.clone(),
            policies: config.policies.clone(),
            memory_limit: config.memory_limit,
            lazy_acks: !matches!(
                config.persistence,
                crate::config::Persistence::ReplicatedLevelDb(_)
            ),
        }
    }
}

#[derive(Debug, Clone)]
struct Entry {
    seq: u64,
    held: Arc<Queued>,
    redeliveries: u32,
    /// When this broker accepted it (replayDelay counts from here).
    arrived: u64,
}

impl Entry {
    fn message(&self) -> &Message {
        &self.held.message
    }
}

#[derive(Debug, Default, Clone, Copy, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Counters {
    pub enqueued: u64,
    pub dequeued: u64,
    pub expired: u64,
    pub dead_lettered: u64,
}

#[derive(Default)]
struct Queue {
    /// Not yet delivered, by enqueue sequence: redelivered messages keep
    /// their place, so the queue stays FIFO.
    pending: BTreeMap<u64, Entry>,
    /// By priority, highest first; equal priorities in subscription order.
    consumers: Vec<SubId>,
    next_consumer: usize,
    in_flight: usize,
    counters: Counters,
}

#[derive(Default)]
struct Topic {
    subscribers: Vec<SubId>,
    counters: Counters,
}

struct Subscription {
    conn: ConnId,
    id: Arc<str>,
    destination: Destination,
    ack: AckMode,
    prefetch: usize,
    /// Delivered, not acknowledged, by tag (delivery order).
    in_flight: BTreeMap<u64, Entry>,
    /// Topic subscriptions only: published, not yet delivered.
    pending: VecDeque<Entry>,
    priority: i32,
    network: Option<NetworkTarget>,
    selector: Option<Arc<crate::selector::Selector>>,
}

impl Subscription {
    /// Whether this subscription takes `m`: its selector matches and, for a
    /// network demand, the bridge filter lets it through.
    fn wants(&self, m: &Message, may_replay: bool) -> bool {
        self.selector.as_ref().is_none_or(|s| s.matches(m))
            && self
                .network
                .as_ref()
                .is_none_or(|t| t.accepts(m, may_replay))
    }

    fn has_credit(&self) -> bool {
        self.in_flight.len() < self.prefetch
    }
}

#[derive(Default)]
struct Transaction {
    sends: Vec<Arc<Queued>>,
    acks: Vec<(SubId, u64, Entry)>,
}

struct Conn {
    outbound: mpsc::UnboundedSender<Outbound>,
    subs: HashMap<String, SubId>,
    next_tag: u64,
    transactions: HashMap<String, Transaction>,
    /// The broker's own (bridges, advisories), not a client.
    internal: bool,
}

struct State {
    queues: HashMap<String, Queue>,
    topics: HashMap<String, Topic>,
    subs: HashMap<SubId, Subscription>,
    conns: HashMap<ConnId, Conn>,
    next_seq: u64,
    next_sub: SubId,
    /// Records of the current operation, appended as one batch at its end.
    records: Vec<Record>,
    /// Acknowledgements nobody waits for (no receipt): appended with the
    /// next batch, or by the flusher within [`LAZY_ACK_DELAY`], so that a
    /// consumer's acks share the producers' fsyncs (KahaDB syncs an ack only
    /// when a response is required, too). A crash may lose them: those
    /// messages are redelivered, flagged.
    lazy: Vec<Record>,
    consumer_watchers: Vec<mpsc::UnboundedSender<ConsumerEvent>>,
    audit: NetworkAudit,
}

/// The broker. Cheap to share: `Arc<Broker>`.
pub struct Broker {
    settings: BrokerSettings,
    store: Option<Arc<dyn Store>>,
    state: Mutex<State>,
    memory: Arc<Memory>,
    role: RoleSender,
    started: Instant,
    boot_ms: u64,
    next_message: AtomicU64,
    next_conn: AtomicU64,
    /// Cancelled when the store failed: the broker must stop serving.
    failed: CancellationToken,
    network: crate::network::Registry,
}

pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl Broker {
    /// A broker over `store` (`None`: nothing persists, as with
    /// `persistent="false"`), with its destinations rebuilt from the store.
    pub fn new(
        settings: BrokerSettings,
        store: Option<Arc<dyn Store>>,
        role: Role,
    ) -> Result<Arc<Broker>, StoreError> {
        let (role, _) = role::channel(role);
        let broker = Arc::new(Broker {
            memory: Memory::new(settings.memory_limit),
            settings,
            store,
            state: Mutex::new(State {
                queues: HashMap::new(),
                topics: HashMap::new(),
                subs: HashMap::new(),
                conns: HashMap::new(),
                next_seq: 0,
                next_sub: 0,
                records: Vec::new(),
                lazy: Vec::new(),
                consumer_watchers: Vec::new(),
                audit: NetworkAudit::new(),
            }),
            role,
            started: Instant::now(),
            boot_ms: now_ms(),
            next_message: AtomicU64::new(0),
            next_conn: AtomicU64::new(0),
            failed: CancellationToken::new(),
            network: crate::network::Registry::default(),
        });
        broker.restore()?;
        if let (Ok(runtime), Some(_)) = (tokio::runtime::Handle::try_current(), &broker.store) {
            runtime.spawn(flush_lazy_acks(Arc::downgrade(&broker)));
        }
        Ok(broker)
    }

    pub fn name(&self) -> &str {
        &self.settings.name
    }

    pub fn store(&self) -> Option<&Arc<dyn Store>> {
        self.store.as_ref()
    }

    pub fn role(&self) -> Role {
        self.role.borrow().clone()
    }

    /// Changes the role; the server opens or closes client connectors on it.
    pub fn set_role(&self, role: Role) {
        self.role.send_replace(role);
    }

    pub fn watch_role(&self) -> RoleWatch {
        self.role.subscribe()
    }

    /// Cancelled once the store failed; the broker must then stop.
    pub fn failed(&self) -> CancellationToken {
        self.failed.clone()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic elsewhere must not take every client down with it.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Rebuilds the queues from the store's live messages (at start-up, or
    /// when a slave is promoted). Expects no client connections.
    pub fn restore(&self) -> Result<usize, StoreError> {
        let Some(store) = &self.store else {
            return Ok(0);
        };
        // Deferred acks first, or their messages would come back.
        let _ = self.flush_acks();
        let recovered = store.recover()?;
        // Indexed outside the lock: with a large backlog this takes a while,
        // and every connection and the expiry sweep wait for the lock.
        let mut seq = {
            let mut st = self.lock();
            let first = st.next_seq;
            st.next_seq += recovered.message_count() as u64;
            first
        };
        let start = seq;
        let arrived = now_ms();
        let mut queues = Vec::new();
        for (dest, messages) in recovered.destinations {
            let Destination::Queue(name) = dest else {
                tracing::warn!(%dest, "ignoring persisted topic messages");
                continue;
            };
            let mut pending = BTreeMap::new();
            for message in messages {
                let held = Arc::new(Queued {
                    message,
                    _ticket: None,
                });
                pending.insert(
                    seq,
                    Entry {
                        seq,
                        held,
                        redeliveries: 0,
                        arrived,
                    },
                );
                seq += 1;
            }
            queues.push((name, pending));
        }
        let mut st = self.lock();
        let st = &mut *st;
        for q in st.queues.values_mut() {
            q.pending.clear();
            q.in_flight = 0;
        }
        for (name, pending) in queues {
            for e in pending.values() {
                if !e.message().broker_path.is_empty() {
                    st.audit.admit(e.message());
                }
            }
            st.queues.entry(name).or_default().pending = pending;
        }
        Ok((seq - start) as usize)
    }

    /// A fresh message id for a message about to be sent
    /// (`ID:<broker>-<start ms>-<n>`).
    pub fn message_id(&self) -> MessageId {
        let n = self.next_message.fetch_add(1, Ordering::Relaxed);
        MessageId(format!("ID:{}-{}-{}", self.settings.name, self.boot_ms, n))
    }

    /// Registers a client connection; deliveries arrive on the receiver.
    pub fn connect(&self) -> (ConnId, mpsc::UnboundedReceiver<Outbound>) {
        self.register(false)
    }

    /// Like [`Broker::connect`], for the broker's own producers and
    /// consumers (network bridges, advisories): not counted as client
    /// connections in `/status`.
    pub fn connect_internal(&self) -> (ConnId, mpsc::UnboundedReceiver<Outbound>) {
        self.register(true)
    }

    fn register(&self, internal: bool) -> (ConnId, mpsc::UnboundedReceiver<Outbound>) {
        let id = self.next_conn.fetch_add(1, Ordering::Relaxed) + 1;
        let (tx, rx) = mpsc::unbounded_channel();
        self.lock().conns.insert(
            id,
            Conn {
                outbound: tx,
                subs: HashMap::new(),
                next_tag: 0,
                transactions: HashMap::new(),
                internal,
            },
        );
        (id, rx)
    }

    /// The connection is gone: its unacknowledged messages are redelivered
    /// (to other consumers), its open transactions rolled back.
    pub fn disconnect(&self, conn: ConnId) -> Completion {
        let mut st = self.lock();
        let Some(c) = st.conns.remove(&conn) else {
            return Completion::done();
        };
        let mut touched = Vec::new();
        for (_, tx) in c.transactions {
            for (_, _, entry) in tx.acks {
                touched.push(entry.message().destination.clone());
                self.redeliver(&mut st, entry, None);
            }
        }
        for (_, sid) in c.subs {
            touched.extend(self.remove_subscription(&mut st, sid));
        }
        for d in touched {
            self.dispatch_destination(&mut st, &d);
        }
        self.finish(&mut st)
    }

    /// Deletes a queue and what waits on it (a temporary queue whose
    /// connection closed). Its consumers stay subscribed to nothing.
    pub fn remove_queue(&self, name: &str) -> Completion {
        let mut st = self.lock();
        let st = &mut *st;
        if let Some(q) = st.queues.remove(name) {
            for (_, e) in q.pending {
                let m = e.message();
                if m.persistent && self.store.is_some() {
                    st.records
                        .push(Record::ack(m.destination.clone(), m.id.clone()));
                }
            }
        }
        self.finish(st)
    }

    /// Asks every connection to close with `reason` (demotion, shutdown).
    pub fn close_all(&self, reason: &str) {
        for c in self.lock().conns.values() {
            let _ = c.outbound.send(Outbound::Close(reason.to_owned()));
        }
    }

    /// Accepts a message from a producer. Non-persistent messages first wait
    /// for room under the memory limit (producer flow control). In a
    /// transaction the message is held until COMMIT.
    ///
    /// The message keeps its id and broker path. One with a broker path came
    /// over a network bridge: a copy of one already accepted (same id, same
    /// hop count) is dropped, and the bridge's receipt still follows. The
    /// original's journal write is then usually long durable (the copy comes
    /// after the bridge reconnected).
    pub async fn send(
        &self,
        conn: ConnId,
        message: Message,
        transaction: Option<&str>,
    ) -> Result<Completion, BrokerError> {
        // Only queue messages are journaled; everything else is held in
        // memory and counts against the limit.
        let ticket = if message.persistent && message.destination.is_queue() && self.store.is_some()
        {
            None
        } else {
            Some(self.memory.acquire(&message).await)
        };
        let held = Arc::new(Queued {
            message,
            _ticket: ticket,
        });
        let mut st = self.lock();
        let c = st.conns.get_mut(&conn).ok_or(BrokerError::NotConnected)?;
        if let Some(tx) = transaction {
            c.transactions
                .get_mut(tx)
                .ok_or_else(|| BrokerError::UnknownTransaction(tx.to_owned()))?
                .sends
                .push(held);
            return Ok(Completion::done());
        }
        if !held.message.broker_path.is_empty() && !st.audit.admit(&held.message) {
            tracing::debug!(id = %held.message.id, "duplicate from a network bridge dropped");
            return Ok(Completion::done());
        }
        self.accept(&mut st, held);
        Ok(self.finish(&mut st))
    }

    /// Subscribes `conn` to `destination` under the client's `id`.
    pub fn subscribe(
        &self,
        conn: ConnId,
        id: &str,
        destination: Destination,
        ack: AckMode,
        prefetch: usize,
    ) -> Result<Completion, BrokerError> {
        self.subscribe_with(
            conn,
            id,
            destination,
            ack,
            prefetch,
            SubscribeOptions::default(),
        )
    }

    /// [`subscribe`](Self::subscribe) with a consumer priority, or as a
    /// network bridge's demand subscription.
    pub fn subscribe_with(
        &self,
        conn: ConnId,
        id: &str,
        destination: Destination,
        ack: AckMode,
        prefetch: usize,
        options: SubscribeOptions,
    ) -> Result<Completion, BrokerError> {
        let mut st = self.lock();
        let sid = st.next_sub;
        let c = st.conns.get_mut(&conn).ok_or(BrokerError::NotConnected)?;
        if c.subs.contains_key(id) {
            return Err(BrokerError::DuplicateSubscription(id.to_owned()));
        }
        c.subs.insert(id.to_owned(), sid);
        st.next_sub += 1;
        st.subs.insert(
            sid,
            Subscription {
                conn,
                id: Arc::from(id),
                destination: destination.clone(),
                ack,
                prefetch: prefetch.max(1),
                in_flight: BTreeMap::new(),
                pending: VecDeque::new(),
                priority: options.priority,
                network: options.network.clone(),
                selector: options.selector.clone(),
            },
        );
        let State {
            queues,
            topics,
            subs,
            ..
        } = &mut *st;
        match &destination {
            Destination::Queue(n) => {
                let q = queues.entry(n.clone()).or_default();
                let at = q
                    .consumers
                    .iter()
                    .position(|s| subs.get(s).is_some_and(|s| s.priority < options.priority))
                    .unwrap_or(q.consumers.len());
                q.consumers.insert(at, sid);
            }
            Destination::Topic(n) => topics.entry(n.clone()).or_default().subscribers.push(sid),
        }
        notify(
            &mut st.consumer_watchers,
            ConsumerEvent::Added(ConsumerInfo {
                sub: sid,
                destination: destination.clone(),
                priority: options.priority,
                path: options.network.map(|n| n.path).unwrap_or_default(),
            }),
        );
        self.dispatch_destination(&mut st, &destination);
        Ok(self.finish(&mut st))
    }

    /// Ends a subscription; its unacknowledged messages are redelivered.
    pub fn unsubscribe(&self, conn: ConnId, id: &str) -> Result<Completion, BrokerError> {
        let mut st = self.lock();
        let c = st.conns.get_mut(&conn).ok_or(BrokerError::NotConnected)?;
        let sid = c
            .subs
            .remove(id)
            .ok_or_else(|| BrokerError::UnknownSubscription(id.to_owned()))?;
        for d in self.remove_subscription(&mut st, sid) {
            self.dispatch_destination(&mut st, &d);
        }
        Ok(self.finish(&mut st))
    }

    /// ACK (`nack == false`) or NACK. Client mode acknowledges cumulatively.
    /// A NACKed message is redelivered, or dead-lettered once it exceeded the
    /// destination's maximum redeliveries.
    ///
    /// `durable`: the client waits for this ACK (a receipt), so its record
    /// is appended now; otherwise it may ride on a later batch.
    pub fn acknowledge(
        &self,
        conn: ConnId,
        what: AckRef<'_>,
        transaction: Option<&str>,
        nack: bool,
        durable: bool,
    ) -> Result<Completion, BrokerError> {
        let mut st = self.lock();
        let st = &mut *st;
        let c = st.conns.get(&conn).ok_or(BrokerError::NotConnected)?;
        if let Some(tx) = transaction {
            if !c.transactions.contains_key(tx) {
                return Err(BrokerError::UnknownTransaction(tx.to_owned()));
            }
        }
        let (sid, tag) = find_ack(&st.subs, c, what)?;
        let sub = st.subs.get_mut(&sid).expect("found above");
        if sub.ack == AckMode::Auto {
            return Err(BrokerError::AckOnAutoSubscription(sub.id.to_string()));
        }
        let entries: Vec<(u64, Entry)> = if sub.ack == AckMode::Client {
            let later = sub.in_flight.split_off(&(tag + 1));
            std::mem::replace(&mut sub.in_flight, later)
                .into_iter()
                .collect()
        } else {
            sub.in_flight.remove_entry(&tag).into_iter().collect()
        };
        let destination = sub.destination.clone();
        // NACKed topic messages return to the front of the subscription one
        // by one: newest first keeps them in order.
        let entries: Vec<(u64, Entry)> = if nack {
            entries.into_iter().rev().collect()
        } else {
            entries
        };
        for (tag, entry) in entries {
            if nack {
                self.redeliver(st, entry, Some(sid));
            } else if let Some(tx) = transaction {
                let c = st.conns.get_mut(&conn).expect("checked above");
                let t = c.transactions.get_mut(tx).expect("checked above");
                t.acks.push((sid, tag, entry));
            } else {
                self.consumed(st, &entry);
            }
        }
        self.dispatch_destination(st, &destination);
        Ok(if durable || nack {
            self.finish(st)
        } else {
            self.finish_lazily(st)
        })
    }

    /// The connection wrote these ack:auto deliveries: they are consumed.
    pub fn delivered(&self, deliveries: &[(SubId, u64)]) -> Completion {
        let mut st = self.lock();
        let st = &mut *st;
        let mut touched: Vec<Destination> = Vec::new();
        for &(sid, tag) in deliveries {
            let Some(sub) = st.subs.get_mut(&sid) else {
                continue;
            };
            if let Some(entry) = sub.in_flight.remove(&tag) {
                if touched.last() != Some(&sub.destination) {
                    touched.push(sub.destination.clone());
                }
                self.consumed(st, &entry);
            }
        }
        touched.dedup();
        for d in touched {
            self.dispatch_destination(st, &d);
        }
        self.finish_lazily(st)
    }

    pub fn begin(&self, conn: ConnId, tx: &str) -> Result<(), BrokerError> {
        let mut st = self.lock();
        let c = st.conns.get_mut(&conn).ok_or(BrokerError::NotConnected)?;
        if c.transactions.contains_key(tx) {
            return Err(BrokerError::DuplicateTransaction(tx.to_owned()));
        }
        c.transactions.insert(tx.to_owned(), Transaction::default());
        Ok(())
    }

    /// Applies the transaction's sends and acks as one atomic store batch.
    pub fn commit(&self, conn: ConnId, tx: &str) -> Result<Completion, BrokerError> {
        let mut st = self.lock();
        let t = self.take_transaction(&mut st, conn, tx)?;
        let mut touched = Vec::new();
        for (_, _, entry) in &t.acks {
            self.consumed(&mut st, entry);
            touched.push(entry.message().destination.clone());
        }
        for held in t.sends {
            self.accept(&mut st, held);
        }
        for d in touched {
            self.dispatch_destination(&mut st, &d);
        }
        Ok(self.finish(&mut st))
    }

    /// Drops the transaction's sends; its acked messages go back to being
    /// delivered-but-unacknowledged on their subscriptions.
    pub fn abort(&self, conn: ConnId, tx: &str) -> Result<Completion, BrokerError> {
        let mut st = self.lock();
        let t = self.take_transaction(&mut st, conn, tx)?;
        for (sid, tag, entry) in t.acks {
            match st.subs.get_mut(&sid) {
                Some(sub) => {
                    sub.in_flight.insert(tag, entry);
                }
                None => self.redeliver(&mut st, entry, None),
            }
        }
        Ok(self.finish(&mut st))
    }

    fn take_transaction(
        &self,
        st: &mut State,
        conn: ConnId,
        tx: &str,
    ) -> Result<Transaction, BrokerError> {
        st.conns
            .get_mut(&conn)
            .ok_or(BrokerError::NotConnected)?
            .transactions
            .remove(tx)
            .ok_or_else(|| BrokerError::UnknownTransaction(tx.to_owned()))
    }

    /// Drops or dead-letters expired messages that wait in queues (messages
    /// are also checked when dispatched). Run periodically.
    pub fn expire(&self) -> Completion {
        let now = now_ms();
        let mut st = self.lock();
        let st = &mut *st;
        let mut expired = Vec::new();
        for q in st.queues.values_mut() {
            let seqs: Vec<u64> = q
                .pending
                .iter()
                .filter(|(_, e)| e.message().is_expired(now))
                .map(|(s, _)| *s)
                .collect();
            for s in seqs {
                expired.extend(q.pending.remove(&s));
            }
        }
        for sub in st.subs.values_mut() {
            let before = sub.pending.len();
            sub.pending.retain(|e| !e.message().is_expired(now));
            let gone = (before - sub.pending.len()) as u64;
            if let (Destination::Topic(n), true) = (&sub.destination, gone > 0) {
                if let Some(t) = st.topics.get_mut(n) {
                    t.counters.expired += gone;
                }
            }
        }
        for e in expired {
            self.dead_letter(st, e, true);
        }
        self.finish(st)
    }

    /// Puts `held` onto its destination: journal record if persistent, then
    /// routing and dispatch.
    fn accept(&self, st: &mut State, held: Arc<Queued>) {
        if held.message.persistent && held.message.destination.is_queue() && self.store.is_some() {
            st.records.push(Record::Enqueue(held.message.clone()));
        }
        let seq = st.next_seq;
        st.next_seq += 1;
        let entry = Entry {
            seq,
            held,
            redeliveries: 0,
            arrived: now_ms(),
        };
        let destination = entry.message().destination.clone();
        match &destination {
            Destination::Queue(n) => {
                let q = st.queues.entry(n.clone()).or_default();
                q.counters.enqueued += 1;
                q.pending.insert(seq, entry);
            }
            Destination::Topic(n) => {
                let t = st.topics.entry(n.clone()).or_default();
                t.counters.enqueued += 1;
                for sid in &t.subscribers {
                    if let Some(sub) = st.subs.get_mut(sid) {
                        // Topic messages never replay: the conduit already
                        // reached every subscriber once.
                        if sub.wants(entry.message(), false) {
                            sub.pending.push_back(entry.clone());
                        }
                    }
                }
            }
        }
        self.dispatch_destination(st, &destination);
    }

    /// A delivered message is gone for good (acknowledged).
    fn consumed(&self, st: &mut State, entry: &Entry) {
        let m = entry.message();
        match &m.destination {
            Destination::Queue(n) => {
                if let Some(q) = st.queues.get_mut(n) {
                    q.in_flight = q.in_flight.saturating_sub(1);
                    q.counters.dequeued += 1;
                }
                if m.persistent && self.store.is_some() {
                    st.records
                        .push(Record::ack(m.destination.clone(), m.id.clone()));
                }
            }
            Destination::Topic(n) => {
                if let Some(t) = st.topics.get_mut(n) {
                    t.counters.dequeued += 1;
                }
            }
        }
    }

    /// A delivered message came back unacknowledged (NACK, consumer gone):
    /// deliver it again, flagged redelivered, or dead-letter it once it
    /// exceeded the maximum redeliveries. `sub` is the topic subscription it
    /// returns to (queue messages return to the queue).
    fn redeliver(&self, st: &mut State, mut entry: Entry, sub: Option<SubId>) {
        entry.redeliveries += 1;
        let dest = entry.message().destination.clone();
        let max = self
            .settings
            .policies
            .redelivery(&dest)
            .maximum_redeliveries;
        let count = entry.redeliveries + entry.message().redelivery_count;
        if let Destination::Queue(n) = &dest {
            if let Some(q) = st.queues.get_mut(n) {
                q.in_flight = q.in_flight.saturating_sub(1);
            }
        }
        if max >= 0 && count > max as u32 {
            self.dead_letter(st, entry, false);
            return;
        }
        match &dest {
            Destination::Queue(n) => {
                st.queues
                    .entry(n.clone())
                    .or_default()
                    .pending
                    .insert(entry.seq, entry);
            }
            Destination::Topic(_) => {
                if let Some(s) = sub.and_then(|s| st.subs.get_mut(&s)) {
                    s.pending.push_front(entry);
                }
            }
        }
    }

    /// Moves a message that is no longer in flight or pending to its
    /// dead-letter queue (or drops it, as the policy says).
    fn dead_letter(&self, st: &mut State, entry: Entry, expired: bool) {
        let m = entry.message();
        let strategy = self.settings.policies.dead_letter_strategy(&m.destination);
        let target = strategy.dead_letter_queue(&m.destination, expired);
        let counters = match &m.destination {
            Destination::Queue(n) => st.queues.get_mut(n).map(|q| &mut q.counters),
            Destination::Topic(n) => st.topics.get_mut(n).map(|t| &mut t.counters),
        };
        if let Some(c) = counters {
            if expired {
                c.expired += 1;
            } else {
                c.dead_lettered += 1;
            }
        }
        let stored = m.persistent && m.destination.is_queue() && self.store.is_some();
        if stored {
            st.records
                .push(Record::ack(m.destination.clone(), m.id.clone()));
        }
        let cause = if expired {
            "expired"
        } else {
            "maximum redeliveries exceeded"
        };
        match target {
            Some(dlq) if dlq != m.destination => {
                let mut copy = m.clone();
                copy.properties.insert(
                    "originalDestination".into(),
                    PropertyValue::String(m.destination.to_string()),
                );
                copy.properties.insert(
                    "dlqDeliveryFailureCause".into(),
                    PropertyValue::String(cause.into()),
                );
                copy.destination = dlq;
                copy.redelivery_count = 0;
                copy.expires = None;
                let ticket = if stored {
                    None
                } else {
                    self.memory.try_acquire(&copy)
                };
                tracing::debug!(id = %m.id, from = %m.destination, to = %copy.destination, cause, "dead letter");
                self.accept(
                    st,
                    Arc::new(Queued {
                        message: copy,
                        _ticket: ticket,
                    }),
                );
            }
            _ => tracing::info!(id = %m.id, destination = %m.destination, cause, "message dropped"),
        }
    }

    /// Removes a subscription; returns the destinations to dispatch again.
    fn remove_subscription(&self, st: &mut State, sid: SubId) -> Vec<Destination> {
        let Some(sub) = st.subs.remove(&sid) else {
            return Vec::new();
        };
        match &sub.destination {
            Destination::Queue(n) => {
                if let Some(q) = st.queues.get_mut(n) {
                    q.consumers.retain(|s| *s != sid);
                }
            }
            Destination::Topic(n) => {
                if let Some(t) = st.topics.get_mut(n) {
                    t.subscribers.retain(|s| *s != sid);
                }
            }
        }
        notify(
            &mut st.consumer_watchers,
            ConsumerEvent::Removed {
                sub: sid,
                destination: sub.destination.clone(),
            },
        );
        for (_, entry) in sub.in_flight {
            self.redeliver(st, entry, None);
        }
        vec![sub.destination]
    }

    /// Delivers what waits on `destination` to subscriptions with credit.
    fn dispatch_destination(&self, st: &mut State, destination: &Destination) {
        match destination {
            Destination::Queue(n) => self.dispatch_queue(st, n),
            Destination::Topic(n) => {
                let subs = st
                    .topics
                    .get(n)
                    .map(|t| t.subscribers.clone())
                    .unwrap_or_default();
                for sid in subs {
                    self.dispatch_subscription(st, sid);
                }
            }
        }
    }

    /// Most messages one dispatch steps over that no consumer with credit
    /// takes (network consumers refuse messages that already passed their
    /// broker), so that a queue of stuck messages costs bounded work.
    const MAX_SKIPPED: usize = 4096;

    /// Each waiting message goes to the highest-priority consumer with
    /// prefetch credit that takes it, round-robin among equal priorities.
    fn dispatch_queue(&self, st: &mut State, name: &str) {
        let now = now_ms();
        let mut expired = Vec::new();
        let State {
            queues,
            subs,
            conns,
            ..
        } = st;
        if let Some(q) = queues.get_mut(name) {
            // conditionalNetworkBridgeFilterFactory: stuck messages may go
            // back toward the broker they came from once no client is here.
            let replay = q
                .consumers
                .iter()
                .filter_map(|s| subs.get(s))
                .any(|s| s.network.is_some())
                .then(|| {
                    self.settings
                        .policies
                        .network_bridge_filter(&Destination::Queue(name.to_owned()))
                })
                .flatten()
                .filter(|f| f.replay_when_no_consumers)
                .filter(|_| {
                    !q.consumers
                        .iter()
                        .filter_map(|s| subs.get(s))
                        .any(|s| s.network.is_none())
                })
                .map(|f| f.replay_delay_ms);
            let mut skipped = Vec::new();
            while !q.consumers.is_empty() && skipped.len() < Self::MAX_SKIPPED {
                let Some((_, entry)) = q.pending.pop_first() else {
                    break;
                };
                if entry.message().is_expired(now) {
                    expired.push(entry);
                    continue;
                }
                let may_replay = replay.is_some_and(|d| d == 0 || entry.arrived + d < now);
                match choose_consumer(q, subs, &entry, may_replay) {
                    Choice::Consumer(i) => {
                        q.in_flight += 1;
                        let sid = q.consumers[i];
                        let sub = subs.get_mut(&sid).expect("chosen above");
                        deliver(conns, sid, sub, entry);
                    }
                    Choice::Refused => skipped.push(entry),
                    Choice::NoCredit => {
                        q.pending.insert(entry.seq, entry);
                        break;
                    }
                }
            }
            for e in skipped {
                q.pending.insert(e.seq, e);
            }
        }
        for e in expired {
            self.dead_letter(st, e, true);
        }
    }

    fn dispatch_subscription(&self, st: &mut State, sid: SubId) {
        let now = now_ms();
        let Some(sub) = st.subs.get_mut(&sid) else {
            return;
        };
        while sub.has_credit() {
            let Some(entry) = sub.pending.pop_front() else {
                break;
            };
            if entry.message().is_expired(now) {
                if let Destination::Topic(n) = &sub.destination {
                    if let Some(t) = st.topics.get_mut(n) {
                        t.counters.expired += 1;
                    }
                }
                continue;
            }
            deliver(&mut st.conns, sid, sub, entry);
        }
    }

    /// Appends the acknowledgements deferred so far.
    pub fn flush_acks(&self) -> Completion {
        let mut st = self.lock();
        let st = &mut *st;
        st.records.append(&mut st.lazy);
        self.finish(st)
    }

    /// Defers an operation made only of acknowledgements (see
    /// [`State::lazy`]); anything else is appended now.
    fn finish_lazily(&self, st: &mut State) -> Completion {
        let only_acks = st.records.iter().all(|r| matches!(r, Record::Ack { .. }));
        if self.settings.lazy_acks && only_acks && st.lazy.len() + st.records.len() <= LAZY_ACK_MAX
        {
            st.lazy.append(&mut st.records);
            return Completion::done();
        }
        self.finish(st)
    }

    /// Appends the operation's records as one batch, in lock order, after
    /// the deferred acknowledgements (which are older). An operation
    /// without records waits for nothing.
    fn finish(&self, st: &mut State) -> Completion {
        if st.records.is_empty() {
            return Completion::done();
        }
        let mut records = std::mem::take(&mut st.lazy);
        records.append(&mut st.records);
        let store = self.store.as_ref().expect("records only with a store");
        let fut = store.append(records);
        let failed = self.failed.clone();
        Completion(Some(Box::pin(async move {
            let r = fut.await;
            match &r {
                // One write that missed its replicas: the client gets an
                // ERROR, the store is fine.
                Err(StoreError::NotReplicated(e)) => tracing::warn!("{e}"),
                // The journal refused an inconsistent batch and stays
                // healthy: the operation fails (the client gets an ERROR),
                // everyone else carries on.
                Err(
                    e @ (StoreError::DuplicateMessage { .. } | StoreError::UnknownMessage { .. }),
                ) => {
                    tracing::error!("journal refused a batch: {e}")
                }
                Err(e) => {
                    tracing::error!("store failed: {e}; the broker stops serving");
                    failed.cancel();
                }
                Ok(_) => {}
            }
            r
        })))
    }

    /// The consumers now, and every add/remove from then on (network
    /// bridges learn demand from these). Dropping the receiver unregisters.
    pub fn watch_consumers(&self) -> (Vec<ConsumerInfo>, mpsc::UnboundedReceiver<ConsumerEvent>) {
        let mut st = self.lock();
        let (tx, rx) = mpsc::unbounded_channel();
        st.consumer_watchers.push(tx);
        let now = st
            .subs
            .iter()
            .map(|(sid, s)| ConsumerInfo {
                sub: *sid,
                destination: s.destination.clone(),
                priority: s.priority,
                path: s
                    .network
                    .as_ref()
                    .map(|n| n.path.clone())
                    .unwrap_or_default(),
            })
            .collect();
        (now, rx)
    }

    /// Network bridges of this broker, for `/status`.
    pub fn network(&self) -> &crate::network::Registry {
        &self.network
    }

    /// Copies of network-forwarded messages dropped by the audit.
    pub fn network_duplicates(&self) -> u64 {
        self.lock().audit.duplicates
    }

    /// Everything `/status` and `/metrics` show.
    pub fn status(&self) -> BrokerStatus {
        let st = self.lock();
        let mut destinations: Vec<DestinationStatus> = st
            .queues
            .iter()
            .map(|(n, q)| DestinationStatus {
                name: n.clone(),
                kind: "queue",
                depth: q.pending.len() + q.in_flight,
                consumers: q.consumers.len(),
                counters: q.counters,
            })
            .chain(st.topics.iter().map(|(n, t)| {
                DestinationStatus {
                    name: n.clone(),
                    kind: "topic",
                    depth: t
                        .subscribers
                        .iter()
                        .filter_map(|s| st.subs.get(s))
                        .map(|s| s.pending.len() + s.in_flight.len())
                        .sum(),
                    consumers: t.subscribers.len(),
                    counters: t.counters,
                }
            }))
            .collect();
        destinations.sort_by(|a, b| (a.kind, &a.name).cmp(&(b.kind, &b.name)));
        BrokerStatus {
            broker_name: self.settings.name.clone(),
            role: self.role(),
            uptime_seconds: self.started.elapsed().as_secs_f64(),
            connections: st.conns.values().filter(|c| !c.internal).count(),
            memory_used: self.memory.used.load(Ordering::Relaxed),
            memory_limit: self.memory.limit,
            journal: self.store.as_ref().map(|s| JournalStatus {
                position: s.position().0,
                epoch: s.epoch().0,
                stats: s.stats().into(),
            }),
            destinations,
            bridges: self.network.status(),
            network_duplicates: st.audit.duplicates,
        }
    }
}

fn notify(watchers: &mut Vec<mpsc::UnboundedSender<ConsumerEvent>>, event: ConsumerEvent) {
    watchers.retain(|w| w.send(event.clone()).is_ok());
}

enum Choice {
    Consumer(usize),
    /// Consumers have credit, but none takes this message.
    Refused,
    NoCredit,
}

/// The consumer for `entry`: priority groups in order, round-robin within one.
fn choose_consumer(
    q: &mut Queue,
    subs: &HashMap<SubId, Subscription>,
    entry: &Entry,
    may_replay: bool,
) -> Choice {
    let n = q.consumers.len();
    let mut credit = false;
    let mut start = 0;
    while start < n {
        let priority = subs.get(&q.consumers[start]).map_or(0, |s| s.priority);
        let end = (start..n)
            .find(|&i| subs.get(&q.consumers[i]).map_or(0, |s| s.priority) != priority)
            .unwrap_or(n);
        let len = end - start;
        for k in 0..len {
            let i = start + (q.next_consumer + k) % len;
            let Some(sub) = subs.get(&q.consumers[i]) else {
                continue;
            };
            if !sub.has_credit() {
                continue;
            }
            credit = true;
            if sub.wants(entry.message(), may_replay) {
                q.next_consumer = (i - start + 1) % len;
                return Choice::Consumer(i);
            }
        }
        start = end;
    }
    if credit {
        Choice::Refused
    } else {
        Choice::NoCredit
    }
}

/// Deferred acknowledgements wait at most this long for a batch to join.
const LAZY_ACK_DELAY: std::time::Duration = std::time::Duration::from_millis(10);
/// ... and at most this many.
const LAZY_ACK_MAX: usize = 1024;

/// Appends deferred acknowledgements every [`LAZY_ACK_DELAY`] while the
/// broker exists.
async fn flush_lazy_acks(broker: std::sync::Weak<Broker>) {
    let mut tick = tokio::time::interval(LAZY_ACK_DELAY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(b) = broker.upgrade() else { return };
        let _ = b.flush_acks();
    }
}

impl Drop for Broker {
    /// Deferred acknowledgements are sequenced into the store, which writes
    /// and syncs them when it is dropped in turn.
    fn drop(&mut self) {
        let st = self.state.get_mut().unwrap_or_else(|e| e.into_inner());
        if let (Some(store), false) = (&self.store, st.lazy.is_empty()) {
            drop(store.append(std::mem::take(&mut st.lazy)));
        }
    }
}

/// Records a delivery in flight and hands it to the connection.
fn deliver(conns: &mut HashMap<ConnId, Conn>, sid: SubId, sub: &mut Subscription, entry: Entry) {
    let Some(conn) = conns.get_mut(&sub.conn) else {
        return;
    };
    conn.next_tag += 1;
    let tag = conn.next_tag;
    let delivery = Delivery {
        sub: sid,
        subscription: sub.id.clone(),
        tag,
        message: entry.held.clone(),
        redelivered: entry.redeliveries > 0 || entry.message().redelivery_count > 0,
        ack: sub.ack,
    };
    sub.in_flight.insert(tag, entry);
    // A closed channel means the connection is going; disconnect() will
    // return what is in flight.
    let _ = conn.outbound.send(Outbound::Deliver(delivery));
}

fn find_ack(
    subs: &HashMap<SubId, Subscription>,
    conn: &Conn,
    what: AckRef<'_>,
) -> Result<(SubId, u64), BrokerError> {
    match what {
        AckRef::Tag(tag) => conn
            .subs
            .values()
            .find(|s| subs.get(s).is_some_and(|s| s.in_flight.contains_key(&tag)))
            .map(|s| (*s, tag))
            .ok_or_else(|| BrokerError::UnknownAck(format!("id {tag}"))),
        AckRef::MessageId { id, subscription } => conn
            .subs
            .iter()
            .filter(|(name, _)| subscription.is_none_or(|s| s == name.as_str()))
            .find_map(|(_, sid)| {
                let sub = subs.get(sid)?;
                sub.in_flight
                    .iter()
                    .find(|(_, e)| e.message().id.0 == id)
                    .map(|(tag, _)| (*sid, *tag))
            })
            .ok_or_else(|| BrokerError::UnknownAck(format!("message-id {id}"))),
    }
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DestinationStatus {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// Messages not yet acknowledged (waiting plus in flight).
    pub depth: usize,
    pub consumers: usize,
    #[serde(flatten)]
    pub counters: Counters,
}

#[derive(Debug, Clone, Serialize)]
pub struct JournalStatus {
    pub position: u64,
    pub epoch: u64,
    pub stats: JournalStats,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct JournalStats {
    pub appends: u64,
    pub records: u64,
    pub writes: u64,
    pub fsyncs: u64,
    pub bytes: u64,
    pub segments: u64,
    pub live_messages: u64,
}

impl From<crate::store::StoreStats> for JournalStats {
    fn from(s: crate::store::StoreStats) -> Self {
        JournalStats {
            appends: s.appends,
            records: s.records,
            writes: s.writes,
            fsyncs: s.fsyncs,
            bytes: s.bytes,
            segments: s.segments,
            live_messages: s.live_messages,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BrokerStatus {
    pub broker_name: String,
    #[serde(flatten)]
    pub role: Role,
    pub uptime_seconds: f64,
    pub connections: usize,
    pub memory_used: u64,
    pub memory_limit: u64,
    /// `None` when nothing persists.
    pub journal: Option<JournalStatus>,
    pub destinations: Vec<DestinationStatus>,
    /// Network bridges: peer, state, messages forwarded each way.
    pub bridges: Vec<crate::network::BridgeStatus>,
    /// Copies of network-forwarded messages dropped by message id.
    pub network_duplicates: u64,
}
