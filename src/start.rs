//! `amqctl start INVENTORY [--node NAME]`: start services that are not
//! running, in the deploy's order and with its health gates (ZooKeeper
//! quorum, each broker's role, one master per group). Files are not
//! touched: that is `deploy`.

use std::collections::BTreeMap;

use crate::deploy::changes::{Action, HostChanges};
use crate::deploy::progress::Progress;
use crate::deploy::rollout::{Rollout, Timeouts};
use crate::deploy::service::{select, services, state_of, Service};
use crate::deploy::{connect_all, summary, DeployError, HostArgs};

#[derive(Debug, clap::Args)]
pub struct StartArgs {
    #[command(flatten)]
    pub hosts: HostArgs,
    /// Only this service (e.g. `zk1`, `broker-a`) or every service on this host.
    #[arg(long, value_name = "NAME")]
    pub node: Option<String>,
    /// Seconds to wait for ZooKeeper quorum and for each broker's role.
    #[arg(long, default_value_t = 60, value_name = "SECS")]
    pub timeout: u64,
}

pub fn run(args: StartArgs) -> anyhow::Result<()> {
    let (topo, plan) = args.hosts.load()?;
    let all = services(&topo, &plan);
    let picked = select(&all, args.node.as_deref())?;
    let progress = Progress::new(args.hosts.plain);
    let fleet = connect_all(&topo, &args.hosts.connect_options(&topo))?;

    let states = fleet.each(|name, host| {
        let here: Vec<Service<'_>> = all
            .iter()
            .filter(|s| s.host.name == name)
            .cloned()
            .collect();
        state_of(host, &here).map(|pids| {
            here.iter()
                .map(|s| s.name.clone())
                .zip(pids)
                .collect::<BTreeMap<_, _>>()
        })
    });
    let mut changes = BTreeMap::new();
    let mut started = Vec::new();
    for (host, pids) in states {
        let pids = pids.map_err(|e| DeployError::Step {
            host: host.clone(),
            step: "read service state".into(),
            detail: e.to_string(),
        })?;
        let actions = pids
            .iter()
            .map(|(svc, pid)| {
                let wanted = picked.iter().any(|p| &p.name == svc);
                let action = if wanted && pid.is_none() {
                    started.push(svc.clone());
                    Action::Start
                } else {
                    Action::Keep
                };
                (svc.clone(), action)
            })
            .collect();
        changes.insert(
            host,
            HostChanges {
                files: Vec::new(),
                actions,
                pids,
            },
        );
    }
    let timeout = std::time::Duration::from_secs(args.timeout);
    let rollout = Rollout {
        topo: &topo,
        services: &all,
        fleet: &fleet,
        changes: &changes,
        progress: &progress,
        timeouts: Timeouts {
            zookeeper: timeout,
            broker: timeout,
        },
        pending_binary: Default::default(),
    };
    let result = rollout.zookeeper().and_then(|()| rollout.brokers());
    match &result {
        Ok(()) => progress.clear(),
        Err(_) => progress.finish(),
    }
    result?;
    print!(
        "{}",
        summary::render(&summary::collect(&fleet, &all), &plan)
    );
    if started.is_empty() {
        println!("already running: nothing to start");
    } else {
        println!("started: {}", started.join(", "));
    }
    Ok(())
}
