//! One STOMP client connection: CONNECT/STOMP negotiation and authentication,
//! the frame commands mapped onto the [`Broker`], heart-beating both ways,
//! and ERROR-then-close on anything malformed.
//!
//! Two tasks per connection, so that slow fsyncs never delay deliveries and
//! a slow client never blocks the broker:
//! - the **reader** (this task) decodes frames and calls the broker;
//! - the **writer** writes MESSAGE frames as the broker dispatches them, and
//!   the reader's answers in order, each once its operation is durable (a
//!   persistent SEND's RECEIPT follows the fsync; an ERROR follows the
//!   receipts before it) without holding up deliveries meanwhile; it
//!   heart-beats, and reports written `ack:auto` deliveries back to the
//!   broker, which frees prefetch credit.

use crate::broker::{
    AckMode, AckRef, Broker, BrokerError, Completion, ConnId, Delivery, Outbound, DEFAULT_PREFETCH,
};
use crate::config::Authentication;
use crate::stomp::{
    self, Codec, CodecError, Command, Frame, HeartBeat, Limits, Transmission, Version,
};

use futures::future::BoxFuture;
use futures::stream::FuturesOrdered;
use futures::{FutureExt, SinkExt, StreamExt};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::time::{sleep_until, Instant};
use tokio_util::codec::{FramedRead, FramedWrite};
use tokio_util::sync::CancellationToken;

/// Per-connector protocol settings.
#[derive(Debug, Clone)]
pub struct ConnectionSettings {
    pub limits: Limits,
    /// `None`: anyone may connect.
    pub authentication: Option<Authentication>,
    /// A client must send CONNECT within this time.
    pub connect_timeout: Duration,
    /// Shortest heart-beat interval the broker sends or expects.
    pub min_heartbeat: Duration,
    /// A client is dead after this many of its heart-beat intervals of
    /// silence (ActiveMQ's `transport.hbGracePeriodMultiplier`).
    pub heartbeat_grace: f64,
    /// Unanswered frames (receipts awaiting fsync) before reading pauses.
    pub max_pending_receipts: usize,
}

impl Default for ConnectionSettings {
    fn default() -> Self {
        ConnectionSettings {
            limits: Limits::default(),
            authentication: None,
            connect_timeout: Duration::from_secs(30),
            min_heartbeat: Duration::from_millis(100),
            heartbeat_grace: 1.5,
            max_pending_receipts: 1024,
        }
    }
}

/// An answer to the client, written once `completion` is durable, in the
/// order the reader produced them.
struct Answer {
    completion: Completion,
    frame: Option<Frame>,
    close: bool,
}

type Writer = FramedWrite<OwnedWriteHalf, Codec>;

/// A protocol error: reported to the client as ERROR, then the connection
/// closes.
struct ProtocolError {
    message: String,
    detail: String,
}

impl ProtocolError {
    fn new(message: impl Into<String>) -> Self {
        let message = message.into();
        ProtocolError {
            detail: message.clone(),
            message,
        }
    }

    fn frame(&self, receipt: Option<&str>) -> Frame {
        let mut f = Frame::error(self.message.clone(), self.detail.clone());
        if let Some(r) = receipt {
            f.headers.push(("receipt-id".into(), r.to_owned()));
        }
        f
    }
}

impl From<crate::broker::BrokerError> for ProtocolError {
    fn from(e: crate::broker::BrokerError) -> Self {
        ProtocolError::new(e.to_string())
    }
}

impl From<CodecError> for ProtocolError {
    fn from(e: CodecError) -> Self {
        ProtocolError {
            message: "malformed frame".into(),
            detail: e.to_string(),
        }
    }
}

/// What clients are told when the broker stops serving them.
const SHUTDOWN_MESSAGE: &str =
    "the broker stopped serving clients (shutdown or lost mastership); reconnect";

