//! Renders every file a [`Topology`] needs, with the tera templates in
//! `templates/` (compiled into the binary, autoescape off, values escaped
//! explicitly with `escape_xml` where they land in XML).
//!
//! The result, a [`RenderedPlan`], is what `plan` prints and writes and what
//! `deploy` uploads: per host and per service the files (relative path under
//! the plan directory, destination on the host, contents, mode, sha256), how
//! each service is launched, the start order, the client failover URLs and
//! the failure-mode table.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use serde::Serialize;
use sha2::{Digest, Sha256};
use tera::{Context, Tera};

use crate::failure::{self, FailureMode};
use crate::topology::*;

/// Everything `plan` shows and `deploy` applies.
#[derive(Debug, Clone, Serialize)]
pub struct RenderedPlan {
    pub cluster: String,
    /// Hosts in inventory order, each with its services in start order.
    pub hosts: Vec<HostPlan>,
    /// ZooKeeper nodes first (inventory order), then brokers in inventory
    /// order (group by group).
    pub start_order: Vec<ServiceRef>,
    /// One entry per broker group.
    pub failover_urls: Vec<GroupUrls>,
    /// What each node's death does to the cluster.
    pub failure_modes: Vec<FailureMode>,
    /// Files not tied to a host (`clients/failover-urls.toml`).
    pub client_files: Vec<RenderedFile>,
}

impl RenderedPlan {
    /// Every file in the plan: host files, service files, client files.
    pub fn files(&self) -> impl Iterator<Item = &RenderedFile> {
        self.hosts
            .iter()
            .flat_map(|h| {
                h.files
                    .iter()
                    .chain(h.services.iter().flat_map(|s| &s.files))
            })
            .chain(&self.client_files)
    }

    /// The service named `name` and its host.
    pub fn service(&self, name: &str) -> Option<(&HostPlan, &ServicePlan)> {
        self.hosts
            .iter()
            .find_map(|h| h.services.iter().find(|s| s.name == name).map(|s| (h, s)))
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct HostPlan {
    pub name: String,
    pub address: String,
    pub base_dir: PathBuf,
    /// Host-level files: the `/etc/hosts` block (absent when no host has a hostname).
    pub files: Vec<RenderedFile>,
    pub services: Vec<ServicePlan>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ServicePlan {
    /// `zk<id>` or the broker's name; also its directory name.
    pub name: String,
    pub kind: ServiceKind,
    /// `<base_dir>/<name>` on the host.
    pub dir: PathBuf,
    /// `(label, port)`, e.g. `("stomp", 61613)`.
    pub ports: Vec<(String, u16)>,
    pub files: Vec<RenderedFile>,
    pub launch: Launch,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum ServiceKind {
    Zookeeper { id: u32 },
    Broker { group: String },
}

impl ServiceKind {
    pub fn label(&self) -> &'static str {
        match self {
            ServiceKind::Zookeeper { .. } => "zookeeper",
            ServiceKind::Broker { .. } => "broker",
        }
    }
}

/// How deploy starts a service.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Launch {
    /// `systemctl daemon-reload && systemctl enable --now <unit>`.
    Systemd { unit: String },
    /// Run `script` detached (`setsid`, stdin from /dev/null, output to
    /// `log_file`) and record its pid in `pid_file`; the script `exec`s the
    /// service so the pid is the service's.
    Process {
        script: PathBuf,
        pid_file: PathBuf,
        log_file: PathBuf,
    },
}

/// A reference to a service in start order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ServiceRef {
    pub service: String,
    pub host: String,
    pub kind: ServiceKind,
}

/// Client URLs for one broker group.
#[derive(Debug, Clone, Serialize)]
pub struct GroupUrls {
    pub group: String,
    /// `failover:(stomp://h:p,...)?options`
    pub stomp: String,
    /// `failover:(tcp://h:p,...)?options`
    pub openwire: String,
}

/// What deploy does with a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum FileKind {
    /// Written whole to `dest`.
    Config,
    /// The service's launch file (`run.sh` or a systemd unit), written whole to `dest`.
    Launch,
    /// A marked block merged into `dest` (`/etc/hosts`): the previous block
    /// between the same BEGIN/END lines is replaced, the rest kept.
    HostsBlock,
}

