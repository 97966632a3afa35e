//! Where a network connector's bridges go, and how they reconnect.
//!
//! | uri | services |
//! |---|---|
//! | `static:(stomp://a:61613,stomp://b:61613)?opts` | one bridge per URI (a member may itself be a `failover:(...)` URL) |
//! | `stomp://a:61613` | one bridge |
//! | `masterslave:(stomp://m:61613,stomp://s:61613)?opts` | one bridge over `failover:(m,s)?randomize=false&maxReconnectAttempts=0`: it reaches whichever member is master, and after a failover the next attempt finds the new one |
//! | `multicast://default`, `multicast://239.1.2.3:6255?group=g` | one bridge per broker announcing itself on the group |
//!
//! Reconnecting is `SimpleDiscoveryAgent`'s: after a failed or lost bridge
//! wait `initialReconnectDelay` (1000 ms; multicast 5000 ms), growing by
//! `backOffMultiplier` (2) up to `maxReconnectDelay` (30000 ms) with
//! `useExponentialBackOff` (true; multicast false); give up after
//! `maxReconnectAttempts` failures (0 = never); a bridge that stayed up
//! `minConnectTime` (5000 ms) starts the sequence over.
//!
//! Multicast (`MulticastDiscoveryAgent`): a broker whose transport connector
//! has `discoveryUri="multicast://..."` announces its STOMP connector every
//! `keepAliveInterval` (500 ms) as `GROUP.ActiveMQ-4.alive.%BROKER%URI` to
//! 239.255.2.3:6155 by default with `timeToLive` 1, and `dead.` once when it
//! stops; a peer unheard of for 10 keep-alive intervals is expired.

use super::bridge::{self, Ended};
use super::{BridgeState, BridgeStats};
use crate::broker::Broker;
use crate::client::ConnectOptions;
use crate::config::{BrokerConfig, NetworkConnector};
use crate::failover::{Backoff, FailoverClient, FailoverOptions, FailoverUri};
use std::collections::{BTreeMap, HashMap};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::UdpSocket;
use tokio_util::sync::CancellationToken;

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum DiscoveryError {
    #[error("network connector uri {uri:?}: {reason}")]
    Uri { uri: String, reason: String },
    #[error("network connector uri {uri:?}: unknown option {name:?} (known: {known})")]
    UnknownOption {
        uri: String,
        name: String,
        known: &'static str,
    },
}

/// The static agent's reconnect options.
#[derive(Debug, Clone, PartialEq)]
pub struct Reconnect {
    pub initial_delay: Duration,
    pub max_delay: Duration,
    pub exponential: bool,
    pub multiplier: f64,
    /// Failures before giving up; 0 = never.
    pub max_attempts: u32,
    pub min_connect_time: Duration,
}

impl Reconnect {
    fn static_defaults() -> Self {
        Reconnect {
            initial_delay: Duration::from_millis(1000),
            max_delay: Duration::from_millis(30_000),
            exponential: true,
            multiplier: 2.0,
            max_attempts: 0,
            min_connect_time: Duration::from_millis(5000),
        }
    }

    fn multicast_defaults() -> Self {
        Reconnect {
            initial_delay: Duration::from_millis(5000),
            exponential: false,
            ..Reconnect::static_defaults()
        }
    }

