//! `failover:` URLs with ActiveMQ's syntax, option names, defaults and value
//! rules (`FailoverTransport` setters; see the module docs of
//! [`crate::failover`] for the table).
//!
//! Parsing follows `URISupport.parseComposite`: `failover:(u1,…,uN)?opts`
//! puts the options on the failover transport; in the short form
//! `failover:u1,…,uN?opts` the query belongs to the **last member URI**, as in
//! ActiveMQ. Since a member does not know failover options, that mistake is
//! reported with the fix instead of being silently misapplied.

use std::fmt;
use std::time::Duration;

/// Port of an ActiveMQ STOMP connector when a member URI names none.
pub const DEFAULT_STOMP_PORT: u16 = 61613;

/// Everything that can be wrong with a broker URL. Every variant names the
/// offending option or member and says what to write instead.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum UriError {
    #[error("empty broker URL: expected stomp://HOST:PORT or failover:(stomp://HOST:PORT,...)")]
    Empty,
    #[error("{url}: {reason}")]
    Syntax { url: String, reason: String },
    #[error("{uri}: tcp:// is ActiveMQ's OpenWire transport, which is not supported yet; use the broker's STOMP connector, stomp://HOST:PORT (port 61613 by default)")]
    OpenWireNotSupported { uri: String },
    #[error("{uri}: the {scheme}:// transport is not supported; use stomp://HOST:PORT")]
    UnsupportedScheme { uri: String, scheme: String },
    #[error("unknown failover option {name:?}{hint}")]
    UnknownOption { name: String, hint: String },
    #[error(
        "failover option {name:?} is an ActiveMQ option this client does not support: {reason}"
    )]
    UnsupportedOption { name: String, reason: &'static str },
    #[error("unknown option {name:?} on member URI {uri}{hint}")]
    UnknownMemberOption {
        uri: String,
        name: String,
        hint: String,
    },
    #[error("option {name}={value:?}: expected {expected}")]
    InvalidValue {
        name: String,
        value: String,
        expected: &'static str,
    },
}

/// Where a STOMP broker listens, as written in a member URI. Two member URIs
/// name the same broker when their endpoints are equal (options aside).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Endpoint {
    pub host: String,
    pub port: u16,
}

impl Endpoint {
    pub fn new(host: impl Into<String>, port: u16) -> Self {
        Endpoint {
            host: host.into(),
            port,
        }
    }

    /// `host:port` for `TcpStream::connect` (IPv6 literals bracketed).
    pub fn socket_addr_string(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    /// Parses `stomp://host:port` (no options), e.g. the value of the
    /// `master` header of a slave's ERROR frame.
    pub fn parse(s: &str) -> Result<Endpoint, UriError> {
        let m = MemberUri::parse(s)?;
        if m.options != MemberOptions::default() {
            return Err(syntax(s, "expected stomp://HOST:PORT without options"));
        }
        Ok(m.endpoint)
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "stomp://{}", self.socket_addr_string())
    }
}

/// Per-connection options of a member URI (`stomp://h:p?connectionTimeout=…`),
/// also set for every member at once with the failover option `nested.NAME`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemberOptions {
    /// `connectionTimeout` (ms): TCP connect plus the CONNECT/CONNECTED
    /// handshake. ActiveMQ's TCP default, 30 s; 0 waits without limit.
    pub connection_timeout: Duration,
    /// `wireFormat.maxInactivityDuration` (ms), ActiveMQ's inactivity
    /// monitor, mapped onto STOMP heart-beats: both sides are asked to send
    /// one every third of it, and a connection silent for the whole duration is
    /// dead. ActiveMQ's default, 30 s; 0 turns heart-beats off.
    pub max_inactivity: Duration,
}

impl Default for MemberOptions {
    fn default() -> Self {
        MemberOptions {
            connection_timeout: Duration::from_millis(30_000),
            max_inactivity: Duration::from_millis(30_000),
        }
    }
}

const MEMBER_OPTIONS: [&str; 2] = ["connectionTimeout", "wireFormat.maxInactivityDuration"];

impl MemberOptions {
    fn set(&mut self, name: &str, value: &str) -> Result<bool, UriError> {
        match name {
            "connectionTimeout" => self.connection_timeout = millis(name, value)?,
            "wireFormat.maxInactivityDuration" => self.max_inactivity = millis(name, value)?,
            _ => return Ok(false),
        }
        Ok(true)
    }

    fn write_query(&self, out: &mut Vec<String>) {
        let d = MemberOptions::default();
        if self.connection_timeout != d.connection_timeout {
            out.push(format!(
                "connectionTimeout={}",
                self.connection_timeout.as_millis()
            ));
        }
        if self.max_inactivity != d.max_inactivity {
            out.push(format!(
                "wireFormat.maxInactivityDuration={}",
                self.max_inactivity.as_millis()
            ));
        }
    }
}

