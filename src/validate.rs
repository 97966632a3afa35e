//! Raw inventory → [`Topology`]: fills in defaults, resolves references and
//! secrets, and collects every problem (with its position) before failing.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::ops::Range;
use std::path::{Path, PathBuf};

use crate::diag::{Collector, Diagnostic, Diagnostics, SourceMap};
use crate::inventory::{self, FailoverTable, RawInventory, RawSecret, S};
use crate::topology::*;

/// Default base directory on every host.
pub const DEFAULT_BASE_DIR: &str = "/var/lib/amqctl";

/// amqctl's failover defaults: bounded, so a client (or a check) facing a dead
/// cluster fails instead of hanging, and a back-off capped at 1 s, so clients
/// resume within ~1 s of the new master (ActiveMQ's 30 s cap can double an
/// outage).
pub const FAILOVER_DEFAULTS: &[(&str, &str)] = &[
    ("randomize", "false"),
    ("initialReconnectDelay", "10"),
    ("maxReconnectDelay", "1000"),
    ("startupMaxReconnectAttempts", "10"),
    ("maxReconnectAttempts", "30"),
    ("timeout", "10000"),
];

#[derive(Clone, Copy, PartialEq)]
enum OptType {
    Bool,
    /// Integer with a minimum.
    Int(i64),
    Float,
    Str,
}

/// Every option `FailoverTransport` accepts on a `failover:` URI (its bean
/// setters; ActiveMQ rejects anything else with "Invalid connect parameters").
const FAILOVER_OPTIONS: &[(&str, OptType)] = &[
    ("initialReconnectDelay", OptType::Int(0)),
    ("maxReconnectDelay", OptType::Int(1)),
    ("useExponentialBackOff", OptType::Bool),
    ("reconnectDelayExponent", OptType::Float),
    ("maxReconnectAttempts", OptType::Int(-1)),
    ("startupMaxReconnectAttempts", OptType::Int(-1)),
    ("warnAfterReconnectAttempts", OptType::Int(0)),
    ("randomize", OptType::Bool),
    ("timeout", OptType::Int(-1)),
    ("backup", OptType::Bool),
    ("backupPoolSize", OptType::Int(1)),
    ("priorityBackup", OptType::Bool),
    ("priorityURIs", OptType::Str),
    ("trackMessages", OptType::Bool),
    ("maxCacheSize", OptType::Int(1)),
    ("trackTransactionProducers", OptType::Bool),
    ("updateURIsSupported", OptType::Bool),
    ("rebalanceUpdateURIs", OptType::Bool),
    ("updateURIsURL", OptType::Str),
    ("reconnectSupported", OptType::Bool),
];

const SYNC_VALUES: &[&str] = &[
    "local_mem",
    "local_disk",
    "remote_mem",
    "remote_disk",
    "quorum_mem",
    "quorum_disk",
];

pub(crate) fn validate(
    path: &Path,
    text: &str,
    env: EnvLookup<'_>,
) -> Result<(Topology, Vec<Diagnostic>), Diagnostics> {
    let map = SourceMap::new(path, text);
    let (raw, found) = inventory::parse(&map, text)?;
    let mut v = Validator {
        c: Collector::new(map),
        env,
        dir: path.parent().map(Path::to_path_buf).unwrap_or_default(),
        allow_inline: false,
        ports: Vec::new(),
        services: Vec::new(),
        broker_impl: (BrokerImpl::AmqBroker, 0..0),
    };
    v.c.out = found;
    let topo = v.build(path, raw);
    if v.c.has_errors() {
        Err(v.c.out)
    } else {
        Ok((topo, v.c.out.warnings))
    }
}

struct PortUse {
    host: String,
    port: u16,
    service: String,
    key: &'static str,
    span: Range<usize>,
}

struct Validator<'a, 'e> {
    c: Collector<'a>,
    env: EnvLookup<'e>,
    dir: PathBuf,
    allow_inline: bool,
    ports: Vec<PortUse>,
    /// Service names (ZooKeeper `zk<id>` and brokers): one directory each.
    services: Vec<(String, Range<usize>)>,
    /// `[cluster] broker` and where it was set.
    broker_impl: (BrokerImpl, Range<usize>),
}

fn sp<T>(s: &S<T>) -> Range<usize> {
    s.span()
}

impl Validator<'_, '_> {
    fn build(&mut self, path: &Path, raw: RawInventory) -> Topology {
        let cluster_name = match &raw.cluster {
            None => {
                self.c.error(
                    0..0,
                    "missing [cluster] table",
                    "add `[cluster]` with `name = \"...\"` at the top of the inventory",
                );
                String::from("cluster")
            }
            Some(cl) => {
                if let Some(a) = &cl.get_ref().allow_inline_secrets {
                    self.allow_inline = *a.get_ref();
                }
                if let Some(b) = &cl.get_ref().broker {
                    if self
                        .one_of(b, &["amq-broker", "activemq"], "broker")
                        .as_deref()
                        == Some("activemq")
                    {
                        self.broker_impl = (BrokerImpl::Activemq, sp(b));
                    }
                }
                self.required_name(&cl.get_ref().name, sp(cl), "[cluster]")
            }
        };
        let default_base = raw
            .cluster
            .as_ref()
            .and_then(|c| c.get_ref().base_dir.as_ref())
            .map(|b| self.abs_path(b))
            .unwrap_or_else(|| PathBuf::from(DEFAULT_BASE_DIR));

        let hosts = self.hosts(&raw, &default_base);
        let zookeeper = raw.zookeeper.as_ref().map(|z| self.zookeeper(z, &hosts));
        let mut failover = FAILOVER_DEFAULTS
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect::<Vec<_>>();
        if let Some(cl) = &raw.clients {
            if let Some(f) = &cl.get_ref().failover {
                self.failover(f.get_ref(), &mut failover);
            }
        }
        let groups: Vec<Group> = raw
            .groups
            .iter()
            .filter_map(|g| self.group(g, &hosts, zookeeper.as_ref(), &failover))
            .collect();
        if raw.groups.is_empty() {
            self.c.error(
                0..0,
                "the inventory defines no broker groups",
                "add at least one `[[groups]]` with a `[[groups.brokers]]`",
            );
        }
        let users = self.users(&raw);
        let networks = self.networks(&raw, &groups, &users, &cluster_name);
        self.check_ports(&hosts);
        self.check_unique_services();
        self.check_resolvable(&raw, &hosts);
        Topology {
            source: path.to_path_buf(),
            cluster: cluster_name,
            broker_impl: self.broker_impl.0,
            hosts,
            zookeeper,
            groups,
            networks,
            users,
        }
    }