    /// Sets a query option; `false` if it is not a reconnect option.
    fn set(&mut self, uri: &str, name: &str, value: &str) -> Result<bool, DiscoveryError> {
        let bad = |what: &str| DiscoveryError::Uri {
            uri: uri.to_owned(),
            reason: format!("{name}={value} is not {what}"),
        };
        let millis = |v: &str| {
            v.parse::<u64>()
                .map(Duration::from_millis)
                .map_err(|_| bad("milliseconds"))
        };
        match name {
            "initialReconnectDelay" => self.initial_delay = millis(value)?,
            "maxReconnectDelay" => self.max_delay = millis(value)?,
            "minConnectTime" => self.min_connect_time = millis(value)?,
            "useExponentialBackOff" => {
                self.exponential = value.parse().map_err(|_| bad("true or false"))?
            }
            "backOffMultiplier" => {
                self.multiplier = value
                    .parse::<f64>()
                    .ok()
                    .filter(|m| *m >= 1.0)
                    .ok_or_else(|| bad("a number >= 1"))?
            }
            "maxReconnectAttempts" => {
                // ActiveMQ: 0 or negative means unlimited.
                let n: i64 = value.parse().map_err(|_| bad("an integer"))?;
                self.max_attempts = n.clamp(0, u32::MAX as i64) as u32;
            }
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// The delay sequence, with the failover client's arithmetic.
    fn backoff(&self) -> Backoff {
        Backoff::new(&FailoverOptions {
            initial_reconnect_delay: self.initial_delay,
            max_reconnect_delay: self.max_delay,
            use_exponential_back_off: self.exponential,
            reconnect_delay_exponent: self.multiplier,
            ..FailoverOptions::default()
        })
    }
}

/// A multicast group: address, port and group name.
#[derive(Debug, Clone, PartialEq)]
pub struct Group {
    pub addr: Ipv4Addr,
    pub port: u16,
    pub name: String,
    pub ttl: u32,
    pub keep_alive: Duration,
    /// The interface to join and send on: an IPv4 address (`interface=`) or
    /// a NIC name (`networkInterface=`, `joinNetworkInterface=`); empty: the
    /// routing table decides.
    pub interface: String,
}

pub const DEFAULT_GROUP_ADDR: Ipv4Addr = Ipv4Addr::new(239, 255, 2, 3);
pub const DEFAULT_GROUP_PORT: u16 = 6155;

impl Group {
    /// `multicast://default` or `multicast://ADDR:PORT?group=...`; other
    /// query options are returned for the caller.
    pub fn parse(uri: &str) -> Result<(Group, Vec<(String, String)>), DiscoveryError> {
        let err = |reason: &str| DiscoveryError::Uri {
            uri: uri.to_owned(),
            reason: reason.to_owned(),
        };
        let rest = uri
            .strip_prefix("multicast://")
            .ok_or_else(|| err("expected multicast://default or multicast://ADDR:PORT"))?;
        let (authority, query) = rest.split_once('?').unwrap_or((rest, ""));
        let authority = authority.trim_end_matches('/');
        let (addr, port) = if authority == "default" || authority.is_empty() {
            (DEFAULT_GROUP_ADDR, DEFAULT_GROUP_PORT)
        } else {
            let (h, p) = authority.rsplit_once(':').unwrap_or((authority, ""));
            let addr: Ipv4Addr = h
                .parse()
                .map_err(|_| err("the group address must be an IPv4 multicast address"))?;
            let port = if p.is_empty() {
                DEFAULT_GROUP_PORT
            } else {
                p.parse().map_err(|_| err("bad port"))?
            };
            (addr, port)
        };
        if !addr.is_multicast() {
            return Err(err(
                "the group address must be a multicast address (224.0.0.0/4)",
            ));
        }
        let mut group = Group {
            addr,
            port,
            name: "default".into(),
            ttl: 1,
            keep_alive: Duration::from_millis(500),
            interface: String::new(),
        };
        let mut rest_opts = Vec::new();
        for (k, v) in form_urlencoded::parse(query.as_bytes()) {
            let bad = || err(&format!("{k}={v} is not valid"));
            match k.as_ref() {
                "group" => group.name = v.into_owned(),
                "timeToLive" => group.ttl = v.parse().map_err(|_| bad())?,
                "keepAliveInterval" => {
                    group.keep_alive = Duration::from_millis(v.parse().map_err(|_| bad())?)
                }
                "interface" | "networkInterface" | "joinNetworkInterface" => {
                    group.interface = v.into_owned()
                }
                // ActiveMQ's Java loopback switch; datagrams always loop back
                // here so brokers on one host find each other.
                "loopBackMode" => {}
                _ => rest_opts.push((k.into_owned(), v.into_owned())),
            }
        }
        Ok((group, rest_opts))
    }

    fn alive(&self, broker: &str, uri: &str) -> String {
        format!("{}.ActiveMQ-4.alive.%{broker}%{uri}", self.name)
    }

    fn dead(&self, broker: &str, uri: &str) -> String {
        format!("{}.ActiveMQ-4.dead.%{broker}%{uri}", self.name)
    }

    /// `(alive, uri)` of a datagram of this group.
    fn parse_datagram<'a>(&self, d: &'a str) -> Option<(bool, &'a str)> {
        let rest = d
            .strip_prefix(self.name.as_str())?
            .strip_prefix(".ActiveMQ-4.")?;
        let (alive, rest) = if let Some(r) = rest.strip_prefix("alive.") {
            (true, r)
        } else {
            (false, rest.strip_prefix("dead.")?)
        };
        let rest = rest.strip_prefix('%')?;
        let (_, uri) = rest.split_once('%')?;
        Some((alive, uri))
    }

    /// The interface's IPv4 address (unspecified when none is named).
    fn interface_addr(&self) -> std::io::Result<Ipv4Addr> {
        if self.interface.is_empty() {
            return Ok(Ipv4Addr::UNSPECIFIED);
        }
        if let Ok(a) = self.interface.parse() {
            return Ok(a);
        }
        nic_ipv4(&self.interface).ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::NotFound,
                format!("network interface {:?} has no IPv4 address", self.interface),
            )
        })
    }

    fn listen(&self) -> std::io::Result<UdpSocket> {
        use socket2::{Domain, Protocol, Socket, Type};
        let s = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
        // Every broker on the host listens on the same group and port.
        s.set_reuse_address(true)?;
        s.bind(&SocketAddrV4::new(self.addr, self.port).into())?;
        s.join_multicast_v4(&self.addr, &self.interface_addr()?)?;
        s.set_nonblocking(true)?;
        UdpSocket::from_std(s.into())
    }

    fn sender(&self) -> std::io::Result<UdpSocket> {
        use socket2::{Domain, Protocol, Socket, Type};
        let s = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
        s.set_multicast_ttl_v4(self.ttl)?;
        s.set_multicast_loop_v4(true)?;
        let interface = self.interface_addr()?;
        if !interface.is_unspecified() {
            s.set_multicast_if_v4(&interface)?;
        }
        s.bind(&SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0).into())?;
        s.set_nonblocking(true)?;
        UdpSocket::from_std(s.into())
    }
}

