//! The validated cluster: every reference resolved, every default filled in,
//! every secret read. Built only by [`Topology::load`] /
//! [`Topology::from_str`] from the raw [`crate::inventory`] types; everything
//! downstream (render, deploy, verify) works on this.

use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use serde::{Serialize, Serializer};

use crate::diag::{Diagnostic, Diagnostics, SourceMap};

/// A whole cluster as described by one inventory.
#[derive(Debug, Clone, Serialize)]
pub struct Topology {
    /// The inventory file it was loaded from.
    pub source: PathBuf,
    pub cluster: String,
    /// Which broker the configs and launch units are rendered for.
    pub broker_impl: BrokerImpl,
    pub hosts: Vec<Host>,
    pub zookeeper: Option<Ensemble>,
    /// Broker groups in inventory order (which is also their start order).
    pub groups: Vec<Group>,
    pub networks: Vec<Network>,
    /// Users of `simpleAuthenticationPlugin`; empty means no authentication.
    pub users: Vec<User>,
}

/// The broker software a cluster runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum BrokerImpl {
    /// The bundled Rust broker (`broker/`): network bridges speak STOMP, so
    /// network connectors name the peers' `stomp://` connectors.
    AmqBroker,
    /// Apache ActiveMQ 5.x as packaged by Debian (`/usr/share/activemq`):
    /// bridges speak OpenWire (`tcp://`); launched with the run jar.
    Activemq,
}

impl BrokerImpl {
    pub fn name(self) -> &'static str {
        match self {
            BrokerImpl::AmqBroker => "amq-broker",
            BrokerImpl::Activemq => "activemq",
        }
    }
}

/// Debian's ActiveMQ home, used when `broker = "activemq"`.
pub const ACTIVEMQ_HOME: &str = "/usr/share/activemq";

/// A machine (or, for a pseudo-cluster, the one machine) services run on.
#[derive(Debug, Clone, Serialize)]
pub struct Host {
    pub name: String,
    /// The address services bind to and deploy connects to.
    pub address: String,
    /// The name other nodes use for it; rendered into every host's hosts block.
    pub hostname: Option<String>,
    pub aliases: Vec<String>,
    pub connection: Connection,
    pub service_manager: ServiceManager,
    /// Root of everything amqctl puts on this host: `<base_dir>/<service>/...`.
    pub base_dir: PathBuf,
    /// Where deploy installs the bundled `amq-broker` binary.
    pub broker_bin: PathBuf,
    /// The java executable ZooKeeper runs with.
    pub java: String,
    /// Directories every host of a shared-file group sees as one file system.
    pub shared_mounts: Vec<PathBuf>,
    /// Deploy writes the hosts block into this host's /etc/hosts.
    pub manage_hosts: bool,
}

impl Host {
    /// The name other nodes reach this host by: its hostname, else its address.
    pub fn reach(&self) -> &str {
        self.hostname.as_deref().unwrap_or(&self.address)
    }

    /// `<base_dir>/<service>`: a service's own directory on this host.
    pub fn service_dir(&self, service: &str) -> PathBuf {
        self.base_dir.join(service)
    }
}

/// How deploy reaches a host.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Connection {
    /// This machine: files are written and processes started directly.
    Local,
    Ssh(SshSettings),
}

#[derive(Debug, Clone, Serialize)]
pub struct SshSettings {
    pub user: String,
    pub port: u16,
    /// Private key; `None` means the SSH agent.
    pub identity_file: Option<PathBuf>,
    pub known_hosts: KnownHostsPolicy,
    /// `None` means `~/.ssh/known_hosts`.
    pub known_hosts_file: Option<PathBuf>,
}

/// What deploy does with a host key it has not seen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum KnownHostsPolicy {
    /// Unknown or changed keys are refused.
    Strict,
    /// Unknown keys are added, changed keys refused (like `StrictHostKeyChecking=accept-new`).
    AcceptNew,
}

/// How services are launched on a host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ServiceManager {
    /// A systemd unit per service (real hosts).
    Systemd,
    /// An executable `run.sh` per service that `exec`s it in the foreground;
    /// deploy starts it detached with a pid file (pseudo-clusters, test hosts).
    Process,
}

/// The ZooKeeper ensemble that elects masters of replicated groups.
#[derive(Debug, Clone, Serialize)]
pub struct Ensemble {
    pub install: ZkInstall,
    pub tick_time: u32,
    pub init_limit: u32,
    pub sync_limit: u32,
    /// JVM heap, e.g. `256m` (both -Xms and -Xmx).
    pub heap: String,
    /// Digest password brokers use on their znodes (`zkPassword`).
    pub password: Option<Secret>,
    pub nodes: Vec<ZkNode>,
}

