//! `activemq.xml`: the broker's configuration, read as ActiveMQ reads it.
//!
//! Accepts what `amqctl plan` renders and what operators write for ActiveMQ
//! itself: the Spring `<beans>` wrapper around
//! `<broker xmlns="http://activemq.apache.org/schema/core">`, `${...}`
//! placeholders, and ActiveMQ's element and attribute names. The file is read
//! with quick-xml's namespace-aware reader into a small element tree, then
//! walked into the validated [`BrokerConfig`]. Elements we do not serve give a
//! [`Warning`] with their line; malformed or contradictory input is a
//! [`ConfigError`] naming the file and line.

use quick_xml::events::Event;
use quick_xml::name::ResolveResult;
use quick_xml::NsReader;
use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::message::Destination;

/// ActiveMQ's core schema namespace; `<broker>` and everything in it live here.
pub const CORE_NS: &str = "http://activemq.apache.org/schema/core";

/// A configuration value that must never be printed (passwords, tokens).
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// Where in the file something was found, for messages an operator can act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    pub file: PathBuf,
    pub line: usize,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.file.display(), self.line)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{at}: malformed XML: {message}")]
    Xml { at: Location, message: String },
    #[error("{at}: {message}")]
    Invalid { at: Location, message: String },
    #[error("{file}: no <broker xmlns=\"{CORE_NS}\"> element found")]
    NoBroker { file: PathBuf },
}

/// Something in the file that the broker does not act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    pub at: Location,
    pub message: String,
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.at, self.message)
    }
}

/// The protocol a transport connector speaks, from its URI scheme.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Protocol {
    /// `stomp://`, `stomp+nio://`
    Stomp,
    /// `tcp://`, `nio://`: OpenWire, not served yet.
    OpenWire,
    /// Anything else (`amqp://`, `mqtt://`, `ws://`, `stomp+ssl://`, ...).
    Other(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransportConnector {
    pub name: String,
    /// The URI as written (placeholders resolved).
    pub uri: String,
    pub protocol: Protocol,
    pub host: String,
    pub port: u16,
    /// URI query options (`maximumConnections`, `wireFormat.maxFrameSize`, ...).
    pub options: BTreeMap<String, String>,
    pub discovery_uri: Option<String>,
    pub update_cluster_clients: bool,
    pub rebalance_cluster_clients: bool,
    pub line: usize,
}

impl TransportConnector {
    /// `host:port` to bind; `0.0.0.0` as ActiveMQ means all interfaces.
    pub fn bind_address(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    pub fn maximum_connections(&self) -> Option<usize> {
        self.options.get("maximumConnections")?.parse().ok()
    }

    /// `wireFormat.maxFrameSize` (bytes), as ActiveMQ names the frame limit.
    pub fn max_frame_size(&self) -> Option<usize> {
        self.options.get("wireFormat.maxFrameSize")?.parse().ok()
    }
}

/// `<kahaDB>`: the local journal (our own format under ActiveMQ's name).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KahaDb {
    pub directory: PathBuf,
    /// Segment size (`journalMaxFileLength`, default 32 MiB).
    pub journal_max_file_length: u64,
    /// Lock keep-alive check period in ms; 0 disables it (ActiveMQ's default).
    pub lock_keep_alive_period: u64,
    /// `<locker><shared-file-locker/></locker>` for shared-storage master/slave.
    pub shared_file_locker: Option<SharedFileLocker>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SharedFileLocker {
    /// How often a waiting slave retries the lock (ms, default 10000).
    pub lock_acquire_sleep_interval: u64,
    pub fail_if_locked: bool,
}

/// How far a write must get before it counts as done (`sync` of
/// `<replicatedLevelDB>`; the flags OR together).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SyncTo {
    pub local_disk: bool,
    pub remote_mem: bool,
    pub remote_disk: bool,
}

impl SyncTo {
    /// ActiveMQ's default `quorum_mem`.
    pub const QUORUM_MEM: SyncTo = SyncTo {
        local_disk: false,
        remote_mem: true,
        remote_disk: false,
    };
}

/// `<replicatedLevelDB>`: replicated store elected through ZooKeeper.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicatedLevelDb {
    pub directory: PathBuf,
    /// Cluster size; election quorum is `replicas/2+1`.
    pub replicas: u32,
    /// Replication server address while master (`tcp://0.0.0.0:61619`).
    pub bind: String,
    pub zk_address: String,
    pub zk_password: Option<Secret>,
    pub zk_path: String,
    pub zk_session_timeout: Duration,
    /// Advertised replication host name (set it: auto-detection misleads).
    pub hostname: Option<String>,
    pub sync: SyncTo,
    pub security_token: Secret,
    pub weight: u32,
    pub slave_redirect: bool,
}

impl ReplicatedLevelDb {
    pub fn quorum(&self) -> u32 {
        self.replicas / 2 + 1
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Persistence {
    KahaDb(KahaDb),
    ReplicatedLevelDb(ReplicatedLevelDb),
    /// `persistent="false"` or `<memoryPersistenceAdapter/>`: nothing on disk.
    Memory,
}

/// A destination or a wildcard pattern (`FOO.>`, `*.BAR`), as ActiveMQ's
/// `<queue physicalName>`, `<topic physicalName>` and `policyEntry queue=`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DestinationPattern {
    pub queue: bool,
    pub pattern: String,
}

impl DestinationPattern {
    pub fn queue(pattern: impl Into<String>) -> Self {
        DestinationPattern {
            queue: true,
            pattern: pattern.into(),
        }
    }

    pub fn topic(pattern: impl Into<String>) -> Self {
        DestinationPattern {
            queue: false,
            pattern: pattern.into(),
        }
    }

    /// ActiveMQ wildcards: segments split on `.`, `*` matches one segment,
    /// `>` the rest; a comma separates alternatives.
    pub fn matches(&self, dest: &Destination) -> bool {
        if self.queue != dest.is_queue() {
            return false;
        }
        let name: Vec<&str> = dest.name().split('.').collect();
        self.pattern.split(',').any(|alt| {
            let pat: Vec<&str> = alt.trim().split('.').collect();
            segments_match(&pat, &name)
        })
    }
}

fn segments_match(pat: &[&str], name: &[&str]) -> bool {
    match (pat.first(), name.first()) {
        (Some(&">"), _) => true,
        (None, None) => true,
        (Some(p), Some(n)) if *p == "*" || p == n => segments_match(&pat[1..], &name[1..]),
        _ => false,
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkConnector {
    pub name: String,
    /// `static:(tcp://a:1,tcp://b:2)`, `masterslave:(...)`, `multicast://default`.
    pub uri: String,
    pub message_ttl: i32,
    pub consumer_ttl: i32,
    pub duplex: bool,
    pub conduit_subscriptions: bool,
    pub decrease_network_consumer_priority: bool,
    pub prefetch_size: u32,
    pub dynamic_only: bool,
    pub user_name: Option<String>,
    pub password: Option<Secret>,
    pub excluded_destinations: Vec<DestinationPattern>,
    pub dynamically_included_destinations: Vec<DestinationPattern>,
    pub statically_included_destinations: Vec<DestinationPattern>,
    pub line: usize,
}

/// One `<authenticationUser>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub username: String,
    pub password: Secret,
    pub groups: Vec<String>,
}

/// `<simpleAuthenticationPlugin>`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Authentication {
    pub users: Vec<User>,
    pub anonymous_access_allowed: bool,
}

impl Authentication {
    /// The user whose name and password match, if any.
    pub fn authenticate(&self, login: &str, passcode: &str) -> Option<&User> {
        self.users
            .iter()
            .find(|u| u.username == login && u.password.expose() == passcode)
    }
}

/// `redeliveryPolicy`: how often a message is redelivered before it is
/// dead-lettered. ActiveMQ's client default is 6.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedeliveryPolicy {
    /// -1 means redeliver forever.
    pub maximum_redeliveries: i32,
}

impl Default for RedeliveryPolicy {
    fn default() -> Self {
        RedeliveryPolicy {
            maximum_redeliveries: 6,
        }
    }
}

