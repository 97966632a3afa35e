//! A STOMP client connection: CONNECT with login/passcode and heart-beats
//! (TCP_NODELAY always), SEND with or without a receipt, SUBSCRIBE, ACK/NACK,
//! transactions, DISCONNECT; broker ERROR frames as typed errors.
//!
//! One [`Connection`] is one TCP connection. Frames leave in the order they
//! were handed over; many receipted SENDs can be in flight at once. The
//! failover client ([`crate::failover`]) builds on it.
//!
//! ```no_run
//! # async fn demo() -> Result<(), amq_broker::client::ClientError> {
//! use amq_broker::client::{AckMode, ConnectOptions, Connection, OutgoingMessage};
//!
//! let conn = Connection::connect("127.0.0.1:61613", &ConnectOptions::default()).await?;
//! let mut sub = conn.subscribe("/queue/orders", AckMode::ClientIndividual, &[]).await?;
//! conn.send_receipted(OutgoingMessage::new("/queue/orders", "hello").persistent(true)).await?;
//! let msg = sub.recv().await.expect("a message");
//! conn.ack(&msg)?;
//! conn.disconnect().await?;
//! # Ok(()) }
//! ```

mod io;

use crate::failover::Endpoint;
use crate::stomp::Codec;
use crate::stomp::{Command, Frame, Version};
use bytes::Bytes;
use bytes::BytesMut;
use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;
use std::time::Instant;
use tokio::net::tcp::OwnedWriteHalf;
use tokio::sync::{mpsc, oneshot, watch, Notify};

/// Bytes that may wait in the outgoing buffer before `send` (without a
/// receipt) waits for the socket, so a fast producer cannot grow memory
/// without bound.
const SEND_HIGH_WATER: usize = 256 * 1024;

/// Capacity of a subscription's delivery channel. The broker's prefetch
/// bounds what is in flight; if the application does not keep up, reading
/// from the socket pauses and TCP pushes back on the broker.
pub const DELIVERY_BUFFER: usize = 1024;

/// How to log in and what to negotiate.
#[derive(Clone)]
pub struct ConnectOptions {
    pub login: Option<String>,
    /// Never printed (`Debug` shows `***`).
    pub passcode: Option<String>,
    /// The `host` header (virtual host); defaults to the host connected to.
    pub host: Option<String>,
    /// ActiveMQ's `client-id` (names durable subscriptions).
    pub client_id: Option<String>,
    /// Heart-beats offered: (send every, want every). Zero means none.
    pub heart_beat: (Duration, Duration),
    /// Bound on TCP connect plus the CONNECT/CONNECTED exchange; zero waits
    /// without limit.
    pub connect_timeout: Duration,
}

impl Default for ConnectOptions {
    fn default() -> Self {
        ConnectOptions {
            login: None,
            passcode: None,
            host: None,
            client_id: None,
            heart_beat: (Duration::from_secs(10), Duration::from_secs(10)),
            connect_timeout: Duration::from_secs(30),
        }
    }
}

impl fmt::Debug for ConnectOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnectOptions")
            .field("login", &self.login)
            .field("passcode", &self.passcode.as_ref().map(|_| "***"))
            .field("host", &self.host)
            .field("client_id", &self.client_id)
            .field("heart_beat", &self.heart_beat)
            .field("connect_timeout", &self.connect_timeout)
            .finish()
    }
}