/// The first IPv4 address of the NIC `name`.
fn nic_ipv4(name: &str) -> Option<Ipv4Addr> {
    let mut list: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills `list` with a linked list we free below; each
    // entry's name is a NUL-terminated string and its address, when not
    // null, is a sockaddr of the family it names.
    unsafe {
        if libc::getifaddrs(&mut list) != 0 {
            return None;
        }
        let mut found = None;
        let mut cur = list;
        while !cur.is_null() && found.is_none() {
            let ifa = &*cur;
            let addr = ifa.ifa_addr;
            if !addr.is_null()
                && i32::from((*addr).sa_family) == libc::AF_INET
                && std::ffi::CStr::from_ptr(ifa.ifa_name).to_bytes() == name.as_bytes()
            {
                let sin = &*(addr as *const libc::sockaddr_in);
                found = Some(Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr)));
            }
            cur = ifa.ifa_next;
        }
        libc::freeifaddrs(list);
        found
    }
}

/// How one network connector finds its peers.
#[derive(Debug, Clone, PartialEq)]
pub enum Agent {
    /// Fixed services (static:, masterslave:, a plain URI).
    Static {
        services: Vec<String>,
        reconnect: Reconnect,
    },
    Multicast {
        group: Group,
        reconnect: Reconnect,
        /// Our own announced URI, never bridged to.
        own: Option<String>,
    },
}

const RECONNECT_OPTIONS: &str = "initialReconnectDelay, maxReconnectDelay, useExponentialBackOff, backOffMultiplier, maxReconnectAttempts, minConnectTime";

/// `(a,b(c,d),e)` → `["a", "b(c,d)", "e"]` and the query after `)`.
fn split_list(uri: &str, inner: &str) -> Result<(Vec<String>, String), DiscoveryError> {
    let inner = inner.trim();
    let err = |reason: &str| DiscoveryError::Uri {
        uri: uri.to_owned(),
        reason: reason.to_owned(),
    };
    let body = inner
        .strip_prefix('(')
        .ok_or_else(|| err("expected a parenthesised list: scheme:(URI,URI,...)?OPTIONS"))?;
    let mut depth = 0usize;
    let mut parts = Vec::new();
    let mut start = 0;
    let mut end = None;
    for (i, ch) in body.char_indices() {
        match ch {
            '(' => depth += 1,
            ')' if depth == 0 => {
                end = Some(i);
                break;
            }
            ')' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(body[start..i].trim().to_owned());
                start = i + 1;
            }
            _ => {}
        }
    }
    let end = end.ok_or_else(|| err("unbalanced parentheses"))?;
    parts.push(body[start..end].trim().to_owned());
    if parts.iter().any(String::is_empty) {
        return Err(err("empty URI in the list"));
    }
    let after = body[end + 1..].trim();
    let query = match after.strip_prefix('?') {
        Some(q) => q.to_owned(),
        None if after.is_empty() => String::new(),
        None => return Err(err(&format!("unexpected {after:?} after the list"))),
    };
    Ok((parts, query))
}