/// Where dead letters go (`<deadLetterStrategy>` of a policyEntry).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeadLetterStrategy {
    /// One queue for everything (`ActiveMQ.DLQ` by default).
    Shared {
        queue: String,
        process_expired: bool,
    },
    /// A DLQ per destination: `queuePrefix` + name (`ActiveMQ.DLQ.Queue.` default).
    Individual {
        queue_prefix: String,
        topic_prefix: String,
        process_expired: bool,
    },
    /// `<discarding/>`: dead letters are dropped.
    Discarding,
}

impl Default for DeadLetterStrategy {
    fn default() -> Self {
        DeadLetterStrategy::Shared {
            queue: "ActiveMQ.DLQ".to_owned(),
            process_expired: true,
        }
    }
}

impl DeadLetterStrategy {
    /// The dead-letter queue for a message from `dest`; `None` drops it.
    pub fn dead_letter_queue(&self, dest: &Destination, expired: bool) -> Option<Destination> {
        match self {
            DeadLetterStrategy::Shared {
                queue,
                process_expired,
            } => (!expired || *process_expired).then(|| Destination::Queue(queue.clone())),
            DeadLetterStrategy::Individual {
                queue_prefix,
                topic_prefix,
                process_expired,
            } => (!expired || *process_expired).then(|| {
                let prefix = if dest.is_queue() {
                    queue_prefix
                } else {
                    topic_prefix
                };
                Destination::Queue(format!("{prefix}{}", dest.name()))
            }),
            DeadLetterStrategy::Discarding => None,
        }
    }
}

/// One `<policyEntry>` of `<destinationPolicy>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyEntry {
    pub destinations: DestinationPattern,
    /// Per-destination memory limit in bytes.
    pub memory_limit: Option<u64>,
    pub producer_flow_control: bool,
    pub dead_letter_strategy: Option<DeadLetterStrategy>,
    /// `<networkBridgeFilterFactory><conditionalNetworkBridgeFilterFactory .../>`.
    pub network_bridge_filter: Option<NetworkBridgeFilter>,
}

/// ActiveMQ's `conditionalNetworkBridgeFilterFactory`: lets messages stuck
/// on a broker go back toward one on their broker path once no local
/// consumer is left (consumers moved between brokers).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NetworkBridgeFilter {
    pub replay_when_no_consumers: bool,
    /// Milliseconds a message must have been on this broker before it may
    /// go back (0: at once).
    pub replay_delay_ms: u64,
}

/// Per-destination behaviour: redelivery and dead letters, first match wins
/// (ActiveMQ picks the most specific; we keep file order, which the renderer
/// and operators write most specific first).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Policies {
    pub entries: Vec<PolicyEntry>,
    pub default_redelivery: RedeliveryPolicy,
    pub redelivery_entries: Vec<(DestinationPattern, RedeliveryPolicy)>,
}

impl Policies {
    pub fn redelivery(&self, dest: &Destination) -> &RedeliveryPolicy {
        self.redelivery_entries
            .iter()
            .find(|(p, _)| p.matches(dest))
            .map(|(_, r)| r)
            .unwrap_or(&self.default_redelivery)
    }

    pub fn entry(&self, dest: &Destination) -> Option<&PolicyEntry> {
        self.entries.iter().find(|e| e.destinations.matches(dest))
    }

    pub fn network_bridge_filter(&self, dest: &Destination) -> Option<&NetworkBridgeFilter> {
        self.entries
            .iter()
            .filter(|e| e.destinations.matches(dest))
            .find_map(|e| e.network_bridge_filter.as_ref())
    }

    pub fn dead_letter_strategy(&self, dest: &Destination) -> DeadLetterStrategy {
        self.entries
            .iter()
            .filter(|e| e.destinations.matches(dest))
            .find_map(|e| e.dead_letter_strategy.clone())
            .unwrap_or_default()
    }
}

/// The validated broker configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct BrokerConfig {
    pub file: PathBuf,
    pub broker_name: String,
    pub data_directory: PathBuf,
    pub transport_connectors: Vec<TransportConnector>,
    pub persistence: Persistence,
    pub network_connectors: Vec<NetworkConnector>,
    /// `None`: no authentication plugin, everyone may connect.
    pub authentication: Option<Authentication>,
    pub policies: Policies,
    /// `systemUsage/memoryUsage limit`: bytes of non-persistent messages held
    /// before producers are slowed down.
    pub memory_limit: u64,
    pub warnings: Vec<Warning>,
}

impl BrokerConfig {
    /// Reads and validates `path` (a plain path or ActiveMQ's `xbean:file:`).
    pub fn load(path: &Path, placeholders: &Placeholders) -> Result<BrokerConfig, ConfigError> {
        let path = strip_xbean(path);
        let text = std::fs::read_to_string(&path).map_err(|source| ConfigError::Read {
            path: path.clone(),
            source,
        })?;
        BrokerConfig::parse(&text, &path, placeholders)
    }

    /// Parses `text` as if read from `file` (which only names it in messages).
    pub fn parse(
        text: &str,
        file: &Path,
        placeholders: &Placeholders,
    ) -> Result<BrokerConfig, ConfigError> {
        let root = read_tree(text, file)?;
        let mut walker = Walker {
            file: file.to_owned(),
            placeholders,
            warnings: Vec::new(),
        };
        let broker = walker.find_broker(&root)?;
        walker.broker(broker)
    }

    pub fn stomp_connectors(&self) -> impl Iterator<Item = &TransportConnector> {
        self.transport_connectors
            .iter()
            .filter(|c| c.protocol == Protocol::Stomp)
    }
}

/// Strips ActiveMQ's `xbean:file:` / `xbean:` prefix from a config path.
pub fn strip_xbean(path: &Path) -> PathBuf {
    let s = path.to_string_lossy();
    let rest = s
        .strip_prefix("xbean:file:")
        .or_else(|| s.strip_prefix("xbean:"))
        .unwrap_or(&s);
    PathBuf::from(rest)
}

/// Values for `${name}` placeholders. Lookups fall back to the environment:
/// first the exact name, then ActiveMQ's variable (`activemq.data` →
/// `ACTIVEMQ_DATA`).
#[derive(Debug, Clone, Default)]
pub struct Placeholders {
    values: BTreeMap<String, String>,
}

impl Placeholders {
    /// ActiveMQ's directories: `activemq.conf` defaults to the config file's
    /// directory, `activemq.base` to its parent, `activemq.data` to
    /// `${activemq.base}/data`; explicit values and `ACTIVEMQ_*` variables win.
    pub fn for_config_file(config: &Path) -> Placeholders {
        let mut p = Placeholders::default();
        let config = strip_xbean(config);
        let conf = config
            .parent()
            .map(Path::to_path_buf)
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or_else(|| PathBuf::from("."));
        let conf = std::fs::canonicalize(&conf).unwrap_or(conf);
        let env_or = |name: &str, default: PathBuf| {
            std::env::var(name).unwrap_or_else(|_| default.to_string_lossy().into_owned())
        };
        let conf_s = env_or("ACTIVEMQ_CONF", conf.clone());
        let base_default = Path::new(&conf_s)
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| conf.clone());
        let base_s = env_or("ACTIVEMQ_BASE", base_default);
        let data_s = env_or("ACTIVEMQ_DATA", Path::new(&base_s).join("data"));
        let home_s = env_or("ACTIVEMQ_HOME", PathBuf::from(&base_s));
        p.set("activemq.conf", conf_s);
        p.set("activemq.base", base_s);
        p.set("activemq.data", data_s);
        p.set("activemq.home", home_s);
        p
    }

    pub fn set(&mut self, name: impl Into<String>, value: impl Into<String>) {
        self.values.insert(name.into(), value.into());
    }

    pub fn get(&self, name: &str) -> Option<String> {
        self.values
            .get(name)
            .cloned()
            .or_else(|| std::env::var(name).ok())
            .or_else(|| std::env::var(name.replace('.', "_").to_uppercase()).ok())
    }

    /// Replaces every `${name}` in `s`; the first unknown name is the error.
    pub fn resolve(&self, s: &str) -> Result<String, String> {
        let mut out = String::with_capacity(s.len());
        let mut rest = s;
        while let Some(start) = rest.find("${") {
            out.push_str(&rest[..start]);
            let after = &rest[start + 2..];
            let end = after
                .find('}')
                .ok_or_else(|| format!("unterminated placeholder in {s:?}"))?;
            let name = &after[..end];
            let value = self.get(name).ok_or_else(|| {
                format!("placeholder ${{{name}}} has no value (set it in the environment)")
            })?;
            out.push_str(&value);
            rest = &after[end + 1..];
        }
        out.push_str(rest);
        Ok(out)
    }
}