/// Everything a STOMP client connection can fail with.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ClientError {
    #[error("cannot connect to {addr}: {reason}")]
    Connect { addr: String, reason: String },
    #[error("timed out connecting to {addr} after {} ms", .after.as_millis())]
    ConnectTimeout { addr: String, after: Duration },
    /// The broker answered CONNECT with an ERROR (bad credentials, say).
    #[error("{addr} refused the connection: {message}")]
    Refused { addr: String, message: String },
    /// A slave turned the client away; `master` is where to go, if known.
    #[error("{addr} is not the master{}", .master.as_ref().map(|m| format!("; the master is {m}")).unwrap_or_default())]
    NotMaster {
        addr: String,
        master: Option<Endpoint>,
        message: String,
    },
    /// The broker refused one frame (its ERROR carried our receipt id).
    #[error("broker error: {message}{}", if .detail.is_empty() { String::new() } else { format!(" ({})", .detail.trim()) })]
    Broker { message: String, detail: String },
    /// The connection broke; what was in flight may or may not have arrived.
    #[error("connection to {addr} lost: {reason}")]
    ConnectionLost { addr: String, reason: String },
    /// Used after `disconnect()`.
    #[error("connection closed")]
    Closed,
    #[error("protocol error from {addr}: {reason}")]
    Protocol { addr: String, reason: String },
    #[error("no RECEIPT from {addr} within {} ms", .after.as_millis())]
    ReceiptTimeout { addr: String, after: Duration },
}

impl ClientError {
    /// Whether the failure is the connection's (try elsewhere) rather than
    /// the broker refusing this one request.
    pub fn is_connection_failure(&self) -> bool {
        !matches!(self, ClientError::Broker { .. })
    }
}

/// Acknowledgement mode of a subscription, as STOMP names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AckMode {
    Auto,
    Client,
    ClientIndividual,
}

impl AckMode {
    pub fn as_str(self) -> &'static str {
        match self {
            AckMode::Auto => "auto",
            AckMode::Client => "client",
            AckMode::ClientIndividual => "client-individual",
        }
    }
}

impl std::str::FromStr for AckMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" => Ok(AckMode::Auto),
            "client" => Ok(AckMode::Client),
            "client-individual" => Ok(AckMode::ClientIndividual),
            _ => Err(format!(
                "unknown ack mode {s:?}: expected auto, client or client-individual"
            )),
        }
    }
}

/// A message to SEND.
#[derive(Debug, Clone, PartialEq)]
pub struct OutgoingMessage {
    pub destination: String,
    pub body: Bytes,
    pub persistent: bool,
    /// Custom headers (application properties, `priority`, `expires`, …).
    pub headers: Vec<(String, String)>,
    pub transaction: Option<String>,
}

impl OutgoingMessage {
    pub fn new(destination: impl Into<String>, body: impl Into<Bytes>) -> Self {
        OutgoingMessage {
            destination: destination.into(),
            body: body.into(),
            persistent: false,
            headers: Vec::new(),
            transaction: None,
        }
    }

    pub fn persistent(mut self, persistent: bool) -> Self {
        self.persistent = persistent;
        self
    }

    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    pub fn to_frame(&self) -> Frame {
        let mut f = Frame::new(Command::Send)
            .with_header("destination", self.destination.clone())
            .with_header("content-length", self.body.len().to_string());
        if self.persistent {
            f = f.with_header("persistent", "true");
        }
        if let Some(tx) = &self.transaction {
            f = f.with_header("transaction", tx.clone());
        }
        for (k, v) in &self.headers {
            f = f.with_header(k.clone(), v.clone());
        }
        f.with_body(self.body.clone())
    }
}

/// A MESSAGE received on a subscription.
#[derive(Debug, Clone, PartialEq)]
pub struct Delivery {
    pub frame: Frame,
    /// Which connection delivered it ([`Connection::id`]); an ACK must go
    /// back over that same connection.
    pub connection: u64,
}

impl Delivery {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.frame.header(name)
    }
    pub fn body(&self) -> &Bytes {
        &self.frame.body
    }
    pub fn destination(&self) -> &str {
        self.header("destination").unwrap_or_default()
    }
    pub fn message_id(&self) -> &str {
        self.header("message-id").unwrap_or_default()
    }
    pub fn subscription(&self) -> &str {
        self.header("subscription").unwrap_or_default()
    }
    pub fn redelivered(&self) -> bool {
        self.header("redelivered") == Some("true")
    }
}

