//! The reconnecting client behind a `failover:` URL.
//!
//! One supervisor task owns the connection: it runs ActiveMQ's reconnect
//! loop (passes over the list, back-off between passes, attempt limits),
//! and after every (re)connect restores the session — subscriptions first,
//! then every message still waiting for its receipt, in the order they were
//! first sent — before anyone else may use the new connection. Senders and
//! the supervisor dispatch frames under one lock, so per client the order on
//! the wire is the order of `send` calls, across failovers too.

use super::backoff::{connect_order, pass_limit, reconnects_after_drop, warn_now, Backoff};
use super::events::{EventKind, FailoverEvent};
use super::uri::{Endpoint, FailoverUri, UriError};
use crate::client::{AckMode, ClientError, ConnectOptions, Connection, OutgoingMessage, Receipt};
use crate::stomp::{Command, Frame};
use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{broadcast, mpsc, watch};
use tokio_util::sync::{CancellationToken, DropGuard};

pub use crate::client::Delivery;

/// Events kept for [`FailoverClient::event_log`].
const EVENT_LOG: usize = 10_000;

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum FailoverError {
    #[error(transparent)]
    Uri(#[from] UriError),
    /// The attempt limit (`maxReconnectAttempts`, or
    /// `startupMaxReconnectAttempts` before the first connection) was reached.
    #[error("failed to connect to [{uris}] after {passes} attempt(s): {last}")]
    GaveUp {
        uris: String,
        passes: u32,
        last: ClientError,
    },
    /// A send waited longer than the `timeout` option while disconnected.
    #[error("failover timeout of {} ms reached", .0.as_millis())]
    Timeout(Duration),
    /// The connection dropped and `maxReconnectAttempts=0` forbids reconnecting.
    #[error("connection lost and reconnecting is disabled (maxReconnectAttempts=0): {0}")]
    ConnectionLost(ClientError),
    /// The broker refused this request (its ERROR named our receipt).
    #[error(transparent)]
    Broker(ClientError),
    /// The connection failed over while the transaction was open: the broker
    /// rolled it back, so nothing of it happened.
    #[error("transaction {0} was rolled back: the connection failed over while it was open")]
    TransactionRolledBack(String),
    /// The connection failed while COMMIT was in flight: it may or may not
    /// have been applied (ActiveMQ reports this as a rollback too).
    #[error("transaction {0} is in doubt: the connection failed while its COMMIT was in flight")]
    TransactionInDoubt(String),
    #[error("the failover client was closed")]
    Closed,
}

/// The state of the link, published to everyone waiting for a connection.
#[derive(Clone)]
enum Link {
    Connecting,
    Up {
        generation: u64,
        conn: Connection,
        endpoint: Endpoint,
    },
    Failed(FailoverError),
    Closed,
}

struct PendingSend {
    frame: Frame,
    /// The receipt on the current connection, until the sender takes it.
    receipt: Option<Receipt>,
}

struct SubSpec {
    id: String,
    destination: String,
    ack: AckMode,
    headers: Vec<(String, String)>,
    sink: mpsc::Sender<Delivery>,
}

#[derive(Default)]
struct State {
    /// Sends waiting for their receipt, by sequence number (= wire order).
    pending: BTreeMap<u64, PendingSend>,
    subscriptions: BTreeMap<u64, SubSpec>,
}

struct Inner {
    uri: FailoverUri,
    connect: ConnectOptions,
    state: Mutex<State>,
    /// Only replaced while `state` is locked, so that dispatching under the
    /// lock sees a link consistent with what has been replayed on it.
    link: watch::Sender<Link>,
    events: broadcast::Sender<FailoverEvent>,
    log: Mutex<VecDeque<FailoverEvent>>,
    next: AtomicU64,
    /// Prefix of this client's receipt ids, unique per client.
    tag: String,
    shutdown: CancellationToken,
}

impl Inner {
    fn emit(&self, kind: EventKind) {
        let event = FailoverEvent::now(kind);
        match &event.kind {
            EventKind::Disconnected { .. } | EventKind::GaveUp { .. } => {
                tracing::warn!("{}", event.kind)
            }
            EventKind::Connecting { .. } | EventKind::ConnectFailed { .. } => {
                tracing::debug!("{}", event.kind)
            }
            _ => tracing::info!("{}", event.kind),
        }
        {
            let mut log = self.log.lock().expect("event log lock");
            if log.len() == EVENT_LOG {
                log.pop_front();
            }
            log.push_back(event.clone());
        }
        let _ = self.events.send(event);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().expect("failover state lock")
    }

    fn seq(&self) -> u64 {
        self.next.fetch_add(1, Ordering::Relaxed)
    }

    fn options_for(&self, endpoint: &Endpoint) -> ConnectOptions {
        let member = self.uri.member(endpoint);
        let beat = member.options.max_inactivity / 3;
        ConnectOptions {
            heart_beat: (beat, beat),
            connect_timeout: member.options.connection_timeout,
            ..self.connect.clone()
        }
    }
}

/// A STOMP client over a `failover:` URL (or a plain `stomp://` one, which
/// never reconnects). Cheap to clone; the connection is closed when the last
/// clone (and the last [`Subscription`]) is dropped, or by [`close`](Self::close).
#[derive(Clone)]
pub struct FailoverClient {
    inner: Arc<Inner>,
    _guard: Arc<DropGuard>,
}

impl FailoverClient {
    /// Parses `url` and connects, waiting like ActiveMQ's `createConnection`
    /// until a broker answers or `startupMaxReconnectAttempts` (or
    /// `maxReconnectAttempts`) passes have failed.
    pub async fn connect(
        url: &str,
        options: ConnectOptions,
    ) -> Result<FailoverClient, FailoverError> {
        Self::connect_uri(FailoverUri::parse(url)?, options).await
    }

    pub async fn connect_uri(
        uri: FailoverUri,
        options: ConnectOptions,
    ) -> Result<FailoverClient, FailoverError> {
        let client = Self::start(uri, options);
        client.wait_connected().await?;
        Ok(client)
    }

    /// Starts connecting in the background and returns at once; sends wait
    /// for the connection (bounded by the `timeout` option).
    pub fn start(uri: FailoverUri, options: ConnectOptions) -> FailoverClient {
        Self::start_observed(uri, options).0
    }

    /// [`start`](Self::start), plus a receiver that sees every event from the
    /// very first connection attempt on.
    pub fn start_observed(
        uri: FailoverUri,
        options: ConnectOptions,
    ) -> (FailoverClient, broadcast::Receiver<FailoverEvent>) {
        let (link, _) = watch::channel(Link::Connecting);
        let (events, observer) = broadcast::channel(1024);
        let shutdown = CancellationToken::new();
        let inner = Arc::new(Inner {
            uri,
            connect: options,
            state: Mutex::new(State::default()),
            link,
            events,
            log: Mutex::new(VecDeque::new()),
            next: AtomicU64::new(1),
            tag: format!("fo-{:016x}", fastrand::u64(..)),
            shutdown: shutdown.clone(),
        });
        tokio::spawn(supervise(inner.clone()));
        let client = FailoverClient {
            inner,
            _guard: Arc::new(shutdown.drop_guard()),
        };
        (client, observer)
    }

    /// Waits until connected, or until the client gave up (the attempt
    /// limit) or was closed.
    pub async fn wait_connected(&self) -> Result<(), FailoverError> {
        let mut link = self.inner.link.subscribe();
        loop {
            match &*link.borrow_and_update() {
                Link::Up { .. } => return Ok(()),
                Link::Failed(e) => return Err(e.clone()),
                Link::Closed => return Err(FailoverError::Closed),
                Link::Connecting => {}
            }
            if link.changed().await.is_err() {
                return Err(FailoverError::Closed);
            }
        }
    }

    pub fn uri(&self) -> &FailoverUri {
        &self.inner.uri
    }

    /// Live events from now on (connects, disconnects, reconnects, …).
    pub fn events(&self) -> broadcast::Receiver<FailoverEvent> {
        self.inner.events.subscribe()
    }

    /// Every event so far (the last 10 000).
    pub fn event_log(&self) -> Vec<FailoverEvent> {
        self.inner
            .log
            .lock()
            .expect("event log lock")
            .iter()
            .cloned()
            .collect()
    }

    /// The broker connected to right now, if any.
    pub fn connected_to(&self) -> Option<Endpoint> {
        match &*self.inner.link.borrow() {
            Link::Up { endpoint, .. } => Some(endpoint.clone()),
            _ => None,
        }
    }

    /// Messages sent with a receipt request that have no receipt yet.
    pub fn unreceipted(&self) -> usize {
        self.inner.lock().pending.len()
    }

    /// Waits for a usable connection: while disconnected at most the
    /// `timeout` option, counted from `since`.
    async fn wait_link(
        &self,
        link: &mut watch::Receiver<Link>,
        since: Instant,
    ) -> Result<(u64, Connection), FailoverError> {
        loop {
            match &*link.borrow_and_update() {
                Link::Up {
                    generation, conn, ..
                } if !conn.is_closed() => return Ok((*generation, conn.clone())),
                Link::Failed(e) => return Err(e.clone()),
                Link::Closed => return Err(FailoverError::Closed),
                _ => {}
            }
            self.wait_change(link, since).await?;
        }
    }

    async fn wait_change(
        &self,
        link: &mut watch::Receiver<Link>,
        since: Instant,
    ) -> Result<(), FailoverError> {
        let changed = match self.inner.uri.options.timeout {
            None => link.changed().await,
            Some(t) => {
                match tokio::time::timeout(t.saturating_sub(since.elapsed()), link.changed()).await
                {
                    Ok(r) => r,
                    Err(_) => return Err(FailoverError::Timeout(t)),
                }
            }
        };
        changed.map_err(|_| FailoverError::Closed)
    }

    /// SEND. A persistent message is sent with a receipt request and this
    /// returns once the broker has it — after re-sending it on every new
    /// connection until a receipt comes back. A non-persistent one is
    /// queued on the current connection without a receipt (at most once).
    pub async fn send(&self, message: OutgoingMessage) -> Result<(), FailoverError> {
        if message.persistent {
            return self.send_receipted(message).await;
        }
        let frame = message.to_frame();
        let mut link = self.inner.link.subscribe();
        let since = Instant::now();
        loop {
            let (_, conn) = self.wait_link(&mut link, since).await?;
            match conn.send_frame(frame.clone()).await {
                Ok(()) => return Ok(()),
                Err(e) if e.is_connection_failure() => continue,
                Err(e) => return Err(FailoverError::Broker(e)),
            }
        }
    }

    /// SEND with a receipt, persistent or not; tracked and re-sent after a
    /// reconnect until the receipt arrives.
    pub async fn send_receipted(&self, message: OutgoingMessage) -> Result<(), FailoverError> {
        let seq = self.inner.seq();
        let mut frame = message.to_frame();
        frame.set_header("receipt", format!("{}-{seq}", self.inner.tag));
        let mut link = self.inner.link.subscribe();
        {
            let mut st = self.inner.lock();
            let receipt = match &*link.borrow_and_update() {
                Link::Up { conn, .. } => conn.request(frame.clone()).ok(),
                Link::Failed(e) => return Err(e.clone()),
                Link::Closed => return Err(FailoverError::Closed),
                Link::Connecting => None,
            };
            st.pending.insert(seq, PendingSend { frame, receipt });
        }
        // Removes the entry however this future ends (also when dropped).
        let _untrack = Untrack(&self.inner, seq);
        let mut since = Instant::now();
        loop {
            let receipt = self
                .inner
                .lock()
                .pending
                .get_mut(&seq)
                .and_then(|p| p.receipt.take());
            if let Some(receipt) = receipt {
                match receipt.await {
                    Ok(()) => return Ok(()),
                    Err(e) if !e.is_connection_failure() => return Err(FailoverError::Broker(e)),
                    // Cut off: the supervisor re-sends it on the next connection.
                    Err(_) => since = Instant::now(),
                }
                continue;
            }
            match &*link.borrow_and_update() {
                Link::Failed(e) => return Err(e.clone()),
                Link::Closed => return Err(FailoverError::Closed),
                _ => {}
            }
            self.wait_change(&mut link, since).await?;
        }
    }

    /// SUBSCRIBE; restored on every new connection. Messages of the old
    /// connection that were not acknowledged come again (`redelivered`).
    pub async fn subscribe(
        &self,
        destination: &str,
        ack: AckMode,
        headers: &[(String, String)],
    ) -> Result<Subscription, FailoverError> {
        let seq = self.inner.seq();
        let id = format!("{}-sub-{seq}", self.inner.tag);
        let (tx, rx) = mpsc::channel(crate::client::DELIVERY_BUFFER);
        let spec = SubSpec {
            id: id.clone(),
            destination: destination.to_owned(),
            ack,
            headers: headers.to_vec(),
            sink: tx,
        };
        let mut link = self.inner.link.subscribe();
        let since = Instant::now();
        let receipt = {
            let mut st = self.inner.lock();
            let receipt = match &*link.borrow_and_update() {
                Link::Up { conn, .. } => conn
                    .subscribe_with(&id, destination, ack, headers, spec.sink.clone())
                    .ok(),
                Link::Failed(e) => return Err(e.clone()),
                Link::Closed => return Err(FailoverError::Closed),
                Link::Connecting => None,
            };
            st.subscriptions.insert(seq, spec);
            receipt
        };
        let subscription = Subscription {
            seq,
            id,
            rx,
            client: self.clone(),
        };
        match receipt {
            // Registered with the broker; if the connection dropped first the
            // supervisor re-subscribes anyway.
            Some(r) => match r.await {
                Err(e) if !e.is_connection_failure() => return Err(FailoverError::Broker(e)),
                _ => {}
            },
            None => {
                self.wait_link(&mut link, since).await?;
            }
        }
        Ok(subscription)
    }

    fn current_conn(&self) -> Option<Connection> {
        match &*self.inner.link.borrow() {
            Link::Up { conn, .. } => Some(conn.clone()),
            _ => None,
        }
    }

    /// ACK. A message delivered by an earlier connection cannot be
    /// acknowledged any more: the ACK is dropped, and the broker delivers the
    /// message again (as ActiveMQ's failover transport does with stale acks).
    /// Returns whether the ACK was sent.
    pub fn ack(&self, msg: &Delivery) -> Result<bool, FailoverError> {
        self.ack_or_nack(msg, Command::Ack)
    }

    /// NACK (same rules as [`ack`](Self::ack)).
    pub fn nack(&self, msg: &Delivery) -> Result<bool, FailoverError> {
        self.ack_or_nack(msg, Command::Nack)
    }

    fn ack_or_nack(&self, msg: &Delivery, command: Command) -> Result<bool, FailoverError> {
        match self.current_conn() {
            Some(conn) if conn.id() == msg.connection => {
                let r = if command == Command::Ack {
                    conn.ack(msg)
                } else {
                    conn.nack(msg)
                };
                match r {
                    Ok(()) => Ok(true),
                    Err(e) if e.is_connection_failure() => Ok(false),
                    Err(e) => Err(FailoverError::Broker(e)),
                }
            }
            _ => Ok(false),
        }
    }

    /// BEGIN a transaction on the current connection. If the connection fails
    /// over before COMMIT, the broker has rolled it back and
    /// [`Transaction::commit`] says so.
    pub async fn begin(&self) -> Result<Transaction, FailoverError> {
        let id = format!("{}-tx-{}", self.inner.tag, self.inner.seq());
        let mut link = self.inner.link.subscribe();
        let since = Instant::now();
        loop {
            let (generation, conn) = self.wait_link(&mut link, since).await?;
            match conn.begin(&id).await {
                Ok(()) => {
                    return Ok(Transaction {
                        id,
                        generation,
                        conn,
                    })
                }
                Err(e) if e.is_connection_failure() => continue,
                Err(e) => return Err(FailoverError::Broker(e)),
            }
        }
    }

    /// Disconnects cleanly (DISCONNECT with receipt) and stops reconnecting.
    /// Pending sends fail with [`FailoverError::Closed`].
    pub async fn close(&self) {
        self.inner.shutdown.cancel();
        let conn = {
            let _st = self.inner.lock();
            let previous = self.inner.link.send_replace(Link::Closed);
            match previous {
                Link::Up { conn, .. } => Some(conn),
                _ => None,
            }
        };
        if let Some(conn) = conn {
            let _ = conn.disconnect().await;
        }
        let subs = std::mem::take(&mut self.inner.lock().subscriptions);
        drop(subs);
    }
}

struct Untrack<'a>(&'a Inner, u64);

