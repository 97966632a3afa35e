//! `amqctl deploy INVENTORY`: put the rendered plan onto the hosts and bring
//! the cluster up, idempotently.
//!
//! Phases, each over all hosts in parallel and each complete before the
//! next: connect → preflight (every problem at once) → read state (checksums,
//! running services) → [dry run stops here and prints diffs] → install
//! ZooKeeper where asked → hosts block → upload what changed (for services
//! that are not running) → start/roll ZooKeeper → start/roll brokers group by
//! group → summary. A deploy that fails part-way is continued by running it
//! again: nothing is re-done that is already in place.

pub mod changes;
pub mod fleet;
pub mod health;
pub mod hosts_block;
pub mod install;
pub mod preflight;
pub mod progress;
pub mod rollout;
pub mod service;
pub mod summary;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use sha2::{Digest, Sha256};

use crate::executor::{ExecError, Host};
use crate::render::{FileKind, RenderedPlan};
use crate::topology::Topology;

use changes::{Action, DesiredFile, HostChanges};
use fleet::{ConnectOptions, Fleet};
use preflight::Problem;
use progress::Progress;
use rollout::{Rollout, Timeouts};
use service::{services, Service};

/// The options every command that reaches hosts shares.
#[derive(Debug, Clone, clap::Args)]
pub struct HostArgs {
    /// The inventory file (TOML).
    pub inventory: PathBuf,
    /// Record host keys not yet in known_hosts instead of refusing them
    /// (a changed key is always refused).
    #[arg(long)]
    pub accept_new_host_keys: bool,
    /// Directory for the per-host command logs
    /// [default: .amqctl/CLUSTER/logs beside the inventory].
    #[arg(long, value_name = "DIR")]
    pub log_dir: Option<PathBuf>,
    /// Plain progress lines instead of progress bars.
    #[arg(long)]
    pub plain: bool,
}

impl HostArgs {
    /// Loads and validates the inventory and renders it (printing warnings).
    pub fn load(&self) -> anyhow::Result<(Topology, RenderedPlan)> {
        let (topo, warnings) = Topology::load(&self.inventory)?;
        for w in &warnings {
            eprintln!("{}", w.render());
        }
        let plan = crate::render::render(&topo)?;
        Ok((topo, plan))
    }

    pub fn connect_options(&self, topo: &Topology) -> ConnectOptions {
        let mut opts = ConnectOptions::for_topology(topo);
        opts.accept_new_host_keys = self.accept_new_host_keys;
        if let Some(dir) = &self.log_dir {
            opts.log_dir = dir.clone();
        }
        opts
    }
}

#[derive(Debug, clap::Args)]
pub struct DeployArgs {
    #[command(flatten)]
    pub hosts: HostArgs,
    /// Connect and read what is deployed, print the diff of every file that
    /// would change and the services that would (re)start; change nothing.
    /// Exit code 0: no changes, 3: changes pending.
    #[arg(long)]
    pub dry_run: bool,
    /// The amq-broker binary to ship [default: this amqctl, which is the
    /// broker when installed under the name amq-broker].
    #[arg(long, value_name = "PATH")]
    pub broker_bin: Option<PathBuf>,
    /// Seconds to wait for ZooKeeper quorum and for each broker's role.
    #[arg(long, default_value_t = 60, value_name = "SECS")]
    pub timeout: u64,
}

/// Exit code of `deploy --dry-run` when something would change.
pub const EXIT_CHANGES_PENDING: u8 = 3;

#[derive(Debug, thiserror::Error)]
pub enum DeployError {
    #[error("cannot reach {} host(s):\n{}", .0.len(), list(.0))]
    Connect(Vec<ExecError>),
    #[error("preflight found {} problem(s); nothing was changed:\n{}", .0.len(), list(.0))]
    Preflight(Vec<Problem>),
    #[error("{host}: {step}: {detail}")]
    Step {
        host: String,
        step: String,
        detail: String,
    },
    #[error("{0}")]
    Wait(Box<WaitFailure>),
    #[error("{0}")]
    Binary(String),
}

/// A service that did not become healthy: which, what was awaited, and
/// where its output is.
#[derive(Debug)]
pub struct WaitFailure {
    pub host: String,
    pub service: String,
    /// `None` when the wait ended because the process exited.
    pub waited: Option<Duration>,
    pub condition: String,
    pub log: String,
    pub log_tail: String,
}

impl std::fmt::Display for WaitFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.waited {
            Some(w) => write!(
                f,
                "{}: {}: gave up after {}s waiting for {}",
                self.host,
                self.service,
                w.as_secs(),
                self.condition
            )?,
            None => write!(f, "{}: {}: {}", self.host, self.service, self.condition)?,
        }
        write!(f, "\n  log: {}{}", self.log, tail(&self.log_tail))
    }
}

