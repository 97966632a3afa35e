//! `amqctl verify failover INVENTORY`: kill the master under load and prove
//! the group recovers without losing an acknowledged message.
//!
//! A producer sends receipted persistent messages at a steady rate through
//! the group's failover URL (the one `plan` renders for clients) and a
//! consumer takes them with client-individual acks, keeping to half of what
//! was receipted, so a backlog sits in the store whenever a master dies. Then, `--kills` times:
//! wait for exactly one master and a steady load, `kill -9` the master
//! through its host's executor, and watch — every 20 ms — the status
//! endpoints (and, for a replicated group, ZooKeeper's elected node) until
//! another broker is master and the producer has its first receipt from it;
//! then restart the killed node and wait until it is back as a slave. At the
//! end the producer stops, the consumer drains the queue, and every receipted
//! message must have been consumed.
//!
//! Measured per kill: when the client noticed (its `Disconnected` event),
//! when a new master was seen, the client pause (kill → first receipt after
//! the reconnect), messages in flight at the kill, how many the client sent
//! again, and how long the restarted node took to rejoin.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use amq_broker::client::{AckMode, ConnectOptions, OutgoingMessage};
use amq_broker::failover::{EventKind, FailoverClient, FailoverError, FailoverUri};
use anyhow::{bail, Context};
use comfy_table::{presets::NOTHING, Table};
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::deploy::fleet::parallel;
use crate::deploy::service::Service;
use crate::deploy::HostArgs;
use crate::executor::Host;
use crate::failure::{effects, Effect};
use crate::plan::Format;
use crate::send::{ConnectArgs, SEQ_HEADER};
use crate::topology::{Group, Store, Topology};

use super::probe::{self, Role};
use super::report::{median_max, CheckList};
use super::zkview::{GroupView, ZkReader};
use super::{Cluster, EXIT_FAILED};

/// Header naming the verify run, so a drain ignores anything else.
const RUN_HEADER: &str = "amqctl-verify-run";
const POLL: Duration = Duration::from_millis(20);

#[derive(Debug, Clone, clap::Args)]
pub struct FailoverArgs {
    #[command(flatten)]
    pub hosts: HostArgs,
    /// The group whose master is killed [default: the first master/slave group].
    #[arg(long, value_name = "NAME")]
    pub group: Option<String>,
    /// How many times the master is killed.
    #[arg(long, default_value_t = 3, value_name = "N")]
    pub kills: u32,
    /// At most this many messages are sent in the whole run.
    #[arg(long, default_value_t = 100_000, value_name = "M")]
    pub messages: u64,
    /// Producer rate (receipted persistent sends per second, one at a time).
    #[arg(long, default_value_t = 200.0, value_name = "PER_SEC")]
    pub rate: f64,
    /// Seconds of steady load before each kill.
    #[arg(long, default_value_t = 2.0, value_name = "SECS")]
    pub settle: f64,
    /// Up to this many more seconds, at random, before each kill (so kills
    /// do not always fall on the same phase of a slave's lock polling).
    #[arg(long, default_value_t = 0.0, value_name = "SECS")]
    pub jitter: f64,
    /// A new master must be seen within this many seconds of the kill
    /// [default: zkSessionTimeout + 5 s; shared-file: lockAcquireSleepInterval + 5 s;
    /// a lone broker: 30 s to restart].
    #[arg(long, value_name = "SECS")]
    pub bound: Option<f64>,
    /// Seconds to wait for a new master, the client, a rejoin or the drain
    /// before giving up on that step.
    #[arg(long, default_value_t = 60, value_name = "SECS")]
    pub timeout: u64,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
    #[command(flatten)]
    pub connect: ConnectArgs,
}

impl FailoverArgs {
    /// The arguments `amqctl up` uses: one kill, defaults otherwise.
    pub fn for_up(hosts: HostArgs, connect: ConnectArgs, group: Option<String>) -> FailoverArgs {
        FailoverArgs {
            hosts,
            group,
            kills: 1,
            messages: 100_000,
            rate: 200.0,
            settle: 2.0,
            jitter: 0.0,
            bound: None,
            timeout: 60,
            format: Format::Text,
            connect,
        }
    }
}

/// One kill and what followed.
#[derive(Debug, Clone, Serialize)]
pub struct KillRow {
    pub kill: u32,
    pub killed: String,
    pub pid: u32,
    pub new_master: Option<String>,
    /// Kill → the producer's `Disconnected` event.
    pub detected_ms: Option<f64>,
    /// Kill → another broker (or the restarted lone broker) serves, as its
    /// status endpoint (or ZooKeeper, whichever first) shows.
    pub elected_ms: Option<f64>,
    /// Kill → ZooKeeper's elected node names another broker (replicated only).
    pub zk_elected_ms: Option<f64>,
    /// Kill → the producer's first receipt after it reconnected.
    pub client_pause_ms: Option<f64>,
    /// Receipted sends without their receipt when the master died.
    pub in_flight: usize,
    /// Messages the client sent again after reconnecting.
    pub resent: usize,
    /// Restart of the killed node → it reports slave (or, alone, serves).
    pub rejoined_ms: Option<f64>,
    /// What the plan's failure-mode table predicted for this node's death.
    pub predicted: Vec<String>,
    /// Networks of brokers bridging to the new master again: network → ms
    /// after the kill.
    pub networks: Vec<(String, Option<f64>)>,
    /// What went wrong in this round, if anything.
    pub problems: Vec<String>,
}

