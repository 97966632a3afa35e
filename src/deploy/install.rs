//! Installing ZooKeeper (and a Java runtime for it) with apt where the
//! inventory says `install = "apt"` and preflight found it missing. The nodes
//! still run from their own directories under the base directory, never as
//! the package's system service, so several can share a host.

use crate::executor::Host;
use crate::topology::{self, Topology, ZkInstall};

use super::preflight::Facts;
use super::progress::Progress;
use super::service::Service;
use super::DeployError;

pub fn zookeeper(
    topo: &Topology,
    host: &topology::Host,
    all: &[Service<'_>],
    facts: &Facts,
    exec: &dyn Host,
    progress: &Progress,
) -> Result<(), DeployError> {
    let Some(zk) = &topo.zookeeper else {
        return Ok(());
    };
    let runs_zk = all
        .iter()
        .any(|s| s.host.name == host.name && s.is_zookeeper());
    if !runs_zk || zk.install != ZkInstall::Apt {
        return Ok(());
    }
    let mut packages = Vec::new();
    if !facts.zookeeper_jar {
        packages.push("zookeeper");
    }
    if facts.java.is_none() {
        packages.push("default-jre-headless");
    }
    if packages.is_empty() {
        return Ok(());
    }
    progress.step(
        &host.name,
        &format!("apt-get install {}", packages.join(" ")),
    );
    // policy-rc.d keeps the package from starting its own system-wide
    // ZooKeeper; the lists are refreshed only when the first try fails.
    let install = format!(
        "DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends {}",
        packages.join(" ")
    );
    let script = format!(
        "set -e; prc=/usr/sbin/policy-rc.d; own=0; \
         if [ ! -e $prc ]; then printf '#!/bin/sh\\nexit 101\\n' > $prc; chmod 755 $prc; own=1; fi; \
         trap '[ $own = 1 ] && rm -f $prc' EXIT; \
         {install} || {{ apt-get update -q && {install}; }}"
    );
    let out = exec.run(&script, None).map_err(|e| DeployError::Step {
        host: host.name.clone(),
        step: "install ZooKeeper".into(),
        detail: e.to_string(),
    })?;
    if !out.success() {
        return Err(DeployError::Step {
            host: host.name.clone(),
            step: "install ZooKeeper".into(),
            detail: format!(
                "`{install}` failed (exit {}): {}",
                out.status,
                out.stderr_str()
            ),
        });
    }
    Ok(())
}
