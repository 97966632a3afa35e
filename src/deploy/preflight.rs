//! Preflight: before anything changes, every host is asked in one command
//! for what deploy needs — free disk under the base directory, `java` where
//! ZooKeeper runs, ZooKeeper's jars, the tools deploy uses, and how every
//! hostname of the topology resolves there (forward and reverse). All hosts
//! at once, every problem reported, not just the first.
//!
//! A name that does not resolve on a host is what makes a broker refuse
//! connections or a console answer 503 much later; here it is caught first.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::{self, Write as _};
use std::net::IpAddr;

use crate::executor::{shell_quote, Host};
use crate::topology::{self, ServiceManager, Topology, ZkInstall};

use super::service::Service;

/// Free space a host needs under its base directory (binary, journals to start with).
pub const MIN_FREE_MB: u64 = 256;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub host: String,
    pub what: String,
    pub fix: String,
    /// Warnings do not stop the deploy.
    pub warning: bool,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let tag = if self.warning { "warning" } else { "error" };
        write!(
            f,
            "{tag}: {}: {}\n  fix: {}",
            self.host, self.what, self.fix
        )
    }
}

/// What one host reported.
#[derive(Debug, Default, Clone)]
pub struct Facts {
    pub free_mb: Option<u64>,
    pub java: Option<String>,
    pub zookeeper_jar: bool,
    pub apt: bool,
    pub systemd: bool,
    pub missing_tools: Vec<String>,
    /// name → addresses it resolves to on this host.
    pub forward: BTreeMap<String, Vec<String>>,
    /// address → names it resolves back to on this host.
    pub reverse: BTreeMap<String, Vec<String>>,
}

/// Names and addresses every host must agree on: each host's `hostname`
/// (and aliases) → its address, plus the names brokers advertise.
pub fn expected_names(topo: &Topology) -> BTreeMap<String, String> {
    let mut names = BTreeMap::new();
    for h in &topo.hosts {
        for n in h.hostname.iter().chain(&h.aliases) {
            names.insert(n.clone(), h.address.clone());
        }
    }
    for b in topo.brokers() {
        let host = topo.host(&b.host);
        if b.hostname.parse::<IpAddr>().is_err() {
            names
                .entry(b.hostname.clone())
                .or_insert(host.address.clone());
        }
    }
    names
}

/// The one command that gathers [`Facts`] on `host`.
pub fn facts_script(topo: &Topology, host: &topology::Host) -> String {
    let mut s = String::new();
    let base = shell_quote(&host.base_dir.to_string_lossy());
    // df on the nearest existing ancestor of the base directory.
    let _ = writeln!(
        s,
        "d={base}; while [ ! -d \"$d\" ]; do d=$(dirname \"$d\"); done; \
         echo \"free $(df -Pk \"$d\" | awk 'NR==2 {{print int($4/1024)}}')\""
    );
    let _ = writeln!(
        s,
        "j=$(command -v {java} 2>/dev/null) && [ -x \"$j\" ] && echo \"java $j\"",
        java = shell_quote(&host.java)
    );
    if let Some(zk) = &topo.zookeeper {
        let jar = match &zk.install {
            ZkInstall::Apt => "/usr/share/java/zookeeper.jar".to_string(),
            ZkInstall::Path(p) => format!("{}/lib", p.display()),
        };
        let _ = writeln!(s, "[ -e {} ] && echo zkjar", shell_quote(&jar));
    }
    s.push_str("command -v apt-get >/dev/null && echo apt\n");
    s.push_str("[ -d /run/systemd/system ] && echo systemd\n");
    s.push_str(
        "for t in sh sha256sum setsid sed tr grep awk getent mkdir mv chmod kill; do \
         command -v $t >/dev/null || echo \"missing $t\"; done\n",
    );
    let names = expected_names(topo);
    for name in names.keys() {
        let q = shell_quote(name);
        let _ = writeln!(s, "echo \"fwd {name} $(getent ahosts {q} | awk '{{print $1}}' | sort -u | tr '\\n' ' ')\"");
    }
    let addrs: BTreeSet<&String> = names.values().collect();
    for addr in addrs {
        let q = shell_quote(addr);
        let _ = writeln!(
            s,
            "echo \"rev {addr} $(getent hosts {q} | cut -d' ' -f2- | tr -s ' \\t' '  ')\""
        );
    }
    s.push_str("true\n");
    s
}

pub fn parse_facts(stdout: &str) -> Facts {
    let mut f = Facts::default();
    for line in stdout.lines() {
        let mut parts = line.split_whitespace();
        let Some(tag) = parts.next() else { continue };
        match tag {
            "free" => f.free_mb = parts.next().and_then(|v| v.parse().ok()),
            "java" => f.java = parts.next().map(str::to_string),
            "zkjar" => f.zookeeper_jar = true,
            "apt" => f.apt = true,
            "systemd" => f.systemd = true,
            "missing" => f.missing_tools.extend(parts.next().map(str::to_string)),
            "fwd" => {
                if let Some(name) = parts.next() {
                    f.forward
                        .insert(name.to_string(), parts.map(str::to_string).collect());
                }
            }
            "rev" => {
                if let Some(addr) = parts.next() {
                    f.reverse
                        .insert(addr.to_string(), parts.map(str::to_string).collect());
                }
            }
            _ => {}
        }
    }
    f
}