/// Everything a run found.
#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    pub cluster: String,
    pub group: String,
    pub store: &'static str,
    pub url: String,
    pub destination: String,
    pub bound_ms: f64,
    pub rows: Vec<KillRow>,
    pub sent: u64,
    pub receipted: u64,
    pub consumed: u64,
    pub lost: u64,
    /// Up to 20 lost sequence numbers.
    pub lost_sample: Vec<u64>,
    pub duplicates: u64,
    pub out_of_order: u64,
    pub send_errors: Vec<String>,
    /// When two brokers served at once: when and which.
    pub two_masters: Vec<String>,
    pub election_median_ms: Option<f64>,
    pub election_max_ms: Option<f64>,
    pub pause_median_ms: Option<f64>,
    pub pause_max_ms: Option<f64>,
    pub checks: CheckList,
}

pub fn run(args: FailoverArgs) -> anyhow::Result<()> {
    let (topo, plan) = args.hosts.load()?;
    let fleet = crate::deploy::connect_all(&topo, &args.hosts.connect_options(&topo))?;
    let cluster = Cluster::new(&topo, &plan, &fleet);
    let outcome = verify(&cluster, &args, &mut |line| eprintln!("{line}"))?;
    match args.format {
        Format::Json => println!("{}", serde_json::to_string_pretty(&outcome)?),
        Format::Text => print!("{}", render_text(&outcome)),
    }
    if outcome.checks.passed() {
        Ok(())
    } else {
        Err(crate::cli::Exit(EXIT_FAILED).into())
    }
}