impl From<WaitFailure> for DeployError {
    fn from(w: WaitFailure) -> Self {
        DeployError::Wait(Box::new(w))
    }
}

fn list<T: std::fmt::Display>(items: &[T]) -> String {
    items
        .iter()
        .map(|i| format!("  {}", i.to_string().replace('\n', "\n  ")))
        .collect::<Vec<_>>()
        .join("\n")
}

fn tail(log: &str) -> String {
    if log.trim().is_empty() {
        String::new()
    } else {
        format!(
            "\n  last lines:\n{}",
            log.lines()
                .map(|l| format!("    {l}"))
                .collect::<Vec<_>>()
                .join("\n")
        )
    }
}

/// What a deploy did (or, in a dry run, would do).
#[derive(Debug, Default)]
pub struct Outcome {
    pub files_changed: usize,
    pub started: Vec<String>,
    pub restarted: Vec<String>,
}

impl Outcome {
    pub fn is_noop(&self) -> bool {
        self.files_changed == 0 && self.started.is_empty() && self.restarted.is_empty()
    }
}

/// The CLI entry: `amqctl deploy`.
pub fn run(args: DeployArgs) -> anyhow::Result<()> {
    let (topo, plan) = args.hosts.load()?;
    let progress = Progress::new(args.hosts.plain);
    let opts = DeployOptions {
        connect: args.hosts.connect_options(&topo),
        dry_run: args.dry_run,
        broker_bin: args.broker_bin.clone(),
        timeouts: Timeouts {
            zookeeper: Duration::from_secs(args.timeout),
            broker: Duration::from_secs(args.timeout),
        },
    };
    let outcome = deploy(&topo, &plan, &opts, &progress);
    progress.finish();
    let log_dir = opts.connect.log_dir.display().to_string();
    let outcome = outcome.map_err(|e| {
        anyhow::Error::new(e).context(format!(
            "deploy failed (every command and its output: {log_dir}/<host>.log)"
        ))
    })?;
    if args.dry_run && !outcome.is_noop() {
        return Err(crate::cli::Exit(EXIT_CHANGES_PENDING).into());
    }
    Ok(())
}

pub struct DeployOptions {
    pub connect: ConnectOptions,
    pub dry_run: bool,
    pub broker_bin: Option<PathBuf>,
    pub timeouts: Timeouts,
}