/// One XML element with what the walker needs.
#[derive(Debug)]
struct Element {
    namespace: Option<String>,
    name: String,
    attributes: Vec<(String, String)>,
    line: usize,
    children: Vec<Element>,
}

/// Builds the element tree with the namespace-aware reader.
fn read_tree(text: &str, file: &Path) -> Result<Element, ConfigError> {
    let line_of = |pos: u64| text[..(pos as usize).min(text.len())].matches('\n').count() + 1;
    let xml_error = |pos: u64, message: String| ConfigError::Xml {
        at: Location {
            file: file.to_owned(),
            line: line_of(pos),
        },
        message,
    };
    let mut reader = NsReader::from_str(text);
    reader.config_mut().trim_text(true);
    let mut stack: Vec<Element> = vec![Element {
        namespace: None,
        name: String::new(),
        attributes: Vec::new(),
        line: 1,
        children: Vec::new(),
    }];
    loop {
        let start = reader.buffer_position();
        let (namespace, event) = match reader.read_resolved_event() {
            Ok((ResolveResult::Bound(n), event)) => (Some(n.as_ref().to_owned()), event),
            Ok((_, event)) => (None, event),
            Err(e) => return Err(xml_error(reader.error_position(), e.to_string())),
        };
        match event {
            Event::Start(ref e) | Event::Empty(ref e) => {
                let mut attributes = Vec::new();
                for attr in e.attributes() {
                    let attr = attr.map_err(|err| xml_error(start, err.to_string()))?;
                    let key = attr.key.local_name().as_ref().to_owned();
                    if attr.key.as_ref().starts_with("xmlns") {
                        continue;
                    }
                    let value = attr
                        .normalized_value(quick_xml::XmlVersion::Implicit1_0)
                        .map_err(|err| xml_error(start, err.to_string()))?
                        .into_owned();
                    attributes.push((key, value));
                }
                let element = Element {
                    namespace,
                    name: e.local_name().as_ref().to_owned(),
                    attributes,
                    // Skip leading whitespace so the line is the tag's own.
                    line: line_of(start + leading_ws(&text[start as usize..]) as u64),
                    children: Vec::new(),
                };
                if matches!(event, Event::Start(_)) {
                    stack.push(element);
                } else if let Some(parent) = stack.last_mut() {
                    parent.children.push(element);
                }
            }
            Event::End(_) => {
                let done = stack.pop().expect("reader checks end names");
                match stack.last_mut() {
                    Some(parent) => parent.children.push(done),
                    None => unreachable!("root sentinel is never popped by a matched end"),
                }
            }
            Event::Eof => break,
            _ => {}
        }
    }
    if stack.len() != 1 {
        return Err(xml_error(
            text.len() as u64,
            "unexpected end of file: unclosed element".into(),
        ));
    }
    Ok(stack.pop().expect("sentinel"))
}

fn leading_ws(s: &str) -> usize {
    s.len() - s.trim_start().len()
}

struct Walker<'a> {
    file: PathBuf,
    placeholders: &'a Placeholders,
    warnings: Vec<Warning>,
}

/// A value that failed to parse, turned into a located error by the caller.
type Parsed<T> = Result<T, String>;

