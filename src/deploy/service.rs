//! The services of a topology as deploy sees them — a ZooKeeper node or a
//! broker, on a host, in a directory — and how each is started, stopped and
//! asked whether it runs, for both service managers.
//!
//! `process` services are launched detached (`setsid`) from their `run.sh`,
//! with the pid file and log file the plan names (see [`Launch`]) and
//! `AMQCTL_SERVICE=<dir>` in their environment. The pid file alone is
//! not trusted: a pid counts as the service only if that process is alive
//! (not a zombie) and carries the marker, so a recycled pid is never killed.

use std::fmt::Write as _;
use std::path::PathBuf;

use serde::Serialize;

use crate::executor::{shell_quote, Host, Output};
use crate::render::{Launch, RenderedPlan, ServicePlan};
use crate::topology::{self, Broker, Group, Topology, ZkNode};

/// Seconds a service gets to stop on SIGTERM before it is killed.
pub const STOP_GRACE_SECS: u32 = 15;

#[derive(Debug, Clone, Copy)]
pub enum Kind<'t> {
    ZooKeeper(&'t ZkNode),
    Broker(&'t Group, &'t Broker),
}

/// One service of the topology on its host.
#[derive(Debug, Clone)]
pub struct Service<'t> {
    pub name: String,
    pub host: &'t topology::Host,
    pub kind: Kind<'t>,
    pub plan: &'t ServicePlan,
}

impl<'t> Service<'t> {
    pub fn dir(&self) -> PathBuf {
        self.plan.dir.clone()
    }

    /// Where the service's output goes: its log file, or (systemd) its journal.
    pub fn log_file(&self) -> PathBuf {
        match &self.plan.launch {
            Launch::Process { log_file, .. } => log_file.clone(),
            Launch::Systemd { unit } => PathBuf::from(format!("journalctl -u {unit}")),
        }
    }

    /// The command that prints the last `lines` lines of the service's output.
    pub fn log_command(&self, lines: usize) -> String {
        match &self.plan.launch {
            Launch::Process { log_file, .. } => format!(
                "tail -n {lines} {} 2>/dev/null",
                shell_quote(&log_file.to_string_lossy())
            ),
            Launch::Systemd { unit } => {
                format!("journalctl --no-pager -n {lines} -u {unit} 2>/dev/null")
            }
        }
    }

    pub fn is_zookeeper(&self) -> bool {
        matches!(self.kind, Kind::ZooKeeper(_))
    }

    pub fn broker(&self) -> Option<(&'t Group, &'t Broker)> {
        match self.kind {
            Kind::Broker(g, b) => Some((g, b)),
            Kind::ZooKeeper(_) => None,
        }
    }

    /// Directories holding data, kept by `destroy` unless `--purge-data`.
    pub fn data_dirs(&self) -> Vec<PathBuf> {
        match self.kind {
            Kind::ZooKeeper(n) => vec![n.data_dir.clone()],
            Kind::Broker(g, b) => {
                let mut dirs = vec![b.data_dir.clone()];
                if let topology::Store::SharedFile(s) = &g.store {
                    dirs.push(s.directory.clone());
                }
                dirs
            }
        }
    }

    /// Where amqctl itself probes health: ZooKeeper's client port or the broker's status port.
    pub fn probe_addr(&self) -> String {
        let port = match self.kind {
            Kind::ZooKeeper(n) => n.client_port,
            Kind::Broker(_, b) => b.status_port,
        };
        format!("{}:{port}", host_for_url(&self.host.address))
    }

    /// Ports worth showing in a summary.
    pub fn ports(&self) -> String {
        match self.kind {
            Kind::ZooKeeper(n) => format!(
                "client {} peer {} election {}",
                n.client_port, n.peer_port, n.election_port
            ),
            Kind::Broker(_, b) => {
                let mut s = format!(
                    "stomp {} openwire {} status {}",
                    b.stomp_port, b.openwire_port, b.status_port
                );
                if let Some(r) = b.replication_port {
                    let _ = write!(s, " replication {r}");
                }
                s
            }
        }
    }