impl Drop for Untrack<'_> {
    fn drop(&mut self) {
        self.0.lock().pending.remove(&self.1);
    }
}

/// Messages of one subscription, across failovers.
pub struct Subscription {
    seq: u64,
    id: String,
    rx: mpsc::Receiver<Delivery>,
    client: FailoverClient,
}

impl Subscription {
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The next message; `None` once the client is closed or gave up.
    pub async fn recv(&mut self) -> Option<Delivery> {
        let mut link = self.client.inner.link.subscribe();
        loop {
            if matches!(&*link.borrow_and_update(), Link::Failed(_) | Link::Closed) {
                return self.rx.try_recv().ok();
            }
            tokio::select! {
                d = self.rx.recv() => return d,
                r = link.changed() => if r.is_err() { return None },
            }
        }
    }

    /// UNSUBSCRIBE: not restored any more, and told to the current broker.
    pub async fn unsubscribe(self) -> Result<(), FailoverError> {
        self.client.inner.lock().subscriptions.remove(&self.seq);
        match self.client.current_conn() {
            Some(conn) => match conn.unsubscribe(&self.id).await {
                Err(e) if !e.is_connection_failure() => Err(FailoverError::Broker(e)),
                _ => Ok(()),
            },
            None => Ok(()),
        }
    }
}