/// Judges one host's facts against the topology.
pub fn check(
    topo: &Topology,
    host: &topology::Host,
    all: &[Service<'_>],
    facts: &Facts,
    hosts_block_pending: bool,
) -> Vec<Problem> {
    let mut out = Vec::new();
    let mut problem = |what: String, fix: String, warning: bool| {
        out.push(Problem {
            host: host.name.clone(),
            what,
            fix,
            warning,
        })
    };
    let here: Vec<&Service<'_>> = all.iter().filter(|s| s.host.name == host.name).collect();
    match facts.free_mb {
        Some(mb) if mb < MIN_FREE_MB => problem(
            format!(
                "only {mb} MB free under {} (need {MIN_FREE_MB} MB)",
                host.base_dir.display()
            ),
            "free disk space or point base_dir at a larger file system".into(),
            false,
        ),
        None => problem(
            format!(
                "cannot tell the free space under {}",
                host.base_dir.display()
            ),
            "check that `df -Pk` works on the host".into(),
            true,
        ),
        _ => {}
    }
    for t in &facts.missing_tools {
        problem(
            format!("`{t}` is not installed"),
            format!("install the package that provides `{t}` (coreutils, util-linux, procps)"),
            false,
        );
    }
    let zk_here: Vec<&&Service<'_>> = here.iter().filter(|s| s.is_zookeeper()).collect();
    if let (Some(zk), Some(first)) = (&topo.zookeeper, zk_here.first()) {
        let apt = zk.install == ZkInstall::Apt;
        if facts.java.is_none() {
            if apt && facts.apt {
                problem(
                    format!(
                        "`{}` not found (ZooKeeper {} runs here)",
                        host.java, first.name
                    ),
                    "nothing: the install step installs it with the zookeeper package".into(),
                    true,
                );
            } else {
                problem(
                    format!(
                        "`{}` not found, but ZooKeeper {} runs here",
                        host.java, first.name
                    ),
                    "install a Java runtime (apt-get install default-jre-headless), set `java` for the host, or set zookeeper `install = \"apt\"`".into(),
                    false,
                );
            }
        }
        if !facts.zookeeper_jar {
            match &zk.install {
                ZkInstall::Apt if facts.apt => {}
                ZkInstall::Apt => problem(
                    "ZooKeeper is not installed and apt-get is not available".into(),
                    "install ZooKeeper by hand and set zookeeper `install` to its path".into(),
                    false,
                ),
                ZkInstall::Path(p) => problem(
                    format!(
                        "no ZooKeeper at {} (expected {}/lib)",
                        p.display(),
                        p.display()
                    ),
                    "unpack a ZooKeeper release there or use `install = \"apt\"`".into(),
                    false,
                ),
            }
        }
    }
    if host.service_manager == ServiceManager::Systemd && !facts.systemd && !here.is_empty() {
        problem(
            "service_manager is \"systemd\" but systemd is not running on the host".into(),
            "set `service_manager = \"process\"` for the host".into(),
            false,
        );
    }
    // Resolution: only names this host's services actually need matter,
    // but they all do for a cluster, so check every one.
    for (name, addr) in expected_names(topo) {
        let got = facts.forward.get(&name).cloned().unwrap_or_default();
        if got.iter().any(|a| a == &addr) {
            continue;
        }
        if hosts_block_pending {
            continue; // the hosts block written by this deploy maps it
        }
        let what = if got.is_empty() {
            format!("`{name}` does not resolve (expected {addr})")
        } else {
            format!("`{name}` resolves to {} (expected {addr})", got.join(", "))
        };
        problem(
            what,
            "add it to /etc/hosts or DNS, or let deploy write the hosts block (`manage_hosts = true` for the host)".into(),
            false,
        );
    }
    for (name, addr) in expected_names(topo) {
        if hosts_block_pending || addr.parse::<IpAddr>().is_err() {
            continue;
        }
        let back = facts.reverse.get(&addr).cloned().unwrap_or_default();
        if back.is_empty() {
            problem(
                format!("{addr} does not resolve back to a name (expected `{name}`)"),
                "add the address to /etc/hosts or reverse DNS".into(),
                true,
            );
        } else if !back.iter().any(|n| n == &name)
            && !expected_names(topo)
                .iter()
                .any(|(n, a)| a == &addr && back.contains(n))
        {
            problem(
                format!(
                    "{addr} resolves back to {} instead of `{name}`",
                    back.join(", ")
                ),
                "fix the reverse entry (/etc/hosts or PTR record)".into(),
                true,
            );
        }
    }
    out
}

pub fn run_facts(
    topo: &Topology,
    host: &topology::Host,
    exec: &dyn Host,
) -> Result<Facts, Problem> {
    let script = facts_script(topo, host);
    match exec.run(&script, None) {
        Ok(out) if out.success() => Ok(parse_facts(&out.stdout_str())),
        Ok(out) => Err(Problem {
            host: host.name.clone(),
            what: format!(
                "preflight command failed (exit {}): {}",
                out.status,
                out.stderr_str()
            ),
            fix: "see the host's deploy log".into(),
            warning: false,
        }),
        Err(e) => Err(Problem {
            host: host.name.clone(),
            what: e.to_string(),
            fix: "check that the host is reachable".into(),
            warning: false,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_fact_lines() {
        let f = parse_facts(
            "free 2048\njava /usr/bin/java\nzkjar\napt\nmissing setsid\n\
             fwd amq-a 10.0.0.1 \nfwd amq-b \nrev 10.0.0.1 amq-a amq-a.local\n",
        );
        assert_eq!(f.free_mb, Some(2048));
        assert_eq!(f.java.as_deref(), Some("/usr/bin/java"));
        assert!(f.zookeeper_jar && f.apt && !f.systemd);
        assert_eq!(f.missing_tools, vec!["setsid"]);
        assert_eq!(f.forward["amq-a"], vec!["10.0.0.1"]);
        assert!(f.forward["amq-b"].is_empty());
        assert_eq!(f.reverse["10.0.0.1"], vec!["amq-a", "amq-a.local"]);
    }
}