    // ---- small helpers -------------------------------------------------

    fn missing(&mut self, table: Range<usize>, key: &str, what: &str) {
        self.c.error(
            table,
            format!("missing `{key}` in {what}"),
            format!("add `{key} = ...` to this table"),
        );
    }

    /// A required, well-formed name (used in paths and unit names).
    fn required_name(&mut self, v: &Option<S<String>>, table: Range<usize>, what: &str) -> String {
        match v {
            None => {
                self.missing(table, "name", what);
                String::new()
            }
            Some(n) => self.name(n),
        }
    }

    fn name(&mut self, n: &S<String>) -> String {
        let s = n.get_ref();
        let ok = !s.is_empty()
            && s.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
        if !ok {
            self.c.error(
                sp(n),
                format!("invalid name `{s}`"),
                "use letters, digits, `.`, `_` and `-`, starting with a letter or digit (names become directory and unit names)",
            );
        }
        s.clone()
    }

    fn abs_path(&mut self, p: &S<String>) -> PathBuf {
        let path = PathBuf::from(p.get_ref());
        if !path.is_absolute() {
            self.c.error(
                sp(p),
                format!("path `{}` is not absolute", p.get_ref()),
                "give an absolute path on the target host, e.g. `/var/lib/amqctl`",
            );
        }
        path
    }

    /// A path on the machine running amqctl: `~/` is the user's home,
    /// relative paths are from the inventory's directory.
    fn local_path(&mut self, p: &S<String>) -> PathBuf {
        let raw = p.get_ref();
        if let Some(rest) = raw.strip_prefix("~/") {
            match (self.env)("HOME") {
                Some(home) => return PathBuf::from(home).join(rest),
                None => self.c.error(
                    sp(p),
                    format!("cannot expand `~` in {raw}: HOME is not set"),
                    "give an absolute path",
                ),
            }
        }
        self.dir.join(raw)
    }

    fn one_of(&mut self, v: &S<String>, allowed: &[&str], key: &str) -> Option<String> {
        if allowed.contains(&v.get_ref().as_str()) {
            Some(v.get_ref().clone())
        } else {
            let list = allowed
                .iter()
                .map(|a| format!("\"{a}\""))
                .collect::<Vec<_>>()
                .join(", ");
            self.c.error(
                sp(v),
                format!("invalid {key} \"{}\"", v.get_ref()),
                format!("use one of {list}"),
            );
            None
        }
    }

    /// An integer in `min..=max`, or `default`.
    fn int(&mut self, v: &Option<S<i64>>, default: i64, min: i64, max: i64, key: &str) -> i64 {
        match v {
            None => default,
            Some(n) if (min..=max).contains(n.get_ref()) => *n.get_ref(),
            Some(n) => {
                self.c.error(
                    sp(n),
                    format!("{key} = {} is out of range", n.get_ref()),
                    format!("use a value from {min} to {max}"),
                );
                default
            }
        }
    }

    /// A port: explicit, or `default` (pointing at `default_span`: the
    /// `port_offset` or the table); remembered for the clash check.
    fn port(
        &mut self,
        v: &Option<S<i64>>,
        (default, default_span): (i64, Range<usize>),
        key: &'static str,
        (host, owner): (&str, &str),
    ) -> u16 {
        let (value, span) = match v {
            Some(p) => (*p.get_ref(), sp(p)),
            None => (default, default_span),
        };
        if !(1..=65535).contains(&value) {
            self.c.error(
                span,
                format!("{key} = {value} is not a valid port"),
                "use a port from 1 to 65535",
            );
            return 0;
        }
        self.ports.push(PortUse {
            host: host.to_string(),
            port: value as u16,
            service: owner.to_string(),
            key,
            span,
        });
        value as u16
    }

    fn secret(&mut self, s: &S<RawSecret>, what: &str) -> Option<Secret> {
        let r = s.get_ref();
        for k in &r.unknown {
            self.c.error(
                sp(s),
                format!("unknown key `{k}` in the {what}"),
                "a secret is `{ env = \"VAR\" }` or `{ file = \"/path\" }`",
            );
        }
        let given = [r.env.is_some(), r.file.is_some(), r.value.is_some()]
            .iter()
            .filter(|x| **x)
            .count();
        if given != 1 {
            self.c.error(
                sp(s),
                format!("the {what} must name exactly one of `env`, `file` or `value`"),
                "write `{ env = \"VAR\" }` or `{ file = \"/path\" }`",
            );
            return None;
        }
        if let Some(var) = &r.env {
            return match (self.env)(var) {
                Some(v) if !v.is_empty() => Some(Secret::new(format!("env {var}"), v)),
                _ => {
                    self.c.error(
                        sp(s),
                        format!("environment variable {var} (the {what}) is not set"),
                        format!("export {var}=... before running amqctl, or use `{{ file = \"/path\" }}`"),
                    );
                    None
                }
            };
        }
        if let Some(file) = &r.file {
            let p = self.dir.join(file);
            return match std::fs::read_to_string(&p) {
                Ok(v) if !v.trim().is_empty() => {
                    use std::os::unix::fs::PermissionsExt;
                    let mode = std::fs::metadata(&p).map_or(0, |m| m.permissions().mode());
                    if mode & 0o077 != 0 {
                        self.c.warn(
                            sp(s),
                            format!(
                                "secret file {} is readable by other users (mode {:04o})",
                                p.display(),
                                mode & 0o7777
                            ),
                            format!("chmod 600 {}", p.display()),
                        );
                    }
                    Some(Secret::new(
                        format!("file {file}"),
                        v.trim_end_matches(['\n', '\r']),
                    ))
                }
                Ok(_) => {
                    self.c.error(
                        sp(s),
                        format!("secret file {} is empty", p.display()),
                        "write the secret into it",
                    );
                    None
                }
                Err(e) => {
                    self.c.error(
                        sp(s),
                        format!("cannot read secret file {}: {e}", p.display()),
                        "create it (mode 0600) or point `file` at the right path (relative paths are from the inventory's directory)",
                    );
                    None
                }
            };
        }
        let value = r.value.clone().unwrap_or_default();
        if !self.allow_inline {
            self.c.error(
                sp(s),
                format!("the {what} is written inline"),
                "reference it as `{ env = \"VAR\" }` or `{ file = \"/path\" }` (or set `allow_inline_secrets = true` in [cluster] for throwaway setups)",
            );
            return None;
        }
        Some(Secret::new("inline", value))
    }

    // ---- hosts ---------------------------------------------------------

