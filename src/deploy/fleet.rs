//! The hosts of a topology, connected: one executor per host (local or SSH),
//! each logging every command to its own file. Connecting is the first
//! parallel phase of every command that touches hosts.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::executor::{ExecError, Host, HostKeyPolicy, LocalHost, Logged, SshHost, SshTarget};
use crate::topology::{Connection, KnownHostsPolicy, Topology};

#[derive(Debug, Clone)]
pub struct ConnectOptions {
    /// `--accept-new-host-keys`: record unknown host keys for every host.
    pub accept_new_host_keys: bool,
    pub connect_timeout: Duration,
    /// Per-host command logs go to `<log_dir>/<host>.log`.
    pub log_dir: PathBuf,
    /// Only these hosts (empty: all).
    pub only: Vec<String>,
}

impl ConnectOptions {
    /// Defaults for a topology: logs in `.amqctl/<cluster>/logs/` beside the inventory.
    pub fn for_topology(topo: &Topology) -> ConnectOptions {
        ConnectOptions {
            accept_new_host_keys: false,
            connect_timeout: Duration::from_secs(10),
            log_dir: default_log_dir(topo),
            only: Vec::new(),
        }
    }
}

pub fn default_log_dir(topo: &Topology) -> PathBuf {
    topo.source
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
        .join(".amqctl")
        .join(&topo.cluster)
        .join("logs")
}

/// Connected hosts by inventory name.
pub struct Fleet {
    hosts: BTreeMap<String, Arc<Logged>>,
}

impl Fleet {
    pub fn get(&self, name: &str) -> Option<Arc<Logged>> {
        self.hosts.get(name).cloned()
    }

    pub fn iter(&self) -> impl Iterator<Item = (&String, &Arc<Logged>)> {
        self.hosts.iter()
    }

    /// Connects every host in parallel. Returns the hosts that connected and
    /// an error for each that did not (all of them, not just the first).
    pub fn connect(topo: &Topology, opts: &ConnectOptions) -> (Fleet, Vec<ExecError>) {
        let wanted: Vec<&crate::topology::Host> = topo
            .hosts
            .iter()
            .filter(|h| opts.only.is_empty() || opts.only.contains(&h.name))
            .collect();
        let results = parallel(&wanted, |host| connect_one(host, opts));
        let mut hosts = BTreeMap::new();
        let mut errors = Vec::new();
        for (host, result) in wanted.iter().zip(results) {
            match result {
                Ok(h) => {
                    hosts.insert(host.name.clone(), Arc::new(h));
                }
                Err(e) => errors.push(e),
            }
        }
        (Fleet { hosts }, errors)
    }

    /// Runs `f` for every connected host in parallel; results in name order.
    pub fn each<T: Send>(&self, f: impl Fn(&str, &Logged) -> T + Sync) -> BTreeMap<String, T> {
        let hosts: Vec<(&String, &Arc<Logged>)> = self.hosts.iter().collect();
        let results = parallel(&hosts, |(name, h)| f(name, h));
        hosts
            .into_iter()
            .map(|(n, _)| n.clone())
            .zip(results)
            .collect()
    }
}

fn connect_one(host: &crate::topology::Host, opts: &ConnectOptions) -> Result<Logged, ExecError> {
    let log_path = opts.log_dir.join(format!("{}.log", host.name));
    let inner: Box<dyn Host> = match &host.connection {
        Connection::Local => Box::new(LocalHost::new(host.name.clone())),
        Connection::Ssh(ssh) => Box::new(SshHost::connect(SshTarget {
            name: host.name.clone(),
            address: host.address.clone(),
            port: ssh.port,
            user: ssh.user.clone(),
            identity: ssh.identity_file.clone(),
            known_hosts: ssh.known_hosts_file.clone().unwrap_or_else(|| {
                std::env::var_os("HOME")
                    .map(PathBuf::from)
                    .unwrap_or_default()
                    .join(".ssh/known_hosts")
            }),
            policy: if opts.accept_new_host_keys || ssh.known_hosts == KnownHostsPolicy::AcceptNew {
                HostKeyPolicy::AcceptNew
            } else {
                HostKeyPolicy::Strict
            },
            connect_timeout: opts.connect_timeout,
        })?),
    };
    let logged = Logged::new(inner, &log_path).map_err(|e| ExecError::Io {
        host: host.name.clone(),
        op: "open log",
        path: log_path.clone(),
        source: e,
    })?;
    logged.note("connected");
    Ok(logged)
}

/// Runs `f` on every item at once, one OS thread each (ssh2 blocks, and a
/// cluster has a handful of hosts), returning results in item order.
pub fn parallel<I: Sync, T: Send>(items: &[I], f: impl Fn(&I) -> T + Sync) -> Vec<T> {
    std::thread::scope(|scope| {
        let f = &f;
        let handles: Vec<_> = items.iter().map(|i| scope.spawn(move || f(i))).collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
            .collect()
    })
}
