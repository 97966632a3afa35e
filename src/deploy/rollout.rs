//! Starting and restarting services in the order a cluster needs: the
//! ZooKeeper ensemble first (until it has a leader and every node serves),
//! then brokers group by group in inventory order, each waited on until its
//! status endpoint reports a role. Running services whose files changed are
//! restarted one at a time — ZooKeeper followers before the leader, broker
//! slaves before the master — each gated on the cluster being healthy again.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::executor::{FileUpload, Host};
use crate::topology::{Group, Store, Topology};

use super::changes::{Action, HostChanges};
use super::fleet::{parallel, Fleet};
use super::health::{broker_status, zk_srvr, BrokerStatus, ZkStat};
use super::progress::Progress;
use super::service::Service;
use super::{DeployError, WaitFailure};

const POLL: Duration = Duration::from_millis(100);
const PROBE_TIMEOUT: Duration = Duration::from_millis(800);

#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    pub zookeeper: Duration,
    pub broker: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            zookeeper: Duration::from_secs(60),
            broker: Duration::from_secs(60),
        }
    }
}

pub struct Rollout<'a> {
    pub topo: &'a Topology,
    pub services: &'a [Service<'a>],
    pub fleet: &'a Fleet,
    pub changes: &'a BTreeMap<String, HostChanges>,
    pub progress: &'a Progress,
    pub timeouts: Timeouts,
    /// Hosts whose new broker binary waits for the first of their brokers to
    /// be stopped (or started): a binary is never replaced under a running service.
    pub pending_binary: std::sync::Mutex<std::collections::BTreeSet<String>>,
}

impl<'a> Rollout<'a> {
    fn exec(
        &self,
        svc: &Service<'_>,
    ) -> Result<std::sync::Arc<crate::executor::Logged>, DeployError> {
        self.fleet
            .get(&svc.host.name)
            .ok_or_else(|| DeployError::Step {
                host: svc.host.name.clone(),
                step: "connect".into(),
                detail: "host not connected".into(),
            })
    }

    fn action(&self, svc: &Service<'_>) -> Action {
        self.changes
            .get(&svc.host.name)
            .and_then(|c| c.actions.get(&svc.name).copied())
            .unwrap_or(Action::Keep)
    }

