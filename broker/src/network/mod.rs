//! Networks of brokers: `<networkConnector>` bridges over STOMP between
//! amq-brokers, with ActiveMQ's demand forwarding.
//!
//! # How a bridge works
//!
//! Broker A with a network connector to B (found by [`discovery`]: `static:`,
//! `masterslave:`, a `failover:` URL, or `multicast://`) connects to B's STOMP
//! connector with the failover client and:
//!
//! 1. **Learns B's demand.** It subscribes to the advisory topic
//!    [`ADVISORY_TOPIC`] on B. Every broker publishes there (see
//!    [`advisories`]) which consumers each destination has, with each
//!    consumer's broker path: JSON bodies, one destination per message, and
//!    the whole table whenever a new advisory subscriber appears (so a
//!    reconnected bridge starts from the truth). This is ActiveMQ's
//!    `ActiveMQ.Advisory.Consumer.>` in one topic, because our destinations
//!    have no wildcards.
//! 2. **Creates demand subscriptions on A** for every destination B consumes
//!    from — one per destination with `conduitSubscriptions` (so a topic
//!    message reaches B once and B fans it out), one per remote consumer
//!    without. They are ordinary subscriptions in A's broker with a lower
//!    priority (`decreaseNetworkConsumerPriority`: -5, lower for longer
//!    paths), so A's own consumers are served first, and with a
//!    [`NetworkTarget`] that refuses messages
//!    which already passed B or `messageTTL` brokers. Consumers whose path is
//!    `consumerTTL` long, or holds A, are ignored (no loops).
//! 3. **Forwards** what those subscriptions receive: SEND to B, keeping the
//!    message id, timestamp and the broker path plus A ([`PATH_HEADER`],
//!    [`FROM_HEADER`]). B's audit drops a copy it already has (same id, same
//!    hop count). A persistent message carries a receipt request; B answers
//!    once the message is durable, and only then does A acknowledge (remove)
//!    it. A non-persistent one is acknowledged once written (it is not
//!    durable anywhere; ActiveMQ's `alwaysSyncSend=false`). Either broker
//!    may be killed at any point: A still has the message until B's receipt,
//!    and a resend after a lost receipt is a dropped copy on B.
//! 4. **Duplex** (`duplex="true"`, configured on A only): over the same
//!    connection A also subscribes on B, as a network consumer, to every
//!    destination that has consumers on A (SUBSCRIBE with [`FROM_HEADER`],
//!    [`DEMAND_PATH_HEADER`], [`TTL_HEADER`] and `activemq.priority`). B
//!    dispatches to it like to a demand subscription of its own; A stores
//!    each MESSAGE durably before it ACKs it.
//!
//! When the connection drops, the bridge's demand subscriptions end (their
//! unacknowledged messages return to A's queues) and the discovery agent
//! reconnects with its back-off; the new session starts from B's full table.
//!
//! Stuck messages: a queue message whose broker path holds the target broker
//! goes back there only under the destination's
//! `conditionalNetworkBridgeFilterFactory replayWhenNoConsumers="true"`
//! policy, when no client consumes from it here and `replayDelay` passed.
//!
//! Trust: the network headers are honoured from any connection, as ActiveMQ
//! honours an OpenWire client's broker path; secure the connector with
//! authentication when untrusted clients can reach it.

pub mod advisories;
pub mod bridge;
pub mod discovery;

use crate::broker::{Broker, NetworkTarget, SubscribeOptions};
use crate::config::BrokerConfig;
use crate::message::Message;
use crate::stomp::Frame;
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use tokio_util::sync::CancellationToken;

/// The topic on which every broker publishes its consumers (the demand).
pub const ADVISORY_TOPIC: &str = "ActiveMQ.Advisory.NetworkConsumers";
/// On a forwarded SEND or a MESSAGE: the brokers the message passed,
/// comma-separated, first first.
pub const PATH_HEADER: &str = "amq-broker-path";
/// On a forwarded SEND or a duplex demand SUBSCRIBE: the sending broker.
pub const FROM_HEADER: &str = "amq-network-broker";
/// On a duplex demand SUBSCRIBE: the demand's broker path (the subscribing
/// broker first), reported in advisories for consumerTTL.
pub const DEMAND_PATH_HEADER: &str = "amq-network-path";
/// On a duplex demand SUBSCRIBE: messageTTL (negative: unlimited).
pub const TTL_HEADER: &str = "amq-network-ttl";
/// ActiveMQ's consumer priority header on SUBSCRIBE.
pub const PRIORITY_HEADER: &str = "activemq.priority";