    /// The pid of the running service, `None` when it is not running.
    pub fn running_pid(&self, host: &dyn Host) -> crate::executor::Result<Option<u32>> {
        let states = state_of(host, std::slice::from_ref(self))?;
        Ok(states.into_iter().next().flatten())
    }

    /// Starts the service unless it already runs; returns its pid (process) or 0 (systemd).
    pub fn start(&self, host: &dyn Host) -> Result<u32, ServiceError> {
        let script = match &self.plan.launch {
            Launch::Process {
                script,
                pid_file,
                log_file,
            } => format!(
                "{ALIVE}\nd={dir}; f={pid}; cd \"$d\" || exit 1\n\
                 if [ -s \"$f\" ] && alive \"$(cat \"$f\")\" \"$d\"; then cat \"$f\"; exit 0; fi\n\
                 AMQCTL_SERVICE=\"$d\" setsid {script} >> {log} 2>&1 < /dev/null &\n\
                 echo $! > \"$f\"; echo $!",
                dir = shell_quote(&self.dir().to_string_lossy()),
                pid = shell_quote(&pid_file.to_string_lossy()),
                script = shell_quote(&script.to_string_lossy()),
                log = shell_quote(&log_file.to_string_lossy()),
            ),
            Launch::Systemd { unit } => format!(
                "systemctl daemon-reload && systemctl enable --now {unit} >/dev/null && \
                 systemctl show -p MainPID --value {unit}"
            ),
        };
        let out = host.run(&script, None)?;
        self.check("start", &script, &out)?;
        Ok(out.stdout_str().trim().parse().unwrap_or(0))
    }

    /// Stops the service: SIGTERM, then SIGKILL after [`STOP_GRACE_SECS`].
    pub fn stop(&self, host: &dyn Host) -> Result<(), ServiceError> {
        let script = match &self.plan.launch {
            Launch::Process { pid_file, .. } => format!(
                "{ALIVE}\nd={dir}; f={pid}\n\
                 [ -s \"$f\" ] || exit 0\n\
                 p=$(cat \"$f\")\n\
                 if alive \"$p\" \"$d\"; then\n\
                   kill -TERM \"$p\" 2>/dev/null; i=0\n\
                   while alive \"$p\" \"$d\" && [ $i -lt {ticks} ]; do sleep 0.1; i=$((i+1)); done\n\
                   if alive \"$p\" \"$d\"; then kill -KILL \"$p\" 2>/dev/null; echo killed; fi\n\
                 fi\n\
                 rm -f \"$f\"",
                dir = shell_quote(&self.dir().to_string_lossy()),
                pid = shell_quote(&pid_file.to_string_lossy()),
                ticks = STOP_GRACE_SECS * 10,
            ),
            Launch::Systemd { unit } => format!(
                "if systemctl cat {unit} >/dev/null 2>&1; then systemctl stop {unit}; fi"
            ),
        };
        let out = host.run(&script, None)?;
        self.check("stop", &script, &out)
    }

