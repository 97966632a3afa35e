//! `amqctl plan INVENTORY [--out DIR] [--format text|json]`: validate, render
//! every file, optionally write them, and show what deploy will do —
//! services, ports, files with checksums, start order, client URLs and what
//! each node's death does to the cluster.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::io::Write as _;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use clap::{Args, ValueEnum};
use console::Style;
use serde::Serialize;

use crate::cli::Exit;
use crate::diag::Diagnostic;
use crate::render::{render, FileKind, Launch, RenderedFile, RenderedPlan, ServiceKind};
use crate::topology::{Connection, KnownHostsPolicy, NetworkKind, ServiceManager, Store, Topology};

#[derive(Debug, Args)]
pub struct PlanArgs {
    /// The inventory file (TOML).
    pub inventory: PathBuf,
    /// Also write every rendered file under DIR, one directory per host and service
    /// (files holding secrets get mode 0600).
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Text,
    Json,
}

/// The manifest `--out` writes (in `sha256sum -c` format). It also lists what
/// the previous plan wrote, so files a changed inventory no longer renders
/// are removed instead of lingering.
pub const MANIFEST: &str = "MANIFEST.sha256";

pub fn run(args: PlanArgs) -> anyhow::Result<()> {
    let (topo, warnings) = match Topology::load(&args.inventory) {
        Ok(ok) => ok,
        Err(diags) if args.format == Format::Json => {
            let doc = serde_json::json!({
                "inventory": args.inventory,
                "valid": false,
                "errors": diags.errors,
                "warnings": diags.warnings,
            });
            println!("{}", serde_json::to_string_pretty(&doc)?);
            eprint!("{}", diags.render());
            return Err(Exit(crate::cli::EXIT_INVALID).into());
        }
        Err(diags) => return Err(diags.into()),
    };
    for w in &warnings {
        eprintln!("{}", w.render());
    }
    let plan = render(&topo)?;
    if let Some(dir) = &args.out {
        write_plan(&plan, dir)?;
    }
    match args.format {
        Format::Json => {
            let doc = render_json(&topo, &plan, &warnings, args.out.as_deref());
            println!("{}", serde_json::to_string_pretty(&doc)?);
        }
        Format::Text => print!("{}", render_text(&topo, &plan, args.out.as_deref())),
    }
    Ok(())
}

/// Writes every file of the plan under `dir` (atomically, each with its
/// mode) and the manifest; removes files the previous manifest listed that
/// this plan no longer has.
pub fn write_plan(plan: &RenderedPlan, dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let manifest_path = dir.join(MANIFEST);
    let previous: BTreeSet<String> = std::fs::read_to_string(&manifest_path)
        .map(|m| {
            m.lines()
                .filter_map(|l| l.split_once("  ").map(|(_, p)| p.to_string()))
                .collect()
        })
        .unwrap_or_default();
    let mut manifest = String::new();
    let mut current = BTreeSet::new();
    for f in plan.files() {
        write_file(&dir.join(&f.path), f)?;
        writeln!(manifest, "{}  {}", f.sha256, f.path).expect("write to String");
        current.insert(f.path.clone());
    }
    for stale in previous.difference(&current) {
        // Only paths amqctl itself wrote, and never outside `dir`.
        if !stale.split('/').any(|c| c == ".." || c.is_empty()) {
            let _ = std::fs::remove_file(dir.join(stale));
        }
    }
    atomic_write(&manifest_path, manifest.as_bytes(), 0o644)
}

/// Writes `f` unless `path` already holds exactly it (same bytes and mode):
/// re-planning an unchanged inventory touches nothing, so mtimes keep
/// meaning "changed".
fn write_file(path: &Path, f: &RenderedFile) -> anyhow::Result<()> {
    let same_mode = std::fs::metadata(path)
        .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o7777 == f.mode);
    if same_mode && std::fs::read(path).is_ok_and(|b| b == f.contents.as_bytes()) {
        return Ok(());
    }
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("creating {}", parent.display()))?;
    }
    atomic_write(path, f.contents.as_bytes(), f.mode)
}

