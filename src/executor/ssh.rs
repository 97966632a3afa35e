//! A remote host over SSH (the `ssh2` crate, i.e. libssh2): one session per
//! host for the whole command, key or agent authentication, SFTP uploads,
//! and known_hosts checked strictly — a changed key is always refused, an
//! unknown one unless the policy says to accept and record it.

use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use ssh2::{CheckResult, HashType, KnownHostFileKind, MethodType, OpenFlags, OpenType, Session};

use super::{shell_quote, staging_path, ExecError, FileUpload, Host, Output, Result};

/// What to do with a host whose key is not in known_hosts yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum HostKeyPolicy {
    /// Refuse (the default, as `StrictHostKeyChecking=yes`).
    #[default]
    Strict,
    /// Record it and continue (`StrictHostKeyChecking=accept-new`); a
    /// changed key is still refused.
    AcceptNew,
}

/// Where and as whom to connect.
#[derive(Debug, Clone)]
pub struct SshTarget {
    /// Inventory name of the host, for messages.
    pub name: String,
    /// Address or DNS name to connect to.
    pub address: String,
    pub port: u16,
    pub user: String,
    /// Private key file; without one, the ssh-agent and then the default
    /// `~/.ssh/id_*` keys are tried.
    pub identity: Option<PathBuf>,
    pub known_hosts: PathBuf,
    pub policy: HostKeyPolicy,
    pub connect_timeout: Duration,
}

impl SshTarget {
    fn addr_label(&self) -> String {
        if self.port == 22 {
            self.address.clone()
        } else {
            format!("[{}]:{}", self.address, self.port)
        }
    }
}

pub struct SshHost {
    target: SshTarget,
    session: Mutex<Session>,
}

/// Serialises known_hosts read-modify-write across hosts connecting in parallel.
static KNOWN_HOSTS_LOCK: Mutex<()> = Mutex::new(());

/// Host key algorithms libssh2 may negotiate, strongest first.
const HOST_KEY_ALGORITHMS: &[&str] = &[
    "ssh-ed25519",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "rsa-sha2-512",
    "rsa-sha2-256",
    "ssh-rsa",
];

impl SshHost {
    /// Connects, verifies the host key and authenticates.
    pub fn connect(target: SshTarget) -> Result<SshHost> {
        let label = target.addr_label();
        let connect_err = |reason: String| ExecError::Connect {
            host: target.name.clone(),
            addr: label.clone(),
            reason,
        };
        let addrs: Vec<SocketAddr> = (target.address.as_str(), target.port)
            .to_socket_addrs()
            .map_err(|e| connect_err(format!("cannot resolve `{}`: {e}", target.address)))?
            .collect();
        let mut last = None;
        let mut tcp = None;
        for addr in &addrs {
            match TcpStream::connect_timeout(addr, target.connect_timeout) {
                Ok(s) => {
                    tcp = Some(s);
                    break;
                }
                Err(e) => last = Some(e),
            }
        }
        let tcp = tcp.ok_or_else(|| {
            connect_err(match last {
                Some(e) if e.kind() == std::io::ErrorKind::TimedOut => format!(
                    "no answer within {:?} (host down or port filtered)",
                    target.connect_timeout
                ),
                Some(e) => e.to_string(),
                None => "the name resolves to no address".to_string(),
            })
        })?;
        let _ = tcp.set_nodelay(true);

        let ssh_err = |op: &str, e: ssh2::Error| ExecError::Ssh {
            host: target.name.clone(),
            op: op.to_string(),
            reason: e.message().to_string(),
        };
        let mut session = Session::new().map_err(|e| ssh_err("session", e))?;
        session.set_timeout(target.connect_timeout.as_millis() as u32);
        // Ask for the key type known_hosts already has, so a host with
        // several keys is checked against the one we recorded.
        let recorded = recorded_key_types(&target.known_hosts, &label);
        let (mut prefs, others): (Vec<&str>, Vec<&str>) = HOST_KEY_ALGORITHMS
            .iter()
            .partition(|a| recorded.iter().any(|r| r == *a));
        prefs.extend(others);
        let _ = session.method_pref(MethodType::HostKey, &prefs.join(","));
        session.set_tcp_stream(tcp);
        session
            .handshake()
            .map_err(|e| connect_err(format!("SSH handshake failed: {}", e.message())))?;
        check_host_key(&session, &target, &label)?;
        authenticate(&session, &target, &label)?;
        // Commands can legitimately take long (apt-get install); uploads stream.
        session.set_timeout(0);
        session.set_keepalive(true, 15);
        Ok(SshHost {
            target,
            session: Mutex::new(session),
        })
    }