#[derive(Debug, Clone, Serialize)]
pub struct RenderedFile {
    /// Path under the plan directory: `<host>/<service>/<file>`,
    /// `<host>/hosts.block` or `clients/failover-urls.toml`.
    pub path: String,
    /// Absolute destination on the host (empty for client files).
    pub dest: PathBuf,
    pub kind: FileKind,
    /// Unix mode: 0600 when it holds a secret, 0755 for run.sh, else 0644.
    pub mode: u32,
    /// Holds a secret: never print `contents`; write with `mode` 0600.
    pub secret: bool,
    /// Hex sha256 of `contents`.
    pub sha256: String,
    #[serde(skip)]
    pub contents: String,
}

impl RenderedFile {
    fn new(path: String, dest: PathBuf, kind: FileKind, contents: String, secret: bool) -> Self {
        let mode = if secret {
            0o600
        } else if path.ends_with("run.sh") {
            0o755
        } else {
            0o644
        };
        let sha256 = hex::encode(Sha256::digest(contents.as_bytes()));
        Self {
            path,
            dest,
            kind,
            mode,
            secret,
            sha256,
            contents,
        }
    }
}

/// A template could not be rendered: a bug in amqctl's templates, not in the
/// inventory.
#[derive(Debug, thiserror::Error)]
#[error("rendering {template}: {source}")]
pub struct RenderError {
    pub template: &'static str,
    #[source]
    pub source: tera::Error,
}

const TEMPLATES: &[(&str, &str)] = &[
    (
        "activemq.xml",
        include_str!("../templates/activemq.xml.tera"),
    ),
    ("zoo.cfg", include_str!("../templates/zoo.cfg.tera")),
    ("myid", include_str!("../templates/myid.tera")),
    ("hosts.block", include_str!("../templates/hosts.block.tera")),
    ("run.sh", include_str!("../templates/run.sh.tera")),
    (
        "systemd.service",
        include_str!("../templates/systemd.service.tera"),
    ),
    (
        "failover-urls.toml",
        include_str!("../templates/failover-urls.toml.tera"),
    ),
    (
        "log4j.properties",
        include_str!("../templates/log4j.properties.tera"),
    ),
];

fn tera() -> &'static Tera {
    static TERA: OnceLock<Tera> = OnceLock::new();
    TERA.get_or_init(|| {
        let mut t = Tera::new();
        // Config files, not HTML: values are escaped explicitly (escape_xml).
        t.autoescape_on(Vec::<&str>::new());
        t.add_raw_templates(TEMPLATES.iter().copied())
            .expect("amqctl's built-in templates parse");
        t
    })
}

fn render_template(name: &'static str, ctx: &impl Serialize) -> Result<String, RenderError> {
    let err = |source| RenderError {
        template: name,
        source,
    };
    let ctx = Context::from_serialize(ctx).map_err(err)?;
    tera().render(name, &ctx).map_err(err)
}

/// Renders the whole plan. Deterministic: the same topology gives
/// byte-identical files.
pub fn render(topo: &Topology) -> Result<RenderedPlan, RenderError> {
    let mut hosts: Vec<HostPlan> = topo
        .hosts
        .iter()
        .map(|h| HostPlan {
            name: h.name.clone(),
            address: h.address.clone(),
            base_dir: h.base_dir.clone(),
            files: Vec::new(),
            services: Vec::new(),
        })
        .collect();
    let mut start_order = Vec::new();

    if let Some(block) = hosts_block(topo)? {
        for hp in &mut hosts {
            hp.files.push(RenderedFile::new(
                format!("{}/hosts.block", hp.name),
                PathBuf::from("/etc/hosts"),
                FileKind::HostsBlock,
                block.clone(),
                false,
            ));
        }
    }

    // Services in start order: the ZooKeeper ensemble, then the brokers.
    let mut add = |host: &Host, svc: ServicePlan| {
        start_order.push(ServiceRef {
            service: svc.name.clone(),
            host: host.name.clone(),
            kind: svc.kind.clone(),
        });
        let hp = hosts.iter_mut().find(|h| h.name == host.name);
        hp.expect("validated host").services.push(svc);
    };
    if let Some(zk) = &topo.zookeeper {
        for node in &zk.nodes {
            let host = topo.host(&node.host);
            add(host, zookeeper_service(topo, zk, node, host)?);
        }
    }
    for group in &topo.groups {
        for broker in &group.brokers {
            let host = topo.host(&broker.host);
            add(host, broker_service(topo, group, broker, host)?);
        }
    }
    let urls: Vec<GroupUrls> = topo.groups.iter().map(group_urls).collect();

    let client_file = RenderedFile::new(
        "clients/failover-urls.toml".to_string(),
        PathBuf::new(),
        FileKind::Config,
        render_template(
            "failover-urls.toml",
            &serde_json::json!({ "cluster": topo.cluster, "groups": urls }),
        )?,
        false,
    );

    Ok(RenderedPlan {
        cluster: topo.cluster.clone(),
        hosts,
        start_order,
        failover_urls: urls,
        failure_modes: failure::failure_modes(topo),
        client_files: vec![client_file],
    })
}