/// A member must be a STOMP service the failover client can reach.
fn check_service(uri: &str, service: &str) -> Result<(), DiscoveryError> {
    if service.starts_with("tcp://") || service.starts_with("nio://") {
        return Err(DiscoveryError::Uri {
            uri: uri.to_owned(),
            reason: format!(
                "{service} is OpenWire; amq-broker bridges speak STOMP: name the peer's stomp:// connector (e.g. stomp://host:61613)"
            ),
        });
    }
    FailoverUri::parse(service)
        .map(|_| ())
        .map_err(|e| DiscoveryError::Uri {
            uri: uri.to_owned(),
            reason: e.to_string(),
        })
}

impl Agent {
    pub fn new(nc: &NetworkConnector, config: &BrokerConfig) -> Result<Agent, DiscoveryError> {
        Agent::parse(&nc.uri, advertised_uri(config))
    }

    pub fn parse(uri: &str, own: Option<String>) -> Result<Agent, DiscoveryError> {
        let reconnect_from = |mut r: Reconnect, query: &str| -> Result<Reconnect, DiscoveryError> {
            for (k, v) in form_urlencoded::parse(query.as_bytes()) {
                if !r.set(uri, &k, &v)? {
                    return Err(DiscoveryError::UnknownOption {
                        uri: uri.to_owned(),
                        name: k.into_owned(),
                        known: RECONNECT_OPTIONS,
                    });
                }
            }
            Ok(r)
        };
        if let Some(inner) = uri.strip_prefix("static:") {
            let (services, query) = split_list(uri, inner)?;
            for s in &services {
                check_service(uri, s)?;
            }
            return Ok(Agent::Static {
                services,
                reconnect: reconnect_from(Reconnect::static_defaults(), &query)?,
            });
        }
        if let Some(inner) = uri.strip_prefix("masterslave:") {
            let (members, query) = split_list(uri, inner)?;
            if members.len() < 2 {
                return Err(DiscoveryError::Uri {
                    uri: uri.to_owned(),
                    reason: "masterslave: needs at least two URIs (the master and its slaves)"
                        .into(),
                });
            }
            let service = format!(
                "failover:({})?randomize=false&maxReconnectAttempts=0",
                members.join(",")
            );
            check_service(uri, &service)?;
            return Ok(Agent::Static {
                services: vec![service],
                reconnect: reconnect_from(Reconnect::static_defaults(), &query)?,
            });
        }
        if uri.starts_with("multicast:") {
            let (group, opts) = Group::parse(uri)?;
            let mut reconnect = Reconnect::multicast_defaults();
            for (k, v) in opts {
                if !reconnect.set(uri, &k, &v)? {
                    return Err(DiscoveryError::UnknownOption {
                        uri: uri.to_owned(),
                        name: k,
                        known: "group, timeToLive, keepAliveInterval, interface, loopBackMode, initialReconnectDelay, maxReconnectDelay, useExponentialBackOff, backOffMultiplier, maxReconnectAttempts, minConnectTime",
                    });
                }
            }
            return Ok(Agent::Multicast {
                group,
                reconnect,
                own,
            });
        }
        check_service(uri, uri)?;
        Ok(Agent::Static {
            services: vec![uri.to_owned()],
            reconnect: Reconnect::static_defaults(),
        })
    }