/// Write to a temporary file created with `mode` (so a secret is never
/// readable by others, not even briefly), then rename over `path`. No fsync:
/// a plan directory is re-rendered at will (one fsync per file made a
/// 300-file plan take 1.7 s instead of 0.1 s).
fn atomic_write(path: &Path, bytes: &[u8], mode: u32) -> anyhow::Result<()> {
    let tmp = path.with_extension("amqctl-tmp");
    let _ = std::fs::remove_file(&tmp);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)
        .with_context(|| format!("creating {}", tmp.display()))?;
    file.write_all(bytes)
        .with_context(|| format!("writing {}", tmp.display()))?;
    // The umask may have narrowed the mode at creation; set it exactly.
    file.set_permissions(std::fs::Permissions::from_mode(mode))?;
    std::fs::rename(&tmp, path).with_context(|| format!("renaming to {}", path.display()))?;
    Ok(())
}

// ---- JSON ---------------------------------------------------------------

#[derive(Serialize)]
struct JsonFile<'a> {
    path: &'a str,
    dest: &'a Path,
    kind: FileKind,
    mode: String,
    secret: bool,
    /// `***` for files holding secrets (a checksum of a file with a weak
    /// password in it would allow guessing the password offline).
    sha256: &'a str,
}

fn json_file(f: &RenderedFile) -> JsonFile<'_> {
    JsonFile {
        path: &f.path,
        dest: &f.dest,
        kind: f.kind,
        mode: format!("{:04o}", f.mode),
        secret: f.secret,
        sha256: shown_checksum(f),
    }
}

fn shown_checksum(f: &RenderedFile) -> &str {
    if f.secret {
        "***"
    } else {
        &f.sha256
    }
}

/// The plan as one JSON document (`--format json`); secrets are `***`.
pub fn render_json(
    topo: &Topology,
    plan: &RenderedPlan,
    warnings: &[Diagnostic],
    out: Option<&Path>,
) -> serde_json::Value {
    let hosts: Vec<serde_json::Value> = plan
        .hosts
        .iter()
        .map(|h| {
            let host = topo.host(&h.name);
            serde_json::json!({
                "name": h.name,
                "address": h.address,
                "hostname": host.hostname,
                "aliases": host.aliases,
                "connection": host.connection,
                "service_manager": host.service_manager,
                "base_dir": h.base_dir,
                "broker_bin": host.broker_bin,
                "shared_mounts": host.shared_mounts,
                "manage_hosts": host.manage_hosts,
                "files": h.files.iter().map(json_file).collect::<Vec<_>>(),
                "services": h.services.iter().map(|s| serde_json::json!({
                    "name": s.name,
                    "kind": s.kind,
                    "dir": s.dir,
                    "ports": s.ports.iter().map(|(k, p)| (k.clone(), serde_json::json!(p))).collect::<serde_json::Map<_, _>>(),
                    "files": s.files.iter().map(json_file).collect::<Vec<_>>(),
                    "launch": s.launch,
                })).collect::<Vec<_>>(),
            })
        })
        .collect();
    let failure_modes: Vec<serde_json::Value> = plan
        .failure_modes
        .iter()
        .map(|m| {
            serde_json::json!({
                "node": m.node,
                "host": m.host,
                "role": m.role,
                "dies": m.dies,
                "effects": m.effects,
                "summary": m.effects.iter().map(ToString::to_string).collect::<Vec<_>>(),
            })
        })
        .collect();
    serde_json::json!({
        "inventory": topo.source,
        "valid": true,
        "cluster": topo.cluster,
        "broker": topo.broker_impl,
        "warnings": warnings,
        "out_dir": out,
        "hosts": hosts,
        "zookeeper": topo.zookeeper,
        "groups": topo.groups,
        "networks": topo.networks,
        "users": topo.users,
        "start_order": plan.start_order,
        "failover_urls": plan.failover_urls,
        "client_files": plan.client_files.iter().map(json_file).collect::<Vec<_>>(),
        "failure_modes": failure_modes,
    })
}

