//! One bridge session: a connected failover client to the peer, the demand
//! subscriptions it needs here, forwarding with receipts, and (duplex) the
//! demand it places on the peer. See the module docs of [`crate::network`].

use super::advisories::{Advisory, RemoteConsumer};
use super::{
    BridgeStats, ADVISORY_TOPIC, DEMAND_PATH_HEADER, FROM_HEADER, PATH_HEADER, PRIORITY_HEADER,
    TTL_HEADER,
};
use crate::broker::{
    AckMode, Broker, ConnId, ConsumerEvent, Delivery, NetworkTarget, Outbound, SubId,
    SubscribeOptions,
};
use crate::client::{self, OutgoingMessage};
use crate::config::NetworkConnector;
use crate::failover::{EventKind, FailoverClient, FailoverEvent, Subscription};
use crate::message::{Destination, Message, MessageId};
use crate::stomp;
use futures::stream::FuturesUnordered;
use futures::{FutureExt, StreamExt};
use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use tokio::sync::{broadcast, mpsc};
use tokio_util::sync::CancellationToken;

/// Deliveries forwarded, and forwards acknowledged, per turn of the loop.
const BATCH: usize = 256;

/// ActiveMQ's `consumerPriorityBase` for network demand.
const NETWORK_PRIORITY_BASE: i32 = -5;

/// A demand subscription: per destination with conduit subscriptions, per
/// remote consumer without.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct DemandKey {
    pub destination: Destination,
    pub consumer: Option<u64>,
}

/// What a demand subscription looks like.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Want {
    /// Its broker path: the broker that consumes first.
    pub path: Vec<String>,
    pub priority: i32,
}

/// ActiveMQ's order: excluded denies, statically included allows, a
/// non-empty dynamically included list allows only its matches.
pub fn permitted(nc: &NetworkConnector, dest: &Destination) -> bool {
    if matches!(dest, Destination::Topic(n) if n == ADVISORY_TOPIC) {
        return false;
    }
    if nc.excluded_destinations.iter().any(|p| p.matches(dest)) {
        return false;
    }
    if nc
        .statically_included_destinations
        .iter()
        .any(|p| p.matches(dest))
    {
        return true;
    }
    nc.dynamically_included_destinations.is_empty()
        || nc
            .dynamically_included_destinations
            .iter()
            .any(|p| p.matches(dest))
}

/// decreaseNetworkConsumerPriority: -5, and lower by path length + 1 for
/// demand from further away.
pub fn priority(nc: &NetworkConnector, path_len: usize) -> i32 {
    if !nc.decrease_network_consumer_priority {
        return 0;
    }
    let further = if path_len > 1 { path_len as i32 + 1 } else { 0 };
    NETWORK_PRIORITY_BASE - further
}

/// The demand subscriptions that `consumers` (on broker `head`) call for:
/// consumers whose path reached consumerTTL or passes `exclude` (a loop)
/// are ignored.
pub fn wanted(
    nc: &NetworkConnector,
    consumers: &BTreeMap<Destination, Vec<RemoteConsumer>>,
    head: &str,
    exclude: &str,
) -> BTreeMap<DemandKey, Want> {
    let mut out: BTreeMap<DemandKey, Want> = BTreeMap::new();
    for (dest, list) in consumers {
        if !permitted(nc, dest) {
            continue;
        }
        for c in list {
            let within_ttl =
                nc.consumer_ttl < 0 || (c.path.len() as i64) < i64::from(nc.consumer_ttl);
            if !within_ttl
                || c.path.iter().any(|b| b == exclude)
                || c.path.iter().any(|b| b == head)
            {
                continue;
            }
            let mut path = Vec::with_capacity(c.path.len() + 1);
            path.push(head.to_owned());
            path.extend(c.path.iter().cloned());
            let key = DemandKey {
                destination: dest.clone(),
                consumer: (!nc.conduit_subscriptions).then_some(c.id),
            };
            let want = Want {
                priority: priority(nc, path.len()),
                path,
            };
            // A conduit takes the shortest path among its consumers.
            match out.get(&key) {
                Some(w) if w.path.len() <= want.path.len() => {}
                _ => {
                    out.insert(key, want);
                }
            }
        }
    }
    out
}