/// `failover:(scheme://h:p,...)?opts` over a group's brokers.
pub fn failover_url(group: &Group, scheme: &str, port: impl Fn(&Broker) -> u16) -> String {
    let members: Vec<String> = group
        .brokers
        .iter()
        .map(|b| format!("{scheme}://{}", endpoint(&b.hostname, port(b))))
        .collect();
    let opts: Vec<String> = group
        .failover
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    let mut url = format!("failover:({})", members.join(","));
    if !opts.is_empty() {
        url.push('?');
        url.push_str(&opts.join("&"));
    }
    url
}

fn group_urls(group: &Group) -> GroupUrls {
    GroupUrls {
        group: group.name.clone(),
        stomp: failover_url(group, "stomp", |b| b.stomp_port),
        openwire: failover_url(group, "tcp", |b| b.openwire_port),
    }
}

fn hosts_block(topo: &Topology) -> Result<Option<String>, RenderError> {
    let entries: Vec<serde_json::Value> = topo
        .hosts
        .iter()
        .filter_map(|h| {
            let names: Vec<&str> = h
                .hostname
                .iter()
                .chain(&h.aliases)
                .map(String::as_str)
                .collect();
            (!names.is_empty())
                .then(|| serde_json::json!({ "address": h.address, "names": names.join(" ") }))
        })
        .collect();
    if entries.is_empty() {
        return Ok(None);
    }
    render_template(
        "hosts.block",
        &serde_json::json!({ "cluster": topo.cluster, "entries": entries }),
    )
    .map(Some)
}

fn zookeeper_service(
    topo: &Topology,
    zk: &Ensemble,
    node: &ZkNode,
    host: &Host,
) -> Result<ServicePlan, RenderError> {
    let dir = host.service_dir(&node.service);
    let servers: Vec<serde_json::Value> = zk
        .nodes
        .iter()
        .map(|n| {
            serde_json::json!({
                "id": n.id,
                "host": bracket_ipv6(topo.host(&n.host).reach()),
                "peer_port": n.peer_port,
                "election_port": n.election_port,
            })
        })
        .collect();
    let zoo_cfg = render_template(
        "zoo.cfg",
        &serde_json::json!({
            "cluster": topo.cluster,
            "id": node.id,
            "tick_time": zk.tick_time,
            "init_limit": zk.init_limit,
            "sync_limit": zk.sync_limit,
            "data_dir": node.data_dir,
            "client_port": node.client_port,
            "client_address": host.address,
            "servers": servers,
        }),
    )?;
    let myid = render_template("myid", &serde_json::json!({ "id": node.id }))?;
    let prefix = format!("{}/{}", host.name, node.service);
    let cfg_path = dir.join("zoo.cfg");
    let command = vec![
        host.java.clone(),
        format!("-Xms{}", zk.heap),
        format!("-Xmx{}", zk.heap),
        "-Dorg.slf4j.simpleLogger.showDateTime=true".to_string(),
        "-cp".to_string(),
        zk.install.classpath(),
        "org.apache.zookeeper.server.quorum.QuorumPeerMain".to_string(),
        cfg_path.display().to_string(),
    ];
    let kind = ServiceKind::Zookeeper { id: node.id };
    let mut files = vec![
        RenderedFile::new(
            format!("{prefix}/zoo.cfg"),
            cfg_path,
            FileKind::Config,
            zoo_cfg,
            false,
        ),
        RenderedFile::new(
            format!("{prefix}/myid"),
            node.data_dir.join("myid"),
            FileKind::Config,
            myid,
            false,
        ),
    ];
    let launch = launch_file(
        topo,
        host,
        &node.service,
        &kind,
        &dir,
        &command,
        &[],
        &mut files,
    )?;
    Ok(ServicePlan {
        name: node.service.clone(),
        kind,
        dir,
        ports: vec![
            ("client".to_string(), node.client_port),
            ("peer".to_string(), node.peer_port),
            ("election".to_string(), node.election_port),
        ],
        files,
        launch,
    })
}