/// A transaction bound to the connection it began on.
pub struct Transaction {
    id: String,
    generation: u64,
    conn: Connection,
}

impl Transaction {
    pub fn id(&self) -> &str {
        &self.id
    }

    fn check(&self) -> Result<(), FailoverError> {
        if self.conn.is_closed() {
            return Err(FailoverError::TransactionRolledBack(self.id.clone()));
        }
        Ok(())
    }

    /// SEND inside the transaction (no receipt: COMMIT confirms).
    pub async fn send(&self, mut message: OutgoingMessage) -> Result<(), FailoverError> {
        self.check()?;
        message.transaction = Some(self.id.clone());
        self.conn
            .send(message)
            .await
            .map_err(|_| FailoverError::TransactionRolledBack(self.id.clone()))
    }

    /// ACK inside the transaction.
    pub fn ack(&self, msg: &Delivery) -> Result<(), FailoverError> {
        self.check()?;
        if msg.connection != self.conn.id() {
            return Err(FailoverError::TransactionRolledBack(self.id.clone()));
        }
        self.conn
            .ack_in(msg, &self.id)
            .map_err(|_| FailoverError::TransactionRolledBack(self.id.clone()))
    }

    pub async fn commit(self) -> Result<(), FailoverError> {
        self.check()?;
        match self.conn.commit(&self.id).await {
            Ok(()) => Ok(()),
            Err(e) if e.is_connection_failure() => Err(FailoverError::TransactionInDoubt(self.id)),
            Err(e) => Err(FailoverError::Broker(e)),
        }
    }