    fn check(&self, step: &'static str, script: &str, out: &Output) -> Result<(), ServiceError> {
        if out.success() {
            Ok(())
        } else {
            Err(ServiceError::Failed {
                host: self.host.name.clone(),
                service: self.name.clone(),
                step,
                command: script.lines().last().unwrap_or_default().to_string(),
                stderr: out.stderr_str(),
                status: out.status,
            })
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error(transparent)]
    Exec(#[from] crate::executor::ExecError),
    #[error("{host}: {step} {service} failed (exit {status}): `{command}`: {stderr}")]
    Failed {
        host: String,
        service: String,
        step: &'static str,
        command: String,
        stderr: String,
        status: i32,
    },
}

/// `alive PID DIR`: PID exists, is not a zombie, and is the service in DIR.
const ALIVE: &str = "alive() { [ -r \"/proc/$1/stat\" ] || return 1; \
case \"$(sed 's/.*) //' \"/proc/$1/stat\" 2>/dev/null)\" in Z*|X*|'') return 1;; esac; \
tr '\\0' '\\n' < \"/proc/$1/environ\" 2>/dev/null | grep -qxF \"AMQCTL_SERVICE=$2\"; }";

/// The running pid of each service (on one host), in one command.
pub fn state_of(
    host: &dyn Host,
    services: &[Service<'_>],
) -> crate::executor::Result<Vec<Option<u32>>> {
    if services.is_empty() {
        return Ok(Vec::new());
    }
    let mut script = format!("{ALIVE}\n");
    for s in services {
        match &s.plan.launch {
            Launch::Process { pid_file, .. } => {
                let _ = writeln!(
                    script,
                    "d={d}; p=$(cat {f} 2>/dev/null); \
                     if [ -n \"$p\" ] && alive \"$p\" \"$d\"; then echo \"$p\"; else echo -; fi",
                    d = shell_quote(&s.dir().to_string_lossy()),
                    f = shell_quote(&pid_file.to_string_lossy()),
                );
            }
            Launch::Systemd { unit } => {
                let _ = writeln!(
                    script,
                    "p=$(systemctl show -p MainPID --value {unit} 2>/dev/null); \
                     if [ -n \"$p\" ] && [ \"$p\" != 0 ]; then echo \"$p\"; else echo -; fi"
                );
            }
        }
    }
    let out = host.run(&script, None)?;
    let mut lines = out
        .stdout_str()
        .lines()
        .map(str::to_string)
        .collect::<Vec<_>>();
    lines.resize(services.len(), "-".into());
    Ok(lines.iter().map(|l| l.trim().parse().ok()).collect())
}

/// Every service in start order (the plan's: the ZooKeeper ensemble, then
/// brokers in inventory order), joined with its topology entries.
pub fn services<'t>(topo: &'t Topology, plan: &'t RenderedPlan) -> Vec<Service<'t>> {
    plan.start_order
        .iter()
        .filter_map(|r| {
            let (_, sp) = plan.service(&r.service)?;
            let host = topo.host(&r.host);
            let kind = match topo
                .zookeeper
                .as_ref()
                .and_then(|zk| zk.nodes.iter().find(|n| n.service == r.service))
            {
                Some(n) => Kind::ZooKeeper(n),
                None => {
                    let g = topo
                        .groups
                        .iter()
                        .find(|g| g.brokers.iter().any(|b| b.name == r.service))?;
                    let b = g.brokers.iter().find(|b| b.name == r.service)?;
                    Kind::Broker(g, b)
                }
            };
            Some(Service {
                name: r.service.clone(),
                host,
                kind,
                plan: sp,
            })
        })
        .collect()
}

/// Bracket IPv6 literals for `host:port`.
pub fn host_for_url(address: &str) -> String {
    if address.contains(':') && !address.starts_with('[') {
        format!("[{address}]")
    } else {
        address.to_string()
    }
}

/// A service's state for summaries and `status`.
#[derive(Debug, Clone, Serialize)]
pub struct ServiceState {
    pub host: String,
    pub service: String,
    pub kind: &'static str,
    pub group: Option<String>,
    pub ports: String,
    pub pid: Option<u32>,
    /// Broker role or ZooKeeper mode; `down` / `unreachable` otherwise.
    pub role: String,
    pub detail: Option<serde_json::Value>,
}

/// The services `--node NAME` means: the service of that name, or every
/// service on the host of that name; all of them without a name.
pub fn select<'t>(
    all: &[Service<'t>],
    node: Option<&str>,
) -> Result<Vec<Service<'t>>, crate::cli::UsageError> {
    let Some(node) = node else {
        return Ok(all.to_vec());
    };
    let picked: Vec<Service<'t>> = all
        .iter()
        .filter(|s| s.name == node || s.host.name == node)
        .cloned()
        .collect();
    if picked.is_empty() {
        let known: Vec<&str> = all.iter().map(|s| s.name.as_str()).collect();
        return Err(crate::cli::UsageError(format!(
            "no service or host named `{node}` in the inventory (services: {})",
            known.join(", ")
        )));
    }
    Ok(picked)
}