/// A broker's network connectors: static bridges from its group, and
/// multicast discovery for the networks its group is a member of.
fn network_connectors(topo: &Topology, group: &Group) -> Vec<serde_json::Value> {
    let mut out = Vec::new();
    for net in topo.networks_of(&group.name) {
        let (user, password) = match &net.user {
            Some(u) => {
                let user = topo
                    .users
                    .iter()
                    .find(|x| &x.name == u)
                    .expect("validated user");
                (Some(u.as_str()), Some(user.password.expose()))
            }
            None => (None, None),
        };
        let mut push = |name: String, uri: String| {
            out.push(serde_json::json!({
                "name": name,
                "uri": uri,
                "network_ttl": if net.network_ttl == u32::MAX { -1 } else { i64::from(net.network_ttl) },
                "duplex": net.duplex,
                "conduit_subscriptions": net.conduit_subscriptions,
                "decrease_network_consumer_priority": net.decrease_network_consumer_priority,
                "user": user,
                "password": password,
            }))
        };
        match &net.kind {
            NetworkKind::Static { from, to } if *from == group.name => {
                for target in to {
                    let t = topo.group(target);
                    let uris: Vec<String> = t
                        .brokers
                        .iter()
                        .map(|b| bridge_uri(topo.broker_impl, b))
                        .collect();
                    // masterslave: tries the members in order and follows the
                    // master; static: would bridge to every member at once.
                    let scheme = if t.is_master_slave() {
                        "masterslave"
                    } else {
                        "static"
                    };
                    let name = if to.len() == 1 {
                        net.name.clone()
                    } else {
                        format!("{}.{target}", net.name)
                    };
                    push(name, format!("{scheme}:({})", uris.join(",")));
                }
            }
            NetworkKind::Static { .. } => {}
            NetworkKind::Multicast { uri, .. } => push(net.name.clone(), uri.clone()),
        }
    }
    out
}