    /// Runs the connector's bridges until `stop`.
    pub async fn run(self, broker: Arc<Broker>, nc: NetworkConnector, stop: CancellationToken) {
        match self {
            Agent::Static {
                services,
                reconnect,
            } => {
                let mut tasks = tokio::task::JoinSet::new();
                for s in services {
                    tasks.spawn(bridge_loop(
                        broker.clone(),
                        nc.clone(),
                        s,
                        reconnect.clone(),
                        stop.clone(),
                    ));
                }
                while tasks.join_next().await.is_some() {}
            }
            Agent::Multicast {
                group,
                reconnect,
                own,
            } => {
                if let Err(e) = listen(broker, nc, group, reconnect, own, stop).await {
                    tracing::error!("multicast discovery failed: {e}");
                }
            }
        }
    }
}

/// The STOMP URI this broker announces: its first STOMP connector, with a
/// wildcard bind address replaced by the host name.
pub fn advertised_uri(config: &BrokerConfig) -> Option<String> {
    let c = config.stomp_connectors().next()?;
    let host = if c.host == "0.0.0.0" || c.host == "::" || c.host.is_empty() {
        hostname()
    } else {
        c.host.clone()
    };
    Some(format!("stomp://{host}:{}", c.port))
}

fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its length; gethostname NUL-terminates
    // within it on success.
    let ok = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) } == 0;
    let end = buf.iter().position(|b| *b == 0).unwrap_or(0);
    if ok && end > 0 {
        String::from_utf8_lossy(&buf[..end]).into_owned()
    } else {
        "localhost".into()
    }
}

fn connect_options(nc: &NetworkConnector, broker: &str) -> ConnectOptions {
    ConnectOptions {
        login: nc.user_name.clone(),
        passcode: nc.password.as_ref().map(|p| p.expose().to_owned()),
        // ActiveMQ's bridge client id.
        client_id: Some(format!("{}_{broker}_outbound", nc.name)),
        ..ConnectOptions::default()
    }
}

/// One bridge to `service`, reconnected with the agent's back-off until
/// `stop` or maxReconnectAttempts.
async fn bridge_loop(
    broker: Arc<Broker>,
    nc: NetworkConnector,
    service: String,
    reconnect: Reconnect,
    stop: CancellationToken,
) -> Arc<BridgeStats> {
    let stats = BridgeStats::new(&nc.name, &service, nc.duplex);
    broker.network().register(stats.clone());
    let uri = match FailoverUri::parse(&service) {
        Ok(u) => u,
        Err(e) => {
            stats.set_error(e.to_string());
            stats.set_state(BridgeState::Failed);
            return stats;
        }
    };
    let mut backoff = reconnect.backoff();
    let mut failures = 0u32;
    loop {
        stats.set_state(BridgeState::Connecting);
        let (client, events) =
            FailoverClient::start_observed(uri.clone(), connect_options(&nc, broker.name()));
        let connected = tokio::select! {
            r = client.wait_connected() => r,
            _ = stop.cancelled() => { client.close().await; break; }
        };
        let mut lasted = Duration::ZERO;
        match connected {
            Ok(()) => {
                let since = Instant::now();
                stats.connects.fetch_add(1, Ordering::Relaxed);
                stats.set_state(BridgeState::Up);
                tracing::info!(connector = %nc.name, %service, "network bridge up");
                let ended = bridge::session(
                    broker.clone(),
                    &nc,
                    client.clone(),
                    events,
                    stats.clone(),
                    stop.clone(),
                )
                .await;
                client.close().await;
                lasted = since.elapsed();
                match ended {
                    Ended::Shutdown => break,
                    Ended::Lost(reason) => {
                        tracing::warn!(connector = %nc.name, %service, "network bridge down: {reason}");
                        stats.set_error(reason);
                    }
                }
            }
            Err(e) => {
                tracing::debug!(connector = %nc.name, %service, "network bridge failed to connect: {e}");
                stats.set_error(e.to_string());
                client.close().await;
            }
        }
        if lasted >= reconnect.min_connect_time {
            backoff.reset();
            failures = 0;
        }
        failures += 1;
        if reconnect.max_attempts > 0 && failures >= reconnect.max_attempts {
            tracing::error!(connector = %nc.name, %service, failures, "network bridge gave up (maxReconnectAttempts)");
            stats.set_state(BridgeState::Failed);
            return stats;
        }
        stats.set_state(BridgeState::Waiting);
        tokio::select! {
            _ = tokio::time::sleep(backoff.next_delay()) => {}
            _ = stop.cancelled() => break,
        }
    }
    stats.set_state(BridgeState::Stopped);
    stats
}