    pub async fn abort(self) -> Result<(), FailoverError> {
        self.check()?;
        match self.conn.abort(&self.id).await {
            // A lost connection rolls the transaction back anyway.
            Err(e) if !e.is_connection_failure() => Err(FailoverError::Broker(e)),
            _ => Ok(()),
        }
    }

    /// The connection generation it began on (for diagnostics).
    pub fn generation(&self) -> u64 {
        self.generation
    }
}

/// The supervisor: connect, restore, wait for the drop (or a priority
/// broker), repeat — until closed or the attempt limit is reached.
async fn supervise(inner: Arc<Inner>) {
    let opts = inner.uri.options.clone();
    let endpoints = inner.uri.endpoints();
    let mut rng = fastrand::Rng::new();
    let mut backoff = Backoff::new(&opts);
    let mut ever_connected = false;
    let mut failed: Option<Endpoint> = None;
    let mut redirect: Option<Endpoint> = None;
    let mut disconnected_at: Option<Instant> = None;
    let mut generation = 0u64;
    let mut ready: Option<(Endpoint, Connection)> = None;

    loop {
        let (endpoint, conn) = match ready.take() {
            Some(up) => up,
            None => {
                let attempt = connect_passes(
                    &inner,
                    &endpoints,
                    ever_connected,
                    failed.as_ref(),
                    redirect.take(),
                    &mut backoff,
                    &mut rng,
                );
                let result = tokio::select! {
                    _ = inner.shutdown.cancelled() => return,
                    r = attempt => r,
                };
                match result {
                    Ok(up) => up,
                    Err(e) => {
                        let _st = inner.lock();
                        inner.link.send_replace(Link::Failed(e));
                        return;
                    }
                }
            }
        };
        backoff.reset();
        generation += 1;

        let (resubscribed, resent) = {
            let mut st = inner.lock();
            if inner.shutdown.is_cancelled() {
                drop(st);
                let _ = conn.disconnect().await;
                return;
            }
            for spec in st.subscriptions.values() {
                // The receipt is not awaited: a refused SUBSCRIBE ends in an
                // ERROR, which closes the connection anyway.
                let _ = conn.subscribe_with(
                    &spec.id,
                    &spec.destination,
                    spec.ack,
                    &spec.headers,
                    spec.sink.clone(),
                );
            }
            for p in st.pending.values_mut() {
                p.receipt = conn.request(p.frame.clone()).ok();
            }
            inner.link.send_replace(Link::Up {
                generation,
                conn: conn.clone(),
                endpoint: endpoint.clone(),
            });
            (st.subscriptions.len(), st.pending.len())
        };
        match disconnected_at.take() {
            Some(at) if ever_connected => inner.emit(EventKind::Reconnected {
                endpoint: endpoint.clone(),
                outage: at.elapsed(),
                resubscribed,
                resent,
            }),
            _ => inner.emit(EventKind::Connected {
                endpoint: endpoint.clone(),
            }),
        }
        ever_connected = true;

        let probe = priority_probe(&inner, &endpoint);
        let reason = tokio::select! {
            _ = inner.shutdown.cancelled() => return,
            reason = conn.closed() => reason,
            up = probe => {
                let (to, new_conn) = up;
                inner.emit(EventKind::PriorityBackup { from: endpoint.clone(), to: to.clone() });
                {
                    let _st = inner.lock();
                    inner.link.send_replace(Link::Connecting);
                }
                disconnected_at = Some(Instant::now());
                // DISCONNECT waits for everything sent before it, so receipts
                // in flight come back instead of being re-sent.
                let _ = conn.disconnect().await;
                inner.emit(EventKind::Disconnected {
                    endpoint: endpoint.clone(),
                    reason: format!("moving to priority broker {to}"),
                });
                ready = Some((to, new_conn));
                continue;
            }
        };

        disconnected_at = Some(Instant::now());
        {
            let _st = inner.lock();
            inner.link.send_replace(Link::Connecting);
        }
        inner.emit(EventKind::Disconnected {
            endpoint: endpoint.clone(),
            reason: reason.to_string(),
        });
        if let ClientError::NotMaster {
            master: Some(master),
            ..
        } = &reason
        {
            if opts.reconnect_supported && master != &endpoint {
                inner.emit(EventKind::Redirected {
                    from: endpoint.clone(),
                    to: master.clone(),
                });
                redirect = Some(master.clone());
            }
        }
        failed = Some(endpoint);
        if !reconnects_after_drop(&opts) {
            let _st = inner.lock();
            inner
                .link
                .send_replace(Link::Failed(FailoverError::ConnectionLost(reason)));
            return;
        }
        // As ActiveMQ (AMQ-5819): one initialReconnectDelay before the first
        // pass after a drop.
        tokio::select! {
            _ = inner.shutdown.cancelled() => return,
            _ = tokio::time::sleep(backoff.initial()) => {}
        }
    }
}