impl Walker<'_> {
    fn at(&self, line: usize) -> Location {
        Location {
            file: self.file.clone(),
            line,
        }
    }

    fn invalid(&self, line: usize, message: impl Into<String>) -> ConfigError {
        ConfigError::Invalid {
            at: self.at(line),
            message: message.into(),
        }
    }

    fn warn(&mut self, line: usize, message: impl Into<String>) {
        self.warnings.push(Warning {
            at: self.at(line),
            message: message.into(),
        });
    }

    fn unknown(&mut self, e: &Element, parent: &str) {
        self.warn(
            e.line,
            format!(
                "<{}> inside <{parent}> is not supported by amq-broker; ignored",
                e.name
            ),
        );
    }

    /// The attribute's value with placeholders resolved.
    fn attr(&self, e: &Element, name: &str) -> Result<Option<String>, ConfigError> {
        match e.attributes.iter().find(|(k, _)| k == name) {
            None => Ok(None),
            Some((_, v)) => self
                .placeholders
                .resolve(v)
                .map(Some)
                .map_err(|m| self.invalid(e.line, format!("<{}> {name}: {m}", e.name))),
        }
    }

    /// Parses an attribute with `parse`, naming element, attribute and value on error.
    fn typed<T>(
        &self,
        e: &Element,
        name: &str,
        parse: impl Fn(&str) -> Parsed<T>,
    ) -> Result<Option<T>, ConfigError> {
        let Some(v) = self.attr(e, name)? else {
            return Ok(None);
        };
        parse(v.trim())
            .map(Some)
            .map_err(|m| self.invalid(e.line, format!("<{}> {name}=\"{v}\": {m}", e.name)))
    }

    /// Warns about attributes not in `known`.
    fn check_attributes(&mut self, e: &Element, known: &[&str]) {
        for (k, _) in &e.attributes {
            if !known.contains(&k.as_str()) && !k.starts_with("schemaLocation") {
                self.warn(
                    e.line,
                    format!(
                        "attribute {k} of <{}> is not supported by amq-broker; ignored",
                        e.name
                    ),
                );
            }
        }
    }

    fn find_broker<'e>(&mut self, root: &'e Element) -> Result<&'e Element, ConfigError> {
        fn search<'e>(e: &'e Element, found: &mut Vec<&'e Element>) {
            for c in &e.children {
                if c.name == "broker" {
                    found.push(c);
                } else {
                    search(c, found);
                }
            }
        }
        let mut found = Vec::new();
        search(root, &mut found);
        match found.as_slice() {
            [] => Err(ConfigError::NoBroker {
                file: self.file.clone(),
            }),
            [b] => {
                if b.namespace.as_deref() != Some(CORE_NS) {
                    self.warn(
                        b.line,
                        format!("<broker> should be in namespace {CORE_NS}; read anyway"),
                    );
                }
                Ok(b)
            }
            [_, second, ..] => Err(self.invalid(
                second.line,
                "a second <broker> element: one file configures one broker",
            )),
        }
    }

    fn broker(&mut self, b: &Element) -> Result<BrokerConfig, ConfigError> {
        self.check_attributes(
            b,
            &[
                "brokerName",
                "dataDirectory",
                "persistent",
                "useJmx",
                "schedulerSupport",
                "advisorySupport",
                "start",
                "useShutdownHook",
            ],
        );
        let broker_name = self
            .attr(b, "brokerName")?
            .unwrap_or_else(|| "localhost".to_owned());
        if broker_name.is_empty() || broker_name.contains(['/', ' ', ',', ':']) {
            return Err(self.invalid(
                b.line,
                format!(
                    "brokerName {broker_name:?} must be non-empty, without '/', ' ', ',' or ':'"
                ),
            ));
        }
        let data_directory = PathBuf::from(self.attr(b, "dataDirectory")?.unwrap_or_else(|| {
            self.placeholders
                .get("activemq.data")
                .unwrap_or_else(|| "data".into())
        }));
        let persistent = self.typed(b, "persistent", parse_bool)?.unwrap_or(true);
        let mut config = BrokerConfig {
            file: self.file.clone(),
            broker_name,
            persistence: Persistence::KahaDb(KahaDb {
                directory: data_directory.join("kahadb"),
                journal_max_file_length: 32 * 1024 * 1024,
                lock_keep_alive_period: 0,
                shared_file_locker: None,
            }),
            data_directory,
            transport_connectors: Vec::new(),
            network_connectors: Vec::new(),
            authentication: None,
            policies: Policies::default(),
            memory_limit: 64 * 1024 * 1024,
            warnings: Vec::new(),
        };
        let mut persistence_line = None;
        for c in &b.children {
            match c.name.as_str() {
                "transportConnectors" => {
                    for t in &c.children {
                        if t.name == "transportConnector" {
                            let connector = self.transport_connector(t)?;
                            config.transport_connectors.push(connector);
                        } else {
                            self.unknown(t, &c.name);
                        }
                    }
                }
                "persistenceAdapter" => {
                    let adapters: Vec<&Element> = c.children.iter().collect();
                    if adapters.len() != 1 {
                        return Err(self.invalid(
                            c.line,
                            format!("<persistenceAdapter> needs exactly one store, found {}", adapters.len()),
                        ));
                    }
                    config.persistence = self.persistence(adapters[0], &config.data_directory)?;
                    persistence_line = Some(c.line);
                }
                "networkConnectors" => {
                    for n in &c.children {
                        if n.name == "networkConnector" {
                            let connector = self.network_connector(n)?;
                            config.network_connectors.push(connector);
                        } else {
                            self.unknown(n, &c.name);
                        }
                    }
                }
                "plugins" => self.plugins(c, &mut config)?,
                "destinationPolicy" => self.destination_policy(c, &mut config.policies)?,
                "systemUsage" => self.system_usage(c, &mut config)?,
                "managementContext" => self.warn(c.line, "<managementContext> ignored: amq-broker has no JMX; use the HTTP status endpoint (--status)"),
                "shutdownHooks" => {}
                _ => self.unknown(c, "broker"),
            }
        }
        if !persistent {
            if let Some(line) = persistence_line {
                if config.persistence != Persistence::Memory {
                    return Err(self.invalid(
                        line,
                        "<broker persistent=\"false\"> contradicts the <persistenceAdapter> store: remove one",
                    ));
                }
            }
            config.persistence = Persistence::Memory;
        }
        self.check_connectors(&config)?;
        config.warnings = std::mem::take(&mut self.warnings);
        Ok(config)
    }

    fn transport_connector(&mut self, t: &Element) -> Result<TransportConnector, ConfigError> {
        self.check_attributes(
            t,
            &[
                "name",
                "uri",
                "discoveryUri",
                "updateClusterClients",
                "rebalanceClusterClients",
                "updateClusterClientsOnRemove",
                "updateClusterFilter",
            ],
        );
        let uri = self.attr(t, "uri")?.ok_or_else(|| {
            self.invalid(
                t.line,
                "<transportConnector> needs a uri, e.g. stomp://0.0.0.0:61613",
            )
        })?;
        let (scheme, host, port, options) = parse_uri(&uri)
            .map_err(|m| self.invalid(t.line, format!("transportConnector uri {uri:?}: {m}")))?;
        let protocol = match scheme.as_str() {
            "stomp" | "stomp+nio" => Protocol::Stomp,
            "tcp" | "nio" => Protocol::OpenWire,
            other => Protocol::Other(other.to_owned()),
        };
        match &protocol {
            Protocol::Stomp => {}
            Protocol::OpenWire => self.warn(
                t.line,
                format!("OpenWire connector {uri} is not served yet: amq-broker speaks STOMP only for now"),
            ),
            Protocol::Other(s) => self.warn(t.line, format!("transport {s}:// is not served by amq-broker; ignored")),
        }
        for key in options.keys() {
            if ![
                "maximumConnections",
                "wireFormat.maxFrameSize",
                "transport.hbGracePeriodMultiplier",
            ]
            .contains(&key.as_str())
            {
                self.warn(
                    t.line,
                    format!("transport option {key} is not supported; ignored"),
                );
            }
        }
        let connector = TransportConnector {
            name: self.attr(t, "name")?.unwrap_or_else(|| scheme.clone()),
            uri,
            protocol,
            host,
            port,
            options,
            discovery_uri: self.attr(t, "discoveryUri")?,
            update_cluster_clients: self
                .typed(t, "updateClusterClients", parse_bool)?
                .unwrap_or(false),
            rebalance_cluster_clients: self
                .typed(t, "rebalanceClusterClients", parse_bool)?
                .unwrap_or(false),
            line: t.line,
        };
        if connector.maximum_connections().is_none()
            && connector.options.contains_key("maximumConnections")
        {
            return Err(self.invalid(t.line, "maximumConnections must be a number"));
        }
        if connector.max_frame_size().is_none()
            && connector.options.contains_key("wireFormat.maxFrameSize")
        {
            return Err(self.invalid(t.line, "wireFormat.maxFrameSize must be a number of bytes"));
        }
        Ok(connector)
    }

    /// Two connectors on one port, or two with one name, cannot both work.
    fn check_connectors(&self, config: &BrokerConfig) -> Result<(), ConfigError> {
        let mut names = HashSet::new();
        let mut ports = HashSet::new();
        for c in &config.transport_connectors {
            if !names.insert(c.name.as_str()) {
                return Err(self.invalid(
                    c.line,
                    format!("a second transportConnector named {:?}", c.name),
                ));
            }
            if c.port != 0 && !ports.insert(c.port) {
                return Err(self.invalid(
                    c.line,
                    format!(
                        "port {} is already used by another transportConnector",
                        c.port
                    ),
                ));
            }
        }
        let mut names = HashSet::new();
        for n in &config.network_connectors {
            if !names.insert(n.name.as_str()) {
                return Err(self.invalid(
                    n.line,
                    format!(
                        "a second networkConnector named {:?}: names must be unique",
                        n.name
                    ),
                ));
            }
        }
        Ok(())
    }

    fn persistence(
        &mut self,
        e: &Element,
        data_directory: &Path,
    ) -> Result<Persistence, ConfigError> {
        let directory = |w: &Self, default: &str| -> Result<PathBuf, ConfigError> {
            Ok(w.attr(e, "directory")?
                .map(PathBuf::from)
                .unwrap_or_else(|| data_directory.join(default)))
        };
        match e.name.as_str() {
            "kahaDB" => {
                self.check_attributes(
                    e,
                    &["directory", "lockKeepAlivePeriod", "journalMaxFileLength", "enableJournalDiskSyncs"],
                );
                let mut shared_file_locker = None;
                for c in &e.children {
                    if c.name != "locker" {
                        self.unknown(c, "kahaDB");
                        continue;
                    }
                    for l in &c.children {
                        if l.name == "shared-file-locker" {
                            self.check_attributes(l, &["lockAcquireSleepInterval", "failIfLocked"]);
                            shared_file_locker = Some(SharedFileLocker {
                                lock_acquire_sleep_interval: self
                                    .typed(l, "lockAcquireSleepInterval", parse_u64)?
                                    .unwrap_or(10_000),
                                fail_if_locked: self.typed(l, "failIfLocked", parse_bool)?.unwrap_or(false),
                            });
                        } else {
                            return Err(self.invalid(
                                l.line,
                                format!("locker <{}> is not supported; use <shared-file-locker>", l.name),
                            ));
                        }
                    }
                }
                if self.typed(e, "enableJournalDiskSyncs", parse_bool)? == Some(false) {
                    self.warn(e.line, "enableJournalDiskSyncs=\"false\" ignored: receipts always wait for fsync");
                }
                Ok(Persistence::KahaDb(KahaDb {
                    directory: directory(self, "kahadb")?,
                    journal_max_file_length: self
                        .typed(e, "journalMaxFileLength", parse_size)?
                        .unwrap_or(32 * 1024 * 1024),
                    lock_keep_alive_period: self.typed(e, "lockKeepAlivePeriod", parse_u64)?.unwrap_or(0),
                    shared_file_locker,
                }))
            }
            "replicatedLevelDB" => {
                self.check_attributes(
                    e,
                    &[
                        "directory",
                        "replicas",
                        "bind",
                        "zkAddress",
                        "zkPassword",
                        "zkPath",
                        "zkSessionTimeout",
                        "hostname",
                        "sync",
                        "securityToken",
                        "weight",
                        "slaveRedirect",
                        "logSize",
                    ],
                );
                for c in &e.children {
                    self.unknown(c, "replicatedLevelDB");
                }
                let replicas = self.typed(e, "replicas", parse_u32)?.unwrap_or(3);
                if replicas == 0 {
                    return Err(self.invalid(e.line, "replicas must be at least 1"));
                }
                let weight = self.typed(e, "weight", parse_u32)?.unwrap_or(1);
                let store = ReplicatedLevelDb {
                    directory: directory(self, "leveldb")?,
                    replicas,
                    bind: self.attr(e, "bind")?.unwrap_or_else(|| "tcp://0.0.0.0:61619".into()),
                    zk_address: self.attr(e, "zkAddress")?.unwrap_or_else(|| "127.0.0.1:2181".into()),
                    zk_password: self.attr(e, "zkPassword")?.filter(|p| !p.is_empty()).map(Secret),
                    zk_path: self.attr(e, "zkPath")?.unwrap_or_else(|| "/default".into()),
                    zk_session_timeout: self
                        .typed(e, "zkSessionTimeout", parse_timespan)?
                        .unwrap_or(Duration::from_secs(2)),
                    hostname: self.attr(e, "hostname")?,
                    sync: self.typed(e, "sync", parse_sync)?.unwrap_or(SyncTo::QUORUM_MEM),
                    security_token: Secret(self.attr(e, "securityToken")?.unwrap_or_default()),
                    weight,
                    slave_redirect: self.typed(e, "slaveRedirect", parse_bool)?.unwrap_or(false),
                };
                parse_uri(&store.bind)
                    .map_err(|m| self.invalid(e.line, format!("replicatedLevelDB bind {:?}: {m}", store.bind)))?;
                if !store.zk_path.starts_with('/') {
                    return Err(self.invalid(e.line, format!("zkPath {:?} must start with '/'", store.zk_path)));
                }
                if store.hostname.is_none() {
                    self.warn(e.line, "replicatedLevelDB without hostname: slaves may not reach the advertised address; set hostname");
                }
                Ok(Persistence::ReplicatedLevelDb(store))
            }
            "memoryPersistenceAdapter" => Ok(Persistence::Memory),
            other => Err(self.invalid(
                e.line,
                format!("persistence adapter <{other}> is not supported; use <kahaDB>, <replicatedLevelDB> or <memoryPersistenceAdapter>"),
            )),
        }
    }

    fn network_connector(&mut self, n: &Element) -> Result<NetworkConnector, ConfigError> {
        self.check_attributes(
            n,
            &[
                "name",
                "uri",
                "networkTTL",
                "messageTTL",
                "consumerTTL",
                "duplex",
                "conduitSubscriptions",
                "decreaseNetworkConsumerPriority",
                "prefetchSize",
                "dynamicOnly",
                "userName",
                "password",
            ],
        );
        let uri = self.attr(n, "uri")?.ok_or_else(|| {
            self.invalid(
                n.line,
                "<networkConnector> needs a uri, e.g. static:(tcp://host:61616)",
            )
        })?;
        if !["static:", "masterslave:", "multicast:", "tcp:", "stomp:"]
            .iter()
            .any(|p| uri.starts_with(p))
        {
            return Err(self.invalid(
                n.line,
                format!("networkConnector uri {uri:?}: expected static:(...), masterslave:(...) or multicast://"),
            ));
        }
        let ttl = self.typed(n, "networkTTL", parse_i32)?.unwrap_or(1);
        let prefetch_size = self.typed(n, "prefetchSize", parse_u32)?.unwrap_or(1000);
        if prefetch_size == 0 {
            return Err(self.invalid(n.line, "networkConnector prefetchSize must be > 0"));
        }
        let mut connector = NetworkConnector {
            name: self.attr(n, "name")?.unwrap_or_else(|| "NC".into()),
            uri,
            message_ttl: self.typed(n, "messageTTL", parse_i32)?.unwrap_or(ttl),
            consumer_ttl: self.typed(n, "consumerTTL", parse_i32)?.unwrap_or(ttl),
            duplex: self.typed(n, "duplex", parse_bool)?.unwrap_or(false),
            conduit_subscriptions: self
                .typed(n, "conduitSubscriptions", parse_bool)?
                .unwrap_or(true),
            decrease_network_consumer_priority: self
                .typed(n, "decreaseNetworkConsumerPriority", parse_bool)?
                .unwrap_or(true),
            prefetch_size,
            dynamic_only: self.typed(n, "dynamicOnly", parse_bool)?.unwrap_or(false),
            user_name: self.attr(n, "userName")?,
            password: self.attr(n, "password")?.map(Secret),
            excluded_destinations: Vec::new(),
            dynamically_included_destinations: Vec::new(),
            statically_included_destinations: Vec::new(),
            line: n.line,
        };
        for c in &n.children {
            let list = match c.name.as_str() {
                "excludedDestinations" => &mut connector.excluded_destinations,
                "dynamicallyIncludedDestinations" => {
                    &mut connector.dynamically_included_destinations
                }
                "staticallyIncludedDestinations" => &mut connector.statically_included_destinations,
                _ => {
                    self.unknown(c, "networkConnector");
                    continue;
                }
            };
            for d in &c.children {
                let queue = match d.name.as_str() {
                    "queue" => true,
                    "topic" => false,
                    other => {
                        return Err(self.invalid(
                            d.line,
                            format!("<{other}> in <{}>: expected <queue> or <topic>", c.name),
                        ))
                    }
                };
                let name = self
                    .attr(d, "physicalName")?
                    .filter(|s| !s.is_empty())
                    .ok_or_else(|| {
                        self.invalid(d.line, format!("<{}> needs physicalName", d.name))
                    })?;
                list.push(DestinationPattern {
                    queue,
                    pattern: name,
                });
            }
        }
        Ok(connector)
    }

    fn plugins(&mut self, plugins: &Element, config: &mut BrokerConfig) -> Result<(), ConfigError> {
        for p in &plugins.children {
            match p.name.as_str() {
                "simpleAuthenticationPlugin" => {
                    self.check_attributes(p, &["anonymousAccessAllowed"]);
                    let mut auth = Authentication {
                        users: Vec::new(),
                        anonymous_access_allowed: self
                            .typed(p, "anonymousAccessAllowed", parse_bool)?
                            .unwrap_or(false),
                    };
                    let mut seen = HashSet::new();
                    for users in &p.children {
                        if users.name != "users" {
                            self.unknown(users, &p.name);
                            continue;
                        }
                        for u in &users.children {
                            if u.name != "authenticationUser" {
                                self.unknown(u, "users");
                                continue;
                            }
                            self.check_attributes(u, &["username", "password", "groups"]);
                            let username = self
                                .attr(u, "username")?
                                .filter(|s| !s.is_empty())
                                .ok_or_else(|| self.invalid(u.line, "<authenticationUser> needs a username"))?;
                            if !seen.insert(username.clone()) {
                                return Err(self.invalid(u.line, format!("user {username:?} is defined twice")));
                            }
                            let groups = self
                                .attr(u, "groups")?
                                .unwrap_or_default()
                                .split(',')
                                .map(str::trim)
                                .filter(|g| !g.is_empty())
                                .map(String::from)
                                .collect();
                            auth.users.push(User {
                                username,
                                password: Secret(self.attr(u, "password")?.unwrap_or_default()),
                                groups,
                            });
                        }
                    }
                    config.authentication = Some(auth);
                }
                "redeliveryPlugin" => self.redelivery_plugin(p, &mut config.policies)?,
                "authorizationPlugin" => self.warn(
                    p.line,
                    "<authorizationPlugin> is not enforced by amq-broker: authenticated users may use every destination",
                ),
                _ => self.unknown(p, "plugins"),
            }
        }
        Ok(())
    }

    fn redelivery_policy(&mut self, r: &Element) -> Result<RedeliveryPolicy, ConfigError> {
        self.check_attributes(r, &["maximumRedeliveries", "queue", "topic"]);
        Ok(RedeliveryPolicy {
            maximum_redeliveries: self
                .typed(r, "maximumRedeliveries", parse_i32)?
                .unwrap_or(RedeliveryPolicy::default().maximum_redeliveries),
        })
    }

    /// `<redeliveryPlugin><redeliveryPolicyMap><redeliveryPolicyMap>` with a
    /// `<defaultEntry>` and `<redeliveryPolicyEntries>` (Spring's doubled
    /// property/bean nesting).
    fn redelivery_plugin(
        &mut self,
        p: &Element,
        policies: &mut Policies,
    ) -> Result<(), ConfigError> {
        self.check_attributes(
            p,
            &["fallbackToDeadLetter", "sendToDlqIfMaxRetriesExceeded"],
        );
        for outer in &p.children {
            if outer.name != "redeliveryPolicyMap" {
                self.unknown(outer, &p.name);
                continue;
            }
            for map in outer
                .children
                .iter()
                .filter(|m| m.name == "redeliveryPolicyMap")
            {
                for part in &map.children {
                    match part.name.as_str() {
                        "defaultEntry" => {
                            for r in &part.children {
                                policies.default_redelivery = self.redelivery_policy(r)?;
                            }
                        }
                        "redeliveryPolicyEntries" => {
                            for r in &part.children {
                                let pattern = self.pattern_of(r)?;
                                let policy = self.redelivery_policy(r)?;
                                policies.redelivery_entries.push((pattern, policy));
                            }
                        }
                        _ => self.unknown(part, "redeliveryPolicyMap"),
                    }
                }
            }
        }
        Ok(())
    }

    /// The `queue=` or `topic=` pattern of a policy element.
    fn pattern_of(&self, e: &Element) -> Result<DestinationPattern, ConfigError> {
        match (self.attr(e, "queue")?, self.attr(e, "topic")?) {
            (Some(q), None) => Ok(DestinationPattern::queue(q)),
            (None, Some(t)) => Ok(DestinationPattern::topic(t)),
            _ => Err(self.invalid(
                e.line,
                format!(
                    "<{}> needs exactly one of queue=\"...\" or topic=\"...\"",
                    e.name
                ),
            )),
        }
    }

    fn destination_policy(
        &mut self,
        d: &Element,
        policies: &mut Policies,
    ) -> Result<(), ConfigError> {
        let entries = d
            .children
            .iter()
            .filter(|m| m.name == "policyMap")
            .flat_map(|m| &m.children)
            .filter(|pe| pe.name == "policyEntries")
            .flat_map(|pe| &pe.children);
        for e in entries {
            if e.name != "policyEntry" {
                self.unknown(e, "policyEntries");
                continue;
            }
            self.check_attributes(
                e,
                &[
                    "queue",
                    "topic",
                    "memoryLimit",
                    "producerFlowControl",
                    "gcInactiveDestinations",
                    "expireMessagesPeriod",
                    "enableAudit",
                ],
            );
            let mut entry = PolicyEntry {
                destinations: self.pattern_of(e)?,
                memory_limit: self.typed(e, "memoryLimit", parse_size)?,
                producer_flow_control: self
                    .typed(e, "producerFlowControl", parse_bool)?
                    .unwrap_or(true),
                dead_letter_strategy: None,
                network_bridge_filter: None,
            };
            if entry.memory_limit.is_some() {
                self.warn(
                    e.line,
                    "policyEntry memoryLimit is not enforced per destination; the broker-wide <systemUsage><memoryUsage limit> applies",
                );
            }
            if !entry.producer_flow_control {
                self.warn(
                    e.line,
                    "producerFlowControl=\"false\" is not supported: producers of non-persistent messages always wait while memory is full",
                );
            }
            for c in &e.children {
                if c.name == "networkBridgeFilterFactory" {
                    for f in &c.children {
                        if f.name != "conditionalNetworkBridgeFilterFactory" {
                            self.unknown(f, "networkBridgeFilterFactory");
                            continue;
                        }
                        self.check_attributes(f, &["replayWhenNoConsumers", "replayDelay"]);
                        entry.network_bridge_filter = Some(NetworkBridgeFilter {
                            replay_when_no_consumers: self
                                .typed(f, "replayWhenNoConsumers", parse_bool)?
                                .unwrap_or(false),
                            replay_delay_ms: self.typed(f, "replayDelay", parse_u64)?.unwrap_or(0),
                        });
                    }
                    continue;
                }
                if c.name != "deadLetterStrategy" {
                    self.unknown(c, "policyEntry");
                    continue;
                }
                for s in &c.children {
                    let process_expired =
                        self.typed(s, "processExpired", parse_bool)?.unwrap_or(true);
                    entry.dead_letter_strategy = Some(match s.name.as_str() {
                        "sharedDeadLetterStrategy" => DeadLetterStrategy::Shared {
                            queue: "ActiveMQ.DLQ".into(),
                            process_expired,
                        },
                        "individualDeadLetterStrategy" => DeadLetterStrategy::Individual {
                            queue_prefix: self.attr(s, "queuePrefix")?.unwrap_or_else(|| "ActiveMQ.DLQ.Queue.".into()),
                            topic_prefix: self.attr(s, "topicPrefix")?.unwrap_or_else(|| "ActiveMQ.DLQ.Topic.".into()),
                            process_expired,
                        },
                        "discarding" | "discardingDLQBroker" => DeadLetterStrategy::Discarding,
                        other => {
                            return Err(self.invalid(
                                s.line,
                                format!("dead letter strategy <{other}> is not supported; use sharedDeadLetterStrategy, individualDeadLetterStrategy or discarding"),
                            ))
                        }
                    });
                }
            }
            policies.entries.push(entry);
        }
        Ok(())
    }

    /// `<systemUsage><systemUsage><memoryUsage><memoryUsage limit="64 mb"/>`.
    fn system_usage(&mut self, s: &Element, config: &mut BrokerConfig) -> Result<(), ConfigError> {
        for inner in &s.children {
            for usage in &inner.children {
                for u in &usage.children {
                    match u.name.as_str() {
                        "memoryUsage" => {
                            if let Some(limit) = self.typed(u, "limit", parse_size)? {
                                config.memory_limit = limit;
                            } else if u.attributes.iter().any(|(k, _)| k == "percentOfJvmHeap") {
                                self.warn(u.line, "memoryUsage percentOfJvmHeap has no meaning without a JVM; using 64 mb (set limit=\"...\")");
                            }
                        }
                        "storeUsage" | "tempUsage" => {}
                        _ => self.unknown(u, &usage.name),
                    }
                }
            }
        }
        Ok(())
    }
}