/// One broker of a failover list: `stomp://host:port[?options]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberUri {
    pub endpoint: Endpoint,
    pub options: MemberOptions,
}

impl MemberUri {
    pub fn parse(s: &str) -> Result<MemberUri, UriError> {
        let s = s.trim();
        if s.is_empty() {
            return Err(UriError::Empty);
        }
        let Some((scheme, rest)) = s.split_once("://") else {
            return Err(syntax(s, "expected stomp://HOST:PORT"));
        };
        match scheme.to_ascii_lowercase().as_str() {
            // stomp+nio is an ActiveMQ server-side variant; on the wire it is plain STOMP.
            "stomp" | "stomp+nio" => {}
            "tcp" | "nio" => return Err(UriError::OpenWireNotSupported { uri: s.to_owned() }),
            other => {
                return Err(UriError::UnsupportedScheme {
                    uri: s.to_owned(),
                    scheme: other.to_owned(),
                })
            }
        }
        let (authority_path, query) = match rest.split_once('?') {
            Some((a, q)) => (a, Some(q)),
            None => (rest, None),
        };
        let authority = match authority_path.split_once('/') {
            Some((a, "")) => a,
            Some(_) => return Err(syntax(s, "a STOMP member URI has no path")),
            None => authority_path,
        };
        if authority.contains('@') {
            return Err(syntax(
                s,
                "credentials do not belong in a broker URL (it ends up in logs); pass them with --user and AMQ_PASSWORD",
            ));
        }
        let endpoint = parse_authority(s, authority)?;
        let mut options = MemberOptions::default();
        if let Some(q) = query {
            for (name, value) in parse_query(s, q)? {
                if !options.set(&name, &value)? {
                    return Err(UriError::UnknownMemberOption {
                        uri: s.to_owned(),
                        hint: member_option_hint(&name),
                        name,
                    });
                }
            }
        }
        Ok(MemberUri { endpoint, options })
    }
}

impl fmt::Display for MemberUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.endpoint)?;
        let mut q = Vec::new();
        self.options.write_query(&mut q);
        if !q.is_empty() {
            write!(f, "?{}", q.join("&"))?;
        }
        Ok(())
    }
}

/// The options of the failover transport, named and defaulted exactly as
/// ActiveMQ's `FailoverTransport` (Java field in brackets where it differs).
#[derive(Debug, Clone, PartialEq)]
pub struct FailoverOptions {
    /// `randomize` (true): shuffle the list before every pass.
    pub randomize: bool,
    /// `initialReconnectDelay` (10 ms).
    pub initial_reconnect_delay: Duration,
    /// `maxReconnectDelay` (30 000 ms): cap of the back-off.
    pub max_reconnect_delay: Duration,
    /// `useExponentialBackOff` (true).
    pub use_exponential_back_off: bool,
    /// `reconnectDelayExponent` (2.0) (`backOffMultiplier`).
    pub reconnect_delay_exponent: f64,
    /// `maxReconnectAttempts` (-1 = forever): passes over the whole list
    /// before giving up; 0 also means "never reconnect after a drop".
    pub max_reconnect_attempts: i32,
    /// `startupMaxReconnectAttempts` (-1): replaces `maxReconnectAttempts`
    /// until the first connection succeeded, unless it is -1.
    pub startup_max_reconnect_attempts: i32,
    /// `timeout` (-1): how long a send waits while disconnected before it
    /// fails; `None` (any value ≤ 0) waits for ever.
    pub timeout: Option<Duration>,
    /// `priorityBackup` (false): while connected elsewhere, keep trying the
    /// priority URIs and move back as soon as one answers.
    pub priority_backup: bool,
    /// `priorityURIs` (empty = the first member is the priority one).
    pub priority_uris: Vec<Endpoint>,
    /// `warnAfterReconnectAttempts` (10): log a warning on the first failed
    /// pass and every N-th; ≤ 0 turns it off.
    pub warn_after_reconnect_attempts: i32,
    /// `reconnectSupported` (true): obey the broker telling the client where
    /// to go, here a slave's ERROR frame naming the master.
    pub reconnect_supported: bool,
}

impl Default for FailoverOptions {
    fn default() -> Self {
        FailoverOptions {
            randomize: true,
            initial_reconnect_delay: Duration::from_millis(10),
            max_reconnect_delay: Duration::from_millis(30_000),
            use_exponential_back_off: true,
            reconnect_delay_exponent: 2.0,
            max_reconnect_attempts: -1,
            startup_max_reconnect_attempts: -1,
            timeout: None,
            priority_backup: false,
            priority_uris: Vec::new(),
            warn_after_reconnect_attempts: 10,
            reconnect_supported: true,
        }
    }
}

