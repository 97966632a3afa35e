//! The socket side of a [`Connection`]: the CONNECT handshake, then one task
//! reading (receipts, messages, errors, the peer's heart-beats) and one task
//! writing (queued frames in order, batched into few syscalls, our
//! heart-beats when idle).

use super::{ClientError, Connection, Delivery, HandleGuard, Outbox, ServerInfo, Shared, State};
use super::{ConnectOptions, NEXT_CONNECTION_ID, SEND_HIGH_WATER};
use crate::failover::{Endpoint, MASTER_HEADER};
use crate::stomp::{Codec, Command, Frame, HeartBeat, Transmission, Version};
use bytes::BytesMut;
use futures::{SinkExt, StreamExt};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use std::time::Instant;
use tokio::net::tcp::OwnedReadHalf;
use tokio::net::TcpStream;
use tokio::sync::{watch, Notify};
use tokio_util::codec::{FramedRead, FramedWrite};

/// A peer silent for this many of its promised heart-beat intervals is dead
/// (STOMP leaves the tolerance to the implementation).
const HEARTBEAT_TOLERANCE: u32 = 3;

pub(super) async fn connect(
    addr: &str,
    options: &ConnectOptions,
) -> Result<Connection, ClientError> {
    if options.connect_timeout.is_zero() {
        return handshake(addr, options).await;
    }
    tokio::time::timeout(options.connect_timeout, handshake(addr, options))
        .await
        .unwrap_or_else(|_| {
            Err(ClientError::ConnectTimeout {
                addr: addr.to_owned(),
                after: options.connect_timeout,
            })
        })
}

pub(super) fn lost(addr: &str, reason: impl Into<String>) -> ClientError {
    ClientError::ConnectionLost {
        addr: addr.to_owned(),
        reason: reason.into(),
    }
}

/// The ERROR frame's short message, or else its body.
fn error_message(frame: &Frame) -> String {
    frame
        .header("message")
        .map(str::to_owned)
        .unwrap_or_else(|| String::from_utf8_lossy(&frame.body).trim().to_owned())
}

/// An ERROR naming the master means "not the master here" (see
/// [`MASTER_HEADER`]).
fn not_master(addr: &str, frame: &Frame) -> Option<ClientError> {
    frame.header(MASTER_HEADER).map(|m| ClientError::NotMaster {
        addr: addr.to_owned(),
        master: Endpoint::parse(m).ok(),
        message: error_message(frame),
    })
}

fn millis(d: Duration) -> u128 {
    d.as_millis()
}

