//! Shared by the broker's integration tests: an in-process broker on
//! 127.0.0.1:0 and a minimal STOMP test client on the broker's own codec.
#![allow(dead_code)]

use amq_broker::broker::{Broker, BrokerSettings};
use amq_broker::config::Policies;
use amq_broker::connection::ConnectionSettings;
use amq_broker::role::Role;
use amq_broker::server;
use amq_broker::stomp::{Codec, Command, Frame, Transmission, Version};
use amq_broker::store::Store;
use futures::{SinkExt, StreamExt};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio_util::codec::Framed;
use tokio_util::sync::CancellationToken;

pub const WAIT: Duration = Duration::from_secs(5);

pub struct TestBroker {
    pub broker: Arc<Broker>,
    pub addr: SocketAddr,
    pub shutdown: CancellationToken,
    pub task: tokio::task::JoinHandle<()>,
}

impl TestBroker {
    pub async fn start() -> TestBroker {
        TestBroker::with(settings(), ConnectionSettings::default(), None).await
    }

    pub async fn with(
        settings: BrokerSettings,
        conn: ConnectionSettings,
        store: Option<Arc<dyn Store>>,
    ) -> TestBroker {
        let broker = Broker::new(settings, store, Role::Standalone).expect("broker");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(server::run(
            listener,
            broker.clone(),
            Arc::new(conn),
            None,
            shutdown.clone(),
        ));
        TestBroker {
            broker,
            addr,
            shutdown,
            task,
        }
    }

    pub async fn client(&self) -> Client {
        Client::connect(self.addr, Version::V1_2, &[]).await
    }

    pub async fn stop(self) {
        self.shutdown.cancel();
        let _ = self.task.await;
    }
}

pub fn settings() -> BrokerSettings {
    BrokerSettings {
        name: "test".into(),
        policies: Policies::default(),
        memory_limit: 64 << 20,
        lazy_acks: true,
    }
}

pub struct Client {
    pub io: Framed<TcpStream, Codec>,
    pub connected: Frame,
    /// MESSAGEs that arrived while a RECEIPT was awaited (the broker may
    /// dispatch before it answers).
    pub pending: std::collections::VecDeque<Frame>,
}

impl Client {
    /// Connects and expects CONNECTED.
    pub async fn connect(addr: SocketAddr, version: Version, headers: &[(&str, &str)]) -> Client {
        let (io, reply) = Client::try_connect(addr, version, headers).await;
        assert_eq!(reply.command, Command::Connected, "{reply:?}");
        Client {
            io,
            connected: reply,
            pending: Default::default(),
        }
    }

    /// Sends CONNECT; returns the broker's first answer.
    pub async fn try_connect(
        addr: SocketAddr,
        version: Version,
        headers: &[(&str, &str)],
    ) -> (Framed<TcpStream, Codec>, Frame) {
        let tcp = TcpStream::connect(addr).await.unwrap();
        tcp.set_nodelay(true).unwrap();
        let mut io = Framed::new(tcp, Codec::default());
        let mut f = Frame::new(Command::Connect).with_header("host", "localhost");
        if version != Version::V1_0 {
            f = f.with_header("accept-version", version.as_str());
        }
        for (k, v) in headers {
            f = f.with_header(*k, *v);
        }
        io.send(f).await.unwrap();
        let reply = next_frame(&mut io).await.expect("an answer to CONNECT");
        io.codec_mut().set_version(version);
        (io, reply)
    }

    pub async fn send_frame(&mut self, f: Frame) {
        self.io.send(f).await.unwrap();
    }

    /// SEND with a receipt, waiting for it.
    pub async fn send(&mut self, dest: &str, body: &str, headers: &[(&str, &str)]) {
        let mut f = Frame::new(Command::Send)
            .with_header("destination", dest)
            .with_header("receipt", "send")
            .with_body(body.as_bytes().to_vec());
        for (k, v) in headers {
            f = f.with_header(*k, *v);
        }
        self.send_frame(f).await;
        self.expect_receipt("send").await;
    }

