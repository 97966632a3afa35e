//! The marked block in `/etc/hosts`: one block between the plan's BEGIN and
//! END lines, rewritten whole; every other line of the file kept as it is.
//!
//! The file is rewritten in place (`cat >`), not renamed over: /etc/hosts
//! is often a bind mount (containers, `ip netns exec`), which a rename
//! cannot replace.

use std::collections::BTreeMap;

use crate::executor::{ExecError, Host};
use crate::render::{FileKind, RenderedPlan};
use crate::topology::Topology;

/// A pending rewrite of a host's hosts file.
#[derive(Debug, Clone)]
pub struct Update {
    pub path: String,
    pub old: String,
    pub new: String,
}

impl Update {
    pub fn diff(&self) -> String {
        let diff = similar::TextDiff::from_lines(&self.old, &self.new);
        let mut out = diff
            .unified_diff()
            .context_radius(2)
            .header(
                &format!("{} (on host)", self.path),
                &format!("{} (with block)", self.path),
            )
            .to_string();
        if !out.ends_with('\n') {
            out.push('\n');
        }
        out
    }
}

/// The block (and its destination) for each host whose inventory entry asks
/// for it (`manage_hosts = true`).
pub fn wanted(topo: &Topology, plan: &RenderedPlan) -> BTreeMap<String, (String, String)> {
    plan.hosts
        .iter()
        .filter(|hp| topo.host(&hp.name).manage_hosts)
        .filter_map(|hp| {
            let f = hp.files.iter().find(|f| f.kind == FileKind::HostsBlock)?;
            Some((
                hp.name.clone(),
                (f.dest.display().to_string(), f.contents.clone()),
            ))
        })
        .collect()
}

/// Reads the host's file and returns the rewrite it needs, if any.
pub fn pending(
    host: &dyn Host,
    (path, block): &(String, String),
) -> Result<Option<Update>, ExecError> {
    let old = host
        .read_file(std::path::Path::new(path))?
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default();
    let new = merge(&old, block);
    Ok((new != old).then(|| Update {
        path: path.clone(),
        old,
        new,
    }))
}

pub fn write(host: &dyn Host, update: &Update) -> Result<(), ExecError> {
    let path = crate::executor::shell_quote(&update.path);
    let out = host.run(&format!("cat > {path}"), Some(update.new.as_bytes()))?;
    if out.success() {
        Ok(())
    } else {
        Err(host.io_error(
            "write",
            std::path::Path::new(&update.path),
            out.stderr_str(),
        ))
    }
}

/// `existing` with the block (its first line is the BEGIN marker, its last
/// the END marker) replacing the previous block, or appended.
pub fn merge(existing: &str, block: &str) -> String {
    let block = block.trim_end_matches('\n');
    let begin = block.lines().next().unwrap_or_default();
    let end = block.lines().last().unwrap_or_default();
    let lines: Vec<&str> = existing.lines().collect();
    // Markers match on `# BEGIN amqctl <cluster>`, so a reworded comment
    // after them still finds the old block.
    let start = lines.iter().position(|l| marker(l) == marker(begin));
    let stop = start.and_then(|s| {
        lines[s..]
            .iter()
            .position(|l| marker(l) == marker(end))
            .map(|i| s + i)
    });
    let mut out = String::new();
    match (start, stop) {
        (Some(s), Some(e)) => {
            for l in &lines[..s] {
                out.push_str(l);
                out.push('\n');
            }
            out.push_str(block);
            out.push('\n');
            for l in &lines[e + 1..] {
                out.push_str(l);
                out.push('\n');
            }
        }
        _ => {
            out.push_str(existing);
            if !existing.is_empty() && !existing.ends_with('\n') {
                out.push('\n');
            }
            out.push_str(block);
            out.push('\n');
        }
    }
    out
}

/// `existing` without the block (if it has one).
pub fn remove(existing: &str, block: &str) -> String {
    let merged = merge(existing, block);
    let block = block.trim_end_matches('\n');
    // After a merge the block is present exactly once; cut it out.
    merged.replacen(&format!("{block}\n"), "", 1)
}

fn marker(line: &str) -> Vec<&str> {
    line.split_whitespace().take(4).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const BLOCK: &str = "# BEGIN amqctl c1 (managed)\n10.0.0.1 a\n10.0.0.2 b\n# END amqctl c1\n";

    #[test]
    fn appends_then_replaces_only_the_block() {
        let original = "127.0.0.1 localhost\n192.168.1.5 printer\n";
        let once = merge(original, BLOCK);
        assert_eq!(once, format!("{original}{BLOCK}"));
        // Idempotent.
        assert_eq!(merge(&once, BLOCK), once);
        // A changed block replaces the old one; lines after it stay.
        let with_tail = format!("{once}10.9.9.9 other\n");
        let block2 = "# BEGIN amqctl c1 (reworded)\n10.0.0.3 c\n# END amqctl c1\n";
        let merged = merge(&with_tail, block2);
        assert_eq!(
            merged,
            format!("{original}{block2}10.9.9.9 other\n"),
            "old entries gone, the rest untouched"
        );
    }

    #[test]
    fn removal_keeps_the_rest() {
        let original = "127.0.0.1 localhost\n";
        let with = format!("{original}{BLOCK}10.9.9.9 other\n");
        assert_eq!(remove(&with, BLOCK), format!("{original}10.9.9.9 other\n"));
        assert_eq!(remove(original, BLOCK), original);
    }

    #[test]
    fn file_without_trailing_newline() {
        assert_eq!(
            merge("127.0.0.1 localhost", BLOCK),
            format!("127.0.0.1 localhost\n{BLOCK}")
        );
    }
}