/// Options ActiveMQ's failover transport has and this client supports.
pub const FAILOVER_OPTIONS: [&str; 12] = [
    "randomize",
    "initialReconnectDelay",
    "maxReconnectDelay",
    "useExponentialBackOff",
    "reconnectDelayExponent",
    "maxReconnectAttempts",
    "startupMaxReconnectAttempts",
    "timeout",
    "priorityBackup",
    "priorityURIs",
    "warnAfterReconnectAttempts",
    "reconnectSupported",
];

/// ActiveMQ failover options that are recognised but refused, with why: a
/// URL copied from a Java client must not silently mean something else here.
const UNSUPPORTED_OPTIONS: [(&str, &str); 9] = [
    ("backup", "spare pre-connected transports are not implemented"),
    ("backupPoolSize", "spare pre-connected transports are not implemented"),
    ("trackMessages", "persistent messages without a receipt are always re-sent after a reconnect; non-persistent ones never are"),
    ("maxCacheSize", "there is no message cache besides the unreceipted persistent messages, which are never dropped"),
    ("trackTransactionProducers", "an open transaction is rolled back by a failover and its COMMIT fails"),
    ("updateURIsSupported", "amq-broker does not push cluster member lists to clients"),
    ("rebalanceUpdateURIs", "amq-broker does not push cluster member lists to clients"),
    ("updateURIsURL", "the member list is fixed by the URL"),
    ("reconnectDelay", "an internal ActiveMQ field; use initialReconnectDelay"),
];

impl FailoverOptions {
    /// Options of a plain `stomp://` URL: one attempt, no reconnect.
    pub fn single_connection() -> Self {
        FailoverOptions {
            randomize: false,
            max_reconnect_attempts: 0,
            ..FailoverOptions::default()
        }
    }

    fn set(&mut self, name: &str, value: &str) -> Result<(), UriError> {
        match name {
            "randomize" => self.randomize = boolean(name, value)?,
            "initialReconnectDelay" => self.initial_reconnect_delay = millis(name, value)?,
            "maxReconnectDelay" => self.max_reconnect_delay = millis(name, value)?,
            "useExponentialBackOff" => self.use_exponential_back_off = boolean(name, value)?,
            "reconnectDelayExponent" => {
                self.reconnect_delay_exponent = match value.trim().parse::<f64>() {
                    Ok(x) if x.is_finite() && x > 0.0 => x,
                    _ => return Err(invalid(name, value, "a number greater than 0, e.g. 2.0")),
                }
            }
            "maxReconnectAttempts" => self.max_reconnect_attempts = attempts(name, value)?,
            "startupMaxReconnectAttempts" => {
                self.startup_max_reconnect_attempts = attempts(name, value)?
            }
            "timeout" => {
                let ms: i64 = value
                    .trim()
                    .parse()
                    .map_err(|_| invalid(name, value, "milliseconds, or -1 to wait for ever"))?;
                self.timeout = (ms > 0).then(|| Duration::from_millis(ms as u64));
            }
            "priorityBackup" => self.priority_backup = boolean(name, value)?,
            "priorityURIs" => {
                self.priority_uris = value
                    .split(',')
                    .filter(|s| !s.trim().is_empty())
                    .map(Endpoint::parse)
                    .collect::<Result<_, _>>()?
            }
            "warnAfterReconnectAttempts" => {
                self.warn_after_reconnect_attempts = value
                    .trim()
                    .parse()
                    .map_err(|_| invalid(name, value, "a whole number"))?
            }
            "reconnectSupported" => self.reconnect_supported = boolean(name, value)?,
            _ => {
                if let Some((_, reason)) = UNSUPPORTED_OPTIONS.iter().find(|(n, _)| *n == name) {
                    return Err(UriError::UnsupportedOption {
                        name: name.to_owned(),
                        reason,
                    });
                }
                return Err(UriError::UnknownOption {
                    name: name.to_owned(),
                    hint: failover_option_hint(name),
                });
            }
        }
        Ok(())
    }

