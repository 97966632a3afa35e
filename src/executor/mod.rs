//! Executors: "a host I can run commands on and put files on". Everything
//! above this trait (deploy, status, stop, destroy, logs) is the same whether
//! the host is this machine ([`local::LocalHost`]) or a remote one over SSH
//! ([`ssh::SshHost`]).
//!
//! The trait is blocking on purpose: ssh2 is, and a host's steps are a
//! sequence anyway. Callers run each host on its own blocking task
//! (`tokio::task::spawn_blocking`), which is where the parallelism comes from.

pub mod local;
pub mod ssh;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

pub use local::LocalHost;
pub use ssh::{HostKeyPolicy, SshHost, SshTarget};

/// What a command printed and how it ended.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Output {
    /// Exit status; -1 when the command died of a signal.
    pub status: i32,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

impl Output {
    pub fn success(&self) -> bool {
        self.status == 0
    }

    pub fn stdout_str(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    pub fn stderr_str(&self) -> String {
        String::from_utf8_lossy(&self.stderr).trim().to_string()
    }
}

/// A file to place on a host: written beside its destination, given its
/// mode, then renamed over it, so a reader never sees half a file.
#[derive(Debug, Clone)]
pub struct FileUpload {
    pub path: PathBuf,
    pub contents: Arc<[u8]>,
    pub mode: u32,
}

#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    #[error("{host}: cannot connect to {addr}: {reason}")]
    Connect {
        host: String,
        addr: String,
        reason: String,
    },
    #[error(
        "{host}: the host key of {addr} ({key_type}) does not match the one recorded in {known_hosts}; \
         refusing to connect. If the host was really reinstalled, remove the old entry \
         (ssh-keygen -R '{addr}' -f {known_hosts}) and connect again"
    )]
    HostKeyMismatch {
        host: String,
        addr: String,
        key_type: String,
        known_hosts: String,
    },
    #[error(
        "{host}: the host key of {addr} ({key_type}, SHA256:{fingerprint}) is not in {known_hosts}; \
         refusing an unknown host. Add it (ssh-keyscan), set `known_hosts = \"accept-new\"` for the host \
         in the inventory, or pass --accept-new-host-keys"
    )]
    HostKeyUnknown {
        host: String,
        addr: String,
        key_type: String,
        fingerprint: String,
        known_hosts: String,
    },
    #[error("{host}: SSH authentication as `{user}` at {addr} failed (tried: {tried})")]
    Auth {
        host: String,
        user: String,
        addr: String,
        tried: String,
    },
    #[error("{host}: {op}: {reason}")]
    Ssh {
        host: String,
        op: String,
        reason: String,
    },
    #[error("{host}: {op} {path}: {source}")]
    Io {
        host: String,
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

pub type Result<T> = std::result::Result<T, ExecError>;

/// A host commands run on and files are put on.
pub trait Host: Send + Sync {
    /// The inventory name of the host (used in every message).
    fn name(&self) -> &str;

    /// Runs `script` with `sh -c` (remote: the login shell's `-c`), feeding
    /// `stdin` if given, and captures stdout, stderr and the exit status.
    /// A non-zero exit is not an error here; callers decide.
    fn run(&self, script: &str, stdin: Option<&[u8]>) -> Result<Output>;

    /// Places each file atomically with its mode, creating parent directories.
    fn put_files(&self, files: &[FileUpload]) -> Result<()>;

    /// The file's contents, `None` when it does not exist.
    fn read_file(&self, path: &Path) -> Result<Option<Vec<u8>>> {
        let p = shell_quote(&path.to_string_lossy());
        let out = self.run(
            &format!("if [ -e {p} ]; then cat -- {p}; else exit 44; fi"),
            None,
        )?;
        match out.status {
            0 => Ok(Some(out.stdout)),
            44 => Ok(None),
            _ => Err(self.io_error("read", path, out.stderr_str())),
        }
    }

    /// SHA-256 (hex) of each path that exists, in one command.
    fn checksums(&self, paths: &[PathBuf]) -> Result<BTreeMap<PathBuf, String>> {
        if paths.is_empty() {
            return Ok(BTreeMap::new());
        }
        let mut script = String::from("for f in");
        for p in paths {
            let _ = write!(script, " {}", shell_quote(&p.to_string_lossy()));
        }
        script.push_str("; do [ -f \"$f\" ] && sha256sum -- \"$f\"; done; true");
        let out = self.run(&script, None)?;
        if !out.success() {
            return Err(self.io_error("checksum", &paths[0], out.stderr_str()));
        }
        Ok(out
            .stdout_str()
            .lines()
            .filter_map(|line| {
                let (sum, path) = line.split_once("  ")?;
                Some((PathBuf::from(path), sum.to_string()))
            })
            .collect())
    }

    fn io_error(&self, op: &'static str, path: &Path, reason: String) -> ExecError {
        ExecError::Io {
            host: self.name().to_string(),
            op,
            path: path.to_path_buf(),
            source: io::Error::other(reason),
        }
    }
}

/// Quotes a string for POSIX sh (single quotes, `'` spelled `'\''`).
pub fn shell_quote(s: &str) -> String {
    if !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/._-+=:@,".contains(&b))
    {
        return s.to_string();
    }
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// The temporary name a file is written under before the rename.
pub(crate) fn staging_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".amqctl-new");
    path.with_file_name(name)
}