    pub async fn subscribe(&mut self, dest: &str, id: &str, ack: &str, headers: &[(&str, &str)]) {
        let mut f = Frame::new(Command::Subscribe)
            .with_header("destination", dest)
            .with_header("id", id)
            .with_header("ack", ack)
            .with_header("receipt", format!("sub-{id}"));
        for (k, v) in headers {
            f = f.with_header(*k, *v);
        }
        self.send_frame(f).await;
        self.expect_receipt(&format!("sub-{id}")).await;
    }

    /// Sends `command` with `headers` and a receipt; waits for the receipt.
    pub async fn request(&mut self, command: Command, headers: &[(&str, &str)]) {
        let mut f = Frame::new(command).with_header("receipt", "req");
        for (k, v) in headers {
            f = f.with_header(*k, *v);
        }
        self.send_frame(f).await;
        self.expect_receipt("req").await;
    }

    pub async fn recv(&mut self) -> Frame {
        if let Some(f) = self.pending.pop_front() {
            return f;
        }
        self.recv_wire().await
    }

    async fn recv_wire(&mut self) -> Frame {
        tokio::time::timeout(WAIT, next_frame(&mut self.io))
            .await
            .expect("a frame in time")
            .expect("connection open")
    }

    /// Nothing arrives within `d`.
    pub async fn expect_nothing(&mut self, d: Duration) {
        assert!(
            self.pending.is_empty(),
            "unexpected frames {:?}",
            self.pending
        );
        if let Ok(Some(f)) = tokio::time::timeout(d, next_frame(&mut self.io)).await {
            panic!("unexpected frame {f:?}");
        }
    }

    pub async fn expect_receipt(&mut self, id: &str) {
        let mut f = self.recv_wire().await;
        while f.command == Command::Message {
            self.pending.push_back(f);
            f = self.recv_wire().await;
        }
        assert_eq!(
            f.command,
            Command::Receipt,
            "expected RECEIPT {id}, got {f:?}"
        );
        assert_eq!(f.header("receipt-id"), Some(id));
    }

    pub async fn recv_message(&mut self) -> Frame {
        let f = self.recv().await;
        assert_eq!(f.command, Command::Message, "{f:?}");
        f
    }

    /// Expects an ERROR, then the connection closing.
    pub async fn expect_error_and_close(&mut self) -> Frame {
        let f = self.recv().await;
        assert_eq!(f.command, Command::Error, "{f:?}");
        let end = tokio::time::timeout(WAIT, next_frame(&mut self.io))
            .await
            .expect("closed in time");
        assert!(end.is_none(), "still open after ERROR: {end:?}");
        f
    }

    pub async fn ack(&mut self, msg: &Frame) {
        let id = msg.header("ack").expect("ack header").to_owned();
        self.request(Command::Ack, &[("id", &id)]).await;
    }

    pub async fn nack(&mut self, msg: &Frame) {
        let id = msg.header("ack").expect("ack header").to_owned();
        self.request(Command::Nack, &[("id", &id)]).await;
    }

    pub async fn disconnect(mut self) {
        self.send_frame(Frame::new(Command::Disconnect).with_header("receipt", "bye"))
            .await;
        self.expect_receipt("bye").await;
    }
}

/// The next frame, skipping heart-beats; `None` once the connection closed
/// (or broke).
pub async fn next_frame(io: &mut Framed<TcpStream, Codec>) -> Option<Frame> {
    loop {
        match io.next().await? {
            Ok(Transmission::Frame(f)) => return Some(f),
            Ok(Transmission::HeartBeat) => continue,
            Err(_) => return None,
        }
    }
}

pub fn body(f: &Frame) -> String {
    String::from_utf8_lossy(&f.body).into_owned()
}