/// `scheme://host:port?k=v&...` → parts. Host may be `[v6]`.
pub fn parse_uri(uri: &str) -> Parsed<(String, String, u16, BTreeMap<String, String>)> {
    let (scheme, rest) = uri.split_once("://").ok_or("expected scheme://host:port")?;
    let (authority, query) = rest.split_once('?').unwrap_or((rest, ""));
    let authority = authority.trim_end_matches('/');
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (h, p) = v6.split_once("]:").ok_or("expected [host]:port")?;
        (h, p)
    } else {
        authority.rsplit_once(':').ok_or("expected host:port")?
    };
    if host.is_empty() {
        return Err("empty host".into());
    }
    let port: u16 = port
        .parse()
        .map_err(|_| format!("port {port:?} is not a number 0-65535"))?;
    let mut options = BTreeMap::new();
    for pair in query.split('&').filter(|s| !s.is_empty()) {
        let (k, v) = pair
            .split_once('=')
            .ok_or_else(|| format!("option {pair:?} is not key=value"))?;
        options.insert(k.to_owned(), v.to_owned());
    }
    Ok((scheme.to_ascii_lowercase(), host.to_owned(), port, options))
}

fn parse_bool(s: &str) -> Parsed<bool> {
    match s.to_ascii_lowercase().as_str() {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err("expected true or false".into()),
    }
}