pub fn deploy(
    topo: &Topology,
    plan: &RenderedPlan,
    opts: &DeployOptions,
    progress: &Progress,
) -> Result<Outcome, DeployError> {
    let all = services(topo, plan);
    // Found now (a missing binary is a usage error), read and hashed after preflight.
    let binary_path = if all.iter().any(|s| s.broker().is_some()) {
        Some(locate_broker_binary(opts.broker_bin.as_deref())?)
    } else {
        None
    };

    progress.line(&format!("connecting to {} host(s)", topo.hosts.len()));
    let fleet = connect_all(topo, &opts.connect)?;

    // Preflight: facts from every host, judged all together.
    let blocks = hosts_block::wanted(topo, plan);
    let facts = fleet.each(|name, host| {
        progress.step(name, "preflight");
        preflight::run_facts(topo, topo.host(name), host)
    });
    let mut problems = Vec::new();
    for (name, result) in &facts {
        match result {
            Ok(f) => problems.extend(preflight::check(
                topo,
                topo.host(name),
                &all,
                f,
                blocks.contains_key(name),
            )),
            Err(p) => problems.push(p.clone()),
        }
    }
    let (errors, warnings): (Vec<Problem>, Vec<Problem>) =
        problems.into_iter().partition(|p| !p.warning);
    for w in &warnings {
        progress.line(&w.to_string());
    }
    if !errors.is_empty() {
        return Err(DeployError::Preflight(errors));
    }

    // State: what each host has and runs.
    let binary = binary_path.as_deref().map(load_broker_binary).transpose()?;
    let desired = desired_files(topo, plan, binary.as_ref());
    let states = fleet.each(|name, host| {
        progress.step(name, "comparing checksums");
        read_state(host, &desired[name], &all, name)
    });
    let mut changes = BTreeMap::new();
    for (name, state) in states {
        changes.insert(name, state?);
    }
    let block_changes = fleet.each(|name, host| match blocks.get(name) {
        Some(block) => {
            hosts_block::pending(host, block).map_err(|e| exec_step(name, "read /etc/hosts", e))
        }
        None => Ok(None),
    });
    let mut block_updates = BTreeMap::new();
    for (name, b) in block_changes {
        if let Some(update) = b? {
            block_updates.insert(name, update);
        }
    }

    let outcome = outcome_of(&changes, block_updates.len());
    if opts.dry_run {
        print_dry_run(&fleet, &changes, &block_updates, &all);
        return Ok(outcome);
    }
    if outcome.is_noop() {
        fleet.each(|name, _| progress.step(name, "no changes"));
        progress.clear();
        let states = summary::collect(&fleet, &all);
        print!("{}", summary::render(&states, plan));
        println!(
            "no changes: {} file(s) and {} service(s) already as planned",
            desired.values().map(Vec::len).sum::<usize>(),
            all.len()
        );
        return Ok(outcome);
    }

    // Install ZooKeeper where the inventory says apt and it is missing.
    for (_, r) in fleet.each(|name, host| {
        let f = facts[name].as_ref().expect("preflight passed");
        install::zookeeper(topo, topo.host(name), &all, f, host, progress)
    }) {
        r?;
    }

    for (_, r) in fleet.each(|name, host| match block_updates.get(name) {
        Some(update) => {
            progress.step(name, "writing the hosts block");
            hosts_block::write(host, update).map_err(|e| exec_step(name, "write /etc/hosts", e))
        }
        None => Ok(()),
    }) {
        r?;
    }

    // Upload for services that are not running. A running service's files
    // wait for its turn in the rolling restart, and a host's new binary for
    // the first of its brokers to stop.
    let mut pending_binary = BTreeSet::new();
    for (name, c) in &changes {
        let broker_running = all.iter().any(|s| {
            &s.host.name == name
                && s.broker().is_some()
                && c.pids.get(&s.name).copied().flatten().is_some()
        });
        if broker_running && c.binary_upload().is_some() {
            pending_binary.insert(name.clone());
        }
    }
    for (_, r) in fleet.each(|name, host| {
        let c = &changes[name];
        let mut files: Vec<_> = c
            .actions
            .iter()
            .filter(|(_, a)| **a == Action::Start)
            .flat_map(|(svc, _)| c.files_of(svc, false))
            .collect();
        if !pending_binary.contains(name) {
            files.extend(c.binary_upload());
        }
        if files.is_empty() {
            return Ok(());
        }
        progress.step(name, &format!("uploading {} file(s)", files.len()));
        host.put_files(&files)
            .map_err(|e| exec_step(name, "upload", e))
    }) {
        r?;
    }

    let rollout = Rollout {
        topo,
        services: &all,
        fleet: &fleet,
        changes: &changes,
        progress,
        timeouts: opts.timeouts,
        pending_binary: std::sync::Mutex::new(pending_binary),
    };
    rollout.zookeeper()?;
    rollout.brokers()?;
    progress.clear();

    let states = summary::collect(&fleet, &all);
    print!("{}", summary::render(&states, plan));
    println!(
        "deployed in {:.2}s: {} file(s) changed, started: {}, restarted: {} (logs: {})",
        progress.elapsed(),
        outcome.files_changed,
        names_or_none(&outcome.started),
        names_or_none(&outcome.restarted),
        opts.connect.log_dir.display(),
    );
    Ok(outcome)
}

/// Connects every host, failing with every connection error if any host is unreachable.
pub fn connect_all(topo: &Topology, opts: &ConnectOptions) -> Result<Fleet, DeployError> {
    let (fleet, errors) = Fleet::connect(topo, opts);
    if errors.is_empty() {
        Ok(fleet)
    } else {
        Err(DeployError::Connect(errors))
    }
}

fn names_or_none(names: &[String]) -> String {
    if names.is_empty() {
        "none".into()
    } else {
        names.join(", ")
    }
}

fn outcome_of(changes: &BTreeMap<String, HostChanges>, hosts_blocks: usize) -> Outcome {
    let mut o = Outcome {
        files_changed: hosts_blocks,
        ..Outcome::default()
    };
    for c in changes.values() {
        o.files_changed += c.files.len();
        for (svc, a) in &c.actions {
            match a {
                Action::Start => o.started.push(svc.clone()),
                Action::Restart => o.restarted.push(svc.clone()),
                Action::Keep => {}
            }
        }
    }
    o
}

fn exec_step(host: &str, step: &str, e: impl std::fmt::Display) -> DeployError {
    DeployError::Step {
        host: host.to_string(),
        step: step.to_string(),
        detail: e.to_string(),
    }
}