/// What the broker said in CONNECTED.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerInfo {
    pub version: Version,
    pub server: Option<String>,
    pub session: Option<String>,
    /// Negotiated heart-beat intervals (we send every, we expect every).
    pub heart_beat: (Duration, Duration),
}

type ReceiptTx = oneshot::Sender<Result<(), ClientError>>;

struct State {
    receipts: HashMap<String, ReceiptTx>,
    subscriptions: HashMap<String, mpsc::Sender<Delivery>>,
}

/// Encoded frames not yet written, and the socket they go to. A caller
/// writes its frame straight to the socket when it can (no task hop on the
/// way out); whatever the socket does not take, the writer task finishes.
struct Outbox {
    buf: BytesMut,
    codec: Codec,
    /// `None` once closed, which closes our side of the socket.
    half: Option<Arc<OwnedWriteHalf>>,
    last_write: Instant,
}

/// State shared by the handle and the I/O tasks.
struct Shared {
    id: u64,
    addr: String,
    info: ServerInfo,
    state: Mutex<State>,
    closed: watch::Sender<Option<ClientError>>,
    outbox: Mutex<Outbox>,
    /// Wakes the writer task: bytes are left over, or the handles are gone.
    wake_writer: Notify,
    /// The outgoing buffer fell below the high-water mark.
    drained: Notify,
    /// DISCONNECT was sent: the broker closing the socket is expected.
    disconnecting: std::sync::atomic::AtomicBool,
}

impl Shared {
    /// Marks the connection closed (first reason wins), fails every pending
    /// receipt with it and ends every subscription's channel.
    fn close(&self, reason: ClientError) {
        let mut first = false;
        self.closed.send_if_modified(|r| {
            first = r.is_none();
            if first {
                *r = Some(reason.clone());
            }
            first
        });
        if !first {
            return;
        }
        let (receipts, _subs) = {
            let mut st = self.state.lock().expect("client state lock");
            (
                std::mem::take(&mut st.receipts),
                std::mem::take(&mut st.subscriptions),
            )
        };
        self.outbox.lock().expect("outbox lock").half = None;
        self.drained.notify_waiters();
        self.wake_writer.notify_one();
        for (_, tx) in receipts {
            let _ = tx.send(Err(reason.clone()));
        }
    }

    fn closed_reason(&self) -> Option<ClientError> {
        self.closed.borrow().clone()
    }

    /// The waiter for the receipt a RECEIPT or ERROR frame names.
    fn take_receipt(&self, frame: &Frame) -> Option<ReceiptTx> {
        let id = frame.header("receipt-id")?;
        self.state
            .lock()
            .expect("client state lock")
            .receipts
            .remove(id)
    }

    /// Encodes `frame` into the outbox and writes what the socket takes now.
    /// With `limit`, refuses (returns `Ok(false)`) while the outbox holds
    /// more than that.
    fn push(&self, frame: &Frame, limit: Option<usize>) -> Result<bool, ClientError> {
        let mut ob = self.outbox.lock().expect("outbox lock");
        if ob.half.is_none() {
            return Err(self.closed_reason().unwrap_or(ClientError::Closed));
        }
        if limit.is_some_and(|l| ob.buf.len() >= l) {
            return Ok(false);
        }
        let Outbox { buf, codec, .. } = &mut *ob;
        tokio_util::codec::Encoder::encode(codec, frame, buf).map_err(|e| {
            ClientError::Protocol {
                addr: self.addr.clone(),
                reason: format!("cannot encode {}: {e}", frame.command),
            }
        })?;
        if let Err(e) = self.write_now(&mut ob) {
            drop(ob);
            self.close(e.clone());
            return Err(e);
        }
        if !ob.buf.is_empty() {
            self.wake_writer.notify_one();
        }
        Ok(true)
    }