    fn ssh_err(&self, op: impl Into<String>, e: ssh2::Error) -> ExecError {
        ExecError::Ssh {
            host: self.target.name.clone(),
            op: op.into(),
            reason: e.message().to_string(),
        }
    }

    fn io_err(&self, op: &'static str, path: &Path, e: std::io::Error) -> ExecError {
        ExecError::Io {
            host: self.target.name.clone(),
            op,
            path: path.to_path_buf(),
            source: e,
        }
    }
}

fn check_host_key(session: &Session, target: &SshTarget, label: &str) -> Result<()> {
    let (key, key_type) = session.host_key().ok_or_else(|| ExecError::Ssh {
        host: target.name.clone(),
        op: "host key".into(),
        reason: "the server sent no host key".into(),
    })?;
    let key_type_name = format!("{key_type:?}");
    let fingerprint = session
        .host_key_hash(HashType::Sha256)
        .map(hex::encode)
        .unwrap_or_default();
    let _guard = KNOWN_HOSTS_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let mut known = session.known_hosts().map_err(|e| ExecError::Ssh {
        host: target.name.clone(),
        op: "known_hosts".into(),
        reason: e.message().to_string(),
    })?;
    if target.known_hosts.exists() {
        known
            .read_file(&target.known_hosts, KnownHostFileKind::OpenSSH)
            .map_err(|e| ExecError::Ssh {
                host: target.name.clone(),
                op: format!("reading {}", target.known_hosts.display()),
                reason: e.message().to_string(),
            })?;
    }
    match known.check_port(&target.address, target.port, key) {
        CheckResult::Match => Ok(()),
        CheckResult::Mismatch => Err(ExecError::HostKeyMismatch {
            host: target.name.clone(),
            addr: label.to_string(),
            key_type: key_type_name,
            known_hosts: target.known_hosts.display().to_string(),
        }),
        CheckResult::NotFound | CheckResult::Failure => match target.policy {
            HostKeyPolicy::Strict => Err(ExecError::HostKeyUnknown {
                host: target.name.clone(),
                addr: label.to_string(),
                key_type: key_type_name,
                fingerprint,
                known_hosts: target.known_hosts.display().to_string(),
            }),
            HostKeyPolicy::AcceptNew => {
                let io = |e: std::io::Error| ExecError::Io {
                    host: target.name.clone(),
                    op: "record host key in",
                    path: target.known_hosts.clone(),
                    source: e,
                };
                let line = known_hosts_line(&mut known, label, key, key_type).map_err(|e| {
                    ExecError::Ssh {
                        host: target.name.clone(),
                        op: "recording the host key".into(),
                        reason: e.message().to_string(),
                    }
                })?;
                if let Some(dir) = target.known_hosts.parent() {
                    std::fs::create_dir_all(dir).map_err(io)?;
                }
                // Appended, not rewritten: the rest of the file stays byte for byte.
                let mut f = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&target.known_hosts)
                    .map_err(io)?;
                f.write_all(line.as_bytes()).map_err(io)
            }
        },
    }
}

fn authenticate(session: &Session, target: &SshTarget, label: &str) -> Result<()> {
    let mut tried = Vec::new();
    match &target.identity {
        Some(key) => {
            if !key.exists() {
                tried.push(format!("key {} (file does not exist)", key.display()));
            } else if session
                .userauth_pubkey_file(&target.user, None, key, None)
                .is_ok()
            {
                return Ok(());
            } else {
                tried.push(format!("key {} (rejected)", key.display()));
            }
        }
        None => {
            if std::env::var_os("SSH_AUTH_SOCK").is_some() {
                if session.userauth_agent(&target.user).is_ok() {
                    return Ok(());
                }
                tried.push("ssh-agent (no key accepted)".to_string());
            } else {
                tried.push("ssh-agent (SSH_AUTH_SOCK not set)".to_string());
            }
            let home = std::env::var_os("HOME")
                .map(PathBuf::from)
                .unwrap_or_default();
            for name in ["id_ed25519", "id_ecdsa", "id_rsa"] {
                let key = home.join(".ssh").join(name);
                if key.exists() {
                    if session
                        .userauth_pubkey_file(&target.user, None, &key, None)
                        .is_ok()
                    {
                        return Ok(());
                    }
                    tried.push(format!("key {} (rejected)", key.display()));
                }
            }
        }
    }
    Err(ExecError::Auth {
        host: target.name.clone(),
        user: target.user.clone(),
        addr: label.to_string(),
        tried: tried.join(", "),
    })
}

impl Host for SshHost {
    fn name(&self) -> &str {
        &self.target.name
    }

