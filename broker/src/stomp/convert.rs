//! STOMP frames ↔ the protocol-neutral [`Message`], with the header names
//! users of ActiveMQ's STOMP expect (`persistent`, `priority`, `expires`,
//! `reply-to`, `correlation-id`, `message-id`, `redelivered`, `timestamp`).

use super::frame::{Command, Frame};
use crate::message::{Destination, Message, MessageId, PropertyValue};
use std::collections::BTreeMap;

/// Headers that map onto message fields or steer the broker; every other
/// SEND header becomes a string property and comes back on MESSAGE.
const RESERVED: &[&str] = &[
    "destination",
    "persistent",
    "priority",
    "expires",
    "receipt",
    "transaction",
    "content-length",
    "message-id",
    "timestamp",
    "redelivered",
    "subscription",
    "ack",
    "reply-to",
    "correlation-id",
];

/// `/queue/NAME` or `/topic/NAME`, as ActiveMQ names them in STOMP.
pub fn parse_destination(s: &str) -> Result<Destination, String> {
    let (queue, name) = if let Some(n) = s.strip_prefix("/queue/") {
        (true, n)
    } else if let Some(n) = s.strip_prefix("/topic/") {
        (false, n)
    } else {
        return Err(format!(
            "destination {s:?} must start with /queue/ or /topic/"
        ));
    };
    if name.is_empty() || name.contains(['*', '>', ',']) {
        return Err(format!(
            "destination {s:?}: the name must be non-empty without wildcards"
        ));
    }
    Ok(if queue {
        Destination::Queue(name.to_owned())
    } else {
        Destination::Topic(name.to_owned())
    })
}

/// Builds the message a SEND frame carries. `id` and `now_ms` come from the
/// broker; a client's own `message-id` or `timestamp` header is not trusted.
pub fn message_from_send(frame: &Frame, id: MessageId, now_ms: u64) -> Result<Message, String> {
    let destination = parse_destination(
        frame
            .header("destination")
            .ok_or("SEND without a destination header")?,
    )?;
    let persistent = match frame.header("persistent") {
        None => false,
        Some(v) => v
            .parse::<bool>()
            .map_err(|_| format!("persistent:{v} is not true or false"))?,
    };
    let priority = match frame.header("priority") {
        None => Message::DEFAULT_PRIORITY,
        Some(v) => v
            .parse::<u8>()
            .ok()
            .filter(|p| *p <= 9)
            .ok_or_else(|| format!("priority:{v} is not 0-9"))?,
    };
    let expires = match frame.header("expires") {
        None => None,
        Some(v) => match v
            .parse::<u64>()
            .map_err(|_| format!("expires:{v} is not milliseconds since the epoch"))?
        {
            0 => None,
            t => Some(t),
        },
    };
    let reply_to = frame
        .header("reply-to")
        .map(parse_destination)
        .transpose()?;
    let mut properties = BTreeMap::new();
    for (k, v) in &frame.headers {
        if !RESERVED.contains(&k.as_str()) {
            // First occurrence wins (STOMP 1.2).
            properties
                .entry(k.clone())
                .or_insert_with(|| PropertyValue::String(v.clone()));
        }
    }
    Ok(Message {
        id,
        destination,
        persistent,
        priority,
        expires,
        timestamp: now_ms,
        reply_to,
        correlation_id: frame.header("correlation-id").map(str::to_owned),
        properties,
        body: frame.body.clone(),
        redelivery_count: 0,
        broker_path: Vec::new(),
    })
}

/// The MESSAGE frame delivering `message` on subscription `subscription`;
/// `ack` is the id a STOMP 1.2 client acknowledges with.
pub fn message_frame(
    message: &Message,
    subscription: &str,
    ack: Option<&str>,
    redelivered: bool,
) -> Frame {
    let mut f = Frame::new(Command::Message)
        .with_header("subscription", subscription)
        .with_header("message-id", message.id.0.clone())
        .with_header("destination", message.destination.to_string());
    if let Some(ack) = ack {
        f = f.with_header("ack", ack);
    }
    if message.persistent {
        f = f.with_header("persistent", "true");
    }
    f = f
        .with_header("priority", message.priority.to_string())
        .with_header("expires", message.expires.unwrap_or(0).to_string())
        .with_header("timestamp", message.timestamp.to_string());
    if redelivered {
        f = f.with_header("redelivered", "true");
    }
    if let Some(r) = &message.reply_to {
        f = f.with_header("reply-to", r.to_string());
    }
    if let Some(c) = &message.correlation_id {
        f = f.with_header("correlation-id", c.clone());
    }
    for (k, v) in &message.properties {
        f = f.with_header(k.clone(), property_text(v));
    }
    // The brokers it passed, for a network bridge consuming here (duplex).
    if !message.broker_path.is_empty() {
        f = f.with_header(crate::network::PATH_HEADER, message.broker_path.join(","));
    }
    f.with_body(message.body.clone())
}

/// Typed properties (from OpenWire, later) as STOMP header text.
fn property_text(v: &PropertyValue) -> String {
    match v {
        PropertyValue::String(s) => s.clone(),
        PropertyValue::Bool(b) => b.to_string(),
        PropertyValue::Int(i) => i.to_string(),
        PropertyValue::Long(l) => l.to_string(),
        PropertyValue::Double(d) => d.to_string(),
        PropertyValue::Bytes(b) => String::from_utf8_lossy(b).into_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn send_maps_to_message_and_back() {
        let send = Frame::new(Command::Send)
            .with_header("destination", "/queue/orders")
            .with_header("persistent", "true")
            .with_header("priority", "7")
            .with_header("expires", "0")
            .with_header("reply-to", "/topic/replies")
            .with_header("correlation-id", "c-1")
            .with_header("receipt", "r1")
            .with_header("x-custom", "a:b")
            .with_body(&b"\0bin"[..]);
        let m = message_from_send(&send, MessageId("ID:1".into()), 5).unwrap();
        assert!(m.persistent);
        assert_eq!(m.priority, 7);
        assert_eq!(m.expires, None);
        assert_eq!(m.reply_to, Some(Destination::Topic("replies".into())));
        assert_eq!(m.properties.len(), 1);
        let f = message_frame(&m, "sub-0", Some("7"), true);
        assert_eq!(f.header("destination"), Some("/queue/orders"));
        assert_eq!(f.header("message-id"), Some("ID:1"));
        assert_eq!(f.header("x-custom"), Some("a:b"));
        assert_eq!(f.header("redelivered"), Some("true"));
        assert_eq!(f.header("reply-to"), Some("/topic/replies"));
        assert_eq!(f.header("receipt"), None);
        assert_eq!(&f.body[..], b"\0bin");
    }

    #[test]
    fn rejects_bad_headers() {
        for (k, v) in [
            ("destination", "orders"),
            ("destination", "/queue/"),
            ("persistent", "yes"),
            ("priority", "12"),
            ("expires", "soon"),
        ] {
            let mut f = Frame::new(Command::Send).with_header(k, v);
            if k != "destination" {
                f = f.with_header("destination", "/queue/a");
            }
            assert!(
                message_from_send(&f, MessageId("x".into()), 0).is_err(),
                "{k}:{v}"
            );
        }
    }
}