    fn write_query(&self, out: &mut Vec<String>) {
        let d = FailoverOptions::default();
        let ms = |d: Duration| d.as_millis().to_string();
        let mut push = |cond: bool, name: &str, value: String| {
            if cond {
                out.push(format!("{name}={value}"));
            }
        };
        push(
            self.randomize != d.randomize,
            "randomize",
            self.randomize.to_string(),
        );
        push(
            self.initial_reconnect_delay != d.initial_reconnect_delay,
            "initialReconnectDelay",
            ms(self.initial_reconnect_delay),
        );
        push(
            self.max_reconnect_delay != d.max_reconnect_delay,
            "maxReconnectDelay",
            ms(self.max_reconnect_delay),
        );
        push(
            self.use_exponential_back_off != d.use_exponential_back_off,
            "useExponentialBackOff",
            self.use_exponential_back_off.to_string(),
        );
        push(
            self.reconnect_delay_exponent != d.reconnect_delay_exponent,
            "reconnectDelayExponent",
            self.reconnect_delay_exponent.to_string(),
        );
        push(
            self.max_reconnect_attempts != d.max_reconnect_attempts,
            "maxReconnectAttempts",
            self.max_reconnect_attempts.to_string(),
        );
        push(
            self.startup_max_reconnect_attempts != d.startup_max_reconnect_attempts,
            "startupMaxReconnectAttempts",
            self.startup_max_reconnect_attempts.to_string(),
        );
        push(
            self.timeout.is_some(),
            "timeout",
            self.timeout.map(ms).unwrap_or_default(),
        );
        push(
            self.priority_backup != d.priority_backup,
            "priorityBackup",
            self.priority_backup.to_string(),
        );
        push(
            !self.priority_uris.is_empty(),
            "priorityURIs",
            self.priority_uris
                .iter()
                .map(|e| e.to_string())
                .collect::<Vec<_>>()
                .join(","),
        );
        push(
            self.warn_after_reconnect_attempts != d.warn_after_reconnect_attempts,
            "warnAfterReconnectAttempts",
            self.warn_after_reconnect_attempts.to_string(),
        );
        push(
            self.reconnect_supported != d.reconnect_supported,
            "reconnectSupported",
            self.reconnect_supported.to_string(),
        );
    }
}

/// A parsed broker URL: a `failover:` list, or one `stomp://` URI, which
/// behaves like a one-member list that never reconnects.
#[derive(Debug, Clone, PartialEq)]
pub struct FailoverUri {
    pub members: Vec<MemberUri>,
    pub options: FailoverOptions,
    /// Written as `failover:` (rather than a bare member URI).
    pub is_failover: bool,
}

impl std::str::FromStr for FailoverUri {
    type Err = UriError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        FailoverUri::parse(s)
    }
}

impl FailoverUri {
    pub fn parse(url: &str) -> Result<FailoverUri, UriError> {
        let url = url.trim();
        if url.is_empty() {
            return Err(UriError::Empty);
        }
        let Some(ssp) = strip_prefix_ci(url, "failover:") else {
            return Ok(FailoverUri {
                members: vec![MemberUri::parse(url)?],
                options: FailoverOptions::single_connection(),
                is_failover: false,
            });
        };
        let ssp = ssp.trim();
        let ssp = ssp.strip_prefix("//").unwrap_or(ssp).trim();
        let (components, query) = if let Some(inner) = ssp.strip_prefix('(') {
            let close = matching_paren(inner).ok_or_else(|| {
                syntax(
                    url,
                    "unbalanced parentheses: expected failover:(URI,URI,...)?OPTIONS",
                )
            })?;
            let after = inner[close + 1..].trim();
            let query = match after.find('?') {
                Some(p) if after[..p].trim_matches('/').trim().is_empty() => Some(&after[p + 1..]),
                None if after.trim_matches('/').is_empty() => None,
                _ => {
                    return Err(syntax(
                        url,
                        &format!(
                            "unexpected {after:?} after the member list: options start with '?'"
                        ),
                    ))
                }
            };
            (&inner[..close], query)
        } else if ssp.contains('(') || ssp.contains(')') {
            return Err(syntax(
                url,
                "parentheses must enclose the whole member list: failover:(URI,URI,...)?OPTIONS",
            ));
        } else {
            (ssp, None)
        };

        let mut members = Vec::new();
        let parts = split_components(components);
        let last = parts.len().saturating_sub(1);
        for (i, part) in parts.iter().enumerate() {
            let part = part.trim();
            if part.is_empty() {
                return Err(syntax(url, "empty member URI in the list"));
            }
            if part.starts_with('(') || part.to_ascii_lowercase().starts_with("failover:") {
                return Err(syntax(
                    url,
                    "nested composite URIs are not supported as failover members",
                ));
            }
            match MemberUri::parse(part) {
                Ok(m) => members.push(m),
                // The short form hands the query to the last member (ActiveMQ's
                // parseComposite): say so instead of "unknown member option".
                Err(UriError::UnknownMemberOption { name, .. })
                    if query.is_none() && i == last && is_failover_option(&name) =>
                {
                    let list = parts.join(",");
                    let (members, opts) = list.rsplit_once('?').unwrap_or((&list, ""));
                    return Err(UriError::UnknownMemberOption {
                        uri: part.to_owned(),
                        hint: format!(
                            ": without parentheses the query belongs to the last member URI, as in ActiveMQ; write failover:({members})?{opts}"
                        ),
                        name,
                    });
                }
                Err(e) => return Err(e),
            }
        }
        if members.is_empty() {
            return Err(syntax(
                url,
                "no member URIs: expected failover:(stomp://HOST:PORT,...)",
            ));
        }

        let mut options = FailoverOptions::default();
        if let Some(q) = query {
            let mut nested = MemberOptions::default();
            let mut nested_set = Vec::new();
            for (name, value) in parse_query(url, q)? {
                if let Some(inner) = name.strip_prefix("nested.") {
                    if !nested.set(inner, &value)? {
                        return Err(UriError::UnknownMemberOption {
                            uri: url.to_owned(),
                            hint: member_option_hint(inner),
                            name,
                        });
                    }
                    nested_set.push((inner.to_owned(), value));
                } else {
                    options.set(&name, &value)?;
                }
            }
            // nested.* is appended to every member's query, so it wins over the
            // member's own value (FailoverTransport.addExtraQueryOptions).
            for m in &mut members {
                for (name, value) in &nested_set {
                    m.options.set(name, value)?;
                }
            }
        }
        Ok(FailoverUri {
            members,
            options,
            is_failover: true,
        })
    }