fn split_path(s: &str) -> Vec<String> {
    s.split(',')
        .map(str::trim)
        .filter(|b| !b.is_empty())
        .map(str::to_owned)
        .collect()
}

/// A SEND from a network bridge keeps its message id, timestamp and broker
/// path (the connection has already built `message` from the frame with a
/// fresh id); every other SEND is left alone. Counts the message for the
/// sending peer in `/status`.
pub fn inbound_send(broker: &Broker, frame: &Frame, message: &mut Message) -> Result<(), String> {
    let Some(path) = frame.header(PATH_HEADER) else {
        return Ok(());
    };
    adopt(frame, message, split_path(path))?;
    if let Some(peer) = frame.header(FROM_HEADER) {
        broker.network().received_from(peer);
    }
    Ok(())
}

/// Identity of a forwarded message: id, timestamp and `path` from the
/// frame; the network headers are not application properties.
fn adopt(frame: &Frame, message: &mut Message, path: Vec<String>) -> Result<(), String> {
    let id = frame
        .header("message-id")
        .filter(|id| !id.is_empty())
        .ok_or("a forwarded message needs its message-id header")?;
    message.id = crate::message::MessageId(id.to_owned());
    if let Some(t) = frame.header("timestamp") {
        message.timestamp = t
            .parse()
            .map_err(|_| format!("timestamp:{t} is not milliseconds since the epoch"))?;
    }
    message.broker_path = path;
    message.properties.remove(PATH_HEADER);
    message.properties.remove(FROM_HEADER);
    Ok(())
}

/// SUBSCRIBE options: ActiveMQ's `activemq.priority`, and for a duplex
/// bridge's demand ([`FROM_HEADER`] present) the network target.
pub fn subscribe_options(frame: &Frame) -> Result<SubscribeOptions, String> {
    let priority = match frame.header(PRIORITY_HEADER) {
        None => 0,
        Some(p) => p
            .parse::<i32>()
            .ok()
            .filter(|p| (-128..=127).contains(p))
            .ok_or_else(|| format!("{PRIORITY_HEADER}:{p} is not -128..127"))?,
    };
    let network = match frame.header(FROM_HEADER) {
        None => None,
        Some(remote) => {
            let message_ttl = match frame.header(TTL_HEADER) {
                None => 1,
                Some(t) => t
                    .parse()
                    .map_err(|_| format!("{TTL_HEADER}:{t} is not an integer"))?,
            };
            let mut path = frame
                .header(DEMAND_PATH_HEADER)
                .map(split_path)
                .unwrap_or_default();
            if path.first().map(String::as_str) != Some(remote) {
                path.insert(0, remote.to_owned());
            }
            Some(NetworkTarget {
                remote: remote.to_owned(),
                path,
                message_ttl,
            })
        }
    };
    Ok(SubscribeOptions {
        priority,
        network,
        ..SubscribeOptions::default()
    })
}

/// The bridges of one broker and what they did, for `/status`.
#[derive(Clone, Default)]
pub struct Registry {
    inner: Arc<RegistryInner>,
}

#[derive(Default)]
struct RegistryInner {
    bridges: Mutex<Vec<Arc<BridgeStats>>>,
    /// Messages peers' bridges forwarded to us, by peer broker name.
    inbound: Mutex<BTreeMap<String, u64>>,
}

impl Registry {
    pub fn register(&self, stats: Arc<BridgeStats>) {
        self.inner.bridges.lock().expect("registry").push(stats);
    }

    pub fn unregister(&self, stats: &Arc<BridgeStats>) {
        self.inner
            .bridges
            .lock()
            .expect("registry")
            .retain(|b| !Arc::ptr_eq(b, stats));
    }

    fn received_from(&self, peer: &str) {
        let mut inbound = self.inner.inbound.lock().expect("registry");
        match inbound.get_mut(peer) {
            Some(n) => *n += 1,
            None => {
                inbound.insert(peer.to_owned(), 1);
            }
        }
    }

    pub fn status(&self) -> Vec<BridgeStatus> {
        let mut out: Vec<BridgeStatus> = self
            .inner
            .bridges
            .lock()
            .expect("registry")
            .iter()
            .map(|b| b.status())
            .collect();
        for (peer, n) in self.inner.inbound.lock().expect("registry").iter() {
            out.push(BridgeStatus {
                name: String::new(),
                uri: String::new(),
                peer: Some(peer.clone()),
                direction: "inbound",
                state: "-".into(),
                duplex: false,
                forwarded_out: 0,
                forwarded_in: *n,
                demand_subscriptions: 0,
                connects: 0,
                last_error: None,
            });
        }
        out
    }
}