/// Adds statically included destinations (demand whether or not anyone
/// consumes) to `wanted`.
fn with_static(
    nc: &NetworkConnector,
    head: &str,
    mut wanted: BTreeMap<DemandKey, Want>,
) -> BTreeMap<DemandKey, Want> {
    for p in &nc.statically_included_destinations {
        if p.pattern.contains(['*', '>', ',']) {
            continue;
        }
        let destination = if p.queue {
            Destination::Queue(p.pattern.clone())
        } else {
            Destination::Topic(p.pattern.clone())
        };
        wanted
            .entry(DemandKey {
                destination,
                consumer: None,
            })
            .or_insert_with(|| Want {
                path: vec![head.to_owned()],
                priority: priority(nc, 1),
            });
    }
    wanted
}

/// The message a forwarded frame carries: its own id and timestamp, and the
/// broker path it had on the sender plus the sender (`hop`).
pub fn forwarded_message(frame: &stomp::Frame, hop: &str) -> Result<Message, String> {
    let mut m = stomp::message_from_send(frame, MessageId(String::new()), crate::broker::now_ms())?;
    let mut path = frame
        .header(PATH_HEADER)
        .map(super::split_path)
        .unwrap_or_default();
    path.push(hop.to_owned());
    super::adopt(frame, &mut m, path)?;
    Ok(m)
}

/// The SEND that forwards `m` from `local`.
fn outgoing(m: &Message, local: &str) -> OutgoingMessage {
    let frame = stomp::message_frame(m, "", None, false);
    let mut out =
        OutgoingMessage::new(m.destination.to_string(), m.body.clone()).persistent(m.persistent);
    for (k, v) in frame.headers {
        if !matches!(
            k.as_str(),
            "destination" | "subscription" | "persistent" | "content-length" | PATH_HEADER
        ) {
            out.headers.push((k, v));
        }
    }
    let mut path = m.broker_path.clone();
    path.push(local.to_owned());
    out.headers.push((PATH_HEADER.to_owned(), path.join(",")));
    out.headers.push((FROM_HEADER.to_owned(), local.to_owned()));
    out
}

/// Why a session ended.
#[derive(Debug)]
pub enum Ended {
    Shutdown,
    Lost(String),
}

/// Removes and returns what `held` has that `wanted` no longer asks for, or
/// asks for differently.
fn take_stale<T>(
    held: &mut BTreeMap<DemandKey, (Want, T)>,
    wanted: &BTreeMap<DemandKey, Want>,
) -> Vec<(DemandKey, T)> {
    let stale: Vec<DemandKey> = held
        .iter()
        .filter(|(k, (w, _))| wanted.get(*k) != Some(w))
        .map(|(k, _)| k.clone())
        .collect();
    stale
        .into_iter()
        .filter_map(|k| held.remove(&k).map(|(_, t)| (k, t)))
        .collect()
}

/// Demand subscriptions this session holds on the local broker.
struct LocalDemand {
    conn: ConnId,
    /// The subscription id of each.
    subs: BTreeMap<DemandKey, (Want, String)>,
    next: u64,
}

impl LocalDemand {
    fn reconcile(
        &mut self,
        broker: &Broker,
        nc: &NetworkConnector,
        remote: &str,
        wanted: BTreeMap<DemandKey, Want>,
    ) {
        for (k, id) in take_stale(&mut self.subs, &wanted) {
            tracing::debug!(destination = %k.destination, remote, "demand removed");
            let _ = broker.unsubscribe(self.conn, &id);
        }
        for (k, w) in wanted {
            if self.subs.contains_key(&k) {
                continue;
            }
            self.next += 1;
            let id = format!("{}-demand-{}", nc.name, self.next);
            let options = SubscribeOptions {
                priority: w.priority,
                network: Some(NetworkTarget {
                    remote: remote.to_owned(),
                    path: w.path.clone(),
                    message_ttl: nc.message_ttl,
                }),
                ..SubscribeOptions::default()
            };
            tracing::debug!(destination = %k.destination, remote, priority = w.priority, "demand added");
            match broker.subscribe_with(
                self.conn,
                &id,
                k.destination.clone(),
                AckMode::ClientIndividual,
                nc.prefetch_size as usize,
                options,
            ) {
                Ok(_) => {
                    self.subs.insert(k, (w, id));
                }
                Err(e) => tracing::warn!("demand subscription failed: {e}"),
            }
        }
    }
}

