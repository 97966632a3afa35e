//! What deploy would change: the files every host should have (rendered
//! files and the broker binary), compared by SHA-256 with what the host has,
//! and from that, which services start, restart or stay as they are.
//! `--dry-run` prints this; a real deploy applies it.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::Arc;

use serde::Serialize;

use crate::executor::{FileUpload, Host};

/// A file a host should have.
#[derive(Debug, Clone)]
pub struct DesiredFile {
    /// The service it belongs to; `None` for the host's broker binary, which
    /// every broker on the host runs.
    pub service: Option<String>,
    pub path: PathBuf,
    pub contents: Arc<[u8]>,
    pub mode: u32,
    pub sha256: String,
    /// Holds a secret: never shown in diffs or logs.
    pub secret: bool,
}

impl DesiredFile {
    pub fn upload(&self) -> FileUpload {
        FileUpload {
            path: self.path.clone(),
            contents: self.contents.clone(),
            mode: self.mode,
        }
    }
}

/// A file that differs from what the host has.
#[derive(Debug, Clone)]
pub struct FileChange {
    pub file: DesiredFile,
    /// Checksum on the host, `None` when the file is missing.
    pub old_sha256: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// Running and unchanged.
    Keep,
    /// Not running: files put in place (if changed) and started.
    Start,
    /// Running, but its files or binary changed: restarted (rolling).
    Restart,
}

/// Everything that differs on one host.
#[derive(Debug, Clone, Default)]
pub struct HostChanges {
    pub files: Vec<FileChange>,
    /// Per service on this host: what happens to it.
    pub actions: BTreeMap<String, Action>,
    /// The running pid of each service before the deploy.
    pub pids: BTreeMap<String, Option<u32>>,
}