fn broker_service(
    topo: &Topology,
    group: &Group,
    broker: &Broker,
    host: &Host,
) -> Result<ServicePlan, RenderError> {
    let dir = host.service_dir(&broker.name);
    let connectors = network_connectors(topo, group);
    let discovery_uri = topo.networks_of(&group.name).find_map(|n| match &n.kind {
        NetworkKind::Multicast { uri, .. } => Some(uri.clone()),
        NetworkKind::Static { .. } => None,
    });
    let mut secret = connectors.iter().any(|c| !c["password"].is_null()) || !topo.users.is_empty();
    let replicated = match &group.store {
        Store::Replicated(r) => {
            let zk = topo
                .zookeeper
                .as_ref()
                .expect("validated: replicated needs zookeeper");
            secret |= zk.password.is_some() || r.security_token.is_some();
            Some(serde_json::json!({
                "directory": broker.data_dir.join("replicated"),
                "replicas": r.replicas,
                "bind": format!("tcp://{}", endpoint(&host.address, broker.replication_port.unwrap_or(0))),
                "zk_address": zk.connect_string(topo),
                "zk_password": zk.password.as_ref().map(Secret::expose),
                "zk_path": r.zk_path,
                "zk_session_timeout": r.zk_session_timeout,
                "hostname": broker.hostname,
                "sync": r.sync,
                "security_token": r.security_token.as_ref().map(Secret::expose),
                "weight": broker.weight,
                "slave_redirect": r.slave_redirect,
            }))
        }
        _ => None,
    };
    let shared_file = match &group.store {
        Store::SharedFile(s) => Some(s),
        _ => None,
    };
    let users: Vec<serde_json::Value> = topo
        .users
        .iter()
        .map(|u| {
            serde_json::json!({
                "name": u.name,
                "password": u.password.expose(),
                "groups": u.groups.join(","),
            })
        })
        .collect();
    let xml = render_template(
        "activemq.xml",
        &serde_json::json!({
            "broker_name": group.broker_name(broker),
            "data_dir": broker.data_dir,
            "network_connectors": connectors,
            "replicated": replicated,
            "shared_file": shared_file,
            "kahadb_dir": broker.data_dir.join("kahadb"),
            "users": users,
            "openwire_uri": format!("tcp://{}", endpoint(&host.address, broker.openwire_port)),
            "stomp_uri": format!("stomp://{}", endpoint(&host.address, broker.stomp_port)),
            "discovery_uri": discovery_uri,
        }),
    )?;
    let config = dir.join("activemq.xml");
    let prefix = format!("{}/{}", host.name, broker.name);
    let mut files = vec![RenderedFile::new(
        format!("{prefix}/activemq.xml"),
        config.clone(),
        FileKind::Config,
        xml,
        secret,
    )];
    let (command, make_dirs) = match topo.broker_impl {
        BrokerImpl::AmqBroker => (
            vec![
                host.broker_bin.display().to_string(),
                "--config".to_string(),
                config.display().to_string(),
                "--status".to_string(),
                endpoint(&host.address, broker.status_port),
            ],
            Vec::new(),
        ),
        BrokerImpl::Activemq => {
            let log4j = dir.join("log4j.properties");
            files.push(RenderedFile::new(
                format!("{prefix}/log4j.properties"),
                log4j.clone(),
                FileKind::Config,
                render_template(
                    "log4j.properties",
                    &serde_json::json!({ "log_file": dir.join("activemq.log") }),
                )?,
                false,
            ));
            let tmp = dir.join("tmp");
            let command = activemq_command(host, &dir, &broker.data_dir, &tmp, &log4j, &config);
            (command, vec![tmp])
        }
    };
    let kind = ServiceKind::Broker {
        group: group.name.clone(),
    };
    let launch = launch_file(
        topo,
        host,
        &broker.name,
        &kind,
        &dir,
        &command,
        &make_dirs,
        &mut files,
    )?;
    let mut ports = vec![
        ("stomp".to_string(), broker.stomp_port),
        ("openwire".to_string(), broker.openwire_port),
        ("status".to_string(), broker.status_port),
    ];
    if let Some(p) = broker.replication_port {
        ports.push(("replication".to_string(), p));
    }
    Ok(ServicePlan {
        name: broker.name.clone(),
        kind,
        dir,
        ports,
        files,
        launch,
    })
}

/// Debian's ActiveMQ run from its own directory: the run jar directly (the
/// `/usr/bin/activemq` wrapper resets ACTIVEMQ_BASE and the heap), with the
/// `--add-opens` it passes on Java > 8.
fn activemq_command(
    host: &Host,
    dir: &Path,
    data: &Path,
    tmp: &Path,
    log4j: &Path,
    config: &Path,
) -> Vec<String> {
    let d = |p: &Path| p.display().to_string();
    let mut c = vec![
        host.java.clone(),
        "-Xms512M".to_string(),
        "-Xmx512M".to_string(),
        "-Dorg.apache.activemq.UseDedicatedTaskRunner=true".to_string(),
        "--add-reads=java.xml=java.logging".to_string(),
    ];
    for m in [
        "java.base/java.security",
        "java.base/java.net",
        "java.base/java.lang",
        "java.base/java.util",
        "java.naming/javax.naming.spi",
        "java.rmi/sun.rmi.transport.tcp",
        "java.base/java.util.concurrent",
        "java.base/java.util.concurrent.atomic",
    ] {
        c.push("--add-opens".to_string());
        c.push(format!("{m}=ALL-UNNAMED"));
    }
    c.extend([
        format!("-Djava.io.tmpdir={}", d(tmp)),
        format!("-Dactivemq.classpath={}", d(dir)),
        format!("-Dactivemq.home={ACTIVEMQ_HOME}"),
        format!("-Dactivemq.base={}", d(dir)),
        format!("-Dactivemq.conf={}", d(dir)),
        format!("-Dactivemq.data={}", d(data)),
        format!("-Dlog4j.configuration=file:{}", d(log4j)),
        "-jar".to_string(),
        format!("{ACTIVEMQ_HOME}/bin/activemq.jar"),
        "start".to_string(),
        format!("xbean:file:{}", d(config)),
    ]);
    c
}