/// Duplex: subscriptions on the peer for demand here.
struct RemoteDemand {
    pulls: BTreeMap<DemandKey, (Want, CancellationToken)>,
}

/// Runs one session on a connected `client` until the connection is lost
/// or `shutdown`. `events` must have been subscribed before the client
/// connected, so no disconnect is missed.
pub async fn session(
    broker: Arc<Broker>,
    nc: &NetworkConnector,
    client: FailoverClient,
    mut events: broadcast::Receiver<FailoverEvent>,
    stats: Arc<BridgeStats>,
    shutdown: CancellationToken,
) -> Ended {
    let local = broker.name().to_owned();
    let mut advisories = match client
        .subscribe(
            &format!("/topic/{ADVISORY_TOPIC}"),
            client::AckMode::Auto,
            &[],
        )
        .await
    {
        Ok(s) => s,
        Err(e) => return Ended::Lost(format!("subscribing to the peer's advisories: {e}")),
    };
    let (conn, mut outbound) = broker.connect_internal();
    let mut demand = LocalDemand {
        conn,
        subs: BTreeMap::new(),
        next: 0,
    };
    let mut remote_consumers: BTreeMap<Destination, Vec<RemoteConsumer>> = BTreeMap::new();
    let mut remote_name: Option<String> = None;
    let mut forwards = FuturesUnordered::new();
    // Duplex: our own consumers, which the peer forwards to.
    let mut local_consumers: BTreeMap<Destination, BTreeMap<u64, RemoteConsumer>> = BTreeMap::new();
    let mut local_events = if nc.duplex {
        let (now, rx) = broker.watch_consumers();
        for c in now {
            local_consumers.entry(c.destination).or_default().insert(
                c.sub,
                RemoteConsumer {
                    id: c.sub,
                    priority: c.priority,
                    path: c.path,
                },
            );
        }
        Some(rx)
    } else {
        None
    };
    let mut remote_demand = RemoteDemand {
        pulls: BTreeMap::new(),
    };
    let pull_stop = CancellationToken::new();
    let mut pulls = tokio::task::JoinSet::new();

    let mut failed = None;
    let ended = loop {
        let mut duplex_changed = false;
        tokio::select! {
            a = advisories.recv() => {
                let Some(a) = a else { break Ended::Lost("the advisory subscription ended".into()) };
                let advisory: Advisory = match serde_json::from_slice(a.body()) {
                    Ok(v) => v,
                    Err(e) => { tracing::warn!("ignoring a malformed advisory: {e}"); continue; }
                };
                if remote_name.as_deref() != Some(advisory.broker.as_str()) {
                    if advisory.broker == local {
                        break Ended::Lost(format!("the peer is this broker ({local}): not bridging to itself"));
                    }
                    stats.set_peer(&advisory.broker);
                    remote_name = Some(advisory.broker.clone());
                    duplex_changed = true;
                }
                if advisory.full {
                    remote_consumers.clear();
                }
                for d in advisory.destinations {
                    let Some(dest) = d.destination() else { continue };
                    if d.consumers.is_empty() {
                        remote_consumers.remove(&dest);
                    } else {
                        remote_consumers.insert(dest, d.consumers);
                    }
                }
                let remote = remote_name.as_deref().expect("set above");
                let want = with_static(nc, remote, wanted(nc, &remote_consumers, remote, &local));
                demand.reconcile(&broker, nc, remote, want);
            }
            o = outbound.recv() => {
                // Everything dispatched so far, without a trip through select.
                let mut next = o;
                for taken in 1.. {
                    match next {
                        Some(Outbound::Deliver(d)) => forwards.push(forward(client.clone(), d, local.clone())),
                        Some(Outbound::Close(reason)) => { failed = Some(reason); break; }
                        None => { failed = Some("the local connection closed".into()); break; }
                    }
                    if taken == BATCH {
                        break;
                    }
                    next = match outbound.try_recv() {
                        Ok(o) => Some(o),
                        Err(mpsc::error::TryRecvError::Empty) => break,
                        Err(mpsc::error::TryRecvError::Disconnected) => None,
                    };
                }
                if let Some(reason) = failed.take() {
                    break Ended::Lost(reason);
                }
            }
            Some(r) = forwards.next(), if !forwards.is_empty() => {
                // Acknowledge every finished forward in one broker call.
                let mut done = Vec::new();
                let mut next = Some(r);
                while let Some(r) = next.take() {
                    match r {
                        Ok(d) => done.push(d),
                        Err(e) => {
                            failed = Some(format!("forwarding failed: {e}"));
                            break;
                        }
                    }
                    if done.len() < BATCH {
                        next = forwards.next().now_or_never().flatten();
                    }
                }
                stats.forwarded_out.fetch_add(done.len() as u64, Ordering::Relaxed);
                let _ = broker.delivered(&done);
                if let Some(reason) = failed.take() {
                    break Ended::Lost(reason);
                }
            }
            e = async { local_events.as_mut().expect("duplex").recv().await }, if local_events.is_some() => {
                match e {
                    Some(ConsumerEvent::Added(c)) => {
                        local_consumers.entry(c.destination).or_default().insert(c.sub, RemoteConsumer { id: c.sub, priority: c.priority, path: c.path });
                    }
                    Some(ConsumerEvent::Removed { sub, destination }) => {
                        if let Some(t) = local_consumers.get_mut(&destination) {
                            t.remove(&sub);
                            if t.is_empty() { local_consumers.remove(&destination); }
                        }
                    }
                    None => break Ended::Lost("consumer events ended".into()),
                }
                duplex_changed = true;
            }
            e = events.recv() => match e {
                Ok(FailoverEvent { kind: EventKind::Disconnected { reason, .. }, .. }) => break Ended::Lost(reason),
                Ok(FailoverEvent { kind: EventKind::GaveUp { error, .. }, .. }) => break Ended::Lost(error),
                Ok(FailoverEvent { kind: EventKind::Closed, .. }) => break Ended::Lost("closed".into()),
                Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => break Ended::Lost("the client stopped".into()),
            },
            _ = shutdown.cancelled() => break Ended::Shutdown,
        }
        if duplex_changed && local_events.is_some() {
            if let Some(remote) = &remote_name {
                let consumers: BTreeMap<Destination, Vec<RemoteConsumer>> = local_consumers
                    .iter()
                    .map(|(d, c)| (d.clone(), c.values().cloned().collect()))
                    .collect();
                let want = wanted(nc, &consumers, &local, remote);
                remote_demand.reconcile(
                    &mut pulls,
                    PullContext {
                        broker: broker.clone(),
                        client: client.clone(),
                        nc,
                        remote: remote.clone(),
                        stats: stats.clone(),
                        stop: pull_stop.clone(),
                        conn,
                    },
                    want,
                );
            }
        }
        stats.demand.store(
            demand.subs.len() + remote_demand.pulls.len(),
            Ordering::Relaxed,
        );
    };
    pull_stop.cancel();
    while pulls.join_next().await.is_some() {}
    stats.demand.store(0, Ordering::Relaxed);
    // What was handed to the bridge and not receipted goes back to the
    // queues here; a copy that did reach the peer is dropped there by id.
    let _ = broker.disconnect(conn);
    ended
}