    /// The distinct endpoints, in the order written.
    pub fn endpoints(&self) -> Vec<Endpoint> {
        let mut out: Vec<Endpoint> = Vec::new();
        for m in &self.members {
            if !out.contains(&m.endpoint) {
                out.push(m.endpoint.clone());
            }
        }
        out
    }

    /// The member URI for `endpoint`, or a default one (a master named by a
    /// slave need not be in the list).
    pub fn member(&self, endpoint: &Endpoint) -> MemberUri {
        self.members
            .iter()
            .find(|m| &m.endpoint == endpoint)
            .cloned()
            .unwrap_or_else(|| MemberUri {
                endpoint: endpoint.clone(),
                options: self.members.first().map(|m| m.options).unwrap_or_default(),
            })
    }

    /// Whether `endpoint` is a priority URI (only meaningful with
    /// `priorityBackup`): one of `priorityURIs`, or else the first member.
    pub fn is_priority(&self, endpoint: &Endpoint) -> bool {
        if !self.options.priority_backup {
            return false;
        }
        if self.options.priority_uris.is_empty() {
            self.members.first().map(|m| &m.endpoint) == Some(endpoint)
        } else {
            self.options.priority_uris.contains(endpoint)
        }
    }
}

impl fmt::Display for FailoverUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.is_failover {
            if let Some(m) = self.members.first() {
                return write!(f, "{m}");
            }
        }
        let list: Vec<String> = self.members.iter().map(|m| m.to_string()).collect();
        write!(f, "failover:({})", list.join(","))?;
        let mut q = Vec::new();
        self.options.write_query(&mut q);
        if !q.is_empty() {
            write!(f, "?{}", q.join("&"))?;
        }
        Ok(())
    }
}

fn syntax(url: &str, reason: &str) -> UriError {
    UriError::Syntax {
        url: url.to_owned(),
        reason: reason.to_owned(),
    }
}

fn invalid(name: &str, value: &str, expected: &'static str) -> UriError {
    UriError::InvalidValue {
        name: name.to_owned(),
        value: value.to_owned(),
        expected,
    }
}

fn strip_prefix_ci<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    (s.len() >= prefix.len() && s[..prefix.len()].eq_ignore_ascii_case(prefix))
        .then(|| &s[prefix.len()..])
}

/// Index of the `)` closing an already-consumed `(`.
fn matching_paren(s: &str) -> Option<usize> {
    let mut depth = 1usize;
    for (i, c) in s.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => {
                depth -= 1;
                if depth == 0 {
                    return Some(i);
                }
            }
            _ => {}
        }
    }
    None
}

/// Splits at commas outside parentheses (`URISupport.splitComponents`).
fn split_components(s: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let (mut depth, mut start) = (0i32, 0usize);
    for (i, c) in s.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                out.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&s[start..]);
    out
}

/// `name=value&…`, URL-decoded like Java's `URLDecoder` (`+` is a space).
fn parse_query(url: &str, query: &str) -> Result<Vec<(String, String)>, UriError> {
    let mut out = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        if !pair.contains('=') {
            return Err(syntax(
                url,
                &format!("option {pair:?} has no value: write {pair}=VALUE"),
            ));
        }
        let (name, value) = form_urlencoded::parse(pair.as_bytes())
            .next()
            .expect("a non-empty pair decodes to one entry");
        out.push((name.into_owned(), value.into_owned()));
    }
    Ok(out)
}