    /// Writes as much of the outbox as the socket takes without blocking.
    fn write_now(&self, ob: &mut Outbox) -> Result<(), ClientError> {
        let Some(half) = ob.half.clone() else {
            return Ok(());
        };
        while !ob.buf.is_empty() {
            match half.try_write(&ob.buf) {
                Ok(0) => return Err(io::lost(&self.addr, "write returned 0")),
                Ok(n) => {
                    bytes::Buf::advance(&mut ob.buf, n);
                    ob.last_write = Instant::now();
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) => return Err(io::lost(&self.addr, format!("write failed: {e}"))),
            }
        }
        Ok(())
    }
}

static NEXT_CONNECTION_ID: AtomicU64 = AtomicU64::new(1);

/// One STOMP connection. Cheap to clone; all clones drive the same
/// connection, which closes when the last clone is dropped or on
/// [`Connection::disconnect`].
#[derive(Clone)]
pub struct Connection {
    shared: Arc<Shared>,
    /// Closes the connection when the last handle is dropped.
    _handle: Arc<HandleGuard>,
    next: Arc<AtomicU64>,
}

struct HandleGuard(Arc<Shared>);

impl Drop for HandleGuard {
    fn drop(&mut self) {
        self.0.close(ClientError::Closed);
    }
}

impl fmt::Debug for Connection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connection")
            .field("id", &self.shared.id)
            .field("addr", &self.shared.addr)
            .field("version", &self.shared.info.version)
            .finish()
    }
}

impl Connection {
    /// Connects to `addr` (`host:port`) and logs in.
    pub async fn connect(addr: &str, options: &ConnectOptions) -> Result<Connection, ClientError> {
        io::connect(addr, options).await
    }

    /// Connects to a member of a failover list.
    pub async fn connect_endpoint(
        endpoint: &Endpoint,
        options: &ConnectOptions,
    ) -> Result<Connection, ClientError> {
        let mut options = options.clone();
        options.host.get_or_insert_with(|| endpoint.host.clone());
        io::connect(&endpoint.socket_addr_string(), &options).await
    }

    /// A number unique among the connections of this process.
    pub fn id(&self) -> u64 {
        self.shared.id
    }

    pub fn addr(&self) -> &str {
        &self.shared.addr
    }

    pub fn server_info(&self) -> &ServerInfo {
        &self.shared.info
    }

    pub fn is_closed(&self) -> bool {
        self.shared.closed.borrow().is_some()
    }

    /// Resolves when the connection is closed, with the reason.
    pub async fn closed(&self) -> ClientError {
        let mut rx = self.shared.closed.subscribe();
        loop {
            if let Some(reason) = rx.borrow_and_update().clone() {
                return reason;
            }
            if rx.changed().await.is_err() {
                return ClientError::Closed;
            }
        }
    }

    fn check_open(&self) -> Result<(), ClientError> {
        match self.shared.closed_reason() {
            Some(reason) => Err(reason),
            None => Ok(()),
        }
    }

    /// Sends a frame without a receipt; waits only while much is still
    /// unwritten (the broker or the network is slower than the producer).
    pub async fn send_frame(&self, frame: Frame) -> Result<(), ClientError> {
        loop {
            let drained = self.shared.drained.notified();
            tokio::pin!(drained);
            drained.as_mut().enable();
            if self.shared.push(&frame, Some(SEND_HIGH_WATER))? {
                return Ok(());
            }
            drained.await;
        }
    }

    fn enqueue(&self, frame: Frame) -> Result<(), ClientError> {
        self.shared.push(&frame, None).map(|_| ())
    }

    /// Queues `frame` with a `receipt` header (its own, if it has one) and
    /// returns the future of the broker's RECEIPT. Does not wait, so many
    /// can be in flight and the order of calls is the order on the wire.
    pub fn request(&self, mut frame: Frame) -> Result<Receipt, ClientError> {
        self.check_open()?;
        let id = match frame.header("receipt") {
            Some(id) => id.to_owned(),
            None => {
                let id = format!("r{}", self.next.fetch_add(1, Ordering::Relaxed));
                frame.set_header("receipt", id.clone());
                id
            }
        };
        let (tx, rx) = oneshot::channel();
        {
            let mut st = self.shared.state.lock().expect("client state lock");
            // Checked again under the lock: close() empties the map under it.
            if let Some(reason) = self.shared.closed_reason() {
                return Err(reason);
            }
            st.receipts.insert(id.clone(), tx);
        }
        if let Err(e) = self.enqueue(frame) {
            self.shared
                .state
                .lock()
                .expect("client state lock")
                .receipts
                .remove(&id);
            return Err(e);
        }
        Ok(Receipt {
            rx,
            addr: self.shared.addr.clone(),
        })
    }

