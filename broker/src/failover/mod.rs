//! The failover client: ActiveMQ's `failover:` transport for STOMP.
//!
//! ```text
//! failover:(stomp://h1:61613,stomp://h2:61613)?randomize=false&maxReconnectAttempts=10
//! failover:stomp://h1:61613,stomp://h2:61613     (the query would go to h2)
//! ```
//!
//! | option | default | meaning |
//! |---|---|---|
//! | `randomize` | true | shuffle the list before each pass; the URI that just failed goes last |
//! | `initialReconnectDelay` | 10 ms | first delay; also slept once before reconnecting after a drop |
//! | `maxReconnectDelay` | 30000 ms | cap of the back-off |
//! | `useExponentialBackOff` | true | multiply the delay after each failed pass |
//! | `reconnectDelayExponent` | 2.0 | the multiplier (`backOffMultiplier` is rejected, as in ActiveMQ) |
//! | `maxReconnectAttempts` | -1 | failed passes over the whole list before giving up; -1 for ever; 0 = never reconnect after a drop |
//! | `startupMaxReconnectAttempts` | -1 | the same before the first connection, unless -1 |
//! | `timeout` | -1 | ms a send waits while disconnected, then fails; ≤ 0 waits for ever |
//! | `priorityBackup` / `priorityURIs` | false / first member | keep trying the priority URIs while connected elsewhere, move back when one answers |
//! | `warnAfterReconnectAttempts` | 10 | warn on the first failed pass and every N-th |
//! | `reconnectSupported` | true | follow a slave's ERROR naming the master ([`MASTER_HEADER`]) |
//! | `nested.connectionTimeout`, `nested.wireFormat.maxInactivityDuration` | 30000 ms | member options for every member |
//!
//! Unknown options are errors naming the option; ActiveMQ options this client
//! does not implement (`backup`, `trackMessages`, `updateURIsURL`, …) are
//! refused with the reason. Member URIs are `stomp://host:port`; `tcp://`
//! (OpenWire) is refused with a clear "not supported yet".
//!
//! The client ([`FailoverClient`]) re-subscribes after a reconnect, re-sends
//! in order every message that asked for a receipt and has none yet, fails an
//! open transaction's COMMIT (the broker rolled it back), and reports every
//! connect, disconnect and reconnect as a timestamped [`FailoverEvent`].

mod backoff;
mod client;
mod events;
mod uri;

pub use backoff::{connect_order, pass_limit, reconnects_after_drop, warn_now, Backoff};
pub use client::{Delivery, FailoverClient, FailoverError, Subscription, Transaction};
pub use events::{EventKind, FailoverEvent};
pub use uri::{
    Endpoint, FailoverOptions, FailoverUri, MemberOptions, MemberUri, UriError, DEFAULT_STOMP_PORT,
    FAILOVER_OPTIONS,
};

/// Header of the ERROR frame with which a slave that accepts STOMP
/// connections turns a client away: `ERROR` with `master: stomp://host:port`
/// (the master's client address). A failover client with
/// `reconnectSupported=true` (the default) connects there next, ahead of the
/// rest of its list. Without the header (master unknown) the client just moves
/// on to the next URI.
pub const MASTER_HEADER: &str = "master";
