//! `amqctl destroy INVENTORY [--purge-data]`: stop every service and remove
//! what deploy put on the hosts — rendered files, launch scripts or units,
//! pid and log files, the broker binary, the hosts block, and directories
//! left empty. Data directories (ZooKeeper's, the brokers' journals, a
//! shared-file store) are kept unless `--purge-data` says otherwise.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use crate::deploy::hosts_block;
use crate::deploy::progress::Progress;
use crate::deploy::service::{services, Service};
use crate::deploy::{connect_all, DeployError, HostArgs};
use crate::executor::{shell_quote, Host};
use crate::render::{FileKind, Launch};
use crate::stop::stop_services;

#[derive(Debug, clap::Args)]
pub struct DestroyArgs {
    #[command(flatten)]
    pub hosts: HostArgs,
    /// Also delete data: ZooKeeper data directories, broker journals and
    /// shared-file stores. Without it they are kept for a later deploy.
    #[arg(long)]
    pub purge_data: bool,
}

pub fn run(args: DestroyArgs) -> anyhow::Result<()> {
    let (topo, plan) = args.hosts.load()?;
    let all = services(&topo, &plan);
    let progress = Progress::new(args.hosts.plain);
    let fleet = connect_all(&topo, &args.hosts.connect_options(&topo))?;
    stop_services(&fleet, &all, &progress)?;
    let blocks = hosts_block::wanted(&topo, &plan);
    let results = fleet.each(|name, host| {
        progress.step(name, "removing files");
        let here: Vec<&Service<'_>> = all.iter().filter(|s| s.host.name == name).collect();
        let h = topo.host(name);
        let binary = here
            .iter()
            .any(|s| s.broker().is_some())
            .then(|| h.broker_bin.clone());
        let script = removal_script(&here, binary.as_deref(), &h.base_dir, args.purge_data);
        let out = host.run(&script, None).map_err(|e| step(name, e))?;
        if !out.success() {
            return Err(step(name, out.stderr_str()));
        }
        if let Some((path, block)) = blocks.get(name) {
            remove_block(host, path, block).map_err(|e| step(name, e))?;
        }
        Ok(out.stdout_str())
    });
    progress.finish();
    let mut kept = Vec::new();
    for (name, r) in results {
        for line in r?.lines().filter_map(|l| l.strip_prefix("kept ")) {
            kept.push(format!("{name}:{line}"));
        }
    }
    println!(
        "destroyed: {} service(s) stopped and their files removed",
        all.len()
    );
    if !kept.is_empty() {
        println!("kept (data; remove with --purge-data):");
        for k in kept {
            println!("  {k}");
        }
    }
    Ok(())
}

fn step(host: &str, e: impl std::fmt::Display) -> DeployError {
    DeployError::Step {
        host: host.to_string(),
        step: "destroy".into(),
        detail: e.to_string(),
    }
}

/// Removes the block between the plan's markers, keeping the rest of the file.
fn remove_block(
    host: &dyn Host,
    path: &str,
    block: &str,
) -> Result<(), crate::executor::ExecError> {
    let Some(current) = host.read_file(Path::new(path))? else {
        return Ok(());
    };
    let current = String::from_utf8_lossy(&current).into_owned();
    let without = hosts_block::remove(&current, block);
    if without == current {
        return Ok(());
    }
    hosts_block::write(
        host,
        &hosts_block::Update {
            path: path.to_string(),
            old: current,
            new: without,
        },
    )
}

/// One command removing everything of `services` on a host. Directories
/// are removed only when empty (data inside keeps them), except data
/// directories and service directories under `--purge-data`.
fn removal_script(
    services: &[&Service<'_>],
    binary: Option<&Path>,
    base_dir: &Path,
    purge: bool,
) -> String {
    let mut files: Vec<PathBuf> = Vec::new();
    let mut dirs: BTreeSet<PathBuf> = BTreeSet::new();
    let mut data: BTreeSet<PathBuf> = BTreeSet::new();
    let mut units = Vec::new();
    for s in services {
        for f in s
            .plan
            .files
            .iter()
            .filter(|f| f.kind != FileKind::HostsBlock)
        {
            files.push(f.dest.clone());
            if let Some(d) = f.dest.parent() {
                dirs.insert(d.to_path_buf());
            }
        }
        match &s.plan.launch {
            Launch::Process {
                pid_file, log_file, ..
            } => files.extend([pid_file.clone(), log_file.clone()]),
            Launch::Systemd { unit } => units.push(unit.clone()),
        }
        dirs.insert(s.dir());
        data.extend(s.data_dirs().into_iter().filter(|d| is_safe(d)));
    }
    if let Some(b) = binary {
        files.push(b.to_path_buf());
        if let Some(d) = b.parent() {
            dirs.insert(d.to_path_buf());
        }
    }
    dirs.insert(base_dir.to_path_buf());
    let q = |p: &Path| shell_quote(&p.to_string_lossy());
    let mut s = String::new();
    for u in &units {
        let _ = writeln!(s, "systemctl disable {u} >/dev/null 2>&1 || true");
    }
    let _ = writeln!(
        s,
        "rm -f -- {}",
        files.iter().map(|p| q(p)).collect::<Vec<_>>().join(" ")
    );
    // After the unit files are gone, so systemd forgets them.
    if !units.is_empty() {
        s.push_str("systemctl daemon-reload >/dev/null 2>&1 || true\n");
    }
    if purge {
        let _ = writeln!(
            s,
            "rm -rf -- {}",
            data.iter().map(|p| q(p)).collect::<Vec<_>>().join(" ")
        );
    } else {
        for d in &data {
            let _ = writeln!(s, "[ -e {p} ] && echo \"kept {}\"", d.display(), p = q(d));
        }
    }
    // Deepest first, so a parent is tried after its children; `rmdir`
    // leaves anything that still holds something (kept data).
    let mut ordered: Vec<&PathBuf> = dirs.iter().filter(|d| is_safe(d)).collect();
    ordered.sort_by_key(|d| std::cmp::Reverse(d.components().count()));
    for d in ordered {
        let _ = writeln!(s, "rmdir -- {} 2>/dev/null", q(d));
    }
    s.push_str("true\n");
    s
}

/// Never remove `/` or a top-level directory, whatever an inventory says.
fn is_safe(p: &Path) -> bool {
    p.is_absolute() && p.components().count() > 2
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_shallow_paths() {
        assert!(!is_safe(Path::new("/")));
        assert!(!is_safe(Path::new("/var")));
        assert!(!is_safe(Path::new("relative/dir/x")));
        assert!(is_safe(Path::new("/var/lib/amq")));
    }
}
