//! The broker's role in a master/slave group, observable by everyone who must
//! react to it: the server opens client connectors only while the role
//! serves, `/status` shows it, and the HA layer drives it.

use serde::Serialize;
use std::fmt;
use tokio::sync::watch;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "role", rename_all = "lowercase")]
pub enum Role {
    /// No master/slave group: serve clients.
    Standalone,
    /// Elected or holding the lock: serve clients.
    Master,
    /// Waiting (for the lock or an election) or replicating from `master`;
    /// clients are refused (connectors closed).
    Slave { master: Option<String> },
}

impl Role {
    pub fn serves_clients(&self) -> bool {
        matches!(self, Role::Standalone | Role::Master)
    }

    pub fn name(&self) -> &'static str {
        match self {
            Role::Standalone => "standalone",
            Role::Master => "master",
            Role::Slave { .. } => "slave",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Role::Slave {
                master: Some(master),
            } => write!(f, "slave of {master}"),
            other => f.write_str(other.name()),
        }
    }
}

/// The sending side, owned by whoever decides the role (main for a
/// standalone broker, the elector or locker for HA).
pub type RoleSender = watch::Sender<Role>;
pub type RoleWatch = watch::Receiver<Role>;

/// A role channel starting at `initial`.
pub fn channel(initial: Role) -> (RoleSender, RoleWatch) {
    watch::channel(initial)
}
