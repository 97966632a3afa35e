//! A throwaway OpenSSH server for tests: Debian's `/usr/sbin/sshd` with a
//! freshly generated host key and user key, root login by key only, listening
//! on a loopback port (or, via [`crate::netns`], on a namespace's address).
//! The daemon runs in the foreground (`-D`) under a [`ProcessGuard`], so it is
//! killed by PID when the [`Sshd`] drops.

use std::fs;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::process::{free_port, wait_for_port, ProcessGuard};

/// A generated ed25519 key pair on disk (`path` and `path.pub`).
#[derive(Debug, Clone)]
pub struct KeyPair {
    pub private: PathBuf,
    pub public_line: String,
}

impl KeyPair {
    pub fn generate(path: &Path, comment: &str) -> io::Result<KeyPair> {
        let _ = fs::remove_file(path);
        let _ = fs::remove_file(path.with_extension("pub"));
        let status = Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-C", comment, "-f"])
            .arg(path)
            .status()?;
        if !status.success() {
            return Err(io::Error::other(format!(
                "ssh-keygen failed for {}",
                path.display()
            )));
        }
        let public_line = fs::read_to_string(pub_path(path))?.trim().to_string();
        Ok(KeyPair {
            private: path.to_path_buf(),
            public_line,
        })
    }

    /// `type base64` without the comment, as known_hosts wants it.
    pub fn key_field(&self) -> String {
        self.public_line
            .split_whitespace()
            .take(2)
            .collect::<Vec<_>>()
            .join(" ")
    }
}

fn pub_path(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(".pub");
    PathBuf::from(s)
}

/// Where and how to start an sshd.
#[derive(Debug, Clone)]
pub struct SshdOptions {
    pub listen: IpAddr,
    pub port: u16,
    /// Run inside this network namespace (`ip netns exec NAME`), which also
    /// makes the daemon and every session see `/etc/netns/NAME/hosts`.
    pub netns: Option<String>,
    /// Keys allowed to log in as root; the harness's own user key is always allowed.
    pub extra_authorized: Vec<String>,
    /// Files hidden from this host's sessions (an empty, non-executable file is
    /// bind-mounted over each, symlinks resolved): e.g. `java`, to make a host without Java.
    pub hide: Vec<PathBuf>,
}

impl Default for SshdOptions {
    fn default() -> Self {
        SshdOptions {
            listen: IpAddr::V4(Ipv4Addr::LOCALHOST),
            port: 0,
            netns: None,
            extra_authorized: Vec::new(),
            hide: Vec::new(),
        }
    }
}

/// A running sshd. Holds its state directory (keys, config, log).
pub struct Sshd {
    // Declared first so it drops first: the daemon dies before its directory goes.
    guard: ProcessGuard,
    dir: PathBuf,
    _tmp: Option<tempfile::TempDir>,
    addr: SocketAddr,
    pub host_key: KeyPair,
    pub user_key: KeyPair,
}

impl Sshd {
    /// An sshd on a free port of 127.0.0.1 with a fresh state directory.
    pub fn start() -> io::Result<Sshd> {
        Sshd::start_with(SshdOptions::default())
    }

    pub fn start_with(opts: SshdOptions) -> io::Result<Sshd> {
        let tmp = tempfile::Builder::new().prefix("amq-sshd-").tempdir()?;
        let dir = tmp.path().to_path_buf();
        let user_key = KeyPair::generate(&dir.join("id_ed25519"), "amq-harness-user")?;
        let mut sshd = Sshd::start_in(&dir, &user_key, opts)?;
        sshd._tmp = Some(tmp);
        Ok(sshd)
    }