    /// Files of a service that wait until it is stopped, plus its host's
    /// pending binary if this is the first broker there to go down or up.
    fn deferred_files(&self, svc: &Service<'_>, include_own: bool) -> Vec<FileUpload> {
        let binary = svc.broker().is_some()
            && self
                .pending_binary
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&svc.host.name);
        let Some(c) = self.changes.get(&svc.host.name) else {
            return Vec::new();
        };
        let mut files = if include_own {
            c.files_of(&svc.name, false)
        } else {
            Vec::new()
        };
        if binary {
            files.extend(c.binary_upload());
        }
        files
    }

    /// Stop, put the service's changed files, start: the unit of a rolling restart.
    fn restart(&self, svc: &Service<'_>, files: &[FileUpload]) -> Result<(), DeployError> {
        let host = self.exec(svc)?;
        self.progress
            .step(&svc.host.name, &format!("stopping {}", svc.name));
        svc.stop(host.as_ref())
            .map_err(|e| step_err(svc, "stop", e))?;
        if !files.is_empty() {
            self.progress.step(
                &svc.host.name,
                &format!("uploading {} file(s) of {}", files.len(), svc.name),
            );
            host.put_files(files)
                .map_err(|e| step_err(svc, "upload", e))?;
        }
        self.start(svc)
    }

    fn start(&self, svc: &Service<'_>) -> Result<(), DeployError> {
        let host = self.exec(svc)?;
        let binary = self.deferred_files(svc, false);
        if !binary.is_empty() {
            self.progress
                .step(&svc.host.name, "uploading the broker binary");
            host.put_files(&binary)
                .map_err(|e| step_err(svc, "upload", e))?;
        }
        self.progress
            .step(&svc.host.name, &format!("starting {}", svc.name));
        let pid = svc
            .start(host.as_ref())
            .map_err(|e| step_err(svc, "start", e))?;
        host.note(&format!("{} started, pid {pid}", svc.name));
        Ok(())
    }

    /// The ZooKeeper ensemble: start what is down, roll what changed, wait for quorum.
    pub fn zookeeper(&self) -> Result<(), DeployError> {
        let zk: Vec<Service<'_>> = self
            .services
            .iter()
            .filter(|s| s.is_zookeeper())
            .cloned()
            .collect();
        // Nothing to do here and no replicated broker about to need the
        // ensemble: leave it alone (`start --node` of a standalone broker).
        let replicated_moves = self.services.iter().any(|s| {
            matches!(s.broker(), Some((g, _)) if matches!(g.store, Store::Replicated(_)))
                && self.action(s) != Action::Keep
        });
        if zk.is_empty() || (!replicated_moves && zk.iter().all(|s| self.action(s) == Action::Keep))
        {
            return Ok(());
        }
        let to_start: Vec<&Service<'_>> = zk
            .iter()
            .filter(|s| self.action(s) == Action::Start)
            .collect();
        // All at once: a lone node cannot form a quorum.
        for r in parallel(&to_start, |s| self.start(s)) {
            r?;
        }
        let mut to_restart: Vec<&Service<'_>> = zk
            .iter()
            .filter(|s| self.action(s) == Action::Restart)
            .collect();
        if to_restart.is_empty() {
            return self.wait_ensemble(&zk);
        }
        self.wait_ensemble(&zk)?;
        // Followers first, the leader last: one re-election, not several.
        let modes = zk_modes(&zk);
        to_restart.sort_by_key(|s| {
            modes
                .get(&s.name)
                .map(|m| m.mode == "leader")
                .unwrap_or(false)
        });
        for s in to_restart {
            self.restart(s, &self.deferred_files(s, true))?;
            self.wait_ensemble(&zk)?;
        }
        Ok(())
    }

    /// Waits until every node serves and exactly one leads.
    fn wait_ensemble(&self, zk: &[Service<'_>]) -> Result<(), DeployError> {
        let deadline = Instant::now() + self.timeouts.zookeeper;
        for s in zk {
            self.progress.step(
                &s.host.name,
                &format!("waiting for ZooKeeper quorum ({})", s.name),
            );
        }
        loop {
            let stats = zk_modes(zk);
            let leaders = stats.values().filter(|s| s.mode == "leader").count();
            let serving = stats.len();
            let standalone = zk.len() == 1 && serving == 1;
            if serving == zk.len() && (leaders == 1 || standalone) {
                self.progress.line(&format!(
                    "ZooKeeper: {} node(s) serving, leader {}",
                    serving,
                    stats
                        .iter()
                        .find(|(_, s)| s.mode == "leader" || standalone)
                        .map(|(n, _)| n.as_str())
                        .unwrap_or("-")
                ));
                return Ok(());
            }
            if Instant::now() >= deadline {
                let down: Vec<&Service<'_>> =
                    zk.iter().filter(|s| !stats.contains_key(&s.name)).collect();
                let culprit = down.first().copied().unwrap_or(&zk[0]);
                return Err(WaitFailure {
                    host: culprit.host.name.clone(),
                    service: culprit.name.clone(),
                    waited: Some(self.timeouts.zookeeper),
                    condition: format!(
                        "a ZooKeeper quorum ({} of {} serving, {} leader(s); not serving: {})",
                        serving,
                        zk.len(),
                        leaders,
                        down.iter()
                            .map(|s| format!("{} on {}", s.name, s.host.name))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                    log: culprit.log_file().display().to_string(),
                    log_tail: self.log_tail(culprit),
                }
                .into());
            }
            std::thread::sleep(POLL);
        }
    }

    /// Brokers group by group in inventory order.
    pub fn brokers(&self) -> Result<(), DeployError> {
        for group in &self.topo.groups {
            let members: Vec<&Service<'_>> = self
                .services
                .iter()
                .filter(|s| {
                    s.broker()
                        .map(|(g, _)| g.name == group.name)
                        .unwrap_or(false)
                })
                .collect();
            if members.iter().all(|s| self.action(s) == Action::Keep) {
                continue;
            }
            for s in members.iter().filter(|s| self.action(s) == Action::Start) {
                self.start(s)?;
                self.wait_role(s)?;
            }
            let mut rolling: Vec<&&Service<'_>> = members
                .iter()
                .filter(|s| self.action(s) == Action::Restart)
                .collect();
            if !rolling.is_empty() {
                self.wait_group(group, &members)?;
                let roles = broker_roles(&members);
                // Slaves (and anything not serving) first, the master last.
                rolling.sort_by_key(|s| roles.get(&s.name).map(|r| r.is_active()).unwrap_or(false));
                for s in rolling {
                    self.restart(s, &self.deferred_files(s, true))?;
                    self.wait_role(s)?;
                    self.wait_group(group, &members)?;
                }
            }
            self.wait_group(group, &members)?;
        }
        Ok(())
    }

    /// Waits until the broker's status endpoint reports a role, failing
    /// early if its process is gone.
    fn wait_role(&self, s: &Service<'_>) -> Result<BrokerStatus, DeployError> {
        let host = self.exec(s)?;
        let deadline = Instant::now() + self.timeouts.broker;
        self.progress.step(
            &s.host.name,
            &format!("waiting for {} to report a role", s.name),
        );
        let mut polls = 0u32;
        loop {
            let last = match broker_status(&s.probe_addr(), PROBE_TIMEOUT) {
                Ok(st) => {
                    self.progress
                        .step(&s.host.name, &format!("{} is {}", s.name, st.role));
                    return Ok(st);
                }
                Err(e) => e.to_string(),
            };
            polls += 1;
            let gone = polls.is_multiple_of(10) && matches!(s.running_pid(host.as_ref()), Ok(None));
            if gone || Instant::now() >= deadline {
                return Err(WaitFailure {
                    host: s.host.name.clone(),
                    service: s.name.clone(),
                    waited: (!gone).then_some(self.timeouts.broker),
                    condition: if gone {
                        "exited before reporting a role".to_string()
                    } else {
                        format!("a role on http://{}/status (last: {last})", s.probe_addr())
                    },
                    log: s.log_file().display().to_string(),
                    log_tail: self.log_tail(s),
                }
                .into());
            }
            std::thread::sleep(POLL);
        }
    }

    /// A master/slave group is healthy with exactly one master; a standalone
    /// broker when it reports `standalone`.
    fn wait_group(&self, group: &Group, members: &[&Service<'_>]) -> Result<(), DeployError> {
        let deadline = Instant::now() + self.timeouts.broker;
        loop {
            let roles = broker_roles(members);
            let masters: Vec<&String> = roles
                .iter()
                .filter(|(_, r)| r.is_active())
                .map(|(n, _)| n)
                .collect();
            let ok = match group.store {
                Store::Standalone => roles.len() == members.len() && masters.len() == members.len(),
                _ => masters.len() == 1,
            };
            if ok {
                self.progress.line(&format!(
                    "group {}: {}",
                    group.name,
                    members
                        .iter()
                        .map(|s| format!(
                            "{}={}",
                            s.name,
                            roles
                                .get(&s.name)
                                .map(|r| r.role.as_str())
                                .unwrap_or("down")
                        ))
                        .collect::<Vec<_>>()
                        .join(" ")
                ));
                return Ok(());
            }
            if Instant::now() >= deadline {
                let s = members[0];
                return Err(WaitFailure {
                    host: s.host.name.clone(),
                    service: s.name.clone(),
                    waited: Some(self.timeouts.broker),
                    condition: format!(
                        "group {} to have exactly one master (masters now: {})",
                        group.name,
                        if masters.is_empty() {
                            "none".to_string()
                        } else {
                            masters
                                .iter()
                                .map(|m| m.as_str())
                                .collect::<Vec<_>>()
                                .join(", ")
                        }
                    ),
                    log: s.log_file().display().to_string(),
                    log_tail: self.log_tail(s),
                }
                .into());
            }
            std::thread::sleep(POLL);
        }
    }

    fn log_tail(&self, s: &Service<'_>) -> String {
        let Ok(host) = self.exec(s) else {
            return String::new();
        };
        host.run(&s.log_command(15), None)
            .map(|o| o.stdout_str())
            .unwrap_or_default()
    }
}

/// The mode of every ZooKeeper node that answers `srvr` (probed in parallel).
pub fn zk_modes(zk: &[Service<'_>]) -> BTreeMap<String, ZkStat> {
    let results = parallel(zk, |s| zk_srvr(&s.probe_addr(), PROBE_TIMEOUT));
    zk.iter()
        .zip(results)
        .filter_map(|(s, r)| r.ok().map(|st| (s.name.clone(), st)))
        .collect()
}

/// The status of every broker that answers (probed in parallel).
pub fn broker_roles(members: &[&Service<'_>]) -> BTreeMap<String, BrokerStatus> {
    let results = parallel(members, |s| broker_status(&s.probe_addr(), PROBE_TIMEOUT));
    members
        .iter()
        .zip(results)
        .filter_map(|(s, r)| r.ok().map(|st| (s.name.clone(), st)))
        .collect()
}

fn step_err(svc: &Service<'_>, step: &str, e: impl std::fmt::Display) -> DeployError {
    DeployError::Step {
        host: svc.host.name.clone(),
        step: format!("{step} {}", svc.name),
        detail: e.to_string(),
    }
}
