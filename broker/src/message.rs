//! The protocol-neutral message model. STOMP maps onto it today and OpenWire
//! will later: typed properties and opaque body bytes, nothing STOMP-specific.

use bytes::Bytes;
use std::collections::BTreeMap;
use std::fmt;

/// A queue or a topic, named as ActiveMQ names them (`/queue/NAME` in STOMP).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Destination {
    Queue(String),
    Topic(String),
}

impl Destination {
    pub fn name(&self) -> &str {
        match self {
            Destination::Queue(n) | Destination::Topic(n) => n,
        }
    }

    pub fn is_queue(&self) -> bool {
        matches!(self, Destination::Queue(_))
    }

    /// ActiveMQ's dead-letter queue for every destination by default.
    pub fn dlq() -> Self {
        Destination::Queue("ActiveMQ.DLQ".to_owned())
    }
}

impl fmt::Display for Destination {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Destination::Queue(n) => write!(f, "/queue/{n}"),
            Destination::Topic(n) => write!(f, "/topic/{n}"),
        }
    }
}

/// A typed application property, as JMS knows them.
#[derive(Debug, Clone, PartialEq)]
pub enum PropertyValue {
    String(String),
    Bool(bool),
    Int(i32),
    Long(i64),
    Double(f64),
    Bytes(Bytes),
}

/// Globally unique message id (ActiveMQ style: `ID:<broker>-<conn>-<seq>`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MessageId(pub String);

impl fmt::Display for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    pub id: MessageId,
    pub destination: Destination,
    pub persistent: bool,
    /// 0..=9, JMS default 4.
    pub priority: u8,
    /// Milliseconds since the Unix epoch; `None` never expires.
    pub expires: Option<u64>,
    /// Milliseconds since the Unix epoch when the broker accepted it.
    pub timestamp: u64,
    pub reply_to: Option<Destination>,
    pub correlation_id: Option<String>,
    /// Application properties (STOMP custom headers arrive as strings).
    pub properties: BTreeMap<String, PropertyValue>,
    pub body: Bytes,
    /// How many times it was delivered and not acknowledged.
    pub redelivery_count: u32,
    /// Brokers this message passed through in a network of brokers (loop
    /// prevention and messageTTL).
    pub broker_path: Vec<String>,
}

impl Message {
    pub const DEFAULT_PRIORITY: u8 = 4;

    pub fn is_expired(&self, now_ms: u64) -> bool {
        matches!(self.expires, Some(e) if e != 0 && e <= now_ms)
    }
}