/// A host whose every command, its output and every upload go to a log file
/// (the per-host deploy log). Secrets are not in commands: files holding
/// them are uploaded, and only their paths and sizes are logged.
pub struct Logged {
    log: Mutex<File>,
    inner: Box<dyn Host>,
}

impl Logged {
    pub fn new(inner: Box<dyn Host>, log_path: &Path) -> io::Result<Self> {
        if let Some(dir) = log_path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log_path)?;
        Ok(Logged {
            log: Mutex::new(file),
            inner,
        })
    }

    /// Writes a free-form line (step boundaries, decisions) to the log.
    pub fn note(&self, text: &str) {
        let mut f = self.log.lock().unwrap_or_else(|e| e.into_inner());
        let _ = writeln!(f, "[{}] # {text}", timestamp());
    }

    fn record(&self, entry: String) {
        let mut f = self.log.lock().unwrap_or_else(|e| e.into_inner());
        let _ = f.write_all(entry.as_bytes());
    }
}

impl Host for Logged {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn run(&self, script: &str, stdin: Option<&[u8]>) -> Result<Output> {
        let started = Instant::now();
        let result = self.inner.run(script, stdin);
        let mut entry = format!("[{}] $ {}\n", timestamp(), script.trim_end());
        if let Some(input) = stdin {
            let _ = writeln!(entry, "  (stdin: {} bytes)", input.len());
        }
        match &result {
            Ok(out) => {
                for (tag, bytes) in [("out", &out.stdout), ("err", &out.stderr)] {
                    for line in String::from_utf8_lossy(bytes).lines() {
                        let _ = writeln!(entry, "  {tag}| {line}");
                    }
                }
                let _ = writeln!(
                    entry,
                    "  exit {} ({} ms)",
                    out.status,
                    started.elapsed().as_millis()
                );
            }
            Err(e) => {
                let _ = writeln!(entry, "  failed: {e}");
            }
        }
        self.record(entry);
        result
    }

    fn put_files(&self, files: &[FileUpload]) -> Result<()> {
        let started = Instant::now();
        let result = self.inner.put_files(files);
        let mut entry = format!("[{}] put {} file(s)\n", timestamp(), files.len());
        for f in files {
            let _ = writeln!(
                entry,
                "  {} ({} bytes, mode {:04o})",
                f.path.display(),
                f.contents.len(),
                f.mode
            );
        }
        match &result {
            Ok(()) => {
                let _ = writeln!(entry, "  ok ({} ms)", started.elapsed().as_millis());
            }
            Err(e) => {
                let _ = writeln!(entry, "  failed: {e}");
            }
        }
        self.record(entry);
        result
    }
}

fn timestamp() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let secs = now.as_secs();
    format!(
        "{:02}:{:02}:{:02}.{:03}",
        (secs / 3600) % 24,
        (secs / 60) % 60,
        secs % 60,
        now.subsec_millis()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shell_quote_leaves_plain_words_and_quotes_the_rest() {
        assert_eq!(shell_quote("/opt/amq/bin"), "/opt/amq/bin");
        assert_eq!(shell_quote("a b"), "'a b'");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
        assert_eq!(shell_quote(""), "''");
    }

    #[test]
    fn staging_path_is_beside_the_destination() {
        assert_eq!(
            staging_path(Path::new("/a/b/zoo.cfg")),
            PathBuf::from("/a/b/zoo.cfg.amqctl-new")
        );
    }
}
