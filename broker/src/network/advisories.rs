//! Consumer advisories: every broker publishes on [`ADVISORY_TOPIC`] which
//! consumers each destination has, so that peers' bridges know where demand
//! is. Each message says "destination D now has these consumers" (absolute,
//! so a repeated or reordered message does no harm); whenever a new
//! advisory subscriber appears, the whole table goes out with `full: true`,
//! which a (re)connected bridge takes as the truth.

use super::ADVISORY_TOPIC;
use crate::broker::{Broker, ConsumerEvent, ConsumerInfo, SubId};
use crate::message::{Destination, Message};
use crate::stomp::parse_destination;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

/// One advisory message's body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Advisory {
    /// The publishing broker's name.
    pub broker: String,
    /// The whole table: destinations not listed have no consumers.
    pub full: bool,
    pub destinations: Vec<DestinationDemand>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DestinationDemand {
    /// `/queue/NAME` or `/topic/NAME`.
    pub destination: String,
    pub consumers: Vec<RemoteConsumer>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemoteConsumer {
    pub id: u64,
    pub priority: i32,
    /// Empty for a client; for a network consumer its demand path.
    pub path: Vec<String>,
}

impl DestinationDemand {
    pub fn destination(&self) -> Option<Destination> {
        parse_destination(&self.destination).ok()
    }
}

fn is_advisory(d: &Destination) -> bool {
    matches!(d, Destination::Topic(n) if n == ADVISORY_TOPIC)
}

type Table = BTreeMap<Destination, BTreeMap<SubId, ConsumerInfo>>;

fn demand(
    dest: &Destination,
    consumers: Option<&BTreeMap<SubId, ConsumerInfo>>,
) -> DestinationDemand {
    DestinationDemand {
        destination: dest.to_string(),
        consumers: consumers
            .into_iter()
            .flat_map(|c| c.values())
            .map(|c| RemoteConsumer {
                id: c.sub,
                priority: c.priority,
                path: c.path.clone(),
            })
            .collect(),
    }
}

/// Publishes until `shutdown`.
pub async fn publish(broker: Arc<Broker>, shutdown: CancellationToken) {
    let (now, mut events) = broker.watch_consumers();
    let mut table: Table = BTreeMap::new();
    for c in now.into_iter().filter(|c| !is_advisory(&c.destination)) {
        table
            .entry(c.destination.clone())
            .or_default()
            .insert(c.sub, c);
    }
    // Deliveries of our own topic are not read: nothing subscribes here.
    let (conn, _deliveries) = broker.connect_internal();
    loop {
        let event = tokio::select! {
            e = events.recv() => match e { Some(e) => e, None => break },
            _ = shutdown.cancelled() => break,
        };
        let advisory = match event {
            ConsumerEvent::Added(c) if is_advisory(&c.destination) => Advisory {
                broker: broker.name().to_owned(),
                full: true,
                destinations: table.iter().map(|(d, c)| demand(d, Some(c))).collect(),
            },
            ConsumerEvent::Removed { destination, .. } if is_advisory(&destination) => continue,
            ConsumerEvent::Added(c) => {
                let dest = c.destination.clone();
                table.entry(dest.clone()).or_default().insert(c.sub, c);
                single(&broker, &table, &dest)
            }
            ConsumerEvent::Removed { sub, destination } => {
                if let Some(t) = table.get_mut(&destination) {
                    t.remove(&sub);
                    if t.is_empty() {
                        table.remove(&destination);
                    }
                }
                single(&broker, &table, &destination)
            }
        };
        let body = serde_json::to_vec(&advisory).expect("advisories serialize");
        let message = Message {
            id: broker.message_id(),
            destination: Destination::Topic(ADVISORY_TOPIC.to_owned()),
            persistent: false,
            priority: Message::DEFAULT_PRIORITY,
            expires: None,
            timestamp: crate::broker::now_ms(),
            reply_to: None,
            correlation_id: None,
            properties: BTreeMap::new(),
            body: Bytes::from(body),
            redelivery_count: 0,
            broker_path: Vec::new(),
        };
        if let Err(e) = broker.send(conn, message, None).await {
            tracing::warn!("publishing a consumer advisory failed: {e}");
        }
    }
    let _ = broker.disconnect(conn);
}

fn single(broker: &Broker, table: &Table, dest: &Destination) -> Advisory {
    Advisory {
        broker: broker.name().to_owned(),
        full: false,
        destinations: vec![demand(dest, table.get(dest))],
    }
}