/// Serves one client until it disconnects, errs, or `shutdown` fires.
pub async fn serve(
    stream: TcpStream,
    broker: Arc<Broker>,
    settings: Arc<ConnectionSettings>,
    shutdown: CancellationToken,
) {
    let peer = stream
        .peer_addr()
        .map(|a| a.to_string())
        .unwrap_or_else(|_| "?".into());
    let _ = stream.set_nodelay(true);
    let (rd, wr) = stream.into_split();
    let mut reader = FramedRead::new(rd, Codec::new(settings.limits));
    let mut writer = FramedWrite::new(wr, Codec::new(settings.limits));

    let connect = tokio::select! {
        r = tokio::time::timeout(settings.connect_timeout, reader.next()) => r,
        _ = shutdown.cancelled() => return,
    };
    let session = match connect {
        Err(_) => Err(ProtocolError::new("no CONNECT frame received in time")),
        Ok(None) => return,
        Ok(Some(Err(e))) => Err(e.into()),
        Ok(Some(Ok(Transmission::HeartBeat))) => Err(ProtocolError::new(
            "expected CONNECT or STOMP, got a heart-beat",
        )),
        Ok(Some(Ok(Transmission::Frame(f)))) => negotiate(&f, &settings),
    };
    let session = match session {
        Ok(s) => s,
        Err(e) => {
            tracing::info!(%peer, "refused: {}", e.message);
            let _ = writer.send(e.frame(None)).await;
            let _ = writer.get_mut().shutdown().await;
            return;
        }
    };
    reader.decoder_mut().set_version(session.version);
    writer.encoder_mut().set_version(session.version);
    let (conn, outbound) = broker.connect();
    let connected = session.connected_frame(conn, &broker);
    if writer.send(connected).await.is_err() {
        let _ = broker.disconnect(conn);
        return;
    }
    tracing::debug!(%peer, conn, version = %session.version, login = session.login.as_deref().unwrap_or(""), "connected");

    let closing = Arc::new(AtomicBool::new(false));
    let dead = CancellationToken::new();
    let (answer_tx, answer_rx) = mpsc::channel(settings.max_pending_receipts);
    let writer_task = tokio::spawn(write_loop(WriteLoop {
        writer,
        outbound,
        answers: answer_rx,
        max_pending: settings.max_pending_receipts,
        broker: broker.clone(),
        version: session.version,
        heartbeat: session.send_interval,
        closing: closing.clone(),
        dead: dead.clone(),
    }));

    let mut handler = Handler {
        temp_prefix: format!("ID:{}-{}-{conn}:", broker.name(), crate::broker::now_ms()),
        temporary: Default::default(),
        broker: broker.clone(),
        conn,
        version: session.version,
        answers: answer_tx,
    };
    let read_timeout = session
        .receive_interval
        .map(|d| d.mul_f64(settings.heartbeat_grace));
    let mut deadline = read_timeout.map(|t| Instant::now() + t);
    loop {
        let item = tokio::select! {
            item = reader.next() => item,
            _ = sleep_until(deadline.unwrap_or_else(Instant::now)), if deadline.is_some() => {
                tracing::info!(%peer, conn, "no heart-beat from the client in time; closing");
                handler.error(ProtocolError::new("heart-beat timeout: nothing received in time"), None).await;
                break;
            }
            _ = dead.cancelled() => break,
            _ = shutdown.cancelled() => {
                handler
                    .error(ProtocolError::new(SHUTDOWN_MESSAGE), None)
                    .await;
                break;
            }
        };
        if let Some(t) = read_timeout {
            deadline = Some(Instant::now() + t);
        }
        match item {
            None => break,
            Some(Err(e)) => {
                tracing::info!(%peer, conn, "malformed input: {e}");
                handler.error(e.into(), None).await;
                break;
            }
            Some(Ok(Transmission::HeartBeat)) => {}
            Some(Ok(Transmission::Frame(frame))) => {
                let receipt = frame.header("receipt").map(str::to_owned);
                // A SEND may wait for memory (flow control): shutdown must
                // still get through, and cancelling that wait is harmless.
                let handled = tokio::select! {
                    r = handler.handle(frame) => Some(r),
                    _ = shutdown.cancelled() => None,
                };
                let Some(handled) = handled else {
                    handler
                        .error(ProtocolError::new(SHUTDOWN_MESSAGE), None)
                        .await;
                    break;
                };
                match handled {
                    Ok(true) => {}
                    Ok(false) => break,
                    Err(e) => {
                        tracing::info!(%peer, conn, "protocol error: {}", e.message);
                        handler.error(e, receipt.as_deref()).await;
                        break;
                    }
                }
            }
        }
    }
    closing.store(true, Ordering::Relaxed);
    let temporary = std::mem::take(&mut handler.temporary);
    drop(handler);
    // Redeliver what this client did not acknowledge; the completion only
    // matters for the store's failure path, which reports itself.
    let _ = broker.disconnect(conn);
    for name in temporary {
        let _ = broker.remove_queue(&name);
    }
    let _ = writer_task.await;
    tracing::debug!(%peer, conn, "closed");
}

