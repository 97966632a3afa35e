//! What the failover client reports: every connect, disconnect and reconnect,
//! stamped with wall-clock time (for logs) and a monotonic instant (for
//! measuring outages, e.g. `amqctl verify failover`).

use super::uri::Endpoint;
use std::fmt;
use std::time::{Duration, Instant, SystemTime};

#[derive(Debug, Clone)]
pub struct FailoverEvent {
    /// Wall-clock time, for logs and reports.
    pub at: SystemTime,
    /// Monotonic time, for intervals between events.
    pub instant: Instant,
    pub kind: EventKind,
}

#[derive(Debug, Clone, PartialEq)]
pub enum EventKind {
    /// Trying `endpoint` (TCP connect plus the STOMP handshake) in pass
    /// `pass` (1-based, counted since the last successful connection).
    Connecting { endpoint: Endpoint, pass: u32 },
    /// That attempt failed.
    ConnectFailed { endpoint: Endpoint, error: String },
    /// A slave answered with an ERROR naming the master; it is tried next.
    Redirected { from: Endpoint, to: Endpoint },
    /// The first connection of this client is up.
    Connected { endpoint: Endpoint },
    /// The connection to `endpoint` was lost (or the broker closed it).
    Disconnected { endpoint: Endpoint, reason: String },
    /// Connected again, `outage` after the matching `Disconnected`;
    /// `resubscribed` subscriptions were restored and `resent` unreceipted
    /// messages sent again.
    Reconnected {
        endpoint: Endpoint,
        outage: Duration,
        resubscribed: usize,
        resent: usize,
    },
    /// `priorityBackup`: a priority URI answers, so the client leaves `from`.
    PriorityBackup { from: Endpoint, to: Endpoint },
    /// Every member failed in pass `pass`; the next pass starts after `delay`.
    PassFailed { pass: u32, delay: Duration },
    /// The attempt limit was reached after `passes` failed passes.
    GaveUp { passes: u32, error: String },
    /// The application closed the client.
    Closed,
}

impl FailoverEvent {
    pub fn now(kind: EventKind) -> Self {
        FailoverEvent {
            at: SystemTime::now(),
            instant: Instant::now(),
            kind,
        }
    }
}

impl fmt::Display for FailoverEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {}",
            humantime::format_rfc3339_millis(self.at),
            self.kind
        )
    }
}

impl fmt::Display for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EventKind::Connecting { endpoint, pass } => {
                write!(f, "connecting to {endpoint} (pass {pass})")
            }
            EventKind::ConnectFailed { endpoint, error } => {
                write!(f, "connect to {endpoint} failed: {error}")
            }
            EventKind::Redirected { from, to } => {
                write!(f, "{from} is a slave; the master is {to}")
            }
            EventKind::Connected { endpoint } => write!(f, "connected to {endpoint}"),
            EventKind::Disconnected { endpoint, reason } => {
                write!(f, "disconnected from {endpoint}: {reason}")
            }
            EventKind::Reconnected {
                endpoint,
                outage,
                resubscribed,
                resent,
            } => write!(
                f,
                "reconnected to {endpoint} after {} ms; {resubscribed} subscription(s) restored, {resent} unreceipted message(s) sent again",
                outage.as_millis()
            ),
            EventKind::PriorityBackup { from, to } => {
                write!(f, "priority broker {to} is back; leaving {from}")
            }
            EventKind::PassFailed { pass, delay } => write!(
                f,
                "no broker reachable in pass {pass}; next pass in {} ms",
                delay.as_millis()
            ),
            EventKind::GaveUp { passes, error } => {
                write!(f, "giving up after {passes} attempt(s): {error}")
            }
            EventKind::Closed => f.write_str("closed"),
        }
    }
}
