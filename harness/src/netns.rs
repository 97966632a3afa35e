//! Test hosts as network namespaces: a controller namespace holding a bridge,
//! and one namespace per test host joined to it by a veth pair, each with its
//! own address, its own `/etc/netns/NAME/hosts` and its own sshd.
//!
//! Nothing is reachable from the machine's main namespace, and the controller
//! namespace's only routes are `lo` and the test subnet, so a program run with
//! [`TestNet::ctl_command`] can only ever talk to the test hosts. Everything is
//! torn down on drop: sshds killed by PID, namespaces deleted (the veths and the
//! bridge go with them), `/etc/netns/NAME` removed.

use std::fs;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

use crate::sshd::{known_hosts_name, KeyPair, Sshd, SshdOptions};

const SUBNET: [u8; 3] = [10, 98, 0];
const CTL_ADDR: u8 = 1;
const FIRST_HOST_ADDR: u8 = 11;

/// One test host: a namespace with an address on the test subnet and an sshd on port 22.
pub struct NetHost {
    /// The hostname the test gives this host (written into the hosts files).
    pub hostname: String,
    pub netns: String,
    pub addr: Ipv4Addr,
    pub sshd: Sshd,
}

impl NetHost {
    pub fn ssh_addr(&self) -> SocketAddr {
        self.sshd.addr()
    }

    /// The file `ip netns exec` mounts over `/etc/hosts` for this host.
    pub fn hosts_file(&self) -> PathBuf {
        netns_hosts_path(&self.netns)
    }

    /// A command run inside this host's namespace.
    pub fn command(&self, program: &str) -> Command {
        netns_command(&self.netns, program)
    }
}

/// Per-host options for [`TestNet::create_with`].
#[derive(Debug, Clone, Default)]
pub struct HostSpec {
    pub hostname: String,
    /// Files this host's sessions must not see (e.g. `/usr/bin/java`).
    pub hide: Vec<PathBuf>,
}

impl HostSpec {
    pub fn new(hostname: &str) -> HostSpec {
        HostSpec {
            hostname: hostname.to_string(),
            hide: Vec::new(),
        }
    }
}

pub struct TestNet {
    ctl: String,
    hosts: Vec<NetHost>,
    user_key: KeyPair,
    _dir: tempfile::TempDir,
    namespaces: Vec<String>,
}

static NEXT: AtomicU32 = AtomicU32::new(0);

impl TestNet {
    /// Namespaces for `hostnames`, every hosts file mapping every hostname to its address.
    pub fn create(hostnames: &[&str]) -> io::Result<TestNet> {
        let specs: Vec<HostSpec> = hostnames.iter().map(|h| HostSpec::new(h)).collect();
        TestNet::create_with(&specs)
    }

    pub fn create_with(specs: &[HostSpec]) -> io::Result<TestNet> {
        let dir = tempfile::Builder::new().prefix("amq-netns-").tempdir()?;
        let user_key = KeyPair::generate(&dir.path().join("id_ed25519"), "amq-netns-user")?;
        let tag = format!(
            "amqt{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::SeqCst)
        );
        let ctl = format!("{tag}-ctl");
        let mut net = TestNet {
            ctl: ctl.clone(),
            hosts: Vec::new(),
            user_key,
            _dir: dir,
            namespaces: Vec::new(),
        };
        net.add_namespace(&ctl)?;
        ip(&["-n", &ctl, "link", "set", "lo", "up"])?;
        ip(&["-n", &ctl, "link", "add", "br0", "type", "bridge"])?;
        ip(&[
            "-n",
            &ctl,
            "addr",
            "add",
            &format!("{}/24", addr_of(CTL_ADDR)),
            "dev",
            "br0",
        ])?;
        ip(&["-n", &ctl, "link", "set", "br0", "up"])?;
        let mut addrs = Vec::new();
        for (i, spec) in specs.iter().enumerate() {
            let ns = format!("{tag}-h{i}");
            let addr = addr_of(FIRST_HOST_ADDR + i as u8);
            net.add_namespace(&ns)?;
            ip(&["-n", &ns, "link", "set", "lo", "up"])?;
            // Created inside ctl with the peer moved straight into the host
            // namespace, so no interface ever appears in the main namespace.
            let veth = format!("vh{i}");
            ip(&[
                "-n", &ctl, "link", "add", &veth, "type", "veth", "peer", "name", "eth0", "netns",
                &ns,
            ])?;
            ip(&["-n", &ctl, "link", "set", &veth, "master", "br0"])?;
            ip(&["-n", &ctl, "link", "set", &veth, "up"])?;
            ip(&[
                "-n",
                &ns,
                "addr",
                "add",
                &format!("{addr}/24"),
                "dev",
                "eth0",
            ])?;
            ip(&["-n", &ns, "link", "set", "eth0", "up"])?;
            addrs.push((spec, ns, addr));
        }
        let hosts_block: String = addrs
            .iter()
            .map(|(spec, _, addr)| format!("{addr} {}\n", spec.hostname))
            .collect();
        let default_hosts = format!("127.0.0.1 localhost\n{hosts_block}");
        fs::write(netns_hosts_path(&ctl), &default_hosts)?;
        for (spec, ns, addr) in addrs {
            fs::write(netns_hosts_path(&ns), &default_hosts)?;
            let sshd = Sshd::start_in(
                &net._dir.path().join(&spec.hostname),
                &net.user_key,
                SshdOptions {
                    listen: IpAddr::V4(addr),
                    port: 22,
                    netns: Some(ns.clone()),
                    extra_authorized: Vec::new(),
                    hide: spec.hide.clone(),
                },
            )?;
            net.hosts.push(NetHost {
                hostname: spec.hostname.clone(),
                netns: ns,
                addr,
                sshd,
            });
        }
        Ok(net)
    }