// ---- text -----------------------------------------------------------------

struct Styles {
    head: Style,
    name: Style,
    dim: Style,
    warn: Style,
    bad: Style,
}

impl Styles {
    fn new() -> Self {
        // console turns colours off when stdout is not a terminal.
        Self {
            head: Style::new().bold().underlined().for_stdout(),
            name: Style::new().cyan().bold().for_stdout(),
            dim: Style::new().dim().for_stdout(),
            warn: Style::new().yellow().for_stdout(),
            bad: Style::new().red().bold().for_stdout(),
        }
    }
}

/// Left-aligns columns (by their visible width, ignoring colour codes).
fn columns(rows: &[Vec<String>], indent: usize) -> String {
    let ncols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..ncols)
        .map(|i| {
            rows.iter()
                .filter_map(|r| r.get(i))
                .map(|c| console::measure_text_width(c))
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for row in rows {
        let mut line = " ".repeat(indent);
        for (i, cell) in row.iter().enumerate() {
            line.push_str(cell);
            if i + 1 < row.len() {
                let pad = widths[i] - console::measure_text_width(cell) + 2;
                line.push_str(&" ".repeat(pad));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// The human-readable plan (coloured when stdout is a terminal).
pub fn render_text(topo: &Topology, plan: &RenderedPlan, out: Option<&Path>) -> String {
    let s = Styles::new();
    let mut o = String::new();
    let _ = writeln!(
        o,
        "{} {} {}",
        s.head.apply_to("Plan for cluster"),
        s.name.apply_to(&topo.cluster),
        s.dim.apply_to(format!("({})", topo.source.display()))
    );
    let count = |n: usize, what: &str| format!("{n} {what}{}", plural(n));
    let zk_nodes = topo.zookeeper.as_ref().map_or(0, |z| z.nodes.len());
    let _ = writeln!(
        o,
        "  {} · {} · {} ({}, {}) · {} · {}",
        count(topo.hosts.len(), "host"),
        count(zk_nodes, "ZooKeeper node"),
        count(topo.groups.len(), "broker group"),
        count(topo.brokers().count(), "broker"),
        topo.broker_impl.name(),
        count(topo.networks.len(), "network"),
        count(plan.files().count(), "file"),
    );

    // Hosts, services, ports, files.
    let _ = writeln!(o, "\n{}", s.head.apply_to("Hosts"));
    for h in &plan.hosts {
        let host = topo.host(&h.name);
        let how = match (&host.connection, host.service_manager) {
            (Connection::Local, m) => format!("local, {}", manager(m)),
            (Connection::Ssh(ssh), m) => {
                let key = ssh
                    .identity_file
                    .as_ref()
                    .map_or_else(|| "agent".to_string(), |k| k.display().to_string());
                let known = match ssh.known_hosts {
                    KnownHostsPolicy::Strict => "strict",
                    KnownHostsPolicy::AcceptNew => "accept-new",
                };
                format!(
                    "ssh {}@{}:{} (key {key}, known_hosts {known}), {}",
                    ssh.user,
                    h.address,
                    ssh.port,
                    manager(m)
                )
            }
        };
        let name = match &host.hostname {
            Some(n) => format!("{} ({n})", h.address),
            None => h.address.clone(),
        };
        let _ = writeln!(
            o,
            "  {}  {name}  {}  base {}",
            s.name.apply_to(&h.name),
            s.dim.apply_to(how),
            h.base_dir.display()
        );
        let mut rows = Vec::new();
        for f in &h.files {
            rows.push(file_row(f, &s));
        }
        for svc in &h.services {
            let what = match &svc.kind {
                ServiceKind::Zookeeper { id } => format!("zookeeper id {id}"),
                ServiceKind::Broker { group } => format!("broker, group {group}"),
            };
            let ports = svc
                .ports
                .iter()
                .map(|(k, p)| format!("{k} {p}"))
                .collect::<Vec<_>>()
                .join("  ");
            rows.push(vec![s.name.apply_to(&svc.name).to_string(), what, ports]);
            for f in &svc.files {
                let mut r = file_row(f, &s);
                r[0] = format!("  {}", r[0]);
                rows.push(r);
            }
        }
        o.push_str(&columns(&rows, 4));
    }

    // Effective settings.
    if let Some(zk) = &topo.zookeeper {
        let _ = writeln!(o, "\n{}", s.head.apply_to("ZooKeeper"));
        let n = zk.nodes.len();
        let install = match &zk.install {
            crate::topology::ZkInstall::Apt => "apt (Debian zookeeper package)".to_string(),
            crate::topology::ZkInstall::Path(p) => p.display().to_string(),
        };
        let _ = writeln!(
            o,
            "  {n} node{} (quorum {}, tolerates {} failure{})  install {install}",
            plural(n),
            zk.quorum(),
            n - zk.quorum(),
            plural(n - zk.quorum())
        );
        let _ = writeln!(
            o,
            "  tickTime {}  initLimit {}  syncLimit {}  heap {}  zkPassword {}",
            zk.tick_time,
            zk.init_limit,
            zk.sync_limit,
            zk.heap,
            secret_label(zk.password.as_ref())
        );
        let _ = writeln!(o, "  connect {}", zk.connect_string(topo));
    }

    let _ = writeln!(o, "\n{}", s.head.apply_to("Groups"));
    for g in &topo.groups {
        let n = g.brokers.len();
        let names = g
            .brokers
            .iter()
            .map(|b| b.name.as_str())
            .collect::<Vec<_>>()
            .join(", ");
        let _ = writeln!(
            o,
            "  {}  {}  {n} broker{}: {names}",
            s.name.apply_to(&g.name),
            g.store.kind(),
            plural(n)
        );
        let detail = match &g.store {
            Store::Replicated(r) => format!(
                "replicas {} (quorum {}, tolerates {})  zkPath {}  zkSessionTimeout {}  sync {}  securityToken {}{}",
                r.replicas,
                r.quorum(),
                r.tolerance(),
                r.zk_path,
                r.zk_session_timeout,
                r.sync,
                secret_label(r.security_token.as_ref()),
                if r.slave_redirect { "  slaveRedirect" } else { "" }
            ),
            Store::SharedFile(sf) => format!(
                "directory {}  lockKeepAlivePeriod {} ms  lockAcquireSleepInterval {} ms",
                sf.directory.display(),
                sf.lock_keep_alive_period,
                sf.lock_acquire_sleep_interval
            ),
            Store::Standalone => "kahaDB of its own, no failover".to_string(),
        };
        let _ = writeln!(o, "      {detail}");
        let rows: Vec<Vec<String>> = g
            .brokers
            .iter()
            .map(|b| {
                let mut r = vec![
                    b.name.clone(),
                    format!("brokerName {}", g.broker_name(b)),
                    format!("advertised as {}", b.hostname),
                ];
                if matches!(g.store, Store::Replicated(_)) {
                    r.push(format!("weight {}", b.weight));
                }
                r.push(format!("data {}", b.data_dir.display()));
                r
            })
            .collect();
        o.push_str(&columns(&rows, 6));
    }

    if !topo.networks.is_empty() {
        let _ = writeln!(o, "\n{}", s.head.apply_to("Networks"));
        for n in &topo.networks {
            let shape = match &n.kind {
                NetworkKind::Static { from, to } => format!("static {from} → {}", to.join(", ")),
                NetworkKind::Multicast { members, uri } => {
                    format!("multicast {} ({uri})", members.join(", "))
                }
            };
            let ttl = if n.network_ttl == u32::MAX {
                "-1".to_string()
            } else {
                n.network_ttl.to_string()
            };
            let _ = writeln!(
                o,
                "  {}  {shape}\n      networkTTL {ttl}  duplex {}  conduitSubscriptions {}  decreaseNetworkConsumerPriority {}{}",
                s.name.apply_to(&n.name),
                n.duplex,
                n.conduit_subscriptions,
                n.decrease_network_consumer_priority,
                n.user.as_ref().map(|u| format!("  user {u}")).unwrap_or_default()
            );
        }
    }
    if !topo.users.is_empty() {
        let users = topo
            .users
            .iter()
            .map(|u| format!("{} ({}) password ***", u.name, u.groups.join(",")))
            .collect::<Vec<_>>()
            .join("; ");
        let _ = writeln!(o, "\n{}\n  {users}", s.head.apply_to("Users"));
    }

    // Start order.
    let _ = writeln!(o, "\n{}", s.head.apply_to("Start order"));
    let rows: Vec<Vec<String>> = plan
        .start_order
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let (_, svc) = plan.service(&r.service).expect("service in plan");
            let launch = match &svc.launch {
                Launch::Systemd { unit } => format!("systemd {unit}"),
                Launch::Process { script, .. } => format!("process {}", script.display()),
            };
            vec![
                format!("{}.", i + 1),
                s.name.apply_to(&r.service).to_string(),
                r.kind.label().to_string(),
                format!("on {}", r.host),
                s.dim.apply_to(launch).to_string(),
            ]
        })
        .collect();
    o.push_str(&columns(&rows, 2));

    // Client URLs.
    let _ = writeln!(o, "\n{}", s.head.apply_to("Failover URLs"));
    for u in &plan.failover_urls {
        let _ = writeln!(o, "  {}", s.name.apply_to(&u.group));
        o.push_str(&columns(
            &[
                vec!["stomp".to_string(), u.stomp.clone()],
                vec!["openwire".to_string(), u.openwire.clone()],
            ],
            4,
        ));
    }

    // Failure modes.
    let _ = writeln!(o, "\n{}", s.head.apply_to("Failure modes (one node dies)"));
    let rows: Vec<Vec<String>> = plan
        .failure_modes
        .iter()
        .map(|m| {
            let severe = m.effects.iter().any(|e| {
                matches!(
                    e,
                    crate::failure::Effect::GroupUnavailable { .. }
                        | crate::failure::Effect::ZookeeperQuorumLost { .. }
                )
            });
            let effects = m
                .effects
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; ");
            let style = if severe { &s.bad } else { &s.warn };
            vec![
                s.name.apply_to(&m.node).to_string(),
                m.role.clone(),
                style.apply_to(effects).to_string(),
            ]
        })
        .collect();
    o.push_str(&columns(&rows, 2));

    if let Some(dir) = out {
        let n = plan.files().count();
        let _ = writeln!(
            o,
            "\nWrote {n} files to {} (files holding secrets are mode 0600; manifest {MANIFEST}).",
            dir.display()
        );
    }
    o
}

fn file_row(f: &RenderedFile, s: &Styles) -> Vec<String> {
    let sum = if f.secret {
        "*** (holds secrets)".to_string()
    } else {
        f.sha256[..16].to_string()
    };
    vec![
        f.path.clone(),
        format!("{:04o}", f.mode),
        s.dim.apply_to(sum).to_string(),
    ]
}

fn manager(m: ServiceManager) -> &'static str {
    match m {
        ServiceManager::Systemd => "systemd",
        ServiceManager::Process => "process",
    }
}

fn secret_label(s: Option<&crate::topology::Secret>) -> String {
    match s {
        Some(s) => format!("*** ({})", s.origin),
        None => "none".to_string(),
    }
}

fn plural(n: usize) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}