    /// An sshd whose state lives in `dir` (which the caller keeps), accepting
    /// `user_key`; used by [`crate::netns`] to share one user key among hosts.
    pub fn start_in(dir: &Path, user_key: &KeyPair, opts: SshdOptions) -> io::Result<Sshd> {
        fs::create_dir_all(dir)?;
        let host_key = KeyPair::generate(&dir.join("host_ed25519"), "amq-harness-host")?;
        let mut authorized = format!("{}\n", user_key.public_line);
        for k in &opts.extra_authorized {
            authorized.push_str(k);
            authorized.push('\n');
        }
        fs::write(dir.join("authorized_keys"), authorized)?;
        // Root's real ~/.bashrc on this machine runs `pyenv init` (~85 ms per
        // command); a broker host would not, so sessions get an empty one.
        fs::write(dir.join("bashrc"), "# empty: test host\n")?;
        let port = if opts.port == 0 {
            free_port()
        } else {
            opts.port
        };
        let listen = match opts.listen {
            IpAddr::V6(v6) => format!("[{v6}]"),
            IpAddr::V4(v4) => v4.to_string(),
        };
        let config = format!(
            "ListenAddress {listen}:{port}\n\
             HostKey {hk}\n\
             PidFile none\n\
             AuthorizedKeysFile {dir}/authorized_keys\n\
             PermitRootLogin prohibit-password\n\
             PubkeyAuthentication yes\n\
             PasswordAuthentication no\n\
             KbdInteractiveAuthentication no\n\
             UsePAM no\n\
             StrictModes no\n\
             UseDNS no\n\
             X11Forwarding no\n\
             PrintMotd no\n\
             PrintLastLog no\n\
             MaxStartups 100\n\
             MaxSessions 100\n\
             Subsystem sftp internal-sftp\n",
            hk = host_key.private.display(),
            dir = dir.display(),
        );
        let conf_path = dir.join("sshd_config");
        fs::write(&conf_path, config)?;
        // sshd's privilege-separation directory, missing on a fresh box.
        fs::create_dir_all("/run/sshd")?;
        let check = Command::new("/usr/sbin/sshd")
            .arg("-t")
            .arg("-f")
            .arg(&conf_path)
            .output()?;
        if !check.status.success() {
            return Err(io::Error::other(format!(
                "sshd -t rejected {}: {}",
                conf_path.display(),
                String::from_utf8_lossy(&check.stderr)
            )));
        }
        fs::write(dir.join("hidden"), "")?;
        let mut mounts = format!(
            "mount --bind '{}' /root/.bashrc 2>/dev/null; ",
            dir.join("bashrc").display()
        );
        for path in &opts.hide {
            let target = fs::canonicalize(path)?;
            mounts.push_str(&format!(
                "mount --bind '{}' '{}' || exit 1; ",
                dir.join("hidden").display(),
                target.display()
            ));
        }
        let inner = format!(
            "{mounts}exec /usr/sbin/sshd -D -f '{conf}' -E '{log}'",
            conf = conf_path.display(),
            log = dir.join("sshd.log").display(),
        );
        // `ip netns exec` already gives the command a private mount namespace;
        // outside one, `unshare` does, so the bind mount never leaks out.
        let mut cmd = match &opts.netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns, "sh", "-c", &inner]);
                c
            }
            None => {
                let mut c = Command::new("unshare");
                c.args(["--mount", "--propagation", "private", "sh", "-c", &inner]);
                c
            }
        };
        let guard = ProcessGuard::spawn(format!("sshd:{port}"), &mut cmd)?;
        let addr = SocketAddr::new(opts.listen, port);
        let sshd = Sshd {
            dir: dir.to_path_buf(),
            _tmp: None,
            addr,
            host_key,
            user_key: user_key.clone(),
            guard,
        };
        let up = match &opts.netns {
            Some(ns) => wait_for_port_in(ns, addr, Duration::from_secs(5)),
            None => wait_for_port(addr, Duration::from_secs(5)),
        };
        if !up {
            return Err(io::Error::other(format!(
                "sshd did not listen on {addr} within 5 s; log: {}",
                fs::read_to_string(sshd.log_path()).unwrap_or_default()
            )));
        }
        Ok(sshd)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    pub fn pid(&self) -> u32 {
        self.guard.pid()
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.join("sshd.log")
    }

    /// The known_hosts line for this server as OpenSSH writes it
    /// (`[addr]:port` form for non-22 ports), optionally with extra names.
    pub fn known_hosts_line(&self, extra_names: &[&str]) -> String {
        let mut names = vec![known_hosts_name(self.addr)];
        names.extend(extra_names.iter().map(|n| n.to_string()));
        format!("{} {}", names.join(","), self.host_key.key_field())
    }
}

/// How OpenSSH names a host in known_hosts: bare for port 22, `[host]:port` otherwise.
pub fn known_hosts_name(addr: SocketAddr) -> String {
    if addr.port() == 22 {
        addr.ip().to_string()
    } else {
        format!("[{}]:{}", addr.ip(), addr.port())
    }
}

/// Waits for a TCP port from inside a namespace (one bash loop over
/// `/dev/tcp`, bounded by `timeout`).
fn wait_for_port_in(netns: &str, addr: SocketAddr, timeout: Duration) -> bool {
    let probe = format!(
        "until (exec 3<>/dev/tcp/{}/{}) 2>/dev/null; do sleep 0.02; done",
        addr.ip(),
        addr.port()
    );
    let secs = timeout.as_secs().max(1).to_string();
    Command::new("ip")
        .args([
            "netns", "exec", netns, "timeout", &secs, "bash", "-c", &probe,
        ])
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sshd_starts_and_accepts_key_login() {
        let sshd = Sshd::start().expect("start sshd");
        let kh = sshd.dir().join("known_hosts");
        fs::write(&kh, format!("{}\n", sshd.known_hosts_line(&[]))).unwrap();
        let out = Command::new("ssh")
            .arg("-i")
            .arg(&sshd.user_key.private)
            .arg("-p")
            .arg(sshd.port().to_string())
            .arg("-o")
            .arg(format!("UserKnownHostsFile={}", kh.display()))
            .args(["-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes"])
            .args(["root@127.0.0.1", "echo hello"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "ssh failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "hello");
        let pid = sshd.pid();
        drop(sshd);
        assert!(!Path::new(&format!("/proc/{pid}")).exists());
    }
}