    fn hosts(&mut self, raw: &RawInventory, default_base: &Path) -> Vec<Host> {
        let mut out = Vec::new();
        if raw.hosts.is_empty() {
            self.c.error(
                0..0,
                "the inventory defines no hosts",
                "add a `[[hosts]]` table with `name` and `address`",
            );
        }
        let mut names = Vec::new();
        let mut hostnames = Vec::new();
        for h in &raw.hosts {
            let t = h.get_ref();
            let name = self.required_name(&t.name, sp(h), "[[hosts]]");
            if let (Some(n), "clients") = (&t.name, name.as_str()) {
                // `plan --out` writes the client URLs to DIR/clients/.
                self.c.error(
                    sp(n),
                    "the host name `clients` is reserved",
                    "rename the host (plan --out writes the client failover URLs to DIR/clients/)",
                );
            }
            if let Some(n) = &t.name {
                names.push((name.clone(), sp(n)));
            }
            let address = match &t.address {
                None => {
                    self.missing(sp(h), "address", "[[hosts]]");
                    String::new()
                }
                Some(a) => {
                    if a.get_ref().trim().is_empty() || a.get_ref().contains(char::is_whitespace) {
                        self.c.error(
                            sp(a),
                            "invalid address",
                            "give the IP address (or DNS name) deploy connects to",
                        );
                    }
                    a.get_ref().clone()
                }
            };
            let hostname = t.hostname.as_ref().map(|n| {
                self.hostname(n);
                hostnames.push((n.get_ref().clone(), sp(n)));
                n.get_ref().clone()
            });
            let aliases = t
                .aliases
                .iter()
                .flatten()
                .map(|a| {
                    self.hostname(a);
                    hostnames.push((a.get_ref().clone(), sp(a)));
                    a.get_ref().clone()
                })
                .collect();
            let local_default = is_loopback(&address);
            let local = match &t.connection {
                None => local_default,
                Some(c) => {
                    self.one_of(c, &["local", "ssh"], "connection").as_deref() == Some("local")
                }
            };
            let connection = if local {
                if let Some(ssh) = &t.ssh {
                    self.c.warn(
                        sp(ssh),
                        format!(
                            "ssh settings of host `{name}` are ignored: it is deployed locally"
                        ),
                        "remove [hosts.ssh] or set `connection = \"ssh\"`",
                    );
                }
                Connection::Local
            } else {
                Connection::Ssh(self.ssh(t.ssh.as_ref()))
            };
            let service_manager = match &t.service_manager {
                None if local => ServiceManager::Process,
                None => ServiceManager::Systemd,
                Some(m) => match self
                    .one_of(m, &["systemd", "process"], "service_manager")
                    .as_deref()
                {
                    Some("process") => ServiceManager::Process,
                    _ => ServiceManager::Systemd,
                },
            };
            let base_dir = match &t.base_dir {
                Some(b) => self.abs_path(b),
                None => default_base.to_path_buf(),
            };
            let broker_bin = match &t.broker_bin {
                Some(b) => self.abs_path(b),
                None => base_dir.join("bin/amq-broker"),
            };
            let shared_mounts = t
                .shared_mounts
                .iter()
                .flatten()
                .map(|m| self.abs_path(m))
                .collect();
            out.push(Host {
                name,
                address,
                hostname,
                aliases,
                connection,
                service_manager,
                base_dir,
                broker_bin,
                java: t
                    .java
                    .as_ref()
                    .map_or_else(|| "java".to_string(), |j| j.get_ref().clone()),
                shared_mounts,
                manage_hosts: t.manage_hosts.as_ref().is_some_and(|m| *m.get_ref()),
            });
        }
        self.duplicates(&names, "host name", "host names must be unique");
        self.duplicates(
            &hostnames,
            "hostname",
            "each hostname or alias may belong to one host only",
        );
        out
    }

    fn hostname(&mut self, n: &S<String>) {
        let s = n.get_ref();
        let ok = !s.is_empty()
            && s.len() <= 253
            && s.split('.').all(|label| {
                !label.is_empty()
                    && label.len() <= 63
                    && !label.starts_with('-')
                    && !label.ends_with('-')
                    && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
            });
        if !ok {
            self.c.error(
                sp(n),
                format!("invalid hostname `{s}`"),
                "use DNS labels of letters, digits and `-`, separated by `.`",
            );
        }
    }

    fn ssh(&mut self, s: Option<&S<inventory::RawSsh>>) -> SshSettings {
        let mut out = SshSettings {
            user: "root".to_string(),
            port: 22,
            identity_file: None,
            known_hosts: KnownHostsPolicy::Strict,
            known_hosts_file: None,
        };
        let Some(s) = s else { return out };
        let t = s.get_ref();
        if let Some(u) = &t.user {
            out.user = u.get_ref().clone();
        }
        out.port = self.int(&t.port, 22, 1, 65535, "ssh port") as u16;
        out.identity_file = t.identity_file.as_ref().map(|p| self.local_path(p));
        out.known_hosts_file = t.known_hosts_file.as_ref().map(|p| self.local_path(p));
        if let Some(k) = &t.known_hosts {
            if self
                .one_of(k, &["strict", "accept-new"], "known_hosts")
                .as_deref()
                == Some("accept-new")
            {
                out.known_hosts = KnownHostsPolicy::AcceptNew;
            }
        }
        out
    }