/// The state of one bridge, shared between its task and `/status`.
pub struct BridgeStats {
    pub name: String,
    pub uri: String,
    pub duplex: bool,
    state: Mutex<(BridgeState, Option<String>, Option<String>)>,
    pub forwarded_out: AtomicU64,
    pub forwarded_in: AtomicU64,
    pub demand: AtomicUsize,
    pub connects: AtomicU64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BridgeState {
    Connecting,
    Up,
    /// Waiting for the back-off delay after a failure.
    Waiting,
    /// maxReconnectAttempts reached.
    Failed,
    Stopped,
}

impl BridgeState {
    pub fn as_str(self) -> &'static str {
        match self {
            BridgeState::Connecting => "connecting",
            BridgeState::Up => "up",
            BridgeState::Waiting => "waiting",
            BridgeState::Failed => "failed",
            BridgeState::Stopped => "stopped",
        }
    }
}

impl BridgeStats {
    pub fn new(name: &str, uri: &str, duplex: bool) -> Arc<BridgeStats> {
        Arc::new(BridgeStats {
            name: name.to_owned(),
            uri: uri.to_owned(),
            duplex,
            state: Mutex::new((BridgeState::Connecting, None, None)),
            forwarded_out: AtomicU64::new(0),
            forwarded_in: AtomicU64::new(0),
            demand: AtomicUsize::new(0),
            connects: AtomicU64::new(0),
        })
    }

    pub fn set_state(&self, state: BridgeState) {
        self.state.lock().expect("bridge state").0 = state;
    }

    pub fn set_peer(&self, peer: &str) {
        self.state.lock().expect("bridge state").1 = Some(peer.to_owned());
    }

    pub fn set_error(&self, error: String) {
        self.state.lock().expect("bridge state").2 = Some(error);
    }

    pub fn state(&self) -> BridgeState {
        self.state.lock().expect("bridge state").0
    }

    pub fn status(&self) -> BridgeStatus {
        let (state, peer, error) = self.state.lock().expect("bridge state").clone();
        BridgeStatus {
            name: self.name.clone(),
            uri: self.uri.clone(),
            peer,
            direction: "outbound",
            state: state.as_str().into(),
            duplex: self.duplex,
            forwarded_out: self.forwarded_out.load(Ordering::Relaxed),
            forwarded_in: self.forwarded_in.load(Ordering::Relaxed),
            demand_subscriptions: self.demand.load(Ordering::Relaxed),
            connects: self.connects.load(Ordering::Relaxed),
            last_error: error,
        }
    }
}

/// One bridge in `/status`. `outbound`: a bridge this broker's network
/// connector runs; `inbound`: a peer's bridge forwarding to us.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BridgeStatus {
    /// The network connector's name.
    pub name: String,
    /// The discovered service URI.
    pub uri: String,
    /// The peer broker's name, once known.
    pub peer: Option<String>,
    pub direction: &'static str,
    pub state: String,
    pub duplex: bool,
    /// Messages sent to the peer and receipted.
    pub forwarded_out: u64,
    /// Messages received from the peer.
    pub forwarded_in: u64,
    pub demand_subscriptions: usize,
    /// Successful connections so far.
    pub connects: u64,
    pub last_error: Option<String>,
}

/// Runs the broker's advisories and network connectors while the broker
/// serves clients (a slave does not bridge), until `shutdown`.
pub async fn run(broker: Arc<Broker>, config: BrokerConfig, shutdown: CancellationToken) {
    let mut role = broker.watch_role();
    loop {
        tokio::select! {
            r = role.wait_for(|r| r.serves_clients()) => { if r.is_err() { return; } }
            _ = shutdown.cancelled() => return,
        }
        let serving = shutdown.child_token();
        let mut tasks = tokio::task::JoinSet::new();
        tasks.spawn(advisories::publish(broker.clone(), serving.clone()));
        for connector in &config.network_connectors {
            match discovery::Agent::new(connector, &config) {
                Ok(agent) => {
                    tasks.spawn(agent.run(broker.clone(), connector.clone(), serving.clone()));
                }
                Err(e) => {
                    tracing::error!(connector = %connector.name, "network connector not started: {e}")
                }
            }
        }
        if let Some(announcer) = discovery::Announcer::from_config(&config) {
            tasks.spawn(announcer.run(serving.clone()));
        }
        tokio::select! {
            _ = role.wait_for(|r| !r.serves_clients()) => {}
            _ = shutdown.cancelled() => {}
        }
        serving.cancel();
        while tasks.join_next().await.is_some() {}
        if shutdown.is_cancelled() {
            return;
        }
    }
}
