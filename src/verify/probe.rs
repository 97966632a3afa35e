//! What verify asks a broker: its role (from `/status`, or — for a broker
//! without one, such as Debian's ActiveMQ — from whether its STOMP
//! connector serves while its process runs), and what a client gets when it
//! connects (CONNECTED, refused, or an ERROR naming the master).

use std::fmt;
use std::time::Duration;

use amq_broker::client::{ClientError, ConnectOptions, Connection};

use crate::deploy::health::broker_status;
use crate::deploy::service::{host_for_url, Service};
use crate::executor::Host;

pub const PROBE_TIMEOUT: Duration = Duration::from_millis(800);

/// A broker's role as verify observed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Role {
    Master,
    Slave,
    Standalone,
    /// Any other role string the broker reported (e.g. while electing).
    Other(String),
    /// Not running, or not answering at all.
    Down(String),
}

impl Role {
    /// Serves clients.
    pub fn is_active(&self) -> bool {
        matches!(self, Role::Master | Role::Standalone)
    }

    fn from_status(role: &str) -> Role {
        match role {
            "master" => Role::Master,
            "slave" => Role::Slave,
            "standalone" => Role::Standalone,
            other => Role::Other(other.to_string()),
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Role::Master => f.write_str("master"),
            Role::Slave => f.write_str("slave"),
            Role::Standalone => f.write_str("standalone"),
            Role::Other(r) => f.write_str(r),
            Role::Down(why) => write!(f, "down ({why})"),
        }
    }
}

/// A role and where it came from.
#[derive(Debug, Clone)]
pub struct Observed {
    pub role: Role,
    /// `/status`, or `stomp` when the broker has no status endpoint.
    pub via: &'static str,
    /// The `/status` document, when there is one.
    pub status: Option<serde_json::Value>,
}

/// The STOMP address of a broker service, `host:port`.
pub fn stomp_addr(s: &Service<'_>) -> String {
    let (_, b) = s.broker().expect("a broker service");
    format!("{}:{}", host_for_url(&s.host.address), b.stomp_port)
}

/// The broker's role: `/status` if it answers; otherwise, if its process
/// runs (asked through `host`), master when its STOMP connector serves and
/// slave when it is closed — ActiveMQ's shared-file slave opens no
/// connectors.
pub fn role(s: &Service<'_>, host: Option<&dyn Host>, login: &ConnectOptions) -> Observed {
    match broker_status(&s.probe_addr(), PROBE_TIMEOUT) {
        Ok(st) => Observed {
            role: Role::from_status(&st.role),
            via: "/status",
            status: Some(st.raw),
        },
        Err(status_err) => {
            let running = match host.map(|h| s.running_pid(h)) {
                Some(Ok(Some(_))) => true,
                Some(Ok(None)) => {
                    return down(format!("not running; /status: {status_err}"));
                }
                _ => false,
            };
            let role = match connect(&stomp_addr(s), login) {
                Answer::Accepted => Role::Master,
                Answer::Redirected(_) => Role::Slave,
                Answer::Refused(_) if running => Role::Slave,
                Answer::Refused(why) => Role::Down(format!("/status: {status_err}; stomp: {why}")),
            };
            Observed {
                role,
                via: "stomp",
                status: None,
            }
        }
    }
}

fn down(why: String) -> Observed {
    Observed {
        role: Role::Down(why),
        via: "/status",
        status: None,
    }
}

/// What a client got from a STOMP CONNECT.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// CONNECTED: the broker serves clients.
    Accepted,
    /// ERROR naming the master (`master:` header), or without a name (`None`).
    Redirected(Option<String>),
    /// No connection or a refusal (connection refused, reset, login refused).
    Refused(String),
}

/// One STOMP CONNECT (with the verify login) to `addr`, closed again at once.
pub fn connect(addr: &str, login: &ConnectOptions) -> Answer {
    let opts = ConnectOptions {
        connect_timeout: Duration::from_secs(2),
        heart_beat: (Duration::ZERO, Duration::ZERO),
        ..login.clone()
    };
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return Answer::Refused(format!("no runtime: {e}")),
    };
    rt.block_on(async {
        match Connection::connect(addr, &opts).await {
            Ok(conn) => {
                let _ = tokio::time::timeout(Duration::from_secs(1), conn.disconnect()).await;
                Answer::Accepted
            }
            Err(ClientError::NotMaster { master, .. }) => {
                Answer::Redirected(master.map(|m| m.to_string()))
            }
            Err(e) => Answer::Refused(e.to_string()),
        }
    })
}