/// The outcome of CONNECT.
struct Session {
    version: Version,
    login: Option<String>,
    /// How often we heart-beat (None: never).
    send_interval: Option<Duration>,
    /// How often the client promised to (None: never).
    receive_interval: Option<Duration>,
    heartbeat_header: String,
}

impl Session {
    fn connected_frame(&self, conn: ConnId, broker: &Broker) -> Frame {
        let mut f = Frame::new(Command::Connected)
            .with_header("session", format!("{}-{conn}", broker.name()))
            .with_header("server", concat!("amq-broker/", env!("CARGO_PKG_VERSION")));
        if self.version >= Version::V1_1 {
            f = f
                .with_header("version", self.version.as_str())
                .with_header("heart-beat", self.heartbeat_header.clone());
        }
        f
    }
}

fn negotiate(f: &Frame, settings: &ConnectionSettings) -> Result<Session, ProtocolError> {
    if !matches!(f.command, Command::Connect | Command::Stomp) {
        return Err(ProtocolError::new(format!(
            "expected CONNECT or STOMP, got {}",
            f.command
        )));
    }
    let version = Version::negotiate(f.header("accept-version")).ok_or_else(|| ProtocolError {
        message: "Supported protocol versions are 1.0,1.1,1.2".into(),
        detail: format!(
            "none of accept-version:{} is supported",
            f.header("accept-version").unwrap_or("")
        ),
    })?;
    let login = f.header("login").map(str::to_owned);
    if let Some(auth) = &settings.authentication {
        let ok = match &login {
            None => auth.anonymous_access_allowed,
            Some(l) => auth
                .authenticate(l, f.header("passcode").unwrap_or(""))
                .is_some(),
        };
        if !ok {
            return Err(ProtocolError::new(format!(
                "User name [{}] or password is invalid.",
                login.as_deref().unwrap_or("")
            )));
        }
    }
    let (cx, cy) = match f.header("heart-beat").filter(|_| version >= Version::V1_1) {
        None => (0, 0),
        Some(h) => parse_heartbeat(h).ok_or_else(|| {
            ProtocolError::new(format!("invalid heart-beat header {h:?}: expected cx,cy"))
        })?,
    };
    let min = settings.min_heartbeat.as_millis() as u64;
    // We can send as often as `min`, and want to hear from the client as
    // often as it offers (but not more often than `min`).
    let sx = if cy > 0 { cy.max(min) } else { 0 };
    let sy = if cx > 0 { cx.max(min) } else { 0 };
    Ok(Session {
        version,
        login,
        send_interval: (sx > 0).then(|| Duration::from_millis(sx)),
        receive_interval: (sy > 0).then(|| Duration::from_millis(sy)),
        heartbeat_header: format!("{sx},{sy}"),
    })
}

fn parse_heartbeat(h: &str) -> Option<(u64, u64)> {
    let (a, b) = h.split_once(',')?;
    Some((a.trim().parse().ok()?, b.trim().parse().ok()?))
}

/// Frame commands → broker calls.
struct Handler {
    broker: Arc<Broker>,
    conn: ConnId,
    version: Version,
    answers: mpsc::Sender<Answer>,
    /// Queue name prefix of this connection's temporary queues.
    temp_prefix: String,
    /// Temporary queues this connection created: deleted when it closes.
    temporary: std::collections::BTreeSet<String>,
}