fn parse_u64(s: &str) -> Parsed<u64> {
    s.parse().map_err(|_| "expected a whole number".into())
}

fn parse_u32(s: &str) -> Parsed<u32> {
    s.parse().map_err(|_| "expected a whole number".into())
}

fn parse_i32(s: &str) -> Parsed<i32> {
    s.parse().map_err(|_| "expected a whole number".into())
}

/// ActiveMQ sizes: `1024`, `64 mb`, `1gb`, `32kb` (binary multiples).
pub fn parse_size(s: &str) -> Parsed<u64> {
    let lower = s.trim().to_ascii_lowercase();
    let split = lower
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(lower.len());
    let (digits, unit) = lower.split_at(split);
    let n: u64 = digits
        .parse()
        .map_err(|_| "expected a size such as 64 mb".to_owned())?;
    let mult: u64 = match unit.trim() {
        "" | "b" => 1,
        "k" | "kb" => 1 << 10,
        "m" | "mb" => 1 << 20,
        "g" | "gb" => 1 << 30,
        "t" | "tb" => 1 << 40,
        u => return Err(format!("unknown size unit {u:?}: use kb, mb, gb or tb")),
    };
    n.checked_mul(mult).ok_or_else(|| "size too large".into())
}

/// Time spans: `2s`, `1500ms`, `1m`, or plain milliseconds.
pub fn parse_timespan(s: &str) -> Parsed<Duration> {
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (digits, unit) = s.split_at(split);
    let n: u64 = digits
        .parse()
        .map_err(|_| "expected a time span such as 2s".to_owned())?;
    match unit.trim() {
        "" | "ms" => Ok(Duration::from_millis(n)),
        "s" => Ok(Duration::from_secs(n)),
        "m" | "min" => Ok(Duration::from_secs(n * 60)),
        "h" => Ok(Duration::from_secs(n * 3600)),
        u => Err(format!("unknown time unit {u:?}: use ms, s, m or h")),
    }
}