fn parse_authority(uri: &str, authority: &str) -> Result<Endpoint, UriError> {
    let (host, port) = if let Some(rest) = authority.strip_prefix('[') {
        let (host, after) = rest
            .split_once(']')
            .ok_or_else(|| syntax(uri, "unclosed '[' in an IPv6 address"))?;
        match after {
            "" => (host, None),
            p if p.starts_with(':') => (host, Some(&p[1..])),
            _ => return Err(syntax(uri, "expected :PORT after the IPv6 address")),
        }
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        }
    };
    if host.is_empty() {
        return Err(syntax(uri, "missing host: expected stomp://HOST:PORT"));
    }
    let port = match port {
        None => DEFAULT_STOMP_PORT,
        Some(p) => match p.parse::<u16>() {
            Ok(n) if n > 0 => n,
            _ => {
                return Err(syntax(
                    uri,
                    &format!("invalid port {p:?}: expected 1-65535"),
                ))
            }
        },
    };
    Ok(Endpoint::new(host, port))
}

fn boolean(name: &str, value: &str) -> Result<bool, UriError> {
    match value.trim().to_ascii_lowercase().as_str() {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(invalid(name, value, "true or false")),
    }
}

fn millis(name: &str, value: &str) -> Result<Duration, UriError> {
    value
        .trim()
        .parse::<u64>()
        .map(Duration::from_millis)
        .map_err(|_| invalid(name, value, "milliseconds (a whole number ≥ 0)"))
}

fn attempts(name: &str, value: &str) -> Result<i32, UriError> {
    match value.trim().parse::<i32>() {
        Ok(n) if n >= -1 => Ok(n),
        _ => Err(invalid(
            name,
            value,
            "a number of passes over the list, or -1 for ever",
        )),
    }
}

fn is_failover_option(name: &str) -> bool {
    FAILOVER_OPTIONS.contains(&name)
        || UNSUPPORTED_OPTIONS.iter().any(|(n, _)| *n == name)
        || name.starts_with("nested.")
}

fn closest<'a>(name: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    candidates
        .into_iter()
        .map(|c| {
            (
                strsim::jaro_winkler(&name.to_ascii_lowercase(), &c.to_ascii_lowercase()),
                c,
            )
        })
        .filter(|(score, _)| *score > 0.85)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| c)
}

fn failover_option_hint(name: &str) -> String {
    if name == "backOffMultiplier" {
        // ActiveMQ user problem: the multiplier's URI name differs from its field.
        return ": the back-off multiplier of failover: is called reconnectDelayExponent".into();
    }
    if MEMBER_OPTIONS.contains(&name) {
        return format!(
            ": {name} is a member URI option; set it for every member with nested.{name}"
        );
    }
    match closest(name, FAILOVER_OPTIONS) {
        Some(c) => format!(": did you mean {c}?"),
        None => format!(
            ": known options are {}, nested.*",
            FAILOVER_OPTIONS.join(", ")
        ),
    }
}