fn required<'f>(f: &'f Frame, name: &str) -> Result<&'f str, ProtocolError> {
    f.header(name).ok_or_else(|| {
        ProtocolError::new(format!(
            "{} frame without the required {name} header",
            f.command
        ))
    })
}

impl Handler {
    async fn answer(&self, completion: Completion, frame: Option<Frame>, close: bool) {
        let _ = self
            .answers
            .send(Answer {
                completion,
                frame,
                close,
            })
            .await;
    }

    async fn error(&self, e: ProtocolError, receipt: Option<&str>) {
        self.answer(Completion::done(), Some(e.frame(receipt)), true)
            .await;
    }

    /// ActiveMQ's temporary queues for request/reply: `/temp-queue/NAME`
    /// names a queue private to this connection (deleted when it closes);
    /// in a `reply-to` it becomes `/queue/<unique name>`, which the replier
    /// sends to (also accepted as `/remote-temp-queue/<unique name>`).
    fn map_temporary(&mut self, f: &mut Frame) {
        for (k, v) in &mut f.headers {
            if k != "destination" && k != "reply-to" {
                continue;
            }
            if let Some(name) = v.strip_prefix("/temp-queue/") {
                let queue = format!("{}{name}", self.temp_prefix);
                *v = format!("/queue/{queue}");
                self.temporary.insert(queue);
            } else if let Some(name) = v.strip_prefix("/remote-temp-queue/") {
                *v = format!("/queue/{name}");
            }
        }
    }

    /// Handles one client frame; `Ok(false)` ends the connection.
    async fn handle(&mut self, mut f: Frame) -> Result<bool, ProtocolError> {
        if matches!(f.command, Command::Send | Command::Subscribe) {
            self.map_temporary(&mut f);
        }
        if !f.command.allows_body() && !f.body.is_empty() {
            return Err(ProtocolError::new(format!(
                "{} frames must not have a body",
                f.command
            )));
        }
        let receipt = f.header("receipt").map(str::to_owned);
        let tx = f.header("transaction");
        let completion = match f.command {
            Command::Send => {
                let mut message =
                    stomp::message_from_send(&f, self.broker.message_id(), crate::broker::now_ms())
                        .map_err(ProtocolError::new)?;
                // A network bridge's SEND keeps the message's id and broker path.
                crate::network::inbound_send(&self.broker, &f, &mut message)
                    .map_err(ProtocolError::new)?;
                self.broker.send(self.conn, message, tx).await?
            }
            Command::Subscribe => {
                let destination = stomp::parse_destination(required(&f, "destination")?)
                    .map_err(ProtocolError::new)?;
                let id = match f.header("id") {
                    Some(id) => id.to_owned(),
                    // STOMP 1.0 made the id optional; the destination names it.
                    None if self.version == Version::V1_0 => destination.to_string(),
                    None => {
                        return Err(ProtocolError::new(
                            "SUBSCRIBE frame without the required id header",
                        ))
                    }
                };
                let ack = match f.header("ack").unwrap_or("auto") {
                    "auto" => AckMode::Auto,
                    "client" => AckMode::Client,
                    "client-individual" if self.version >= Version::V1_1 => {
                        AckMode::ClientIndividual
                    }
                    other => {
                        return Err(ProtocolError::new(format!(
                            "unsupported ack mode {other:?}"
                        )))
                    }
                };
                let selector = f
                    .header("selector")
                    .map(crate::selector::Selector::parse)
                    .transpose()
                    .map_err(|e| ProtocolError::new(e.to_string()))?
                    .map(Arc::new);
                let prefetch = match f.header("activemq.prefetchSize") {
                    None => DEFAULT_PREFETCH,
                    Some(p) => p
                        .parse::<usize>()
                        .ok()
                        .filter(|p| (1..=32_767).contains(p))
                        .ok_or_else(|| {
                            ProtocolError::new(format!("activemq.prefetchSize:{p} is not 1-32767"))
                        })?,
                };
                // activemq.priority, and a duplex network bridge's demand.
                let mut options =
                    crate::network::subscribe_options(&f).map_err(ProtocolError::new)?;
                options.selector = selector;
                self.broker
                    .subscribe_with(self.conn, &id, destination, ack, prefetch, options)?
            }
            Command::Unsubscribe => {
                let id = match (f.header("id"), f.header("destination")) {
                    (Some(id), _) => id,
                    (None, Some(d)) if self.version == Version::V1_0 => d,
                    _ => {
                        return Err(ProtocolError::new(
                            "UNSUBSCRIBE frame without the required id header",
                        ))
                    }
                };
                self.broker.unsubscribe(self.conn, id)?
            }
            Command::Ack | Command::Nack => {
                if f.command == Command::Nack && self.version == Version::V1_0 {
                    return Err(ProtocolError::new("NACK is not part of STOMP 1.0"));
                }
                let what = self.ack_ref(&f)?;
                self.broker.acknowledge(
                    self.conn,
                    what,
                    tx,
                    f.command == Command::Nack,
                    receipt.is_some(),
                )?
            }
            Command::Begin => {
                self.broker.begin(self.conn, required(&f, "transaction")?)?;
                Completion::done()
            }
            Command::Commit => self
                .broker
                .commit(self.conn, required(&f, "transaction")?)?,
            Command::Abort => self.broker.abort(self.conn, required(&f, "transaction")?)?,
            Command::Disconnect => {
                let frame =
                    receipt.map(|r| Frame::new(Command::Receipt).with_header("receipt-id", r));
                self.answer(Completion::done(), frame, true).await;
                return Ok(false);
            }
            Command::Connect | Command::Stomp => {
                return Err(ProtocolError::new("already connected"))
            }
            Command::Connected | Command::Message | Command::Receipt | Command::Error => {
                return Err(ProtocolError::new(format!(
                    "{} is a server frame",
                    f.command
                )))
            }
        };
        let frame = receipt.map(|r| Frame::new(Command::Receipt).with_header("receipt-id", r));
        if frame.is_some() || completion.is_pending() {
            self.answer(completion, frame, false).await;
        }
        Ok(true)
    }