fn parse_sync(s: &str) -> Parsed<SyncTo> {
    let mut sync = SyncTo::default();
    for flag in s.split(',').map(str::trim) {
        match flag {
            "local_mem" => {}
            "local_disk" => sync.local_disk = true,
            "remote_mem" | "quorum_mem" => sync.remote_mem = true,
            "remote_disk" => sync.remote_disk = true,
            "quorum_disk" => {
                sync.remote_disk = true;
                sync.local_disk = true;
            }
            other => {
                return Err(format!(
                    "unknown sync value {other:?}: use local_mem, local_disk, remote_mem, remote_disk, quorum_mem or quorum_disk"
                ))
            }
        }
    }
    Ok(sync)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(xml: &str) -> Result<BrokerConfig, ConfigError> {
        let mut p = Placeholders::default();
        p.set("activemq.base", "/srv/amq");
        p.set("activemq.data", "/srv/amq/data");
        BrokerConfig::parse(xml, Path::new("activemq.xml"), &p)
    }

    fn wrap(inner: &str) -> String {
        format!(
            r#"<beans xmlns="http://www.springframework.org/schema/beans">
  <broker xmlns="http://activemq.apache.org/schema/core" brokerName="b1" dataDirectory="${{activemq.data}}">
{inner}
  </broker>
</beans>"#
        )
    }

    #[test]
    fn reads_debians_stock_file() {
        let path = Path::new("/etc/activemq/instances-available/main/activemq.xml");
        let Ok(text) = std::fs::read_to_string(path) else {
            return; // Debian's activemq package not installed here.
        };
        let c = BrokerConfig::parse(&text, path, &{
            let mut p = Placeholders::default();
            p.set("activemq.base", "/var/lib/activemq/main");
            p
        })
        .unwrap();
        assert_eq!(c.broker_name, "localhost");
        assert_eq!(
            c.data_directory,
            PathBuf::from("/var/lib/activemq/main/data")
        );
        assert!(
            matches!(&c.persistence, Persistence::KahaDb(k) if k.directory == Path::new("/var/lib/activemq/main/data/kahadb"))
        );
        assert_eq!(c.transport_connectors[0].protocol, Protocol::OpenWire);
        assert_eq!(c.transport_connectors[0].port, 61616);
        assert_eq!(c.warnings.len(), 1, "{:?}", c.warnings);
        assert!(c.warnings[0].message.contains("OpenWire"));
    }

    #[test]
    fn reads_upstream_default_style_file() {
        let xml = r#"<beans
  xmlns="http://www.springframework.org/schema/beans"
  xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"
  xsi:schemaLocation="http://www.springframework.org/schema/beans http://www.springframework.org/schema/beans/spring-beans.xsd">
    <bean class="org.springframework.beans.factory.config.PropertyPlaceholderConfigurer">
        <property name="locations"><value>file:${activemq.conf}/credentials.properties</value></property>
    </bean>
    <broker xmlns="http://activemq.apache.org/schema/core" brokerName="localhost" dataDirectory="${activemq.data}">
        <destinationPolicy>
            <policyMap>
              <policyEntries>
                <policyEntry topic=">" >
                  <pendingMessageLimitStrategy>
                    <constantPendingMessageLimitStrategy limit="1000"/>
                  </pendingMessageLimitStrategy>
                </policyEntry>
              </policyEntries>
            </policyMap>
        </destinationPolicy>
        <managementContext>
            <managementContext createConnector="false"/>
        </managementContext>
        <persistenceAdapter>
            <kahaDB directory="${activemq.data}/kahadb"/>
        </persistenceAdapter>
          <systemUsage>
            <systemUsage>
                <memoryUsage>
                    <memoryUsage percentOfJvmHeap="70" />
                </memoryUsage>
                <storeUsage>
                    <storeUsage limit="100 gb"/>
                </storeUsage>
            </systemUsage>
        </systemUsage>
        <transportConnectors>
            <transportConnector name="openwire" uri="tcp://0.0.0.0:61616?maximumConnections=1000&amp;wireFormat.maxFrameSize=104857600"/>
            <transportConnector name="amqp" uri="amqp://0.0.0.0:5672?maximumConnections=1000&amp;wireFormat.maxFrameSize=104857600"/>
            <transportConnector name="stomp" uri="stomp://0.0.0.0:61613?maximumConnections=1000&amp;wireFormat.maxFrameSize=104857600"/>
        </transportConnectors>
        <shutdownHooks>
            <bean xmlns="http://www.springframework.org/schema/beans" class="org.apache.activemq.hooks.SpringContextHook" />
        </shutdownHooks>
    </broker>
    <import resource="jetty.xml"/>
</beans>"#;
        let c = parse(xml).unwrap();
        let stomp: Vec<_> = c.stomp_connectors().collect();
        assert_eq!(stomp.len(), 1);
        assert_eq!(stomp[0].bind_address(), "0.0.0.0:61613");
        assert_eq!(stomp[0].maximum_connections(), Some(1000));
        assert_eq!(stomp[0].max_frame_size(), Some(104857600));
        let lines: Vec<usize> = c.warnings.iter().map(|w| w.at.line).collect();
        // pendingMessageLimitStrategy, managementContext, percentOfJvmHeap, openwire, amqp.
        assert_eq!(lines, vec![13, 20, 29, 37, 38], "{:#?}", c.warnings);
        assert!(c.warnings[3].message.contains("not served yet"));
    }

    #[test]
    fn reads_replicated_leveldb_network_and_auth() {
        let c = parse(&wrap(
            r#"<persistenceAdapter>
      <replicatedLevelDB directory="${activemq.data}/leveldb" replicas="3" bind="tcp://0.0.0.0:61619"
          zkAddress="127.0.0.1:2181,127.0.0.1:2182" zkPassword="zk-secret" zkPath="/activemq/leveldb-stores"
          zkSessionTimeout="3s" hostname="node1" sync="quorum_disk" securityToken="tok" weight="2"/>
    </persistenceAdapter>
    <networkConnectors>
      <networkConnector name="nc1" uri="static:(tcp://node2:61616)" networkTTL="3" consumerTTL="1" duplex="true">
        <excludedDestinations><queue physicalName="Private.>"/></excludedDestinations>
        <staticallyIncludedDestinations><topic physicalName="Prices"/></staticallyIncludedDestinations>
      </networkConnector>
    </networkConnectors>
    <plugins>
      <simpleAuthenticationPlugin>
        <users>
          <authenticationUser username="admin" password="s3cret" groups="admins, users"/>
        </users>
      </simpleAuthenticationPlugin>
      <redeliveryPlugin>
        <redeliveryPolicyMap><redeliveryPolicyMap>
          <redeliveryPolicyEntries><redeliveryPolicy queue="Orders.>" maximumRedeliveries="1"/></redeliveryPolicyEntries>
          <defaultEntry><redeliveryPolicy maximumRedeliveries="3"/></defaultEntry>
        </redeliveryPolicyMap></redeliveryPolicyMap>
      </redeliveryPlugin>
    </plugins>
    <transportConnectors><transportConnector name="stomp" uri="stomp://127.0.0.1:61613"/></transportConnectors>"#,
        ))
        .unwrap();
        let Persistence::ReplicatedLevelDb(r) = &c.persistence else {
            panic!("{:?}", c.persistence)
        };
        assert_eq!(r.directory, PathBuf::from("/srv/amq/data/leveldb"));
        assert_eq!(r.quorum(), 2);
        assert_eq!(r.zk_session_timeout, Duration::from_secs(3));
        assert_eq!(r.zk_password.as_ref().unwrap().expose(), "zk-secret");
        assert!(r.sync.local_disk && r.sync.remote_disk);
        assert_eq!(r.weight, 2);
        assert!(
            !format!("{c:?}").contains("zk-secret"),
            "secrets leak through Debug"
        );
        assert!(!format!("{c:?}").contains("s3cret"));
        let n = &c.network_connectors[0];
        assert_eq!((n.message_ttl, n.consumer_ttl, n.duplex), (3, 1, true));
        assert!(n.excluded_destinations[0].matches(&Destination::Queue("Private.a.b".into())));
        assert!(!n.excluded_destinations[0].matches(&Destination::Topic("Private.a".into())));
        let auth = c.authentication.as_ref().unwrap();
        assert_eq!(
            auth.authenticate("admin", "s3cret").unwrap().groups,
            ["admins", "users"]
        );
        assert!(auth.authenticate("admin", "wrong").is_none());
        assert_eq!(
            c.policies
                .redelivery(&Destination::Queue("Orders.x".into()))
                .maximum_redeliveries,
            1
        );
        assert_eq!(
            c.policies
                .redelivery(&Destination::Queue("Other".into()))
                .maximum_redeliveries,
            3
        );
        assert!(c.warnings.is_empty(), "{:?}", c.warnings);
    }

    #[test]
    fn shared_file_locker_and_dead_letter_strategies() {
        let c = parse(&wrap(
            r#"<persistenceAdapter>
      <kahaDB directory="/shared/kahadb" lockKeepAlivePeriod="2000">
        <locker><shared-file-locker lockAcquireSleepInterval="1000"/></locker>
      </kahaDB>
    </persistenceAdapter>
    <destinationPolicy><policyMap><policyEntries>
      <policyEntry queue="Orders.>"><deadLetterStrategy><individualDeadLetterStrategy queuePrefix="DLQ." processExpired="false"/></deadLetterStrategy></policyEntry>
    </policyEntries></policyMap></destinationPolicy>
    <systemUsage><systemUsage><memoryUsage><memoryUsage limit="8 mb"/></memoryUsage></systemUsage></systemUsage>"#,
        ))
        .unwrap();
        let Persistence::KahaDb(k) = &c.persistence else {
            panic!()
        };
        assert_eq!(k.lock_keep_alive_period, 2000);
        assert_eq!(
            k.shared_file_locker
                .as_ref()
                .unwrap()
                .lock_acquire_sleep_interval,
            1000
        );
        assert_eq!(c.memory_limit, 8 << 20);
        let orders = Destination::Queue("Orders.eu".into());
        let s = c.policies.dead_letter_strategy(&orders);
        assert_eq!(
            s.dead_letter_queue(&orders, false),
            Some(Destination::Queue("DLQ.Orders.eu".into()))
        );
        assert_eq!(s.dead_letter_queue(&orders, true), None);
        let other = Destination::Queue("x".into());
        assert_eq!(
            c.policies
                .dead_letter_strategy(&other)
                .dead_letter_queue(&other, true),
            Some(Destination::dlq())
        );
    }

    #[test]
    fn errors_name_file_and_line() {
        let cases = [
            (wrap("<transportConnectors>\n<transportConnector uri=\"stomp://h:99999\"/></transportConnectors>"), 4, "port"),
            (wrap("<transportConnectors>\n<transportConnector name=\"a\" uri=\"stomp://h:1\"/>\n<transportConnector name=\"b\" uri=\"tcp://h:1\"/></transportConnectors>"), 5, "already used"),
            (wrap("<persistenceAdapter><kahaDB/>\n<replicatedLevelDB/></persistenceAdapter>"), 3, "exactly one"),
            (wrap("<persistenceAdapter><replicatedLevelDB replicas=\"zero\"/></persistenceAdapter>"), 3, "replicas"),
            (wrap("<transportConnectors><transportConnector uri=\"stomp://${nope.nothing}:1\"/></transportConnectors>"), 3, "nope.nothing"),
            (wrap("<plugins><simpleAuthenticationPlugin><users>\n<authenticationUser username=\"a\"/>\n<authenticationUser username=\"a\"/></users></simpleAuthenticationPlugin></plugins>"), 5, "twice"),
            (wrap("<transportConnectors>\n<transportConnector uri=\"stomp://h:1\">\n</transportConnectors>"), 5, "malformed"),
        ];
        for (xml, line, what) in cases {
            let err = parse(&xml).unwrap_err().to_string();
            assert!(
                err.starts_with(&format!("activemq.xml:{line}:")),
                "{err} (want line {line})"
            );
            assert!(err.contains(what), "{err} (want {what})");
        }
        assert!(matches!(
            parse("<beans/>"),
            Err(ConfigError::NoBroker { .. })
        ));
    }

    #[test]
    fn unenforced_policy_attributes_warn() {
        let c = parse(&wrap(
            r#"<destinationPolicy><policyMap><policyEntries>
      <policyEntry queue=">" producerFlowControl="false" memoryLimit="1mb"/>
    </policyEntries></policyMap></destinationPolicy>"#,
        ))
        .unwrap();
        let msgs: Vec<&str> = c.warnings.iter().map(|w| w.message.as_str()).collect();
        assert_eq!(c.warnings.len(), 2, "{msgs:?}");
        assert!(msgs[0].contains("memoryLimit") && msgs[1].contains("producerFlowControl"));
        assert_eq!(c.policies.entries[0].memory_limit, Some(1 << 20));
    }

    #[test]
    fn persistent_false_contradicts_a_store() {
        let xml = r#"<broker xmlns="http://activemq.apache.org/schema/core" persistent="false">
<persistenceAdapter><kahaDB directory="/x"/></persistenceAdapter></broker>"#;
        assert!(parse(xml).unwrap_err().to_string().contains("contradicts"));
        let xml = r#"<broker xmlns="http://activemq.apache.org/schema/core" persistent="false"/>"#;
        assert_eq!(parse(xml).unwrap().persistence, Persistence::Memory);
    }

    #[test]
    fn xbean_prefix_and_sizes() {
        assert_eq!(
            strip_xbean(Path::new("xbean:file:/etc/a.xml")),
            PathBuf::from("/etc/a.xml")
        );
        assert_eq!(
            strip_xbean(Path::new("/etc/a.xml")),
            PathBuf::from("/etc/a.xml")
        );
        assert_eq!(parse_size("64 mb"), Ok(64 << 20));
        assert_eq!(parse_size("1gb"), Ok(1 << 30));
        assert!(parse_size("5 parsecs").is_err());
        assert_eq!(parse_timespan("1500ms"), Ok(Duration::from_millis(1500)));
    }
}
