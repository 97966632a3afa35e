//! A STOMP sink for `amqctl bench --sink`: it answers CONNECT, receipts every
//! frame that asks, and hands each SEND to one subscriber of its destination
//! (round robin) — no storage, no acknowledgement tracking. What the load tool
//! reaches against it is the load tool's own ceiling, so it shows the tool is
//! not what limits the broker figures.

use amq_broker::stomp::{Codec, Command, Frame, Transmission};
use futures::{SinkExt, StreamExt};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_util::codec::{FramedRead, FramedWrite};

pub struct Sink {
    addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Sink {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[derive(Default)]
struct Registry {
    /// destination → (connection's outbox, subscription id)
    subscribers: HashMap<String, Vec<(mpsc::Sender<Frame>, String)>>,
    turn: HashMap<String, usize>,
}

impl Registry {
    fn pick(&mut self, destination: &str) -> Option<(mpsc::Sender<Frame>, String)> {
        let subs = self
            .subscribers
            .get(destination)
            .filter(|s| !s.is_empty())?;
        let turn = self.turn.entry(destination.to_owned()).or_default();
        *turn = (*turn + 1) % subs.len();
        Some(subs[*turn].clone())
    }
}

impl Sink {
    pub async fn start(addr: SocketAddr) -> std::io::Result<Sink> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let registry = Arc::new(Mutex::new(Registry::default()));
        let task = tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                tokio::spawn(serve(tcp, registry.clone()));
            }
        });
        Ok(Sink { addr, task })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

static MESSAGE_ID: AtomicU64 = AtomicU64::new(1);

async fn serve(tcp: TcpStream, registry: Arc<Mutex<Registry>>) {
    if tcp.set_nodelay(true).is_err() {
        return;
    }
    let (rd, wr) = tcp.into_split();
    let mut reader = FramedRead::new(rd, Codec::default());
    let mut writer = FramedWrite::new(wr, Codec::default());
    let (tx, mut rx) = mpsc::channel::<Frame>(4096);
    let write = tokio::spawn(async move {
        while let Some(frame) = rx.recv().await {
            if writer.feed(frame).await.is_err() {
                return;
            }
            while let Ok(frame) = rx.try_recv() {
                if writer.feed(frame).await.is_err() {
                    return;
                }
            }
            if SinkExt::<Frame>::flush(&mut writer).await.is_err() {
                return;
            }
        }
    });
    while let Some(Ok(item)) = reader.next().await {
        let Transmission::Frame(frame) = item else {
            continue;
        };
        let receipt = frame.header("receipt").map(str::to_owned);
        match frame.command {
            Command::Connect | Command::Stomp => {
                let reply = Frame::new(Command::Connected)
                    .with_header("version", "1.2")
                    .with_header("heart-beat", "0,0")
                    .with_header("server", "amqctl-bench-sink");
                if tx.send(reply).await.is_err() {
                    break;
                }
                continue;
            }
            Command::Send => {
                let dest = frame.header("destination").unwrap_or_default().to_owned();
                let target = registry.lock().expect("registry lock").pick(&dest);
                if let Some((outbox, sub)) = target {
                    let id = MESSAGE_ID.fetch_add(1, Ordering::Relaxed).to_string();
                    let mut msg = Frame {
                        command: Command::Message,
                        headers: frame
                            .headers
                            .iter()
                            .filter(|(k, _)| k != "receipt")
                            .cloned()
                            .collect(),
                        body: frame.body.clone(),
                    };
                    msg.set_header("subscription", sub);
                    msg.set_header("message-id", id.clone());
                    msg.set_header("ack", id);
                    let _ = outbox.send(msg).await;
                }
            }
            Command::Subscribe => {
                let dest = frame.header("destination").unwrap_or_default().to_owned();
                let id = frame.header("id").unwrap_or_default().to_owned();
                registry
                    .lock()
                    .expect("registry lock")
                    .subscribers
                    .entry(dest)
                    .or_default()
                    .push((tx.clone(), id));
            }
            _ => {}
        }
        if let Some(r) = receipt {
            let _ = tx
                .send(Frame::new(Command::Receipt).with_header("receipt-id", r))
                .await;
        }
        if frame.command == Command::Disconnect {
            break;
        }
    }
    registry
        .lock()
        .expect("registry lock")
        .subscribers
        .values_mut()
        .for_each(|subs| subs.retain(|(s, _)| !s.same_channel(&tx)));
    drop(tx);
    let _ = write.await;
}
