//! `amqctl stop INVENTORY [--node NAME]`: stop services (all, one, or every
//! service on one host) — brokers first, in reverse start order, then the
//! ZooKeeper ensemble — leaving files and data in place.

use crate::deploy::fleet::{parallel, Fleet};
use crate::deploy::progress::Progress;
use crate::deploy::rollout::broker_roles;
use crate::deploy::service::{select, services, Service};
use crate::deploy::{connect_all, DeployError, HostArgs};

#[derive(Debug, clap::Args)]
pub struct StopArgs {
    #[command(flatten)]
    pub hosts: HostArgs,
    /// Only this service (e.g. `zk1`, `broker-a`) or every service on this host.
    #[arg(long, value_name = "NAME")]
    pub node: Option<String>,
}

pub fn run(args: StopArgs) -> anyhow::Result<()> {
    let (topo, plan) = args.hosts.load()?;
    let all = services(&topo, &plan);
    let picked = select(&all, args.node.as_deref())?;
    let mut opts = args.hosts.connect_options(&topo);
    opts.only = picked.iter().map(|s| s.host.name.clone()).collect();
    let progress = Progress::new(args.hosts.plain);
    let fleet = connect_all(&topo, &opts)?;
    let result = stop_services(&fleet, &picked, &progress);
    progress.finish();
    result?;
    println!(
        "stopped: {}",
        picked
            .iter()
            .map(|s| s.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    );
    Ok(())
}

/// Stops `services`: brokers one by one in reverse start order, masters
/// last, then ZooKeeper nodes together.
pub fn stop_services(
    fleet: &Fleet,
    services: &[Service<'_>],
    progress: &Progress,
) -> Result<(), DeployError> {
    let stop = |s: &Service<'_>| -> Result<(), DeployError> {
        let host = fleet.get(&s.host.name).ok_or_else(|| DeployError::Step {
            host: s.host.name.clone(),
            step: format!("stop {}", s.name),
            detail: "host not connected".into(),
        })?;
        progress.step(&s.host.name, &format!("stopping {}", s.name));
        s.stop(host.as_ref()).map_err(|e| DeployError::Step {
            host: s.host.name.clone(),
            step: format!("stop {}", s.name),
            detail: e.to_string(),
        })?;
        progress.step(&s.host.name, &format!("{} stopped", s.name));
        Ok(())
    };
    let mut brokers: Vec<&Service<'_>> = services
        .iter()
        .rev()
        .filter(|s| !s.is_zookeeper())
        .collect();
    // Within the reverse order, serving brokers (masters) go after the
    // others, so no slave is promoted only to be stopped a moment later.
    let roles = broker_roles(&brokers);
    brokers.sort_by_key(|s| roles.get(&s.name).is_some_and(|r| r.is_active()));
    for s in brokers {
        stop(s)?;
    }
    let zk: Vec<&Service<'_>> = services.iter().filter(|s| s.is_zookeeper()).collect();
    parallel(&zk, |s| stop(s)).into_iter().collect()
}