async fn forward(
    client: FailoverClient,
    d: Delivery,
    local: String,
) -> Result<(SubId, u64), crate::failover::FailoverError> {
    let m = &d.message.message;
    // A persistent message leaves here only once the peer stored it; a
    // non-persistent one is not durable anywhere, so it is not worth a
    // round trip (ActiveMQ's alwaysSyncSend=false).
    if m.persistent {
        client.send_receipted(outgoing(m, &local)).await?;
    } else {
        client.send(outgoing(m, &local)).await?;
    }
    Ok((d.sub, d.tag))
}

struct PullContext<'a> {
    broker: Arc<Broker>,
    client: FailoverClient,
    nc: &'a NetworkConnector,
    remote: String,
    stats: Arc<BridgeStats>,
    stop: CancellationToken,
    conn: ConnId,
}

impl RemoteDemand {
    fn reconcile(
        &mut self,
        tasks: &mut tokio::task::JoinSet<()>,
        cx: PullContext<'_>,
        wanted: BTreeMap<DemandKey, Want>,
    ) {
        for (_, stop) in take_stale(&mut self.pulls, &wanted) {
            stop.cancel();
        }
        for (k, w) in wanted {
            if self.pulls.contains_key(&k) {
                continue;
            }
            let stop = cx.stop.child_token();
            let headers = vec![
                (FROM_HEADER.to_owned(), cx.broker.name().to_owned()),
                (DEMAND_PATH_HEADER.to_owned(), w.path.join(",")),
                (TTL_HEADER.to_owned(), cx.nc.message_ttl.to_string()),
                (PRIORITY_HEADER.to_owned(), w.priority.to_string()),
                (
                    "activemq.prefetchSize".to_owned(),
                    cx.nc.prefetch_size.min(32_767).to_string(),
                ),
            ];
            tasks.spawn(pull(
                cx.broker.clone(),
                cx.conn,
                cx.client.clone(),
                k.destination.to_string(),
                headers,
                cx.remote.clone(),
                cx.stats.clone(),
                stop.clone(),
            ));
            self.pulls.insert(k, (w, stop));
        }
    }
}