    /// STOMP 1.2 acknowledges by the MESSAGE's `ack` header (sent back as
    /// `id`); 1.0/1.1 by `message-id` (and `subscription`).
    fn ack_ref<'f>(&self, f: &'f Frame) -> Result<AckRef<'f>, ProtocolError> {
        if self.version == Version::V1_2 {
            let id = required(f, "id")?;
            if let Ok(tag) = id.parse() {
                return Ok(AckRef::Tag(tag));
            }
            return Ok(AckRef::MessageId {
                id,
                subscription: None,
            });
        }
        Ok(AckRef::MessageId {
            id: required(f, "message-id")?,
            subscription: f.header("subscription"),
        })
    }
}

struct WriteLoop {
    writer: Writer,
    outbound: mpsc::UnboundedReceiver<Outbound>,
    answers: mpsc::Receiver<Answer>,
    /// Answers awaiting durability at most; then the reader waits.
    max_pending: usize,
    broker: Arc<Broker>,
    version: Version,
    heartbeat: Option<Duration>,
    closing: Arc<AtomicBool>,
    dead: CancellationToken,
}

/// Most items written before one flush.
const WRITE_BATCH: usize = 64;

async fn write_loop(mut w: WriteLoop) {
    let r = write_until_closed(&mut w).await;
    if let Err(e) = r {
        tracing::debug!("write failed: {e}");
    }
    let _ = SinkExt::<Frame>::flush(&mut w.writer).await;
    let _ = w.writer.get_mut().shutdown().await;
    w.dead.cancel();
}

enum Item {
    Outbound(Outbound),
    /// An answer whose operation is durable (or failed to be).
    Answer(Result<(), BrokerError>, Option<Frame>, bool),
    Tick,
}

/// Answers waiting for durability; they resolve in order.
type Pending = FuturesOrdered<BoxFuture<'static, Item>>;