    fn add_namespace(&mut self, name: &str) -> io::Result<()> {
        ip(&["netns", "add", name])?;
        self.namespaces.push(name.to_string());
        fs::create_dir_all(Path::new("/etc/netns").join(name))
    }

    /// The controller namespace: the only place from which the hosts are reached.
    pub fn ctl(&self) -> &str {
        &self.ctl
    }

    pub fn ctl_addr(&self) -> Ipv4Addr {
        addr_of(CTL_ADDR)
    }

    pub fn hosts(&self) -> &[NetHost] {
        &self.hosts
    }

    pub fn host(&self, hostname: &str) -> &NetHost {
        self.hosts
            .iter()
            .find(|h| h.hostname == hostname)
            .unwrap_or_else(|| panic!("no test host {hostname}"))
    }

    /// The private key every host's sshd accepts for root.
    pub fn user_key(&self) -> &Path {
        &self.user_key.private
    }

    /// known_hosts lines for every host (by address and by hostname).
    pub fn known_hosts(&self) -> String {
        self.hosts
            .iter()
            .map(|h| {
                format!(
                    "{},{} {}\n",
                    known_hosts_name(h.ssh_addr()),
                    h.hostname,
                    h.sshd.host_key.key_field()
                )
            })
            .collect()
    }

    /// The controller namespace's hosts file (what `ip netns exec ctl` shows as /etc/hosts).
    pub fn ctl_hosts_file(&self) -> PathBuf {
        netns_hosts_path(&self.ctl)
    }

    /// A command that runs inside the controller namespace.
    pub fn ctl_command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        netns_command(&self.ctl, program)
    }
}

impl Drop for TestNet {
    fn drop(&mut self) {
        // sshds first (by PID, via their guards), then the namespaces.
        self.hosts.clear();
        for ns in self.namespaces.drain(..).rev() {
            let _ = ip(&["netns", "del", &ns]);
            let _ = fs::remove_dir_all(Path::new("/etc/netns").join(&ns));
        }
    }
}

fn addr_of(last: u8) -> Ipv4Addr {
    Ipv4Addr::new(SUBNET[0], SUBNET[1], SUBNET[2], last)
}

fn netns_hosts_path(ns: &str) -> PathBuf {
    Path::new("/etc/netns").join(ns).join("hosts")
}

fn netns_command(ns: &str, program: impl AsRef<std::ffi::OsStr>) -> Command {
    let mut c = Command::new("ip");
    c.args(["netns", "exec", ns]).arg(program);
    c
}

fn ip(args: &[&str]) -> io::Result<()> {
    let out = Command::new("ip").args(args).output()?;
    if out.status.success() {
        Ok(())
    } else {
        Err(io::Error::other(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_reachable_only_from_ctl_and_cleaned_up() {
        let net = TestNet::create(&["alpha", "beta"]).expect("create test net");
        let kh = net._dir.path().join("known_hosts");
        fs::write(&kh, net.known_hosts()).unwrap();
        let out = net
            .ctl_command("ssh")
            .arg("-i")
            .arg(net.user_key())
            .arg("-o")
            .arg(format!("UserKnownHostsFile={}", kh.display()))
            .args(["-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes"])
            .args(["root@beta", "ip -br -4 addr show eth0; cat /etc/hosts"])
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "ssh: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(stdout.contains("10.98.0.12"), "{stdout}");
        assert!(stdout.contains("10.98.0.11 alpha"), "{stdout}");
        // The controller's only routes are the test subnet: no default route.
        let routes = net.ctl_command("ip").arg("route").output().unwrap();
        let routes = String::from_utf8_lossy(&routes.stdout);
        assert!(!routes.contains("default"), "{routes}");
        let names: Vec<String> = net.namespaces.clone();
        drop(net);
        let list = Command::new("ip").args(["netns", "list"]).output().unwrap();
        let list = String::from_utf8_lossy(&list.stdout);
        for n in names {
            assert!(!list.contains(&n), "{n} still exists");
            assert!(!Path::new("/etc/netns").join(&n).exists());
        }
    }
}