impl HostChanges {
    /// Decides from the host's checksums and running services.
    pub fn compute(
        desired: &[DesiredFile],
        remote: &BTreeMap<PathBuf, String>,
        services: &[(String, bool)],
        pids: BTreeMap<String, Option<u32>>,
    ) -> HostChanges {
        let files: Vec<FileChange> = desired
            .iter()
            .filter(|d| remote.get(&d.path) != Some(&d.sha256))
            .map(|d| FileChange {
                file: d.clone(),
                old_sha256: remote.get(&d.path).cloned(),
            })
            .collect();
        let binary_changed = files.iter().any(|f| f.file.service.is_none());
        let touched: BTreeSet<&str> = files
            .iter()
            .filter_map(|f| f.file.service.as_deref())
            .collect();
        let actions = services
            .iter()
            .map(|(name, is_broker)| {
                let running = pids.get(name).copied().flatten().is_some();
                let changed = touched.contains(name.as_str()) || (*is_broker && binary_changed);
                let action = match (running, changed) {
                    (false, _) => Action::Start,
                    (true, true) => Action::Restart,
                    (true, false) => Action::Keep,
                };
                (name.clone(), action)
            })
            .collect();
        HostChanges {
            files,
            actions,
            pids,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.files.is_empty() && self.actions.values().all(|a| *a == Action::Keep)
    }

    /// The host's new broker binary, if it changed.
    pub fn binary_upload(&self) -> Option<FileUpload> {
        self.files
            .iter()
            .find(|f| f.file.service.is_none())
            .map(|f| f.file.upload())
    }

    /// Changed files of `service` (and the binary, for a broker being restarted).
    pub fn files_of(&self, service: &str, with_binary: bool) -> Vec<FileUpload> {
        self.files
            .iter()
            .filter(|f| match &f.file.service {
                Some(s) => s == service,
                None => with_binary,
            })
            .map(|f| f.file.upload())
            .collect()
    }
}

/// A unified diff of one changed file against what the host has, for
/// `--dry-run`. Secrets and binaries are summarised, never printed.
pub fn describe_change(host: &dyn Host, change: &FileChange) -> String {
    let f = &change.file;
    let path = f.path.display();
    let short = |s: &str| s.chars().take(12).collect::<String>();
    let old_label = change
        .old_sha256
        .as_deref()
        .map(short)
        .unwrap_or_else(|| "(missing)".into());
    if f.secret {
        return format!(
            "~ {path}: holds secrets, contents not shown (sha256 {old_label} → {})\n",
            short(&f.sha256)
        );
    }
    let new_text = std::str::from_utf8(&f.contents).ok();
    let old = match &change.old_sha256 {
        Some(_) => host.read_file(&f.path).ok().flatten(),
        None => Some(Vec::new()),
    };
    let old_text = old.as_deref().and_then(|b| std::str::from_utf8(b).ok());
    match (old_text, new_text) {
        (Some(old), Some(new)) if !new.contains('\0') => {
            let diff = similar::TextDiff::from_lines(old, new);
            let (a, b) = if change.old_sha256.is_some() {
                (format!("{path} (on host)"), format!("{path} (rendered)"))
            } else {
                ("/dev/null".to_string(), format!("{path} (new)"))
            };
            let mut out = String::new();
            let _ = write!(
                out,
                "{}",
                diff.unified_diff().context_radius(3).header(&a, &b)
            );
            if !out.ends_with('\n') {
                out.push('\n');
            }
            out
        }
        _ => format!(
            "~ {path}: binary, {} bytes (sha256 {old_label} → {})\n",
            f.contents.len(),
            short(&f.sha256)
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(service: Option<&str>, path: &str, body: &str) -> DesiredFile {
        use sha2::Digest;
        DesiredFile {
            service: service.map(str::to_string),
            path: PathBuf::from(path),
            contents: Arc::from(body.as_bytes()),
            mode: 0o644,
            sha256: hex::encode(sha2::Sha256::digest(body.as_bytes())),
            secret: false,
        }
    }

    #[test]
    fn only_services_whose_files_changed_restart() {
        let desired = vec![
            file(None, "/b/bin/amq-broker", "v1"),
            file(Some("zk1"), "/b/zk1/zoo.cfg", "same"),
            file(Some("a"), "/b/a/activemq.xml", "new"),
            file(Some("b"), "/b/b/activemq.xml", "same"),
        ];
        let remote: BTreeMap<PathBuf, String> = desired
            .iter()
            .filter(|d| d.path != std::path::Path::new("/b/a/activemq.xml"))
            .map(|d| (d.path.clone(), d.sha256.clone()))
            .collect();
        let services = vec![
            ("zk1".to_string(), false),
            ("a".to_string(), true),
            ("b".to_string(), true),
        ];
        let pids = BTreeMap::from([
            ("zk1".to_string(), Some(10)),
            ("a".to_string(), Some(11)),
            ("b".to_string(), Some(12)),
        ]);
        let c = HostChanges::compute(&desired, &remote, &services, pids.clone());
        assert_eq!(c.files.len(), 1);
        assert_eq!(c.actions["a"], Action::Restart);
        assert_eq!(c.actions["b"], Action::Keep);
        assert_eq!(c.actions["zk1"], Action::Keep);

        // A new binary restarts every broker on the host, not ZooKeeper.
        let mut remote2 = remote.clone();
        remote2.insert("/b/bin/amq-broker".into(), "old".into());
        remote2.insert("/b/a/activemq.xml".into(), desired[2].sha256.clone());
        let c = HostChanges::compute(&desired, &remote2, &services, pids);
        assert_eq!(c.actions["a"], Action::Restart);
        assert_eq!(c.actions["b"], Action::Restart);
        assert_eq!(c.actions["zk1"], Action::Keep);
        assert_eq!(c.files_of("a", true).len(), 1);
        assert_eq!(c.files_of("a", false).len(), 0);

        // Nothing differs and everything runs: no changes at all.
        let all: BTreeMap<PathBuf, String> = desired
            .iter()
            .map(|d| (d.path.clone(), d.sha256.clone()))
            .collect();
        let pids = BTreeMap::from([
            ("zk1".to_string(), Some(10)),
            ("a".to_string(), Some(11)),
            ("b".to_string(), Some(12)),
        ]);
        assert!(HostChanges::compute(&desired, &all, &services, pids).is_empty());
    }
}