/// Checksums and running state of one host → its changes.
fn read_state(
    host: &dyn Host,
    desired: &[DesiredFile],
    all: &[Service<'_>],
    name: &str,
) -> Result<HostChanges, DeployError> {
    let paths: Vec<PathBuf> = desired.iter().map(|d| d.path.clone()).collect();
    let remote = host
        .checksums(&paths)
        .map_err(|e| exec_step(name, "read checksums", e))?;
    let here: Vec<Service<'_>> = all
        .iter()
        .filter(|s| s.host.name == name)
        .cloned()
        .collect();
    let pids =
        service::state_of(host, &here).map_err(|e| exec_step(name, "read service state", e))?;
    let pids: BTreeMap<String, Option<u32>> =
        here.iter().map(|s| s.name.clone()).zip(pids).collect();
    let kinds: Vec<(String, bool)> = here
        .iter()
        .map(|s| (s.name.clone(), s.broker().is_some()))
        .collect();
    Ok(HostChanges::compute(desired, &remote, &kinds, pids))
}

/// The broker binary and its checksum: `--broker-bin`, or amqctl itself
/// (see [`locate_broker_binary`]).
pub struct BrokerBinary {
    pub contents: Arc<[u8]>,
    pub sha256: String,
}

pub fn locate_broker_binary(explicit: Option<&Path>) -> Result<PathBuf, DeployError> {
    let path = match explicit {
        Some(p) => p.to_path_buf(),
        None => find_broker_binary().ok_or_else(|| {
            DeployError::Binary(
                "cannot find an amq-broker binary beside this program; pass --broker-bin PATH \
                 (cargo build --release -p amq-broker builds one)"
                    .into(),
            )
        })?,
    };
    if path.is_file() {
        Ok(path)
    } else {
        Err(DeployError::Binary(format!(
            "the broker binary {} does not exist (pass --broker-bin PATH)",
            path.display()
        )))
    }
}

pub fn load_broker_binary(path: &Path) -> Result<BrokerBinary, DeployError> {
    let contents = std::fs::read(path).map_err(|e| {
        DeployError::Binary(format!(
            "cannot read the broker binary {}: {e} (pass --broker-bin PATH)",
            path.display()
        ))
    })?;
    let sha256 = hex::encode(Sha256::digest(&contents));
    Ok(BrokerBinary {
        contents: Arc::from(contents),
        sha256,
    })
}

fn find_broker_binary() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    // amqctl is the broker too when installed as `amq-broker` (main.rs):
    // shipping itself, it always ships the broker it was built with.
    if exe.file_stem().is_some_and(|n| n == "amqctl") {
        return Some(exe);
    }
    // amqctl as a library (a test binary in target/<profile>/deps): a
    // broker built beside it.
    let dir = exe.parent()?;
    [dir.join("amq-broker"), dir.parent()?.join("amq-broker")]
        .into_iter()
        .find(|p| p.is_file())
}

/// Every file each host should have: rendered service files and, where
/// brokers run, the broker binary.
fn desired_files(
    topo: &Topology,
    plan: &RenderedPlan,
    binary: Option<&BrokerBinary>,
) -> BTreeMap<String, Vec<DesiredFile>> {
    let mut out: BTreeMap<String, Vec<DesiredFile>> = BTreeMap::new();
    for hp in &plan.hosts {
        let files = out.entry(hp.name.clone()).or_default();
        for sp in &hp.services {
            for f in sp.files.iter().filter(|f| f.kind != FileKind::HostsBlock) {
                files.push(DesiredFile {
                    service: Some(sp.name.clone()),
                    path: f.dest.clone(),
                    contents: Arc::from(f.contents.as_bytes()),
                    mode: f.mode,
                    sha256: f.sha256.clone(),
                    secret: f.secret,
                });
            }
        }
        let has_broker = hp
            .services
            .iter()
            .any(|s| matches!(s.kind, crate::render::ServiceKind::Broker { .. }));
        if let (true, Some(bin)) = (has_broker, binary) {
            files.push(DesiredFile {
                service: None,
                path: topo.host(&hp.name).broker_bin.clone(),
                contents: bin.contents.clone(),
                mode: 0o755,
                sha256: bin.sha256.clone(),
                secret: false,
            });
        }
    }
    out
}

fn print_dry_run(
    fleet: &Fleet,
    changes: &BTreeMap<String, HostChanges>,
    blocks: &BTreeMap<String, hosts_block::Update>,
    all: &[Service<'_>],
) {
    let mut pending = false;
    for (name, host) in fleet.iter() {
        let c = &changes[name];
        let block = blocks.get(name);
        if c.is_empty() && block.is_none() {
            println!("== {name}: no changes");
            continue;
        }
        pending = true;
        println!("== {name}");
        if let Some(b) = block {
            print!("{}", b.diff());
        }
        for f in &c.files {
            print!("{}", changes::describe_change(host.as_ref(), f));
        }
        for s in all.iter().filter(|s| &s.host.name == name) {
            match c.actions.get(&s.name) {
                Some(Action::Start) => println!("would start {}", s.name),
                Some(Action::Restart) => println!("would restart {} (its files changed)", s.name),
                _ => {}
            }
        }
    }
    if pending {
        println!("changes pending (dry run: nothing was changed)");
    } else {
        println!("no changes");
    }
}