/// Duplex demand on the peer: what arrives is stored here (durably, for
/// persistent messages) before it is acknowledged there.
#[allow(clippy::too_many_arguments)]
async fn pull(
    broker: Arc<Broker>,
    conn: ConnId,
    client: FailoverClient,
    destination: String,
    headers: Vec<(String, String)>,
    remote: String,
    stats: Arc<BridgeStats>,
    stop: CancellationToken,
) {
    let mut sub: Subscription = tokio::select! {
        s = client.subscribe(&destination, client::AckMode::ClientIndividual, &headers) => match s {
            Ok(s) => s,
            Err(e) => { tracing::warn!(%destination, "duplex demand on {remote} failed: {e}"); return; }
        },
        _ = stop.cancelled() => return,
    };
    let mut stored = FuturesUnordered::new();
    loop {
        tokio::select! {
            d = sub.recv() => {
                let Some(d) = d else { break };
                let m = match forwarded_message(&d.frame, &remote) {
                    Ok(m) => m,
                    Err(e) => { tracing::warn!(%destination, "dropping a malformed message from {remote}: {e}"); continue; }
                };
                match broker.send(conn, m, None).await {
                    Ok(done) => stored.push(async move { done.wait().await.map(|()| d) }),
                    Err(e) => { tracing::warn!("storing a message from {remote} failed: {e}"); break; }
                }
            }
            Some(r) = stored.next(), if !stored.is_empty() => match r {
                Ok(d) => {
                    if matches!(client.ack(&d), Ok(true)) {
                        stats.forwarded_in.fetch_add(1, Ordering::Relaxed);
                    }
                }
                Err(e) => { tracing::warn!("storing a message from {remote} failed: {e}"); break; }
            },
            _ = stop.cancelled() => {
                let _ = sub.unsubscribe().await;
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::DestinationPattern;

    fn nc() -> NetworkConnector {
        let xml = r#"<beans xmlns="http://www.springframework.org/schema/beans"><broker xmlns="http://activemq.apache.org/schema/core" brokerName="a">
<networkConnectors><networkConnector uri="static:(stomp://b:61613)"/></networkConnectors>
<persistenceAdapter><memoryPersistenceAdapter/></persistenceAdapter>
<transportConnectors><transportConnector name="stomp" uri="stomp://127.0.0.1:61613"/></transportConnectors></broker></beans>"#;
        crate::config::BrokerConfig::parse(
            xml,
            std::path::Path::new("activemq.xml"),
            &crate::config::Placeholders::default(),
        )
        .expect("config")
        .network_connectors
        .remove(0)
    }

    fn consumer(id: u64, path: &[&str]) -> RemoteConsumer {
        RemoteConsumer {
            id,
            priority: 0,
            path: path.iter().map(|s| s.to_string()).collect(),
        }
    }

    fn q(n: &str) -> Destination {
        Destination::Queue(n.into())
    }

    #[test]
    fn defaults_are_activemqs() {
        let nc = nc();
        assert_eq!(
            (nc.name.as_str(), nc.message_ttl, nc.consumer_ttl),
            ("NC", 1, 1)
        );
        assert!(nc.conduit_subscriptions && !nc.duplex);
        assert_eq!(nc.prefetch_size, 1000);
    }

    #[test]
    fn conduit_merges_consumers_and_ttl_and_loops_filter_them() {
        let mut nc = nc();
        nc.consumer_ttl = 2;
        let consumers = BTreeMap::from([
            (q("orders"), vec![consumer(1, &[]), consumer(2, &["c"])]),
            // Demand that came from us: a loop.
            (q("echo"), vec![consumer(3, &["a"])]),
            // Two hops away: beyond consumerTTL 2.
            (q("far"), vec![consumer(4, &["c", "d"])]),
        ]);
        let w = wanted(&nc, &consumers, "b", "a");
        assert_eq!(w.len(), 1, "{w:?}");
        let (k, want) = w.iter().next().unwrap();
        assert_eq!(
            k,
            &DemandKey {
                destination: q("orders"),
                consumer: None
            }
        );
        // The conduit takes the shortest path; priority -5 for one hop.
        assert_eq!(want.path, ["b"]);
        assert_eq!(want.priority, -5);

        nc.conduit_subscriptions = false;
        let w = wanted(&nc, &consumers, "b", "a");
        let keys: Vec<_> = w.keys().map(|k| k.consumer).collect();
        assert_eq!(keys, [Some(1), Some(2)]);
        assert_eq!(w.values().map(|w| w.priority).collect::<Vec<_>>(), [-5, -8]);
    }

    #[test]
    fn destination_filters_in_activemqs_order() {
        let mut nc = nc();
        nc.excluded_destinations = vec![DestinationPattern::queue("secret.>")];
        nc.dynamically_included_destinations = vec![DestinationPattern::queue("app.>")];
        nc.statically_included_destinations = vec![DestinationPattern::queue("audit")];
        assert!(!permitted(&nc, &q("secret.x")));
        assert!(permitted(&nc, &q("app.orders")));
        assert!(permitted(&nc, &q("audit")));
        assert!(!permitted(&nc, &q("other")));
        assert!(!permitted(&nc, &Destination::Topic(ADVISORY_TOPIC.into())));
        let w = with_static(&nc, "b", BTreeMap::new());
        assert_eq!(
            w.keys().map(|k| k.destination.clone()).collect::<Vec<_>>(),
            [q("audit")]
        );
        nc.decrease_network_consumer_priority = false;
        assert_eq!(priority(&nc, 3), 0);
    }

    #[test]
    fn forwarded_messages_keep_id_timestamp_and_path() {
        let m = Message {
            id: MessageId("ID:a-1-7".into()),
            destination: q("orders"),
            persistent: true,
            priority: 6,
            expires: None,
            timestamp: 1234,
            reply_to: None,
            correlation_id: Some("c".into()),
            properties: BTreeMap::from([(
                "k".to_owned(),
                crate::message::PropertyValue::String("v".into()),
            )]),
            body: bytes::Bytes::from_static(b"body"),
            redelivery_count: 0,
            broker_path: vec!["x".into()],
        };
        let out = outgoing(&m, "a");
        let frame = out.to_frame();
        assert_eq!(frame.header(PATH_HEADER), Some("x,a"));
        // As a duplex pull from b would rebuild it here (b appended).
        let back = forwarded_message(&frame, "b").unwrap();
        assert_eq!(back.id, m.id);
        assert_eq!(back.timestamp, 1234);
        assert_eq!((back.priority, back.persistent), (6, true));
        assert_eq!(back.properties, m.properties);
        assert_eq!(back.broker_path, ["x", "a", "b"]);
        assert_eq!(&back.body[..], b"body");
    }
}