/// Multicast discovery: a bridge per announced peer, stopped when the peer
/// says `dead` or is silent for 10 keep-alive intervals.
async fn listen(
    broker: Arc<Broker>,
    nc: NetworkConnector,
    group: Group,
    reconnect: Reconnect,
    own: Option<String>,
    stop: CancellationToken,
) -> std::io::Result<()> {
    let socket = group.listen()?;
    let expiry = group.keep_alive * 10;
    let mut peers: HashMap<String, (Instant, CancellationToken)> = HashMap::new();
    let mut tasks = tokio::task::JoinSet::new();
    let mut tick = tokio::time::interval(group.keep_alive);
    let mut buf = vec![0u8; 8192];
    loop {
        tokio::select! {
            r = socket.recv_from(&mut buf) => {
                let (n, _) = match r {
                    Ok(r) => r,
                    Err(e) => { tracing::warn!("multicast receive failed: {e}"); continue; }
                };
                let text = String::from_utf8_lossy(&buf[..n]);
                let Some((alive, uri)) = group.parse_datagram(&text) else { continue };
                if own.as_deref() == Some(uri) {
                    continue;
                }
                if !uri.starts_with("stomp://") {
                    tracing::debug!(%uri, "ignoring a non-STOMP service announced on the group");
                    continue;
                }
                if !alive {
                    if let Some((_, t)) = peers.remove(uri) {
                        tracing::info!(%uri, "peer announced it stopped");
                        t.cancel();
                    }
                    continue;
                }
                match peers.get_mut(uri) {
                    Some((seen, _)) => *seen = Instant::now(),
                    None => {
                        tracing::info!(connector = %nc.name, %uri, "discovered a peer");
                        let t = stop.child_token();
                        tasks.spawn(forget_when_done(broker.clone(), nc.clone(), uri.to_owned(), reconnect.clone(), t.clone()));
                        peers.insert(uri.to_owned(), (Instant::now(), t));
                    }
                }
            }
            _ = tick.tick() => {
                peers.retain(|uri, (seen, t)| {
                    let alive = seen.elapsed() < expiry;
                    if !alive {
                        tracing::info!(%uri, "peer expired: no announcement for {} ms", expiry.as_millis());
                        t.cancel();
                    }
                    alive
                });
            }
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
            _ = stop.cancelled() => break,
        }
    }
    while tasks.join_next().await.is_some() {}
    Ok(())
}

/// A discovered peer's bridge; it leaves `/status` with the peer.
async fn forget_when_done(
    broker: Arc<Broker>,
    nc: NetworkConnector,
    uri: String,
    reconnect: Reconnect,
    stop: CancellationToken,
) {
    let stats = bridge_loop(broker.clone(), nc, uri, reconnect, stop).await;
    broker.network().unregister(&stats);
}

/// Announces this broker's STOMP connector on the groups of its transport
/// connectors' `discoveryUri`s.
pub struct Announcer {
    groups: Vec<Group>,
    broker: String,
    uri: String,
}

impl Announcer {
    pub fn from_config(config: &BrokerConfig) -> Option<Announcer> {
        let uri = advertised_uri(config)?;
        let mut groups: BTreeMap<String, Group> = BTreeMap::new();
        for c in &config.transport_connectors {
            let Some(d) = c
                .discovery_uri
                .as_deref()
                .filter(|d| d.starts_with("multicast:"))
            else {
                continue;
            };
            match Group::parse(d) {
                Ok((g, _)) => {
                    groups.insert(format!("{}:{}:{}", g.addr, g.port, g.name), g);
                }
                Err(e) => tracing::error!("not announcing: {e}"),
            }
        }
        (!groups.is_empty()).then(|| Announcer {
            groups: groups.into_values().collect(),
            broker: config.broker_name.clone(),
            uri,
        })
    }