async fn handshake(addr: &str, options: &ConnectOptions) -> Result<Connection, ClientError> {
    let tcp = TcpStream::connect(addr)
        .await
        .map_err(|e| ClientError::Connect {
            addr: addr.to_owned(),
            reason: e.to_string(),
        })?;
    // Nagle would hold back small frames (receipts waited for, ACKs) by up to
    // 40 ms; every STOMP client should turn it off.
    tcp.set_nodelay(true).map_err(|e| ClientError::Connect {
        addr: addr.to_owned(),
        reason: format!("TCP_NODELAY: {e}"),
    })?;
    let (rd, wr) = tcp.into_split();
    let mut reader = FramedRead::new(rd, Codec::default());
    let mut writer = FramedWrite::new(wr, Codec::default());

    let host = options.host.clone().unwrap_or_else(|| {
        addr.rsplit_once(':')
            .map(|(h, _)| h.trim_matches(|c| c == '[' || c == ']').to_owned())
            .unwrap_or_else(|| addr.to_owned())
    });
    let (cx, cy) = options.heart_beat;
    let mut connect = Frame::new(Command::Connect)
        .with_header("accept-version", "1.0,1.1,1.2")
        .with_header("host", host)
        .with_header("heart-beat", format!("{},{}", millis(cx), millis(cy)));
    if let Some(login) = &options.login {
        connect = connect.with_header("login", login.clone());
    }
    if let Some(passcode) = &options.passcode {
        connect = connect.with_header("passcode", passcode.clone());
    }
    if let Some(id) = &options.client_id {
        connect = connect.with_header("client-id", id.clone());
    }
    writer
        .send(connect)
        .await
        .map_err(|e| lost(addr, format!("sending CONNECT: {e}")))?;

    let reply = loop {
        match reader.next().await {
            None => return Err(lost(addr, "closed by the broker before CONNECTED")),
            Some(Err(e)) => {
                return Err(ClientError::Protocol {
                    addr: addr.to_owned(),
                    reason: e.to_string(),
                })
            }
            Some(Ok(Transmission::HeartBeat)) => continue,
            Some(Ok(Transmission::Frame(f))) => break f,
        }
    };
    match reply.command {
        Command::Connected => {}
        Command::Error => {
            return Err(
                not_master(addr, &reply).unwrap_or_else(|| ClientError::Refused {
                    addr: addr.to_owned(),
                    message: error_message(&reply),
                }),
            )
        }
        other => {
            return Err(ClientError::Protocol {
                addr: addr.to_owned(),
                reason: format!("expected CONNECTED, got {other}"),
            })
        }
    }

    let version = match reply.header("version") {
        None | Some("1.0") => Version::V1_0,
        Some("1.1") => Version::V1_1,
        Some("1.2") => Version::V1_2,
        Some(v) => {
            return Err(ClientError::Protocol {
                addr: addr.to_owned(),
                reason: format!("unsupported STOMP version {v:?} in CONNECTED"),
            })
        }
    };
    let (sx, sy) = parse_heart_beat(reply.header("heart-beat"));
    // STOMP 1.1 heart-beating: each direction runs at the slower of what one
    // side can do and the other wants; zero on either side means none.
    let negotiate = |a: Duration, b: Duration| {
        if a.is_zero() || b.is_zero() {
            Duration::ZERO
        } else {
            a.max(b)
        }
    };
    let send_every = negotiate(cx, sy);
    let expect_every = negotiate(cy, sx);
    reader.decoder_mut().set_version(version);
    let mut codec = Codec::default();
    codec.set_version(version);
    // Everything up to CONNECTED is written and flushed; from here on the
    // outbox writes straight to the socket.
    let half = writer.into_inner();

    let (closed, _) = watch::channel(None);
    let shared = Arc::new(Shared {
        id: NEXT_CONNECTION_ID.fetch_add(1, Ordering::Relaxed),
        addr: addr.to_owned(),
        info: ServerInfo {
            version,
            server: reply.header("server").map(str::to_owned),
            session: reply.header("session").map(str::to_owned),
            heart_beat: (send_every, expect_every),
        },
        state: Mutex::new(State {
            receipts: HashMap::new(),
            subscriptions: HashMap::new(),
        }),
        closed,
        outbox: Mutex::new(Outbox {
            buf: BytesMut::with_capacity(64 * 1024),
            codec,
            half: Some(Arc::new(half)),
            last_write: Instant::now(),
        }),
        wake_writer: Notify::new(),
        drained: Notify::new(),
        disconnecting: false.into(),
    });
    tokio::spawn(read_loop(shared.clone(), reader, expect_every));
    tokio::spawn(write_loop(shared.clone(), send_every));
    Ok(Connection {
        _handle: Arc::new(HandleGuard(shared.clone())),
        shared,
        next: Arc::new(AtomicU64::new(1)),
    })
}

fn parse_heart_beat(value: Option<&str>) -> (Duration, Duration) {
    let parse = |s: &str| Duration::from_millis(s.trim().parse().unwrap_or(0));
    match value.and_then(|v| v.split_once(',')) {
        Some((a, b)) => (parse(a), parse(b)),
        None => (Duration::ZERO, Duration::ZERO),
    }
}