impl Ensemble {
    /// Nodes that must be up for the ensemble to serve.
    pub fn quorum(&self) -> usize {
        self.nodes.len() / 2 + 1
    }

    /// `host:port,...` as brokers connect to it (`zkAddress`).
    pub fn connect_string(&self, topo: &Topology) -> String {
        self.nodes
            .iter()
            .map(|n| crate::render::endpoint(topo.host(&n.host).reach(), n.client_port))
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// Where ZooKeeper comes from on the hosts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", content = "path", rename_all = "lowercase")]
pub enum ZkInstall {
    /// Debian's `zookeeper` package: jars in /usr/share/java.
    Apt,
    /// An unpacked ZooKeeper release already on the host (jars in `<path>/lib`).
    Path(PathBuf),
}

impl ZkInstall {
    /// The JVM classpath for `QuorumPeerMain`.
    pub fn classpath(&self) -> String {
        match self {
            // zookeeper.jar's manifest Class-Path pulls in the rest; slf4j-simple
            // gives a log (Debian's jar has no slf4j binding, so it is silent).
            ZkInstall::Apt => {
                "/usr/share/java/zookeeper.jar:/usr/share/java/slf4j-simple.jar".to_string()
            }
            ZkInstall::Path(p) => format!("{}/lib/*", p.display()),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct ZkNode {
    /// `myid`: explicit and stable, never derived from list order.
    pub id: u32,
    /// Service name, `zk<id>`.
    pub service: String,
    pub host: String,
    pub client_port: u16,
    pub peer_port: u16,
    pub election_port: u16,
    pub data_dir: PathBuf,
}

/// One master/slave group (or a standalone broker).
#[derive(Debug, Clone, Serialize)]
pub struct Group {
    pub name: String,
    pub store: Store,
    pub brokers: Vec<Broker>,
    /// Failover transport options for this group's client URLs, in URL order.
    pub failover: Vec<(String, String)>,
    /// Longest a new master may take in `amqctl verify failover` (a time
    /// span); `None`: the store's own timing plus 5 s.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failover_bound: Option<String>,
}

impl Group {
    /// More than one broker sharing one logical store: clients need `failover:`.
    pub fn is_master_slave(&self) -> bool {
        self.brokers.len() > 1
    }

    /// The `brokerName` every node of the group renders. Replicated nodes must
    /// share one name (ActiveMQ groups them by it in ZooKeeper).
    pub fn broker_name<'a>(&'a self, broker: &'a Broker) -> &'a str {
        match self.store {
            Store::Replicated(_) => &self.name,
            _ => &broker.name,
        }
    }

    /// Brokers that must be alive for the group to serve clients.
    pub fn needed(&self) -> usize {
        match &self.store {
            Store::Replicated(r) => r.quorum(),
            _ => 1,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Store {
    /// `<replicatedLevelDB>`: ZooKeeper elects the master, slaves replicate.
    Replicated(Replicated),
    /// `<kahaDB>` in one directory; the master holds its lock file.
    SharedFile(SharedFile),
    /// `<kahaDB>` of its own; no failover.
    Standalone,
}

impl Store {
    pub fn kind(&self) -> &'static str {
        match self {
            Store::Replicated(_) => "replicated",
            Store::SharedFile(_) => "shared-file",
            Store::Standalone => "standalone",
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Replicated {
    pub replicas: u32,
    pub zk_path: String,
    /// ActiveMQ timespan, e.g. `2s`.
    pub zk_session_timeout: String,
    pub sync: String,
    pub security_token: Option<Secret>,
    /// amqctl extension: slaves answer clients with the master's address.
    pub slave_redirect: bool,
}

impl Replicated {
    /// Nodes needed to elect a master: `replicas/2+1`.
    pub fn quorum(&self) -> usize {
        self.replicas as usize / 2 + 1
    }

    /// Node failures the group survives: `replicas - quorum`.
    pub fn tolerance(&self) -> usize {
        self.replicas as usize - self.quorum()
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct SharedFile {
    /// The kahaDB directory every broker of the group opens (its `lock` decides the master).
    pub directory: PathBuf,
    pub lock_keep_alive_period: u32,
    pub lock_acquire_sleep_interval: u32,
}

#[derive(Debug, Clone, Serialize)]
pub struct Broker {
    pub name: String,
    pub group: String,
    pub host: String,
    pub stomp_port: u16,
    pub openwire_port: u16,
    /// Status/HTTP endpoint, passed as `amq-broker --status host:port`.
    pub status_port: u16,
    /// Replication server port (`bind`), replicated groups only.
    pub replication_port: Option<u16>,
    pub weight: u32,
    /// Name advertised to peers (replicated `hostname`, connector URIs).
    pub hostname: String,
    pub data_dir: PathBuf,
}

#[derive(Debug, Clone, Serialize)]
pub struct Network {
    pub name: String,
    pub kind: NetworkKind,
    pub network_ttl: u32,
    pub duplex: bool,
    pub conduit_subscriptions: bool,
    pub decrease_network_consumer_priority: bool,
    /// Bridge credentials (a user of [`Topology::users`]).
    pub user: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum NetworkKind {
    /// Brokers of `from` open bridges to each group of `to`.
    Static { from: String, to: Vec<String> },
    /// Brokers of `members` find each other by multicast discovery.
    Multicast {
        members: Vec<String>,
        /// `multicast://...` URI including `?group=` (defaults to the cluster name).
        uri: String,
    },
}

impl Network {
    /// Groups taking part, `from` first.
    pub fn groups(&self) -> Vec<&str> {
        match &self.kind {
            NetworkKind::Static { from, to } => std::iter::once(from.as_str())
                .chain(to.iter().map(String::as_str))
                .collect(),
            NetworkKind::Multicast { members, .. } => members.iter().map(String::as_str).collect(),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct User {
    pub name: String,
    pub password: Secret,
    pub groups: Vec<String>,
}

/// A secret read at plan time. Its value is only reachable via
/// [`Secret::expose`]; `Debug`, `Display` and `Serialize` print `***`.
#[derive(Clone)]
pub struct Secret {
    /// Where it came from, e.g. `env AMQCTL_ZK_PASSWORD`.
    pub origin: String,
    value: String,
}

impl Secret {
    pub fn new(origin: impl Into<String>, value: impl Into<String>) -> Self {
        Self {
            origin: origin.into(),
            value: value.into(),
        }
    }

    pub fn expose(&self) -> &str {
        &self.value
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secret({}, ***)", self.origin)
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str("***")
    }
}

/// Where secrets referenced as `{ env = "VAR" }` are looked up. Tests pass a
/// map instead of touching the process environment.
pub type EnvLookup<'a> = &'a dyn Fn(&str) -> Option<String>;

impl Topology {
    /// Reads and validates an inventory file, resolving `{ env = ... }`
    /// secrets from the process environment. On success returns the topology
    /// and its warnings; on failure every error (and warning) found.
    pub fn load(path: &Path) -> Result<(Topology, Vec<Diagnostic>), Diagnostics> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            let map = SourceMap::new(path, "");
            let mut c = crate::diag::Collector::new(map);
            c.error(
                0..0,
                format!("cannot read inventory: {e}"),
                "check the path (amqctl plan INVENTORY)",
            );
            c.out
        })?;
        Self::from_str(path, &text, &|name| std::env::var(name).ok())
    }

    /// Validates inventory `text` as if read from `path` (used for positions
    /// and for resolving relative secret files).
    pub fn from_str(
        path: &Path,
        text: &str,
        env: EnvLookup<'_>,
    ) -> Result<(Topology, Vec<Diagnostic>), Diagnostics> {
        crate::validate::validate(path, text, env)
    }

    /// The host named `name`. Panics if absent: validation guarantees every
    /// reference in a `Topology` resolves.
    pub fn host(&self, name: &str) -> &Host {
        self.hosts
            .iter()
            .find(|h| h.name == name)
            .unwrap_or_else(|| panic!("validated topology has no host {name}"))
    }

    /// The group named `name` (panics if absent, see [`Topology::host`]).
    pub fn group(&self, name: &str) -> &Group {
        self.groups
            .iter()
            .find(|g| g.name == name)
            .unwrap_or_else(|| panic!("validated topology has no group {name}"))
    }

    /// Every broker, in start order.
    pub fn brokers(&self) -> impl Iterator<Item = &Broker> {
        self.groups.iter().flat_map(|g| &g.brokers)
    }

    /// Networks a group takes part in.
    pub fn networks_of<'a>(&'a self, group: &'a str) -> impl Iterator<Item = &'a Network> {
        self.networks
            .iter()
            .filter(move |n| n.groups().contains(&group))
    }
}

/// Whether `addr` is a loopback address (or `localhost`).
pub fn is_loopback(addr: &str) -> bool {
    addr == "localhost"
        || addr
            .parse::<IpAddr>()
            .map(|ip| ip.is_loopback())
            .unwrap_or(false)
}