fn member_option_hint(name: &str) -> String {
    match closest(name, MEMBER_OPTIONS) {
        Some(c) => format!(": did you mean {c}?"),
        None => format!(": known member options are {}", MEMBER_OPTIONS.join(", ")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ep(port: u16) -> Endpoint {
        Endpoint::new("127.0.0.1", port)
    }

    #[test]
    fn defaults_are_activemqs() {
        let o = FailoverOptions::default();
        assert!(o.randomize);
        assert_eq!(o.initial_reconnect_delay, Duration::from_millis(10));
        assert_eq!(o.max_reconnect_delay, Duration::from_millis(30_000));
        assert!(o.use_exponential_back_off);
        assert_eq!(o.reconnect_delay_exponent, 2.0);
        assert_eq!(o.max_reconnect_attempts, -1);
        assert_eq!(o.startup_max_reconnect_attempts, -1);
        assert_eq!(o.timeout, None);
        assert!(!o.priority_backup);
        assert!(o.priority_uris.is_empty());
        assert_eq!(o.warn_after_reconnect_attempts, 10);
        assert!(o.reconnect_supported);
    }

    #[test]
    fn parenthesised_form_with_every_option() {
        let u = FailoverUri::parse(
            "failover:(stomp://127.0.0.1:61613, stomp://127.0.0.1:61614)?randomize=false\
             &initialReconnectDelay=100&maxReconnectDelay=5000&useExponentialBackOff=false\
             &reconnectDelayExponent=1.5&maxReconnectAttempts=3&startupMaxReconnectAttempts=2\
             &timeout=3000&priorityBackup=true&priorityURIs=stomp://127.0.0.1:61614\
             &warnAfterReconnectAttempts=0&reconnectSupported=false",
        )
        .unwrap();
        assert!(u.is_failover);
        assert_eq!(u.endpoints(), vec![ep(61613), ep(61614)]);
        let o = &u.options;
        assert!(!o.randomize);
        assert_eq!(o.initial_reconnect_delay, Duration::from_millis(100));
        assert_eq!(o.max_reconnect_delay, Duration::from_millis(5000));
        assert!(!o.use_exponential_back_off);
        assert_eq!(o.reconnect_delay_exponent, 1.5);
        assert_eq!(o.max_reconnect_attempts, 3);
        assert_eq!(o.startup_max_reconnect_attempts, 2);
        assert_eq!(o.timeout, Some(Duration::from_millis(3000)));
        assert!(o.priority_backup);
        assert_eq!(o.priority_uris, vec![ep(61614)]);
        assert_eq!(o.warn_after_reconnect_attempts, 0);
        assert!(!o.reconnect_supported);
        assert!(u.is_priority(&ep(61614)));
        assert!(!u.is_priority(&ep(61613)));
    }

    #[test]
    fn short_form_and_double_slash() {
        let u = FailoverUri::parse("failover:stomp://a:1,stomp://b:2").unwrap();
        assert_eq!(
            u.endpoints(),
            vec![Endpoint::new("a", 1), Endpoint::new("b", 2)]
        );
        assert_eq!(u.options, FailoverOptions::default());
        let u = FailoverUri::parse("failover://(stomp://a:1)?randomize=false").unwrap();
        assert!(!u.options.randomize);
    }

    #[test]
    fn short_form_query_belongs_to_the_last_member_as_in_activemq() {
        // A member option in the short form is legal and lands on the last member only.
        let u =
            FailoverUri::parse("failover:stomp://a:1,stomp://b:2?connectionTimeout=500").unwrap();
        assert_eq!(
            u.members[0].options.connection_timeout,
            Duration::from_secs(30)
        );
        assert_eq!(
            u.members[1].options.connection_timeout,
            Duration::from_millis(500)
        );
        // A failover option there is an error that shows the fix.
        let e = FailoverUri::parse("failover:stomp://a:1,stomp://b:2?randomize=false").unwrap_err();
        let msg = e.to_string();
        assert!(matches!(e, UriError::UnknownMemberOption { ref name, .. } if name == "randomize"));
        assert!(
            msg.contains("failover:(stomp://a:1,stomp://b:2)?randomize=false"),
            "{msg}"
        );
    }

    #[test]
    fn unknown_options_are_named_with_a_hint() {
        let e = FailoverUri::parse("failover:(stomp://a:1)?backOffMultiplier=2").unwrap_err();
        assert!(
            matches!(e, UriError::UnknownOption { ref name, .. } if name == "backOffMultiplier")
        );
        assert!(e.to_string().contains("reconnectDelayExponent"));

        let e = FailoverUri::parse("failover:(stomp://a:1)?maxReconectAttempts=2").unwrap_err();
        assert!(e.to_string().contains("\"maxReconectAttempts\""), "{e}");
        assert!(
            e.to_string().contains("did you mean maxReconnectAttempts?"),
            "{e}"
        );

        let e = FailoverUri::parse("failover:(stomp://a:1)?frobnicate=1").unwrap_err();
        assert!(e.to_string().contains("known options are randomize"), "{e}");

        let e = FailoverUri::parse("failover:(stomp://a:1)?connectionTimeout=1").unwrap_err();
        assert!(e.to_string().contains("nested.connectionTimeout"), "{e}");

        let e = FailoverUri::parse("failover:(stomp://a:1)?nested.soTimeout=1").unwrap_err();
        assert!(
            matches!(e, UriError::UnknownMemberOption { ref name, .. } if name == "nested.soTimeout")
        );
    }

    #[test]
    fn recognised_but_unsupported_activemq_options_are_refused_with_a_reason() {
        for name in ["backup", "trackMessages", "updateURIsURL", "maxCacheSize"] {
            let e = FailoverUri::parse(&format!("failover:(stomp://a:1)?{name}=true")).unwrap_err();
            assert!(
                matches!(e, UriError::UnsupportedOption { name: ref n, .. } if n == name),
                "{e}"
            );
        }
    }

    #[test]
    fn invalid_values_are_rejected() {
        for (q, name) in [
            ("randomize=yes", "randomize"),
            ("initialReconnectDelay=-5", "initialReconnectDelay"),
            ("maxReconnectDelay=abc", "maxReconnectDelay"),
            ("reconnectDelayExponent=0", "reconnectDelayExponent"),
            ("reconnectDelayExponent=NaN", "reconnectDelayExponent"),
            ("maxReconnectAttempts=-2", "maxReconnectAttempts"),
            (
                "startupMaxReconnectAttempts=x",
                "startupMaxReconnectAttempts",
            ),
            ("timeout=soon", "timeout"),
        ] {
            let e = FailoverUri::parse(&format!("failover:(stomp://a:1)?{q}")).unwrap_err();
            assert!(
                matches!(e, UriError::InvalidValue { name: ref n, .. } if n == name),
                "{q}: {e}"
            );
        }
        let e = FailoverUri::parse("failover:(stomp://a:1)?randomize").unwrap_err();
        assert!(e.to_string().contains("randomize=VALUE"), "{e}");
    }

    #[test]
    fn timeout_of_zero_or_minus_one_waits_for_ever() {
        for v in ["-1", "0"] {
            let u = FailoverUri::parse(&format!("failover:(stomp://a:1)?timeout={v}")).unwrap();
            assert_eq!(u.options.timeout, None);
        }
    }

    #[test]
    fn nested_options_apply_to_every_member_and_win() {
        let u = FailoverUri::parse(
            "failover:(stomp://a:1?connectionTimeout=100,stomp://b:2)?nested.connectionTimeout=700\
             &nested.wireFormat.maxInactivityDuration=0",
        )
        .unwrap();
        for m in &u.members {
            assert_eq!(m.options.connection_timeout, Duration::from_millis(700));
            assert_eq!(m.options.max_inactivity, Duration::ZERO);
        }
    }

    #[test]
    fn member_uris() {
        let m = MemberUri::parse("stomp://[::1]:61614").unwrap();
        assert_eq!(m.endpoint, Endpoint::new("::1", 61614));
        assert_eq!(m.endpoint.socket_addr_string(), "[::1]:61614");
        assert_eq!(
            MemberUri::parse("stomp://h").unwrap().endpoint.port,
            DEFAULT_STOMP_PORT
        );
        assert_eq!(
            MemberUri::parse("stomp+nio://h:1/").unwrap().endpoint,
            Endpoint::new("h", 1)
        );
        assert!(matches!(
            MemberUri::parse("tcp://h:61616"),
            Err(UriError::OpenWireNotSupported { .. })
        ));
        let e = FailoverUri::parse("failover:(stomp://a:1,tcp://b:61616)").unwrap_err();
        assert!(e.to_string().contains("OpenWire"), "{e}");
        assert!(e.to_string().contains("not supported yet"), "{e}");
        assert!(matches!(
            MemberUri::parse("ssl://h:1"),
            Err(UriError::UnsupportedScheme { .. })
        ));
        for bad in [
            "stomp://:1",
            "stomp://h:0",
            "stomp://h:99999",
            "stomp://h:1/path",
            "h:1",
            "stomp://u:p@h:1",
        ] {
            assert!(MemberUri::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn malformed_composites() {
        for bad in [
            "",
            "failover:",
            "failover:()",
            "failover:(stomp://a:1",
            "failover:(stomp://a:1,)",
            "failover:(stomp://a:1)randomize=false",
            "failover:stomp://a:1)",
            "failover:(failover:(stomp://a:1))",
        ] {
            assert!(FailoverUri::parse(bad).is_err(), "{bad:?} should fail");
        }
    }

    #[test]
    fn plain_member_url_is_a_single_connection() {
        let u = FailoverUri::parse("stomp://127.0.0.1:61613").unwrap();
        assert!(!u.is_failover);
        assert_eq!(u.options.max_reconnect_attempts, 0);
        assert_eq!(u.to_string(), "stomp://127.0.0.1:61613");
    }

    #[test]
    fn display_roundtrips() {
        for s in [
            "failover:(stomp://a:1,stomp://b:2)",
            "failover:(stomp://a:1?connectionTimeout=5,stomp://[::1]:2)?randomize=false&maxReconnectAttempts=3&timeout=100&priorityBackup=true&priorityURIs=stomp://b:2",
        ] {
            let u = FailoverUri::parse(s).unwrap();
            assert_eq!(u.to_string(), s);
            assert_eq!(FailoverUri::parse(&u.to_string()).unwrap(), u);
        }
    }

    #[test]
    fn url_decoding_of_values() {
        let u = FailoverUri::parse(
            "failover:(stomp://a:1,stomp://b:2)?priorityURIs=stomp%3A%2F%2Fb%3A2",
        )
        .unwrap();
        assert_eq!(u.options.priority_uris, vec![Endpoint::new("b", 2)]);
    }
}