fn pend(a: Answer) -> BoxFuture<'static, Item> {
    Box::pin(async move { Item::Answer(a.completion.wait().await, a.frame, a.close) })
}

async fn write_until_closed(w: &mut WriteLoop) -> Result<(), CodecError> {
    let mut auto_acked = Vec::new();
    let mut outbound_open = true;
    let mut answers_open = true;
    let mut pending = Pending::new();
    let mut last_write = Instant::now();
    loop {
        if !answers_open && pending.is_empty() {
            // The reader is done and everything it asked for is answered.
            return Ok(());
        }
        let beat_at = w.heartbeat.map(|h| last_write + h);
        let first = tokio::select! {
            biased;
            Some(done) = pending.next(), if !pending.is_empty() => done,
            a = w.answers.recv(), if answers_open && pending.len() < w.max_pending => match a {
                Some(a) => { pending.push_back(pend(a)); continue; }
                None => { answers_open = false; continue; }
            },
            o = w.outbound.recv(), if outbound_open => match o {
                Some(o) => Item::Outbound(o),
                None => { outbound_open = false; continue; }
            },
            _ = sleep_until(beat_at.unwrap_or_else(Instant::now)), if beat_at.is_some() => Item::Tick,
            _ = w.dead.cancelled() => return Ok(()),
        };
        let mut item = Some(first);
        let mut n = 0;
        while let Some(it) = item.take() {
            match it {
                Item::Tick => w.writer.feed(HeartBeat).await?,
                Item::Answer(Ok(()), frame, close) => {
                    if let Some(f) = frame {
                        w.writer.feed(f).await?;
                    }
                    if close {
                        report(&w.broker, &mut auto_acked);
                        return Ok(());
                    }
                }
                Item::Answer(Err(e), _, _) => {
                    let error =
                        Frame::error("the broker could not store the message", e.to_string());
                    w.writer.feed(error).await?;
                    report(&w.broker, &mut auto_acked);
                    return Ok(());
                }
                Item::Outbound(Outbound::Close(reason)) => {
                    w.writer.feed(Frame::error(reason.clone(), reason)).await?;
                    report(&w.broker, &mut auto_acked);
                    return Ok(());
                }
                Item::Outbound(Outbound::Deliver(d)) => {
                    // After disconnect() the broker took these back.
                    if !w.closing.load(Ordering::Relaxed) {
                        w.writer.feed(message_frame(&d, w.version)).await?;
                        if d.ack == AckMode::Auto {
                            auto_acked.push((d.sub, d.tag));
                        }
                    }
                }
            }
            n += 1;
            if n < WRITE_BATCH {
                item = next_ready(w, &mut pending);
            }
        }
        SinkExt::<Frame>::flush(&mut w.writer).await?;
        last_write = Instant::now();
        report(&w.broker, &mut auto_acked);
    }
}

/// Whatever can be written without waiting: a durable answer, then a
/// delivery.
fn next_ready(w: &mut WriteLoop, pending: &mut Pending) -> Option<Item> {
    while pending.len() < w.max_pending {
        match w.answers.try_recv() {
            Ok(a) => pending.push_back(pend(a)),
            Err(_) => break,
        }
    }
    if !pending.is_empty() {
        if let Some(Some(done)) = pending.next().now_or_never() {
            return Some(done);
        }
    }
    w.outbound.try_recv().ok().map(Item::Outbound)
}

/// Tells the broker which ack:auto deliveries were written.
fn report(broker: &Broker, auto_acked: &mut Vec<(u64, u64)>) {
    if !auto_acked.is_empty() {
        let _ = broker.delivered(auto_acked);
        auto_acked.clear();
    }
}

fn message_frame(d: &Delivery, version: Version) -> Frame {
    let tag = d.tag.to_string();
    // 1.2 clients acknowledge by the `ack` header; older ones by message-id.
    let ack = (version == Version::V1_2 && d.ack != AckMode::Auto).then_some(tag.as_str());
    stomp::message_frame(&d.message.message, &d.subscription, ack, d.redelivered)
}