/// `doReconnect` until connected or the attempt limit is reached.
async fn connect_passes(
    inner: &Inner,
    endpoints: &[Endpoint],
    ever_connected: bool,
    failed: Option<&Endpoint>,
    mut redirect: Option<Endpoint>,
    backoff: &mut Backoff,
    rng: &mut fastrand::Rng,
) -> Result<(Endpoint, Connection), FailoverError> {
    let opts = &inner.uri.options;
    let mut pass = 0u32;
    loop {
        pass += 1;
        let mut order: VecDeque<Endpoint> =
            connect_order(endpoints, opts, failed, redirect.take().as_ref(), rng).into();
        let mut redirected = Vec::new();
        let mut last_error = None;
        while let Some(endpoint) = order.pop_front() {
            inner.emit(EventKind::Connecting {
                endpoint: endpoint.clone(),
                pass,
            });
            match Connection::connect_endpoint(&endpoint, &inner.options_for(&endpoint)).await {
                Ok(conn) => return Ok((endpoint, conn)),
                Err(e) => {
                    inner.emit(EventKind::ConnectFailed {
                        endpoint: endpoint.clone(),
                        error: e.to_string(),
                    });
                    if let ClientError::NotMaster {
                        master: Some(master),
                        ..
                    } = &e
                    {
                        // Follow each redirect once per pass, so two slaves
                        // naming each other cannot loop.
                        if opts.reconnect_supported
                            && master != &endpoint
                            && !redirected.contains(master)
                        {
                            inner.emit(EventKind::Redirected {
                                from: endpoint.clone(),
                                to: master.clone(),
                            });
                            redirected.push(master.clone());
                            order.retain(|e| e != master);
                            order.push_front(master.clone());
                        }
                    }
                    last_error = Some(e);
                }
            }
        }
        let last = last_error.unwrap_or(ClientError::Closed);
        if let Some(limit) = pass_limit(opts, ever_connected) {
            if pass >= limit {
                let uris = endpoints
                    .iter()
                    .map(|e| e.to_string())
                    .collect::<Vec<_>>()
                    .join(", ");
                inner.emit(EventKind::GaveUp {
                    passes: pass,
                    error: last.to_string(),
                });
                return Err(FailoverError::GaveUp {
                    uris,
                    passes: pass,
                    last,
                });
            }
        }
        if warn_now(opts, pass) {
            tracing::warn!(
                "failed to connect to {} after {pass} attempt(s), continuing to retry: {last}",
                inner.uri
            );
        }
        let delay = backoff.next_delay();
        inner.emit(EventKind::PassFailed { pass, delay });
        tokio::time::sleep(delay).await;
    }
}

/// With `priorityBackup`, while connected to a non-priority broker: try the
/// priority brokers with the back-off schedule until one answers. Never
/// completes otherwise.
async fn priority_probe(inner: &Inner, current: &Endpoint) -> (Endpoint, Connection) {
    let uri = &inner.uri;
    if !uri.options.priority_backup || uri.is_priority(current) {
        return std::future::pending().await;
    }
    let priority: Vec<Endpoint> = uri
        .endpoints()
        .into_iter()
        .chain(uri.options.priority_uris.iter().cloned())
        .filter(|e| uri.is_priority(e))
        .fold(Vec::new(), |mut v, e| {
            if !v.contains(&e) {
                v.push(e);
            }
            v
        });
    let mut backoff = Backoff::new(&uri.options);
    loop {
        tokio::time::sleep(backoff.next_delay()).await;
        for endpoint in &priority {
            if let Ok(conn) =
                Connection::connect_endpoint(endpoint, &inner.options_for(endpoint)).await
            {
                return (endpoint.clone(), conn);
            }
        }
    }
}