    /// SEND without a receipt (fire and forget).
    pub async fn send(&self, message: OutgoingMessage) -> Result<(), ClientError> {
        self.send_frame(message.to_frame()).await
    }

    /// SEND and wait for the broker's RECEIPT: for a persistent message,
    /// the broker has stored it.
    pub async fn send_receipted(&self, message: OutgoingMessage) -> Result<(), ClientError> {
        self.request(message.to_frame())?.await
    }

    /// SUBSCRIBE with a fresh id; messages arrive on the returned
    /// [`Subscription`]. `headers` go into the SUBSCRIBE frame (e.g.
    /// `activemq.prefetchSize`, `selector`). Receipted, so the broker has
    /// registered the consumer when this returns.
    pub async fn subscribe(
        &self,
        destination: &str,
        ack: AckMode,
        headers: &[(String, String)],
    ) -> Result<Subscription, ClientError> {
        let id = format!("sub-{}", self.next.fetch_add(1, Ordering::Relaxed));
        let (tx, rx) = mpsc::channel(DELIVERY_BUFFER);
        self.subscribe_with(&id, destination, ack, headers, tx)?
            .await?;
        Ok(Subscription {
            id,
            rx,
            conn: self.clone(),
        })
    }

    /// SUBSCRIBE with a caller-chosen id, delivering into `sink` (the
    /// failover client keeps one sink across connections).
    pub fn subscribe_with(
        &self,
        id: &str,
        destination: &str,
        ack: AckMode,
        headers: &[(String, String)],
        sink: mpsc::Sender<Delivery>,
    ) -> Result<Receipt, ClientError> {
        self.shared
            .state
            .lock()
            .expect("client state lock")
            .subscriptions
            .insert(id.to_owned(), sink);
        let mut frame = Frame::new(Command::Subscribe)
            .with_header("id", id)
            .with_header("destination", destination)
            .with_header("ack", ack.as_str());
        for (k, v) in headers {
            frame = frame.with_header(k.clone(), v.clone());
        }
        self.request(frame)
    }

    /// UNSUBSCRIBE (receipted).
    pub async fn unsubscribe(&self, id: &str) -> Result<(), ClientError> {
        let frame = Frame::new(Command::Unsubscribe).with_header("id", id);
        let receipt = self.request(frame)?;
        self.shared
            .state
            .lock()
            .expect("client state lock")
            .subscriptions
            .remove(id);
        receipt.await
    }

    fn ack_frame(&self, command: Command, msg: &Delivery, transaction: Option<&str>) -> Frame {
        let mut f = Frame::new(command);
        match self.shared.info.version {
            Version::V1_2 => {
                let id = msg.header("ack").unwrap_or(msg.message_id());
                f = f.with_header("id", id);
            }
            Version::V1_1 => {
                f = f
                    .with_header("subscription", msg.subscription())
                    .with_header("message-id", msg.message_id());
            }
            Version::V1_0 => f = f.with_header("message-id", msg.message_id()),
        }
        if let Some(tx) = transaction {
            f = f.with_header("transaction", tx);
        }
        f
    }

    fn check_owner(&self, msg: &Delivery) -> Result<(), ClientError> {
        if msg.connection != self.shared.id {
            return Err(ClientError::Protocol {
                addr: self.shared.addr.clone(),
                reason: format!(
                    "message {} was delivered by another connection and cannot be acknowledged here",
                    msg.message_id()
                ),
            });
        }
        Ok(())
    }