    pub async fn run(self, stop: CancellationToken) {
        let mut tasks = tokio::task::JoinSet::new();
        for g in self.groups {
            let (broker, uri, stop) = (self.broker.clone(), self.uri.clone(), stop.clone());
            tasks.spawn(async move {
                let socket = match g.sender() {
                    Ok(s) => s,
                    Err(e) => {
                        tracing::error!(group = %g.addr, "cannot announce on the multicast group: {e}");
                        return;
                    }
                };
                let to = SocketAddrV4::new(g.addr, g.port);
                tracing::info!(group = %to, %uri, "announcing on the multicast group");
                let alive = g.alive(&broker, &uri);
                let mut tick = tokio::time::interval(g.keep_alive);
                let mut warned = false;
                loop {
                    tokio::select! {
                        _ = tick.tick() => {
                            if let Err(e) = socket.send_to(alive.as_bytes(), to).await {
                                if !warned {
                                    tracing::warn!(group = %to, "multicast announcement failed: {e} (is there a route for 224.0.0.0/4?)");
                                    warned = true;
                                }
                            }
                        }
                        _ = stop.cancelled() => break,
                    }
                }
                let _ = socket.send_to(g.dead(&broker, &uri).as_bytes(), to).await;
            });
        }
        while tasks.join_next().await.is_some() {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn static_and_masterslave_uris() {
        let a = Agent::parse(
            "static:(stomp://a:1,failover:(stomp://b:2,stomp://c:3)?randomize=false)?initialReconnectDelay=50&maxReconnectAttempts=3&useExponentialBackOff=false",
            None,
        )
        .unwrap();
        let Agent::Static {
            services,
            reconnect,
        } = a
        else {
            panic!()
        };
        assert_eq!(
            services,
            [
                "stomp://a:1",
                "failover:(stomp://b:2,stomp://c:3)?randomize=false"
            ]
        );
        assert_eq!(reconnect.initial_delay, Duration::from_millis(50));
        assert_eq!(reconnect.max_attempts, 3);
        assert!(!reconnect.exponential);

        let Agent::Static {
            services,
            reconnect,
        } = Agent::parse("masterslave:(stomp://m:1,stomp://s:2)", None).unwrap()
        else {
            panic!()
        };
        assert_eq!(
            services,
            ["failover:(stomp://m:1,stomp://s:2)?randomize=false&maxReconnectAttempts=0"]
        );
        assert_eq!(reconnect, Reconnect::static_defaults());
    }

    #[test]
    fn bad_uris_say_why() {
        for (uri, needle) in [
            ("static:(tcp://a:61616)", "OpenWire"),
            ("masterslave:(stomp://a:1)", "at least two"),
            ("static:(stomp://a:1", "unbalanced"),
            ("static:(stomp://a:1)?bogus=1", "unknown option \"bogus\""),
            (
                "static:(stomp://a:1)?backOffMultiplier=0.5",
                "backOffMultiplier",
            ),
            ("multicast://10.0.0.1:6155", "multicast address"),
        ] {
            let e = Agent::parse(uri, None).unwrap_err().to_string();
            assert!(e.contains(needle), "{uri}: {e}");
        }
    }

    #[test]
    fn multicast_defaults_and_datagrams() {
        let Agent::Multicast {
            group, reconnect, ..
        } = Agent::parse("multicast://default", None).unwrap()
        else {
            panic!()
        };
        assert_eq!(
            (group.addr, group.port, group.ttl),
            (DEFAULT_GROUP_ADDR, 6155, 1)
        );
        assert_eq!(group.keep_alive, Duration::from_millis(500));
        assert_eq!(reconnect.initial_delay, Duration::from_millis(5000));
        assert!(!reconnect.exponential);
        let alive = group.alive("b1", "stomp://h:61613");
        assert_eq!(alive, "default.ActiveMQ-4.alive.%b1%stomp://h:61613");
        assert_eq!(
            group.parse_datagram(&alive),
            Some((true, "stomp://h:61613"))
        );
        assert_eq!(
            group.parse_datagram("default.ActiveMQ-4.dead.%localhost%tcp://h:61616"),
            Some((false, "tcp://h:61616"))
        );
        assert_eq!(
            group.parse_datagram("other.ActiveMQ-4.alive.%x%stomp://h:1"),
            None
        );
        let (g, _) = Group::parse(
            "multicast://239.1.2.3:6255?group=blue&timeToLive=2&networkInterface=lo&joinNetworkInterface=lo",
        )
        .unwrap();
        assert_eq!(g.interface_addr().unwrap(), Ipv4Addr::LOCALHOST);
        assert_eq!(
            (g.addr, g.port, g.name.as_str(), g.ttl),
            (Ipv4Addr::new(239, 1, 2, 3), 6255, "blue", 2)
        );
    }
}