/// The group `--group` names, or the first master/slave group, or the first.
fn pick_group<'t>(topo: &'t Topology, name: Option<&str>) -> anyhow::Result<&'t Group> {
    match name {
        Some(n) => topo.groups.iter().find(|g| g.name == n).ok_or_else(|| {
            crate::cli::UsageError(format!(
                "no group named `{n}` in the inventory (groups: {})",
                topo.groups
                    .iter()
                    .map(|g| g.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
            .into()
        }),
        None => topo
            .groups
            .iter()
            .find(|g| g.is_master_slave())
            .or(topo.groups.first())
            .context("the inventory has no broker group"),
    }
}

/// How long a new master may take: the group's `failover_bound`, else the
/// store's own timing plus 5 s.
pub fn default_bound(group: &Group) -> Duration {
    if let Some(b) = group
        .failover_bound
        .as_deref()
        .and_then(|s| amq_broker::config::parse_timespan(s).ok())
    {
        return b;
    }
    let slack = Duration::from_secs(5);
    match &group.store {
        Store::Replicated(r) => {
            amq_broker::config::parse_timespan(&r.zk_session_timeout)
                .unwrap_or(Duration::from_secs(2))
                + slack
        }
        Store::SharedFile(s) => Duration::from_millis(s.lock_acquire_sleep_interval as u64) + slack,
        Store::Standalone => Duration::from_secs(30),
    }
}

/// Runs the scenario; `say` gets progress lines.
pub fn verify(
    c: &Cluster<'_>,
    args: &FailoverArgs,
    say: &mut dyn FnMut(&str),
) -> anyhow::Result<Outcome> {
    let group = pick_group(c.topo, args.group.as_deref())?;
    let members = c.members(&group.name);
    let url = c
        .plan
        .failover_urls
        .iter()
        .find(|u| u.group == group.name)
        .map(|u| u.stomp.clone())
        .context("the plan has no client URL for the group")?;
    let login = args.connect.options()?;
    let bound = args
        .bound
        .map(Duration::from_secs_f64)
        .unwrap_or_else(|| default_bound(group));
    let timeout = Duration::from_secs(args.timeout);
    let run_id = format!(
        "{:x}",
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_millis()
    );
    let destination = format!(
        "/queue/amqctl.verify.{}.{}.{run_id}",
        c.topo.cluster, group.name
    );

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let zk = match group.store {
        Store::Replicated(_) => rt
            .block_on(ZkReader::connect(c.topo, Duration::from_secs(3)))
            .map_err(|e| say(&format!("ZooKeeper's view unavailable: {e}")))
            .ok(),
        _ => None,
    };
    let watch = Watch {
        c,
        group,
        members: &members,
        login: &login,
        zk: zk.as_ref(),
        rt: &rt,
    };

    say(&format!(
        "verify failover: group {} ({}), {} kill(s), {} msg/s on {url}",
        group.name,
        group.store.kind(),
        args.kills,
        args.rate
    ));
    let load = rt.block_on(Load::start(&url, &login, &destination, &run_id, args))?;

    let mut rows = Vec::new();
    let mut two_masters = Vec::new();
    for k in 1..=args.kills {
        let row = watch.one_kill(k, &load, args, bound, timeout, &mut two_masters, say);
        say(&format!(
            "kill {k}: {} → {}; elected {}, client pause {}{}",
            row.killed,
            row.new_master.as_deref().unwrap_or("none"),
            ms(row.elected_ms),
            ms(row.client_pause_ms),
            if row.problems.is_empty() {
                String::new()
            } else {
                format!(" — {}", row.problems.join("; "))
            }
        ));
        let fatal = row.new_master.is_none();
        rows.push(row);
        if fatal {
            break; // no master to kill next
        }
    }

    say("draining the queue");
    let tally = rt.block_on(load.finish(timeout));
    rt.shutdown_timeout(Duration::from_secs(2));
    Ok(summarise(
        c,
        group,
        url,
        destination,
        bound,
        rows,
        tally,
        two_masters,
    ))
}

/// What the status poller sees of a group.
struct Watch<'a, 't> {
    c: &'a Cluster<'t>,
    group: &'a Group,
    members: &'a [&'a Service<'t>],
    login: &'a ConnectOptions,
    zk: Option<&'a ZkReader>,
    rt: &'a tokio::runtime::Runtime,
}

impl Watch<'_, '_> {
    fn host(&self, s: &Service<'_>) -> Option<Arc<crate::executor::Logged>> {
        self.c.fleet.get(&s.host.name)
    }

    /// Every member's role, probed in parallel.
    fn roles(&self) -> Vec<Role> {
        let idx: Vec<usize> = (0..self.members.len()).collect();
        parallel(&idx, |&i| {
            let s = self.members[i];
            let host = self.host(s);
            probe::role(s, host.as_deref().map(|h| h as &dyn Host), self.login).role
        })
    }

    fn actives(&self, roles: &[Role]) -> Vec<String> {
        self.members
            .iter()
            .zip(roles)
            .filter(|(_, r)| r.is_active())
            .map(|(s, _)| s.name.clone())
            .collect()
    }

    fn zk_elected(&self) -> Option<String> {
        let zk = self.zk?;
        let view = self.rt.block_on(zk.group(self.group)).ok()?;
        let e = view.elected.as_ref()?;
        view.members
            .iter()
            .find(|(_, m)| m.id == e.id)
            .and_then(|(_, m)| GroupView::broker_of(self.group, m))
            .map(|b| b.name.clone())
            .or_else(|| Some(e.id.clone()))
    }

    /// Waits until exactly one member serves; notes two at once.
    fn wait_master(&self, timeout: Duration, two: &mut Vec<String>) -> Option<String> {
        let deadline = Instant::now() + timeout;
        loop {
            let roles = self.roles();
            let active = self.actives(&roles);
            note_two(&active, two);
            if active.len() == 1 {
                return active.into_iter().next();
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(POLL * 5);
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn one_kill(
        &self,
        k: u32,
        load: &Load,
        args: &FailoverArgs,
        bound: Duration,
        timeout: Duration,
        two: &mut Vec<String>,
        say: &mut dyn FnMut(&str),
    ) -> KillRow {
        let mut row = KillRow {
            kill: k,
            killed: String::new(),
            pid: 0,
            new_master: None,
            detected_ms: None,
            elected_ms: None,
            zk_elected_ms: None,
            client_pause_ms: None,
            in_flight: 0,
            resent: 0,
            rejoined_ms: None,
            predicted: Vec::new(),
            networks: Vec::new(),
            problems: Vec::new(),
        };
        let Some(master) = self.wait_master(timeout, two) else {
            row.problems
                .push(format!("no single master within {}s", timeout.as_secs()));
            return row;
        };
        let svc = *self
            .members
            .iter()
            .find(|s| s.name == master)
            .expect("a member");
        row.killed = master.clone();
        row.predicted = effects(self.c.topo, &[master.as_str()])
            .iter()
            .map(Effect::to_string)
            .collect();

        // Steady load first: the producer must be getting receipts.
        let before = load.receipt_count();
        // Random enough to spread kills over a slave's polling cycle.
        let jitter = args.jitter
            * (SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default()
                .subsec_nanos() as f64
                / 1e9);
        std::thread::sleep(Duration::from_secs_f64(args.settle + jitter));
        if load.receipt_count() == before {
            row.problems.push(format!(
                "the producer got no receipt in the {:.1}s before the kill",
                args.settle + jitter
            ));
        }

        let Some(host) = self.host(svc) else {
            row.problems
                .push(format!("host {} not connected", svc.host.name));
            return row;
        };
        let pid = match svc.running_pid(host.as_ref()) {
            Ok(Some(pid)) => pid,
            other => {
                row.problems
                    .push(format!("cannot find {}'s pid: {other:?}", svc.name));
                return row;
            }
        };
        row.pid = pid;
        row.in_flight = load.producer.unreceipted();
        say(&format!(
            "kill {k}: kill -9 {master} (pid {pid} on {})",
            svc.host.name
        ));
        let t_kill = Instant::now();
        match host.run(&format!("kill -9 {pid}"), None) {
            Ok(out) if out.success() => {}
            Ok(out) => {
                row.problems
                    .push(format!("kill -9 {pid} failed: {}", out.stderr_str()));
                return row;
            }
            Err(e) => {
                row.problems.push(format!("kill -9 {pid}: {e}"));
                return row;
            }
        }

        let alone = self.members.len() == 1;
        let mut restarted_at = None;
        let deadline = t_kill + bound.max(timeout);
        loop {
            if alone && restarted_at.is_none() && !pid_alive(host.as_ref(), svc) {
                // A lone broker's failover is its restart.
                if let Err(e) = svc.start(host.as_ref()) {
                    row.problems.push(format!("restart {}: {e}", svc.name));
                    return row;
                }
                restarted_at = Some(Instant::now());
            }
            let roles = self.roles();
            let active = self.actives(&roles);
            note_two(&active, two);
            let now = Instant::now();
            if row.elected_ms.is_none() {
                let new = active
                    .iter()
                    .find(|n| alone || **n != master)
                    .filter(|_| !alone || restarted_at.is_some());
                if let Some(new) = new {
                    row.new_master = Some(new.clone());
                    row.elected_ms = Some(since(t_kill, now));
                }
            }
            if row.zk_elected_ms.is_none() && !alone {
                if let Some(e) = self.zk_elected().filter(|e| *e != master) {
                    row.zk_elected_ms = Some(since(t_kill, Instant::now()));
                    row.new_master.get_or_insert(e);
                }
            }
            let (detected, pause, resent) = load.client_after(t_kill);
            row.detected_ms = detected;
            row.client_pause_ms = pause;
            row.resent = resent;
            if row.elected_ms.is_some() && row.client_pause_ms.is_some() {
                break;
            }
            if now >= deadline {
                if row.elected_ms.is_none() {
                    row.problems.push(format!(
                        "no new master within {:.1}s",
                        deadline.duration_since(t_kill).as_secs_f64()
                    ));
                }
                if row.client_pause_ms.is_none() {
                    row.problems
                        .push("the producer got no receipt after the kill".into());
                }
                break;
            }
            std::thread::sleep(POLL);
        }
        // The faster of the two observers decides the election time.
        row.elected_ms = match (row.elected_ms, row.zk_elected_ms) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        if let Some(e) = row.elected_ms {
            if e > bound.as_secs_f64() * 1000.0 {
                row.problems.push(format!(
                    "new master after {e:.0} ms, beyond the bound of {} ms",
                    bound.as_millis()
                ));
            }
        }
        self.check_prediction(&mut row);
        if let Some(new) = row.new_master.clone() {
            self.check_networks(&mut row, &new, t_kill, timeout);
        }

        if !alone {
            // The killed node comes back and must rejoin as a slave.
            let _ = wait_gone(host.as_ref(), svc, Duration::from_secs(5));
            let t_restart = Instant::now();
            match svc.start(host.as_ref()) {
                Ok(_) => {
                    let deadline = t_restart + timeout;
                    loop {
                        let roles = self.roles();
                        note_two(&self.actives(&roles), two);
                        let i = self
                            .members
                            .iter()
                            .position(|s| s.name == master)
                            .expect("a member");
                        if roles[i] == Role::Slave && self.attached(svc) {
                            row.rejoined_ms = Some(since(t_restart, Instant::now()));
                            break;
                        }
                        if Instant::now() >= deadline {
                            row.problems.push(format!(
                                "{master} did not rejoin as a slave within {}s (last: {})",
                                timeout.as_secs(),
                                roles[i]
                            ));
                            break;
                        }
                        std::thread::sleep(POLL * 5);
                    }
                }
                Err(e) => row.problems.push(format!("restart {master}: {e}")),
            }
        } else if let Some(r) = restarted_at {
            row.rejoined_ms = row.elected_ms.map(|e| e - since(t_kill, r));
        }
        row
    }

    /// A replicated slave has rejoined once it follows a master (its
    /// `/status` names one); other slaves once they report the role.
    fn attached(&self, svc: &Service<'_>) -> bool {
        if !matches!(self.group.store, Store::Replicated(_)) {
            return true;
        }
        let host = self.host(svc);
        probe::role(svc, host.as_deref().map(|h| h as &dyn Host), self.login)
            .status
            .and_then(|st| st.get("master").cloned())
            .is_some_and(|m| !m.is_null())
    }

    /// Load balancing survives a failover: every network the group takes
    /// part in bridges to (or, from this group, from) the new master again —
    /// an `up` bridge naming it on another member group's serving broker, or
    /// one on the new master itself.
    fn check_networks(&self, row: &mut KillRow, new: &str, t_kill: Instant, timeout: Duration) {
        let topo = self.c.topo;
        let Some(new_broker) = self.group.brokers.iter().find(|b| b.name == new) else {
            return;
        };
        let new_name = self.group.broker_name(new_broker).to_string();
        for net in topo.networks_of(&self.group.name) {
            let watch: Vec<&Service<'_>> = net
                .groups()
                .into_iter()
                .flat_map(|g| self.c.members(g))
                .collect();
            let deadline = Instant::now() + timeout;
            let seen = loop {
                let bridged = parallel(&watch, |s| {
                    let Ok(st) =
                        crate::deploy::health::broker_status(&s.probe_addr(), probe::PROBE_TIMEOUT)
                    else {
                        return false;
                    };
                    let own = s.name == new;
                    // A restarted lone broker: peers may still show the
                    // bridge of its previous life; only its own count.
                    if !own && new == row.killed {
                        return false;
                    }
                    st.raw
                        .get("bridges")
                        .and_then(|b| b.as_array())
                        .is_some_and(|bridges| {
                            bridges.iter().any(|b| {
                                b.get("state").and_then(|v| v.as_str()) == Some("up")
                                    && (own
                                        || b.get("peer").and_then(|v| v.as_str())
                                            == Some(new_name.as_str()))
                            })
                        })
                });
                if bridged.into_iter().any(|b| b) {
                    break Some(since(t_kill, Instant::now()));
                }
                if Instant::now() >= deadline {
                    break None;
                }
                std::thread::sleep(POLL * 5);
            };
            if seen.is_none() {
                row.problems.push(format!(
                    "network {} does not bridge to {new} within {}s",
                    net.name,
                    timeout.as_secs()
                ));
            }
            row.networks.push((net.name.clone(), seen));
        }
    }

    /// Compares what was seen with the failure-mode table's prediction for
    /// this node: a failover needs a new master; an unavailable group none.
    fn check_prediction(&self, row: &mut KillRow) {
        let predicted = effects(self.c.topo, &[row.killed.as_str()]);
        for e in &predicted {
            let problem = match (e, &row.new_master) {
                (Effect::Failover { group, .. }, None) if *group == self.group.name => {
                    Some(format!("predicted \"{e}\", but no broker took over"))
                }
                (Effect::GroupUnavailable { group, .. }, Some(m))
                    if *group == self.group.name && self.members.len() > 1 =>
                {
                    Some(format!("predicted \"{e}\", but {m} took over"))
                }
                _ => None,
            };
            row.problems.extend(problem);
        }
    }
}

fn note_two(active: &[String], two: &mut Vec<String>) {
    if active.len() > 1 {
        let at = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs_f64();
        two.push(format!(
            "at unix time {at:.3}: {} served at once",
            active.join(" and ")
        ));
    }
}

fn pid_alive(host: &dyn Host, svc: &Service<'_>) -> bool {
    !matches!(svc.running_pid(host), Ok(None))
}

/// A `kill -9`ed process can linger as a zombie for a moment.
fn wait_gone(host: &dyn Host, svc: &Service<'_>, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while pid_alive(host, svc) {
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(POLL * 5);
    }
    true
}

fn since(t0: Instant, t: Instant) -> f64 {
    t.saturating_duration_since(t0).as_secs_f64() * 1000.0
}

fn ms(v: Option<f64>) -> String {
    v.map(|v| format!("{v:.0} ms"))
        .unwrap_or_else(|| "-".into())
}

/// The producer and the consumer, running on the runtime.
struct Load {
    producer: FailoverClient,
    consumer: FailoverClient,
    /// Receipt instants, in send order.
    receipts: Arc<Mutex<Vec<(u64, Instant)>>>,
    tally: Arc<Mutex<Tally>>,
    stop: CancellationToken,
    /// Lets the consumer run at full speed.
    drain: CancellationToken,
    producer_task: tokio::task::JoinHandle<ProducerEnd>,
    consumer_task: tokio::task::JoinHandle<()>,
}

#[derive(Debug, Default)]
struct ProducerEnd {
    sent: u64,
    errors: Vec<String>,
}

/// What the consumer saw.
#[derive(Debug, Default)]
struct Tally {
    seen: HashMap<u64, u32>,
    max_seq: u64,
    out_of_order: u64,
    last: Option<Instant>,
}

impl Tally {
    fn record(&mut self, seq: u64) {
        let n = self.seen.entry(seq).or_insert(0);
        *n += 1;
        if *n == 1 && seq < self.max_seq {
            self.out_of_order += 1;
        }
        self.max_seq = self.max_seq.max(seq);
        self.last = Some(Instant::now());
    }
}

/// The result of the drain.
struct Drained {
    end: ProducerEnd,
    receipted: Vec<u64>,
    seen: HashMap<u64, u32>,
    out_of_order: u64,
}

impl Load {
    async fn start(
        url: &str,
        login: &ConnectOptions,
        destination: &str,
        run_id: &str,
        args: &FailoverArgs,
    ) -> anyhow::Result<Load> {
        let uri = FailoverUri::parse(url).with_context(|| format!("group URL {url}"))?;
        let producer = FailoverClient::connect_uri(uri.clone(), login.clone())
            .await
            .context("producer")?;
        let consumer = FailoverClient::connect_uri(uri, login.clone())
            .await
            .context("consumer")?;
        let mut sub = consumer
            .subscribe(
                destination,
                AckMode::ClientIndividual,
                &[("activemq.prefetchSize".to_string(), "100".to_string())],
            )
            .await
            .context("subscribing")?;
        let tally = Arc::new(Mutex::new(Tally::default()));
        let drain = CancellationToken::new();
        let receipts: Arc<Mutex<Vec<(u64, Instant)>>> = Arc::new(Mutex::new(Vec::new()));
        let consumer_task = tokio::spawn({
            let tally = tally.clone();
            let consumer = consumer.clone();
            let run_id = run_id.to_string();
            let drain = drain.clone();
            let receipts = receipts.clone();
            // Until the drain the consumer stays at half of what the
            // producer got receipted: a backlog sits in the store at every
            // kill, so a store that receipts before its data is durable
            // shows as lost messages (whatever the rates really are).
            async move {
                let mut taken = 0usize;
                while let Some(msg) = sub.recv().await {
                    while !drain.is_cancelled()
                        && taken * 2 > receipts.lock().expect("receipts").len()
                    {
                        tokio::select! {
                            _ = tokio::time::sleep(Duration::from_millis(5)) => {}
                            _ = drain.cancelled() => {}
                        }
                    }
                    taken += 1;
                    if msg.header(RUN_HEADER) == Some(run_id.as_str()) {
                        if let Some(seq) = msg.header(SEQ_HEADER).and_then(|s| s.parse().ok()) {
                            tally.lock().expect("tally").record(seq);
                        }
                    }
                    let _ = consumer.ack(&msg);
                }
            }
        });
        let stop = CancellationToken::new();
        let producer_task = tokio::spawn(produce(
            producer.clone(),
            destination.to_string(),
            run_id.to_string(),
            args.messages,
            Duration::from_secs_f64(1.0 / args.rate.max(0.1)),
            receipts.clone(),
            stop.clone(),
        ));
        Ok(Load {
            producer,
            consumer,
            receipts,
            tally,
            stop,
            drain,
            producer_task,
            consumer_task,
        })
    }

    fn receipt_count(&self) -> usize {
        self.receipts.lock().expect("receipts").len()
    }

    /// After a kill at `t_kill`: when the producer noticed (Disconnected),
    /// its pause (first receipt after that), and how many it re-sent.
    fn client_after(&self, t_kill: Instant) -> (Option<f64>, Option<f64>, usize) {
        let events = self.producer.event_log();
        let dropped = events
            .iter()
            .find(|e| e.instant >= t_kill && matches!(e.kind, EventKind::Disconnected { .. }))
            .map(|e| e.instant);
        let resent = events
            .iter()
            .filter(|e| e.instant >= t_kill)
            .find_map(|e| match e.kind {
                EventKind::Reconnected { resent, .. } => Some(resent),
                _ => None,
            })
            .unwrap_or(0);
        let Some(dropped) = dropped else {
            return (None, None, resent);
        };
        let pause = self
            .receipts
            .lock()
            .expect("receipts")
            .iter()
            .rev()
            .take_while(|(_, at)| *at > dropped)
            .last()
            .map(|(_, at)| since(t_kill, *at));
        (Some(since(t_kill, dropped)), pause, resent)
    }

    /// Stops the producer, then waits until the consumer has every receipted
    /// message or nothing has arrived for a while.
    async fn finish(self, timeout: Duration) -> Drained {
        self.stop.cancel();
        let end = match tokio::time::timeout(timeout, self.producer_task).await {
            Ok(Ok(end)) => end,
            Ok(Err(e)) => ProducerEnd {
                sent: 0,
                errors: vec![format!("producer task: {e}")],
            },
            Err(_) => ProducerEnd {
                sent: 0,
                errors: vec![format!(
                    "the producer's last send did not finish within {}s",
                    timeout.as_secs()
                )],
            },
        };
        self.drain.cancel();
        let receipted: Vec<u64> = self
            .receipts
            .lock()
            .expect("receipts")
            .iter()
            .map(|(s, _)| *s)
            .collect();
        // Done when everything arrived, or nothing has for `idle`.
        let idle = Duration::from_secs(10).min(timeout);
        let started = Instant::now();
        loop {
            let (missing, last) = {
                let t = self.tally.lock().expect("tally");
                (receipted.iter().any(|s| !t.seen.contains_key(s)), t.last)
            };
            let quiet_since = last.unwrap_or(started).max(started);
            if !missing || quiet_since.elapsed() >= idle || started.elapsed() >= timeout {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        self.producer.close().await;
        self.consumer.close().await;
        self.consumer_task.abort();
        let t = std::mem::take(&mut *self.tally.lock().expect("tally"));
        Drained {
            end,
            receipted,
            seen: t.seen,
            out_of_order: t.out_of_order,
        }
    }
}

async fn produce(
    client: FailoverClient,
    destination: String,
    run_id: String,
    messages: u64,
    every: Duration,
    receipts: Arc<Mutex<Vec<(u64, Instant)>>>,
    stop: CancellationToken,
) -> ProducerEnd {
    let mut end = ProducerEnd::default();
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    'messages: for seq in 1..=messages {
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = tick.tick() => {}
        }
        end.sent = seq;
        loop {
            let msg = OutgoingMessage::new(destination.clone(), format!("verify {seq}"))
                .persistent(true)
                .header(SEQ_HEADER, seq.to_string())
                .header(RUN_HEADER, run_id.clone());
            match client.send(msg).await {
                Ok(()) => {
                    receipts
                        .lock()
                        .expect("receipts")
                        .push((seq, Instant::now()));
                    break;
                }
                // Still failing over: the same message again (a duplicate
                // at worst, never a gap).
                Err(FailoverError::Timeout(_)) if !stop.is_cancelled() => {}
                Err(e) => {
                    end.errors.push(format!("message {seq}: {e}"));
                    if matches!(e, FailoverError::Broker(_)) && !stop.is_cancelled() {
                        continue 'messages;
                    }
                    break 'messages;
                }
            }
        }
    }
    end
}

#[allow(clippy::too_many_arguments)]
fn summarise(
    c: &Cluster<'_>,
    group: &Group,
    url: String,
    destination: String,
    bound: Duration,
    rows: Vec<KillRow>,
    d: Drained,
    two_masters: Vec<String>,
) -> Outcome {
    let lost: Vec<u64> = d
        .receipted
        .iter()
        .copied()
        .filter(|s| !d.seen.contains_key(s))
        .collect();
    let duplicates: u64 = d.seen.values().map(|n| (*n as u64).saturating_sub(1)).sum();
    let elections: Vec<f64> = rows.iter().filter_map(|r| r.elected_ms).collect();
    let pauses: Vec<f64> = rows.iter().filter_map(|r| r.client_pause_ms).collect();
    let (em, ex) = median_max(&elections).unzip();
    let (pm, px) = median_max(&pauses).unzip();

    let mut checks = CheckList::default();
    checks.section(format!(
        "failover of group {} ({})",
        group.name,
        group.store.kind()
    ));
    let sent = d.end.sent;
    checks.check(
        "no receipted message lost",
        lost.is_empty() && !d.receipted.is_empty(),
        format!(
            "{} receipted of {sent} sent, {} consumed, {} lost{}",
            d.receipted.len(),
            d.seen.len(),
            lost.len(),
            if lost.is_empty() {
                String::new()
            } else {
                format!(
                    " (e.g. {})",
                    lost.iter()
                        .take(10)
                        .map(|s| format!("#{s}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            }
        ),
    );
    checks.check(
        "duplicates (allowed, counted)",
        true,
        format!("{duplicates} message(s) consumed more than once"),
    );
    checks.check(
        "order within the producer's stream",
        d.out_of_order == 0,
        format!("{} message(s) arrived after a later one", d.out_of_order),
    );
    checks.check(
        "never two masters",
        two_masters.is_empty(),
        if two_masters.is_empty() {
            "at most one broker served at every poll (20 ms)".to_string()
        } else {
            two_masters
                .iter()
                .take(5)
                .cloned()
                .collect::<Vec<_>>()
                .join("; ")
        },
    );
    for r in &rows {
        let label = format!(
            "kill {}: {}",
            r.kill,
            if r.killed.is_empty() { "-" } else { &r.killed }
        );
        checks.check(
            label,
            r.problems.is_empty(),
            if r.problems.is_empty() {
                format!(
                    "new master {} after {}, client resumed after {}{}{}",
                    r.new_master.as_deref().unwrap_or("-"),
                    ms(r.elected_ms),
                    ms(r.client_pause_ms),
                    r.rejoined_ms
                        .map(|j| if r.new_master.as_deref() == Some(r.killed.as_str()) {
                            format!(", {} restarted and serving after {j:.0} ms", r.killed)
                        } else {
                            format!(", {} back as slave after {j:.0} ms", r.killed)
                        })
                        .unwrap_or_default(),
                    r.networks
                        .iter()
                        .map(|(n, at)| format!(", network {n} bridging again after {}", ms(*at)))
                        .collect::<String>()
                )
            } else {
                r.problems.join("; ")
            },
        );
    }
    if !d.end.errors.is_empty() {
        checks.check(
            "producer kept sending",
            false,
            d.end
                .errors
                .iter()
                .take(5)
                .cloned()
                .collect::<Vec<_>>()
                .join("; "),
        );
    }
    Outcome {
        cluster: c.topo.cluster.clone(),
        group: group.name.clone(),
        store: group.store.kind(),
        url,
        destination,
        bound_ms: bound.as_secs_f64() * 1000.0,
        rows,
        sent,
        receipted: d.receipted.len() as u64,
        consumed: d.seen.len() as u64,
        lost: lost.len() as u64,
        lost_sample: lost.into_iter().take(20).collect(),
        duplicates,
        out_of_order: d.out_of_order,
        send_errors: d.end.errors,
        two_masters,
        election_median_ms: em,
        election_max_ms: ex,
        pause_median_ms: pm,
        pause_max_ms: px,
        checks,
    }
}

/// The table per kill, the summary and the check list.
pub fn render_text(o: &Outcome) -> String {
    let mut table = Table::new();
    table.load_style(NOTHING);
    table.set_header(vec![
        "KILL",
        "KILLED",
        "NEW MASTER",
        "DETECTED",
        "ELECTED",
        "CLIENT PAUSE",
        "IN FLIGHT",
        "RESENT",
        "REJOINED",
    ]);
    for r in &o.rows {
        table.add_row(vec![
            r.kill.to_string(),
            r.killed.clone(),
            r.new_master.clone().unwrap_or_else(|| "-".into()),
            ms(r.detected_ms),
            ms(r.elected_ms),
            ms(r.client_pause_ms),
            r.in_flight.to_string(),
            r.resent.to_string(),
            ms(r.rejoined_ms),
        ]);
    }
    let mut out = format!("group {} ({}) via {}\n{table}\n", o.group, o.store, o.url);
    let mut predicted: BTreeMap<&str, &Vec<String>> = BTreeMap::new();
    for r in o.rows.iter().filter(|r| !r.killed.is_empty()) {
        predicted.insert(&r.killed, &r.predicted);
    }
    for (node, effects) in predicted {
        out.push_str(&format!("predicted for {node}: {}\n", effects.join("; ")));
    }
    out.push_str(&format!(
        "election: median {}, max {} (bound {:.0} ms)\nclient pause: median {}, max {}\n\
         messages: {} sent, {} receipted, {} consumed, lost {}, duplicated {}, out of order {}\n",
        ms(o.election_median_ms),
        ms(o.election_max_ms),
        o.bound_ms,
        ms(o.pause_median_ms),
        ms(o.pause_max_ms),
        o.sent,
        o.receipted,
        o.consumed,
        o.lost,
        o.duplicates,
        o.out_of_order
    ));
    out.push_str(&o.checks.render_text());
    out
}

/// Runs a failover verification and fails with its first problem (for `up`).
pub fn require(c: &Cluster<'_>, args: &FailoverArgs) -> anyhow::Result<Outcome> {
    let outcome = verify(c, args, &mut |l| eprintln!("{l}"))?;
    print!("{}", render_text(&outcome));
    if !outcome.checks.passed() {
        bail!(
            "verify failover failed: {}",
            outcome
                .checks
                .failed()
                .iter()
                .map(|c| format!("{}: {}", c.name, c.evidence))
                .collect::<Vec<_>>()
                .join("; ")
        );
    }
    Ok(outcome)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tally_counts_duplicates_apart_from_reordering() {
        let mut t = Tally::default();
        for seq in [1, 2, 3, 2, 3, 4, 6, 5] {
            t.record(seq);
        }
        // 2 and 3 again are duplicates (a redelivery), not disorder; 5 after 6 is.
        assert_eq!(t.out_of_order, 1);
        let dups: u32 = t.seen.values().map(|n| n - 1).sum();
        assert_eq!(dups, 2);
        assert_eq!(t.seen.len(), 6);
    }

    #[test]
    fn the_default_bound_follows_the_store() {
        let (topo, _) = Topology::from_str(
            std::path::Path::new("t.toml"),
            r#"
[cluster]
name = "t"
[[hosts]]
name = "h"
address = "127.0.0.1"
[zookeeper]
[[zookeeper.nodes]]
id = 1
host = "h"
[[groups]]
name = "r"
store = "replicated"
zk_session_timeout = "3s"
[[groups.brokers]]
name = "r1"
host = "h"
[[groups.brokers]]
name = "r2"
host = "h"
port_offset = 10
[[groups.brokers]]
name = "r3"
host = "h"
port_offset = 20
[[groups]]
name = "s"
store = "shared-file"
lock_acquire_sleep_interval = 2000
failover_bound = "2500ms"
[[groups.brokers]]
name = "s1"
host = "h"
port_offset = 30
[[groups.brokers]]
name = "s2"
host = "h"
port_offset = 40
"#,
            &|_| None,
        )
        .map_err(|d| d.render())
        .unwrap();
        assert_eq!(default_bound(topo.group("r")), Duration::from_secs(8));
        assert_eq!(default_bound(topo.group("s")), Duration::from_millis(2500));
        assert_eq!(pick_group(&topo, None).unwrap().name, "r");
        let err = pick_group(&topo, Some("x")).unwrap_err().to_string();
        assert!(
            err.contains("no group named `x`") && err.contains("r, s"),
            "{err}"
        );
    }
}