/// Renders the service's run.sh or systemd unit into `files`; `make_dirs`
/// are created before the service starts.
#[allow(clippy::too_many_arguments)]
fn launch_file(
    topo: &Topology,
    host: &Host,
    service: &str,
    kind: &ServiceKind,
    dir: &Path,
    command: &[String],
    make_dirs: &[PathBuf],
    files: &mut Vec<RenderedFile>,
) -> Result<Launch, RenderError> {
    let quoted = |q: fn(&str) -> String, words: &mut dyn Iterator<Item = String>| {
        words.map(|w| q(&w)).collect::<Vec<_>>().join(" ")
    };
    let ctx = serde_json::json!({
        "mkdir_sh": quoted(sh_quote, &mut make_dirs.iter().map(|p| p.display().to_string())),
        "mkdir_systemd": quoted(systemd_quote, &mut make_dirs.iter().map(|p| p.display().to_string())),
        "cluster": topo.cluster,
        "kind": kind.label(),
        "service": service,
        "dir_sh": sh_quote(&dir.display().to_string()),
        "command_sh": quoted(sh_quote, &mut command.iter().cloned()),
        "dir_systemd": dir.display().to_string(),
        "command_systemd": quoted(systemd_quote, &mut command.iter().cloned()),
    });
    let prefix = format!("{}/{service}", host.name);
    match host.service_manager {
        ServiceManager::Process => {
            let script = dir.join("run.sh");
            files.push(RenderedFile::new(
                format!("{prefix}/run.sh"),
                script.clone(),
                FileKind::Launch,
                render_template("run.sh", &ctx)?,
                false,
            ));
            Ok(Launch::Process {
                script,
                pid_file: dir.join("run.pid"),
                log_file: dir.join("out.log"),
            })
        }
        ServiceManager::Systemd => {
            let unit = format!("amqctl-{}-{service}.service", topo.cluster);
            files.push(RenderedFile::new(
                format!("{prefix}/{unit}"),
                Path::new("/etc/systemd/system").join(&unit),
                FileKind::Launch,
                render_template("systemd.service", &ctx)?,
                false,
            ));
            Ok(Launch::Systemd { unit })
        }
    }
}

/// Where a network bridge reaches broker `b`: amq-broker bridges speak
/// STOMP, ActiveMQ's speak OpenWire.
pub fn bridge_uri(imp: BrokerImpl, b: &Broker) -> String {
    match imp {
        BrokerImpl::AmqBroker => format!("stomp://{}", endpoint(&b.hostname, b.stomp_port)),
        BrokerImpl::Activemq => format!("tcp://{}", endpoint(&b.hostname, b.openwire_port)),
    }
}

/// `host:port`, with an IPv6 literal in brackets (`[::1]:61616`).
pub fn endpoint(host: &str, port: u16) -> String {
    format!("{}:{port}", bracket_ipv6(host))
}

fn bracket_ipv6(host: &str) -> String {
    if host.parse::<std::net::Ipv6Addr>().is_ok() {
        format!("[{host}]")
    } else {
        host.to_string()
    }
}

/// Quotes a word for POSIX sh (only when needed, so scripts stay readable).
fn sh_quote(s: &str) -> String {
    let plain = !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:=,@%+".contains(c));
    if plain {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// Quotes a word for a systemd `ExecStart=` line.
fn systemd_quote(s: &str) -> String {
    let plain = !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:=,@+".contains(c));
    if plain {
        s.to_string()
    } else {
        // `%` is a specifier in unit files; `$` would expand variables.
        let escaped = s
            .replace('\\', r"\\")
            .replace('"', "\\\"")
            .replace('%', "%%")
            .replace('$', "$$");
        format!("\"{escaped}\"")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting() {
        assert_eq!(sh_quote("/usr/share/java/*"), "'/usr/share/java/*'");
        assert_eq!(sh_quote("a'b"), r"'a'\''b'");
        assert_eq!(sh_quote("-Xmx256m"), "-Xmx256m");
        assert_eq!(systemd_quote("/opt/zk/lib/*"), "\"/opt/zk/lib/*\"");
        assert_eq!(systemd_quote("50%"), "\"50%%\"");
    }

    #[test]
    fn ipv6_endpoints_are_bracketed() {
        assert_eq!(endpoint("::1", 61616), "[::1]:61616");
        assert_eq!(endpoint("127.0.0.1", 61616), "127.0.0.1:61616");
        assert_eq!(endpoint("amq1", 2181), "amq1:2181");
    }
}