    /// The host named by `r`, or an error at `r`.
    fn host_ref<'h>(&mut self, r: &S<String>, hosts: &'h [Host]) -> Option<&'h Host> {
        let found = hosts.iter().find(|h| h.name == *r.get_ref());
        if found.is_none() {
            let names: Vec<&str> = hosts.iter().map(|h| h.name.as_str()).collect();
            let help = match inventory::closest(r.get_ref(), &names) {
                Some(n) => format!("did you mean `{n}`? (hosts: {})", names.join(", ")),
                None => format!("define it in [[hosts]] or use one of: {}", names.join(", ")),
            };
            self.c
                .error(sp(r), format!("unknown host `{}`", r.get_ref()), help);
        }
        found
    }

    // ---- zookeeper -----------------------------------------------------

    fn zookeeper(&mut self, z: &S<inventory::RawZookeeper>, hosts: &[Host]) -> Ensemble {
        let t = z.get_ref();
        let install = match &t.install {
            None => ZkInstall::Apt,
            Some(i) if i.get_ref() == "apt" => ZkInstall::Apt,
            Some(i) if i.get_ref().starts_with('/') => ZkInstall::Path(PathBuf::from(i.get_ref())),
            Some(i) => {
                self.c.error(
                    sp(i),
                    format!("invalid install \"{}\"", i.get_ref()),
                    "use \"apt\" (Debian's zookeeper package) or the absolute path of an unpacked ZooKeeper release",
                );
                ZkInstall::Apt
            }
        };
        let heap = match &t.heap {
            None => "256m".to_string(),
            Some(h) => {
                let s = h.get_ref();
                let digits = s.trim_end_matches(['k', 'K', 'm', 'M', 'g', 'G']);
                if digits.is_empty()
                    || !digits.chars().all(|c| c.is_ascii_digit())
                    || digits.len() + 1 < s.len()
                {
                    self.c.error(
                        sp(h),
                        format!("invalid heap \"{s}\""),
                        "use a JVM size such as \"256m\" or \"1g\"",
                    );
                }
                s.clone()
            }
        };
        let password = t
            .password
            .as_ref()
            .and_then(|p| self.secret(p, "ZooKeeper password"));
        let mut ids = Vec::new();
        let mut nodes = Vec::new();
        for n in &t.nodes {
            let r = n.get_ref();
            let id = match &r.id {
                None => {
                    self.c.error(
                        sp(n),
                        "missing `id` in [[zookeeper.nodes]]",
                        "give every ZooKeeper node an explicit, stable `id` (1-255); it becomes its myid and must never change",
                    );
                    0
                }
                Some(i) => {
                    ids.push((i.get_ref().to_string(), sp(i)));
                    self.int(&r.id, 0, 1, 255, "id") as u32
                }
            };
            let service = format!("zk{id}");
            let host = match &r.host {
                None => {
                    self.missing(sp(n), "host", "[[zookeeper.nodes]]");
                    None
                }
                Some(h) => self.host_ref(h, hosts),
            };
            let host_name = host.map(|h| h.name.clone()).unwrap_or_default();
            // A duplicate id is reported as such, not again as a duplicate `zk<id>`.
            let first_id = !ids[..ids.len().saturating_sub(1)]
                .iter()
                .any(|(i, _)| *i == id.to_string());
            if let (Some(_), Some(i), true) = (host, &r.id, first_id) {
                self.services.push((service.clone(), sp(i)));
            }
            let who = (host_name.as_str(), service.as_str());
            let client_port = self.port(&r.client_port, (2181, sp(n)), "client_port", who);
            let peer_port = self.port(&r.peer_port, (2888, sp(n)), "peer_port", who);
            let election_port = self.port(&r.election_port, (3888, sp(n)), "election_port", who);
            let data_dir = match (&r.data_dir, host) {
                (Some(d), _) => self.abs_path(d),
                (None, Some(h)) => h.service_dir(&service).join("data"),
                (None, None) => PathBuf::new(),
            };
            nodes.push(ZkNode {
                id,
                service,
                host: host_name,
                client_port,
                peer_port,
                election_port,
                data_dir,
            });
        }
        self.duplicates(
            &ids,
            "ZooKeeper id",
            "every ZooKeeper node needs its own `id`",
        );
        match nodes.len() {
            0 => self.c.error(
                sp(z),
                "the ZooKeeper ensemble has no nodes",
                "add `[[zookeeper.nodes]]` tables (3 or 5 nodes)",
            ),
            1 => self.c.warn(
                sp(z),
                "a ZooKeeper ensemble of 1 node tolerates no failure",
                "use 3 nodes (tolerates 1) or 5 (tolerates 2)",
            ),
            n if n % 2 == 0 => self.c.warn(
                sp(z),
                format!(
                    "a ZooKeeper ensemble of {n} nodes tolerates {} failure{}, no more than an ensemble of {} would",
                    n - (n / 2 + 1),
                    plural(n - (n / 2 + 1)),
                    n - 1
                ),
                format!("use an odd number of nodes ({} or {})", n - 1, n + 1),
            ),
            _ => {}
        }
        let tick_time = self.int(&t.tick_time, 2000, 1, 600_000, "tick_time") as u32;
        let init_limit = self.int(&t.init_limit, 10, 1, 1000, "init_limit") as u32;
        let sync_limit = self.int(&t.sync_limit, 5, 1, 1000, "sync_limit") as u32;
        Ensemble {
            install,
            tick_time,
            init_limit,
            sync_limit,
            heap,
            password,
            nodes,
        }
    }

    // ---- groups ----------------------------------------------------------

    fn group(
        &mut self,
        g: &S<inventory::RawGroup>,
        hosts: &[Host],
        zk: Option<&Ensemble>,
        failover_base: &[(String, String)],
    ) -> Option<Group> {
        let t = g.get_ref();
        let name = self.required_name(&t.name, sp(g), "[[groups]]");
        let kind = match &t.store {
            None => "standalone".to_string(),
            Some(s) => self.one_of(s, &["replicated", "shared-file", "standalone"], "store")?,
        };
        // Keys that only make sense for one store kind.
        let only = |key: &str| -> Option<&'static str> {
            match key {
                "replicas" | "zk_path" | "zk_session_timeout" | "sync" | "security_token"
                | "slave_redirect" => Some("replicated"),
                "shared_dir" | "lock_keep_alive_period" | "lock_acquire_sleep_interval" => {
                    Some("shared-file")
                }
                _ => None,
            }
        };
        let present: Vec<(&str, Range<usize>)> = [
            ("replicas", t.replicas.as_ref().map(sp)),
            ("zk_path", t.zk_path.as_ref().map(sp)),
            ("zk_session_timeout", t.zk_session_timeout.as_ref().map(sp)),
            ("sync", t.sync.as_ref().map(sp)),
            ("security_token", t.security_token.as_ref().map(sp)),
            ("slave_redirect", t.slave_redirect.as_ref().map(sp)),
            ("shared_dir", t.shared_dir.as_ref().map(sp)),
            (
                "lock_keep_alive_period",
                t.lock_keep_alive_period.as_ref().map(sp),
            ),
            (
                "lock_acquire_sleep_interval",
                t.lock_acquire_sleep_interval.as_ref().map(sp),
            ),
        ]
        .into_iter()
        .filter_map(|(k, s)| s.map(|s| (k, s)))
        .collect();
        for (key, span) in present {
            if let Some(store) = only(key) {
                if store != kind {
                    self.c.error(
                        span,
                        format!("`{key}` applies only to store = \"{store}\", but group `{name}` is {kind}"),
                        format!("remove `{key}` or set `store = \"{store}\"`"),
                    );
                }
            }
        }

        let mut failover = failover_base.to_vec();
        if let Some(f) = &t.failover {
            self.failover(f.get_ref(), &mut failover);
        }

        let mut brokers = Vec::new();
        for b in &t.brokers {
            if let Some(broker) = self.broker(b, &name, &kind, hosts) {
                brokers.push(broker);
            }
        }
        if t.brokers.is_empty() {
            self.c.error(
                sp(g),
                format!("group `{name}` has no brokers"),
                "add `[[groups.brokers]]` tables with `name` and `host`",
            );
        }
        let n = t.brokers.len();
        let store = match kind.as_str() {
            "replicated" => {
                if self.broker_impl.0 == BrokerImpl::Activemq {
                    let span = t.store.as_ref().map_or(sp(g), sp);
                    self.c.error_related(
                        span,
                        format!("group `{name}` is replicated, but ActiveMQ 5.17 has no replicated store"),
                        "use store = \"shared-file\", or the bundled broker (`broker = \"amq-broker\"`): <replicatedLevelDB> was removed from ActiveMQ in 5.17",
                        "broker chosen",
                        self.broker_impl.1.clone(),
                    );
                }
                if zk.is_none() {
                    let span = t.store.as_ref().map_or(sp(g), sp);
                    self.c.error(
                        span,
                        format!("replicated group `{name}` needs a ZooKeeper ensemble"),
                        "add a [zookeeper] table with `[[zookeeper.nodes]]` (3 nodes), or use store = \"shared-file\"",
                    );
                }
                let replicas = match &t.replicas {
                    None => n as i64,
                    Some(r) => {
                        if *r.get_ref() != n as i64 && n > 0 {
                            self.c.error(
                                sp(r),
                                format!("group `{name}` has replicas = {} but {n} broker(s)", r.get_ref()),
                                format!("set `replicas = {n}` (the election quorum is replicas/2+1 of the group's brokers) or add brokers"),
                            );
                        }
                        *r.get_ref()
                    }
                }
                .max(1) as u32;
                let rep = Replicated {
                    replicas,
                    zk_path: t.zk_path.as_ref().map_or_else(
                        || "/activemq/leveldb-stores".to_string(),
                        |p| {
                            if !p.get_ref().starts_with('/') || p.get_ref().ends_with('/') && p.get_ref().len() > 1 {
                                self.c.error(sp(p), format!("invalid zk_path \"{}\"", p.get_ref()), "use an absolute znode path such as \"/activemq/leveldb-stores\"");
                            }
                            p.get_ref().clone()
                        },
                    ),
                    zk_session_timeout: t.zk_session_timeout.as_ref().map_or_else(
                        || "2s".to_string(),
                        |s| {
                            if !is_timespan(s.get_ref()) {
                                self.c.error(sp(s), format!("invalid zk_session_timeout \"{}\"", s.get_ref()), "use a time span such as \"2s\", \"1500ms\" or \"1m\"");
                            }
                            s.get_ref().clone()
                        },
                    ),
                    sync: t.sync.as_ref().map_or_else(
                        || "quorum_mem".to_string(),
                        |s| {
                            let bad: Vec<&str> = s.get_ref().split(',').map(str::trim).filter(|p| !SYNC_VALUES.contains(p)).collect();
                            if !bad.is_empty() {
                                self.c.error(sp(s), format!("invalid sync \"{}\"", s.get_ref()), format!("use one or more (comma-separated) of {}", SYNC_VALUES.join(", ")));
                            }
                            s.get_ref().clone()
                        },
                    ),
                    security_token: t.security_token.as_ref().and_then(|s| self.secret(s, "security token")),
                    slave_redirect: t.slave_redirect.as_ref().is_some_and(|s| *s.get_ref()),
                };
                if n > 0 && n < 3 {
                    self.c.warn(
                        t.name.as_ref().map_or(sp(g), sp),
                        format!(
                            "replicated group `{name}` has {n} broker(s): no failover tolerated (tolerance = replicas - (replicas/2+1) = {})",
                            rep.tolerance()
                        ),
                        "use 3 brokers (tolerates 1 failure) or 5 (tolerates 2)",
                    );
                }
                Store::Replicated(rep)
            }
            "shared-file" => Store::SharedFile(self.shared_file(t, sp(g), &name, &brokers, hosts)),
            _ => {
                if n > 1 {
                    self.c.error(
                        sp(&t.brokers[1]),
                        format!("standalone group `{name}` has {n} brokers"),
                        "a standalone group has exactly one broker: give each standalone broker its own group, or use store = \"shared-file\" or \"replicated\" for master/slave",
                    );
                }
                Store::Standalone
            }
        };
        let failover_bound = t.failover_bound.as_ref().map(|s| {
            if !is_timespan(s.get_ref()) {
                self.c.error(
                    sp(s),
                    format!("invalid failover_bound \"{}\"", s.get_ref()),
                    "use a time span such as \"7s\" or \"2500ms\"",
                );
            }
            s.get_ref().clone()
        });
        Some(Group {
            name,
            store,
            brokers,
            failover,
            failover_bound,
        })
    }

    fn broker(
        &mut self,
        b: &S<inventory::RawBroker>,
        group: &str,
        kind: &str,
        hosts: &[Host],
    ) -> Option<Broker> {
        let t = b.get_ref();
        let name = self.required_name(&t.name, sp(b), "[[groups.brokers]]");
        if let Some(n) = &t.name {
            self.services.push((name.clone(), sp(n)));
        }
        let host = match &t.host {
            None => {
                self.missing(sp(b), "host", "[[groups.brokers]]");
                None
            }
            Some(h) => self.host_ref(h, hosts),
        };
        let host_name = host.map(|h| h.name.clone()).unwrap_or_default();
        let off = self.int(&t.port_offset, 0, 0, 60000, "port_offset");
        let off_span = t.port_offset.as_ref().map_or(sp(b), sp);
        let who = (host_name.as_str(), name.as_str());
        let stomp_port = self.port(
            &t.stomp_port,
            (61613 + off, off_span.clone()),
            "stomp_port",
            who,
        );
        let openwire_port = self.port(
            &t.openwire_port,
            (61616 + off, off_span.clone()),
            "openwire_port",
            who,
        );
        let status_port = self.port(
            &t.status_port,
            (8161 + off, off_span.clone()),
            "status_port",
            who,
        );
        let replication_port = if kind == "replicated" {
            Some(self.port(
                &t.replication_port,
                (61619 + off, off_span),
                "replication_port",
                who,
            ))
        } else {
            if let Some(p) = &t.replication_port {
                self.c.error(
                    sp(p),
                    format!("`replication_port` applies only to replicated groups, but group `{group}` is {kind}"),
                    "remove it",
                );
            }
            None
        };
        let weight = self.int(&t.weight, 1, 1, 1_000_000, "weight") as u32;
        if kind != "replicated" {
            if let Some(w) = &t.weight {
                self.c.error(
                    sp(w),
                    format!(
                        "`weight` applies only to replicated groups, but group `{group}` is {kind}"
                    ),
                    "remove it",
                );
            }
        }
        let hostname = match (&t.hostname, host) {
            (Some(h), _) => h.get_ref().clone(),
            (None, Some(h)) => h.reach().to_string(),
            (None, None) => String::new(),
        };
        let data_dir = match (&t.data_dir, host) {
            (Some(d), _) => self.abs_path(d),
            (None, Some(h)) => h.service_dir(&name).join("data"),
            (None, None) => PathBuf::new(),
        };
        host?;
        Some(Broker {
            name,
            group: group.to_string(),
            host: host_name,
            stomp_port,
            openwire_port,
            status_port,
            replication_port,
            weight,
            hostname,
            data_dir,
        })
    }

    fn shared_file(
        &mut self,
        t: &inventory::RawGroup,
        group_span: Range<usize>,
        name: &str,
        brokers: &[Broker],
        hosts: &[Host],
    ) -> SharedFile {
        let on: BTreeSet<&str> = brokers.iter().map(|b| b.host.as_str()).collect();
        let directory = match &t.shared_dir {
            Some(d) => self.abs_path(d),
            None if on.len() <= 1 => on
                .iter()
                .next()
                .and_then(|h| hosts.iter().find(|x| x.name == *h))
                .map(|h| h.base_dir.join("shared").join(name).join("kahadb"))
                .unwrap_or_default(),
            None => {
                self.c.error(
                    t.name.as_ref().map_or(group_span.clone(), sp),
                    format!(
                        "shared-file group `{name}` spans hosts {} but has no `shared_dir`",
                        on.iter().copied().collect::<Vec<_>>().join(", ")
                    ),
                    "set `shared_dir` to a directory on a file system every one of these hosts mounts (and list the mount in each host's `shared_mounts`)",
                );
                PathBuf::new()
            }
        };
        if on.len() > 1 && directory.is_absolute() {
            for h in &on {
                let Some(host) = hosts.iter().find(|x| x.name == *h) else {
                    continue;
                };
                if !host.shared_mounts.iter().any(|m| directory.starts_with(m)) {
                    let span = t.shared_dir.as_ref().map_or(group_span.clone(), sp);
                    self.c.error(
                        span,
                        format!(
                            "shared-file group `{name}` spans several hosts, but host `{h}` declares no shared mount containing {}",
                            directory.display()
                        ),
                        format!(
                            "a shared-file lock only works where every broker sees the same file system: mount it on `{h}` and add it to that host's `shared_mounts`, or put the group's brokers on one host"
                        ),
                    );
                }
            }
        }
        let keep_alive = self.int(
            &t.lock_keep_alive_period,
            5000,
            0,
            3_600_000,
            "lock_keep_alive_period",
        ) as u32;
        if keep_alive == 0 {
            if let Some(k) = &t.lock_keep_alive_period {
                self.c.warn(
                    sp(k),
                    "lock_keep_alive_period = 0 turns off the master's lock check",
                    "keep it above 0: without it a master never notices a lost or replaced lock file and two masters can corrupt the store",
                );
            }
        }
        SharedFile {
            directory,
            lock_keep_alive_period: keep_alive,
            lock_acquire_sleep_interval: self.int(
                &t.lock_acquire_sleep_interval,
                1000,
                1,
                3_600_000,
                "lock_acquire_sleep_interval",
            ) as u32,
        }
    }

    // ---- failover options ---------------------------------------------------

    fn failover(&mut self, table: &FailoverTable, out: &mut Vec<(String, String)>) {
        for (key, v) in table {
            let key = key.as_str();
            let kspan = self.c.map.key_before(v.span().start);
            let known = FAILOVER_OPTIONS
                .iter()
                .find(|(n, _)| *n == key)
                .map(|(_, t)| *t);
            // `nested.X = v` (options appended to every member URI) parses
            // as a TOML table `nested = { X = v }`.
            if let (None, "nested", toml::Value::Table(t)) = (known, key, v.get_ref()) {
                for (k, val) in t {
                    let name = format!("nested.{k}");
                    let value = match val {
                        toml::Value::String(s) => s.clone(),
                        other => other.to_string(),
                    };
                    match out.iter_mut().find(|(n, _)| *n == name) {
                        Some(slot) => slot.1 = value,
                        None => out.push((name, value)),
                    }
                }
                continue;
            }
            let ty = match known {
                Some(t) => t,
                None if key == "backOffMultiplier" => {
                    self.c.error(
                        kspan,
                        "`backOffMultiplier` is not a failover transport option",
                        "use `reconnectDelayExponent` (failover: has no backOffMultiplier setter and ActiveMQ rejects the URI; backOffMultiplier belongs to static:/multicast: discovery)",
                    );
                    continue;
                }
                None => {
                    let names: Vec<&str> = FAILOVER_OPTIONS.iter().map(|(n, _)| *n).collect();
                    let help = match inventory::closest(key, &names) {
                        Some(n) => format!(
                            "did you mean `{n}`? (failover options use ActiveMQ's URI names)"
                        ),
                        None => format!(
                            "use one of ActiveMQ's failover options: {}",
                            names.join(", ")
                        ),
                    };
                    self.c
                        .error(kspan, format!("unknown failover option `{key}`"), help);
                    continue;
                }
            };
            let Some(value) = self.option_value(key, v, ty) else {
                continue;
            };
            match out.iter_mut().find(|(n, _)| n == key) {
                Some(slot) => slot.1 = value,
                None => out.push((key.to_string(), value)),
            }
        }
    }

    fn option_value(&mut self, key: &str, v: &S<toml::Value>, ty: OptType) -> Option<String> {
        use toml::Value;
        let bad = |this: &mut Self, expect: String| {
            this.c.error(
                sp(v),
                format!("invalid value for failover option `{key}`"),
                format!("use {expect}"),
            );
            None
        };
        match (ty, v.get_ref()) {
            (OptType::Bool, Value::Boolean(b)) => Some(b.to_string()),
            (OptType::Bool, _) => bad(self, "true or false".into()),
            (OptType::Int(min), Value::Integer(i)) if *i >= min => Some(i.to_string()),
            (OptType::Int(min), _) => bad(self, format!("an integer ≥ {min}")),
            (OptType::Float, Value::Float(f)) if *f >= 1.0 => Some(f.to_string()),
            (OptType::Float, Value::Integer(i)) if *i >= 1 => Some(i.to_string()),
            (OptType::Float, _) => bad(self, "a number ≥ 1".into()),
            (OptType::Str, Value::String(s)) if !s.is_empty() && !s.contains(['&', '?', ' ']) => {
                Some(s.clone())
            }
            (OptType::Str, Value::Integer(i)) => Some(i.to_string()),
            (OptType::Str, Value::Boolean(b)) => Some(b.to_string()),
            (OptType::Str, _) => bad(self, "a string without `&`, `?` or spaces".into()),
        }
    }

    // ---- users and networks -------------------------------------------------

    fn users(&mut self, raw: &RawInventory) -> Vec<User> {
        let mut out = Vec::new();
        let mut names = Vec::new();
        for u in &raw.users {
            let t = u.get_ref();
            let name = self.required_name(&t.name, sp(u), "[[users]]");
            if let Some(n) = &t.name {
                names.push((name.clone(), sp(n)));
            }
            let password = match &t.password {
                None => {
                    self.missing(sp(u), "password", "[[users]]");
                    None
                }
                Some(p) => self.secret(p, &format!("password of user `{name}`")),
            };
            let groups = match &t.groups {
                None => vec!["users".to_string()],
                Some(gs) => gs.iter().map(|g| self.name(g)).collect(),
            };
            if let Some(password) = password {
                out.push(User {
                    name,
                    password,
                    groups,
                });
            }
        }
        self.duplicates(&names, "user name", "user names must be unique");
        out
    }

    fn networks(
        &mut self,
        raw: &RawInventory,
        groups: &[Group],
        users: &[User],
        cluster: &str,
    ) -> Vec<Network> {
        let mut out = Vec::new();
        let mut names = Vec::new();
        for n in &raw.networks {
            let t = n.get_ref();
            let kind = match &t.kind {
                None => "static".to_string(),
                Some(k) => match self.one_of(k, &["static", "multicast"], "network kind") {
                    Some(k) => k,
                    None => continue,
                },
            };
            let group_ref = |this: &mut Self, r: &S<String>| -> Option<String> {
                if groups.iter().any(|g| g.name == *r.get_ref()) {
                    return Some(r.get_ref().clone());
                }
                let all: Vec<&str> = groups.iter().map(|g| g.name.as_str()).collect();
                let help = match inventory::closest(r.get_ref(), &all) {
                    Some(g) => format!("did you mean `{g}`? (groups: {})", all.join(", ")),
                    None => format!("define it in [[groups]] or use one of: {}", all.join(", ")),
                };
                this.c
                    .error(sp(r), format!("unknown group `{}`", r.get_ref()), help);
                None
            };
            let (network_kind, default_name) = if kind == "static" {
                for (key, v) in [
                    ("members", t.members.as_ref().map(sp)),
                    ("address", t.address.as_ref().map(sp)),
                    ("interface", t.interface.as_ref().map(sp)),
                ] {
                    if let Some(span) = v {
                        self.c.error(
                            span,
                            format!("`{key}` applies only to multicast networks"),
                            "remove it or set `kind = \"multicast\"`",
                        );
                    }
                }
                let from = match &t.from {
                    None => {
                        self.missing(sp(n), "from", "a static [[networks]]");
                        None
                    }
                    Some(f) => group_ref(self, f),
                };
                let mut to = Vec::new();
                match &t.to {
                    None => self.missing(sp(n), "to", "a static [[networks]]"),
                    Some(list) if list.get_ref().is_empty() => {
                        self.c.error(
                            sp(list),
                            "`to` names no groups",
                            "list the groups this network connects to",
                        );
                    }
                    Some(list) => {
                        let mut seen = Vec::new();
                        for g in list.get_ref() {
                            seen.push((g.get_ref().clone(), sp(g)));
                            if t.from.as_ref().is_some_and(|f| f.get_ref() == g.get_ref()) {
                                self.c.error(
                                    sp(g),
                                    format!("network connects group `{}` to itself", g.get_ref()),
                                    "list only other groups in `to`",
                                );
                            } else if let Some(g) = group_ref(self, g) {
                                to.push(g);
                            }
                        }
                        self.duplicates(&seen, "target group", "list each group once");
                    }
                }
                let default_name =
                    format!("{}-to-{}", from.clone().unwrap_or_default(), to.join("-"));
                (
                    from.map(|from| NetworkKind::Static { from, to }),
                    default_name,
                )
            } else {
                for (key, v) in [
                    ("from", t.from.as_ref().map(sp)),
                    ("to", t.to.as_ref().map(sp)),
                ] {
                    if let Some(span) = v {
                        self.c.error(
                            span,
                            format!("`{key}` applies only to static networks"),
                            "list the groups in `members`, or set `kind = \"static\"`",
                        );
                    }
                }
                let mut members = Vec::new();
                match &t.members {
                    None => self.missing(sp(n), "members", "a multicast [[networks]]"),
                    Some(list) => {
                        if list.get_ref().len() < 2 {
                            self.c.error(
                                sp(list),
                                "a multicast network needs at least 2 member groups",
                                "list the groups that discover each other",
                            );
                        }
                        let mut seen = Vec::new();
                        for g in list.get_ref() {
                            seen.push((g.get_ref().clone(), sp(g)));
                            if let Some(g) = group_ref(self, g) {
                                members.push(g);
                            }
                        }
                        self.duplicates(&seen, "member group", "list each group once");
                    }
                }
                let address = match &t.address {
                    None => "default".to_string(),
                    Some(a) => {
                        if !is_multicast_address(a.get_ref()) {
                            self.c.error(sp(a), format!("invalid multicast address \"{}\"", a.get_ref()), "use \"default\" (239.255.2.3:6155) or an IPv4 multicast address with port, e.g. \"239.255.2.3:6155\"");
                        }
                        a.get_ref().clone()
                    }
                };
                let mut uri = format!("multicast://{address}?group={cluster}");
                if let Some(i) = &t.interface {
                    let name = i.get_ref();
                    let ok = !name.is_empty()
                        && name.len() <= 15
                        && name
                            .chars()
                            .all(|c| c.is_ascii_alphanumeric() || "._-@".contains(c));
                    if !ok {
                        self.c.error(
                            sp(i),
                            format!("invalid network interface name \"{name}\""),
                            "give the interface name as `ip link` shows it, e.g. \"eth1\"",
                        );
                    }
                    // Send and join on that NIC: ActiveMQ otherwise picks the
                    // last multicast-capable non-loopback NIC (or fails when
                    // there is none).
                    uri.push_str(&format!(
                        "&networkInterface={name}&joinNetworkInterface={name}"
                    ));
                }
                (
                    Some(NetworkKind::Multicast { members, uri }),
                    "multicast".to_string(),
                )
            };
            let name = match &t.name {
                Some(s) => {
                    names.push((s.get_ref().clone(), sp(s)));
                    self.name(s)
                }
                None => {
                    names.push((default_name.clone(), sp(n)));
                    default_name
                }
            };
            let user = match &t.user {
                Some(u) if users.iter().any(|x| x.name == *u.get_ref()) => {
                    Some(u.get_ref().clone())
                }
                Some(u) => {
                    self.c.error(
                        sp(u),
                        format!("unknown user `{}`", u.get_ref()),
                        "define it in [[users]]; a network bridge logs in as one of them",
                    );
                    None
                }
                None => {
                    if !raw.users.is_empty() {
                        self.c.warn(
                            sp(n),
                            format!("network `{name}` has no `user`, but brokers require authentication"),
                            "set `user` to a user in [[users]], or the bridge is refused",
                        );
                    }
                    None
                }
            };
            let network_ttl = self.int(&t.network_ttl, 1, -1, 255, "network_ttl");
            let Some(network_kind) = network_kind else {
                continue;
            };
            out.push(Network {
                name,
                kind: network_kind,
                network_ttl: if network_ttl < 0 {
                    u32::MAX
                } else {
                    network_ttl.max(1) as u32
                },
                duplex: t.duplex.as_ref().is_some_and(|d| *d.get_ref()),
                conduit_subscriptions: t
                    .conduit_subscriptions
                    .as_ref()
                    .is_none_or(|d| *d.get_ref()),
                decrease_network_consumer_priority: t
                    .decrease_network_consumer_priority
                    .as_ref()
                    .is_none_or(|d| *d.get_ref()),
                user,
            });
        }
        self.duplicates(&names, "network name", "give each network its own `name`");
        out
    }

    // ---- cross checks ---------------------------------------------------------

    fn duplicates(&mut self, items: &[(String, Range<usize>)], what: &str, help: &str) {
        let mut first: BTreeMap<&str, Range<usize>> = BTreeMap::new();
        for (name, span) in items {
            if name.is_empty() {
                continue;
            }
            match first.get(name.as_str()) {
                Some(f) => self.c.error_related(
                    span.clone(),
                    format!("duplicate {what} `{name}`"),
                    help,
                    "first defined",
                    f.clone(),
                ),
                None => {
                    first.insert(name, span.clone());
                }
            }
        }
    }

    /// Two services on one host sharing a port: one error per pair of
    /// services, listing every port they share.
    /// Keyed by address, so two host entries for one machine are caught too.
    fn check_ports(&mut self, hosts: &[Host]) {
        let uses = std::mem::take(&mut self.ports);
        let address = |name: &str| -> String {
            hosts
                .iter()
                .find(|h| h.name == name)
                .map_or_else(|| name.to_string(), |h| h.address.clone())
        };
        let mut first: BTreeMap<(String, u16), &PortUse> = BTreeMap::new();
        // (host, earlier service, later service) -> clashes in order
        type Pair<'u> = (&'u str, &'u str, &'u str);
        let mut clashes: Vec<(Pair<'_>, Vec<(&PortUse, &PortUse)>)> = Vec::new();
        for u in &uses {
            if u.host.is_empty() || u.port == 0 {
                continue;
            }
            match first.get(&(address(&u.host), u.port)) {
                Some(f) => {
                    let k = (u.host.as_str(), f.service.as_str(), u.service.as_str());
                    match clashes.iter_mut().find(|(key, _)| *key == k) {
                        Some((_, list)) => list.push((f, u)),
                        None => clashes.push((k, vec![(f, u)])),
                    }
                }
                None => {
                    first.insert((address(&u.host), u.port), u);
                }
            }
        }
        for ((host, a, b), list) in clashes {
            let ports = list
                .iter()
                .map(|(f, u)| {
                    if f.key == u.key {
                        format!("{} ({})", u.port, u.key)
                    } else {
                        format!("{} ({} of {a}, {} of {b})", u.port, f.key, u.key)
                    }
                })
                .collect::<Vec<_>>()
                .join(", ");
            let (f, u) = list[0];
            let what = if a == b {
                format!(
                    "{a} uses port{} {ports} twice on host `{host}`",
                    plural(list.len())
                )
            } else {
                format!(
                    "{b} uses port{} {ports} on host `{host}`, already used by {a}",
                    plural(list.len())
                )
            };
            self.c.error_related(
                u.span.clone(),
                what,
                "give every service on a host its own ports (in a pseudo-cluster, set the ports or a `port_offset` per broker)",
                "first used",
                f.span.clone(),
            );
        }
    }

    fn check_unique_services(&mut self) {
        let items = std::mem::take(&mut self.services);
        self.duplicates(
            &items,
            "service name",
            "brokers and ZooKeeper nodes (named zk<id>) need distinct names: each gets its own directory",
        );
    }

    /// Advertised broker hostnames must resolve through the rendered hosts
    /// block (a hosts entry's hostname or alias) or be an inventory address.
    fn check_resolvable(&mut self, raw: &RawInventory, hosts: &[Host]) {
        let mut known: BTreeSet<&str> = BTreeSet::new();
        for h in hosts {
            known.insert(&h.address);
            known.extend(h.hostname.as_deref());
            known.extend(h.aliases.iter().map(String::as_str));
        }
        known.insert("localhost");
        for g in &raw.groups {
            for b in &g.get_ref().brokers {
                let Some(n) = &b.get_ref().hostname else {
                    continue;
                };
                let name = n.get_ref();
                if !known.contains(name.as_str()) && name.parse::<IpAddr>().is_err() {
                    self.c.error(
                        sp(n),
                        format!("hostname `{name}` does not resolve: no hosts entry or inventory address has it"),
                        "add it as a host's `hostname` or `aliases` (amqctl renders them into every host's /etc/hosts), or use an address",
                    );
                }
            }
        }
    }
}

fn plural(n: usize) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

/// ActiveMQ `Timespan`-like values: `2000`, `1500ms`, `2s`, `1m`, `1h`.
fn is_timespan(s: &str) -> bool {
    let digits = s.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    let unit = &s[digits.len()..];
    !digits.is_empty()
        && digits.chars().all(|c| c.is_ascii_digit())
        && ["", "ms", "s", "m", "h"].contains(&unit)
}

/// `default` or an IPv4 multicast `address:port`.
fn is_multicast_address(s: &str) -> bool {
    if s == "default" {
        return true;
    }
    let Some((ip, port)) = s.rsplit_once(':') else {
        return false;
    };
    let ip_ok = ip
        .parse::<std::net::Ipv4Addr>()
        .is_ok_and(|ip| ip.is_multicast());
    ip_ok && port.parse::<u16>().is_ok_and(|p| p > 0)
}