    /// ACK a message of a `client` or `client-individual` subscription
    /// (queued, no receipt).
    pub fn ack(&self, msg: &Delivery) -> Result<(), ClientError> {
        self.check_owner(msg)?;
        self.check_open()?;
        self.enqueue(self.ack_frame(Command::Ack, msg, None))
    }

    /// ACK inside a transaction.
    pub fn ack_in(&self, msg: &Delivery, transaction: &str) -> Result<(), ClientError> {
        self.check_owner(msg)?;
        self.check_open()?;
        let f = self.ack_frame(Command::Ack, msg, Some(transaction));
        self.enqueue(f)
    }

    /// NACK: the broker redelivers the message (or dead-letters it).
    pub fn nack(&self, msg: &Delivery) -> Result<(), ClientError> {
        self.check_owner(msg)?;
        if self.shared.info.version == Version::V1_0 {
            return Err(ClientError::Protocol {
                addr: self.shared.addr.clone(),
                reason: "NACK needs STOMP 1.1 or later".into(),
            });
        }
        self.check_open()?;
        self.enqueue(self.ack_frame(Command::Nack, msg, None))
    }

    /// BEGIN a transaction (receipted).
    pub async fn begin(&self, transaction: &str) -> Result<(), ClientError> {
        self.tx_frame(Command::Begin, transaction).await
    }

    /// COMMIT (receipted): when this returns Ok, the transaction's sends and
    /// acks are done.
    pub async fn commit(&self, transaction: &str) -> Result<(), ClientError> {
        self.tx_frame(Command::Commit, transaction).await
    }

    pub async fn abort(&self, transaction: &str) -> Result<(), ClientError> {
        self.tx_frame(Command::Abort, transaction).await
    }

    async fn tx_frame(&self, command: Command, transaction: &str) -> Result<(), ClientError> {
        self.request(Frame::new(command).with_header("transaction", transaction))?
            .await
    }

    /// DISCONNECT with a receipt (so everything sent before has been
    /// processed), then close. Waits at most 10 s for the receipt.
    pub async fn disconnect(&self) -> Result<(), ClientError> {
        if self.shared.closed_reason().is_some() {
            return Ok(());
        }
        self.shared.disconnecting.store(true, Ordering::Relaxed);
        let receipt = self.request(Frame::new(Command::Disconnect))?;
        let result = match tokio::time::timeout(Duration::from_secs(10), receipt).await {
            Ok(r) => r,
            Err(_) => Err(ClientError::ReceiptTimeout {
                addr: self.shared.addr.clone(),
                after: Duration::from_secs(10),
            }),
        };
        self.shared.close(ClientError::Closed);
        result
    }

    /// Closes at once, without DISCONNECT (as if the network dropped).
    pub fn abort_connection(&self) {
        self.shared.close(ClientError::Closed);
    }
}

/// The broker's RECEIPT for one frame, as a future.
pub struct Receipt {
    rx: oneshot::Receiver<Result<(), ClientError>>,
    addr: String,
}

impl Future for Receipt {
    type Output = Result<(), ClientError>;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let addr = self.addr.clone();
        Pin::new(&mut self.rx).poll(cx).map(|r| {
            r.unwrap_or(Err(ClientError::ConnectionLost {
                addr,
                reason: "connection task ended".into(),
            }))
        })
    }
}

/// Messages of one subscription of a plain [`Connection`]. Ends (`None`)
/// when the connection closes.
pub struct Subscription {
    id: String,
    rx: mpsc::Receiver<Delivery>,
    conn: Connection,
}

impl Subscription {
    pub fn id(&self) -> &str {
        &self.id
    }

    pub async fn recv(&mut self) -> Option<Delivery> {
        // The only sender lives in the connection's table, which closing empties.
        self.rx.recv().await
    }

    pub async fn unsubscribe(self) -> Result<(), ClientError> {
        self.conn.unsubscribe(&self.id).await
    }
}