async fn read_loop(
    shared: Arc<Shared>,
    mut reader: FramedRead<OwnedReadHalf, Codec>,
    expect_every: Duration,
) {
    let mut closed = shared.closed.subscribe();
    let dead_after = expect_every * HEARTBEAT_TOLERANCE;
    loop {
        let read = async {
            if dead_after.is_zero() {
                Some(reader.next().await)
            } else {
                tokio::time::timeout(dead_after, reader.next()).await.ok()
            }
        };
        let next = tokio::select! {
            _ = closed.changed() => return,
            next = read => next,
        };
        let frame = match next {
            None => {
                let reason = format!("no data or heart-beat for {} ms", dead_after.as_millis());
                return shared.close(lost(&shared.addr, reason));
            }
            // After our DISCONNECT the broker closes, maybe with a reset
            // (frames of ours it no longer read): either way, we closed.
            Some(None | Some(Err(_))) if shared.disconnecting.load(Ordering::Relaxed) => {
                return shared.close(ClientError::Closed)
            }
            Some(None) => return shared.close(lost(&shared.addr, "closed by the broker")),
            Some(Some(Err(e))) => return shared.close(lost(&shared.addr, e.to_string())),
            Some(Some(Ok(Transmission::HeartBeat))) => continue,
            Some(Some(Ok(Transmission::Frame(f)))) => f,
        };
        match frame.command {
            Command::Receipt => {
                if let Some(tx) = shared.take_receipt(&frame) {
                    let _ = tx.send(Ok(()));
                }
            }
            Command::Message => {
                let sink = frame.header("subscription").and_then(|id| {
                    shared
                        .state
                        .lock()
                        .expect("client state lock")
                        .subscriptions
                        .get(id)
                        .cloned()
                });
                if let Some(sink) = sink {
                    let delivery = Delivery {
                        frame,
                        connection: shared.id,
                    };
                    tokio::select! {
                        _ = closed.changed() => return,
                        _ = sink.send(delivery) => {}
                    }
                }
            }
            Command::Error => {
                // The broker closes the connection after an ERROR. A frame it
                // names by receipt-id was refused; everything else in flight
                // was merely cut off (and may be retried elsewhere).
                if let Some(redirect) = not_master(&shared.addr, &frame) {
                    return shared.close(redirect);
                }
                let message = error_message(&frame);
                if let Some(tx) = shared.take_receipt(&frame) {
                    let _ = tx.send(Err(ClientError::Broker {
                        message: message.clone(),
                        detail: String::from_utf8_lossy(&frame.body).into_owned(),
                    }));
                }
                return shared.close(lost(&shared.addr, format!("broker sent ERROR: {message}")));
            }
            other => {
                tracing::debug!(addr = %shared.addr, command = %other, "ignoring unexpected frame");
            }
        }
    }
}

/// Finishes writes the socket did not take at once, and sends heart-beats
/// when nothing else was written for `send_every`.
async fn write_loop(shared: Arc<Shared>, send_every: Duration) {
    loop {
        let last_write = shared.outbox.lock().expect("outbox lock").last_write;
        let beat_due = (!send_every.is_zero()).then(|| last_write + send_every);
        match beat_due {
            Some(due) if Instant::now() >= due => {
                let mut ob = shared.outbox.lock().expect("outbox lock");
                if ob.half.is_none() {
                    return;
                }
                let Outbox { buf, codec, .. } = &mut *ob;
                let _ = tokio_util::codec::Encoder::encode(codec, HeartBeat, buf);
                // Counts as a write even if it is still buffered.
                ob.last_write = Instant::now();
            }
            Some(due) => {
                tokio::select! {
                    _ = shared.wake_writer.notified() => {}
                    _ = tokio::time::sleep_until(due.into()) => continue,
                }
            }
            None => shared.wake_writer.notified().await,
        }
        loop {
            let half = {
                let mut ob = shared.outbox.lock().expect("outbox lock");
                let Some(half) = ob.half.clone() else {
                    return;
                };
                if let Err(e) = shared.write_now(&mut ob) {
                    drop(ob);
                    return shared.close(e);
                }
                if ob.buf.len() < SEND_HIGH_WATER {
                    shared.drained.notify_waiters();
                }
                if ob.buf.is_empty() {
                    break;
                }
                half
            };
            if let Err(e) = half.writable().await {
                return shared.close(lost(&shared.addr, format!("write failed: {e}")));
            }
        }
    }
}