    fn run(&self, script: &str, stdin: Option<&[u8]>) -> Result<Output> {
        let session = self.session.lock().unwrap_or_else(|e| e.into_inner());
        let mut channel = session
            .channel_session()
            .map_err(|e| self.ssh_err("open channel", e))?;
        channel.exec(script).map_err(|e| self.ssh_err("exec", e))?;
        if let Some(input) = stdin {
            channel
                .write_all(input)
                .map_err(|e| self.io_err("write stdin of", Path::new("-"), e))?;
        }
        channel
            .send_eof()
            .map_err(|e| self.ssh_err("send eof", e))?;
        let mut stdout = Vec::new();
        let mut stderr = Vec::new();
        channel
            .read_to_end(&mut stdout)
            .map_err(|e| self.io_err("read stdout of", Path::new("-"), e))?;
        channel
            .stderr()
            .read_to_end(&mut stderr)
            .map_err(|e| self.io_err("read stderr of", Path::new("-"), e))?;
        channel
            .wait_close()
            .map_err(|e| self.ssh_err("close channel", e))?;
        let status = match channel.exit_signal() {
            Ok(sig) if sig.exit_signal.is_some() => -1,
            _ => channel
                .exit_status()
                .map_err(|e| self.ssh_err("exit status", e))?,
        };
        Ok(Output {
            status,
            stdout,
            stderr,
        })
    }

    fn put_files(&self, files: &[FileUpload]) -> Result<()> {
        if files.is_empty() {
            return Ok(());
        }
        let mut dirs: Vec<String> = files
            .iter()
            .filter_map(|f| f.path.parent())
            .map(|d| shell_quote(&d.to_string_lossy()))
            .collect();
        dirs.sort();
        dirs.dedup();
        let mkdir = self.run(&format!("mkdir -p {}", dirs.join(" ")), None)?;
        if !mkdir.success() {
            return Err(self.io_err(
                "create directory",
                files[0].path.parent().unwrap_or(Path::new("/")),
                std::io::Error::other(mkdir.stderr_str()),
            ));
        }
        {
            let session = self.session.lock().unwrap_or_else(|e| e.into_inner());
            let sftp = session.sftp().map_err(|e| self.ssh_err("start SFTP", e))?;
            for f in files {
                let staging = staging_path(&f.path);
                let mut remote = sftp
                    .open_mode(
                        &staging,
                        OpenFlags::WRITE | OpenFlags::CREATE | OpenFlags::TRUNCATE,
                        f.mode as i32,
                        OpenType::File,
                    )
                    .map_err(|e| self.ssh_err(format!("SFTP create {}", staging.display()), e))?;
                remote
                    .write_all(&f.contents)
                    .map_err(|e| self.io_err("SFTP write", &staging, e))?;
            }
        }
        // The mode is set explicitly (the server's umask applies at create),
        // then each file is renamed over its destination in one command.
        let mut script = String::from("set -e");
        for f in files {
            let dest = shell_quote(&f.path.to_string_lossy());
            let staging = shell_quote(&staging_path(&f.path).to_string_lossy());
            let _ = write!(
                script,
                "; chmod {:04o} {staging}; mv -f {staging} {dest}",
                f.mode
            );
        }
        let out = self.run(&script, None)?;
        if !out.success() {
            return Err(self.io_err(
                "install",
                &files[0].path,
                std::io::Error::other(out.stderr_str()),
            ));
        }
        Ok(())
    }
}

impl Drop for SshHost {
    fn drop(&mut self) {
        if let Ok(s) = self.session.lock() {
            let _ = s.disconnect(None, "amqctl done", None);
        }
    }
}

/// Key types recorded for `label` in a known_hosts file (plain names only;
/// hashed entries cannot be matched without trying, and then libssh2 decides).
fn recorded_key_types(known_hosts: &Path, label: &str) -> Vec<String> {
    let Ok(text) = std::fs::read_to_string(known_hosts) else {
        return Vec::new();
    };
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let mut parts = l.split_whitespace();
            let names = parts.next()?;
            let kind = parts.next()?;
            names
                .split(',')
                .any(|n| n == label)
                .then(|| kind.to_string())
        })
        .collect()
}

/// The known_hosts line libssh2 writes for `key` under `label`.
fn known_hosts_line(
    known: &mut ssh2::KnownHosts,
    label: &str,
    key: &[u8],
    key_type: ssh2::HostKeyType,
) -> std::result::Result<String, ssh2::Error> {
    known.add(label, key, "", key_type.into())?;
    let hosts = known.hosts()?;
    let added = hosts
        .iter()
        .rev()
        .find(|h| h.name() == Some(label))
        .ok_or_else(|| ssh2::Error::new(ssh2::ErrorCode::Session(-1), "key not recorded"))?;
    known.write_string(added, KnownHostFileKind::OpenSSH)
}
