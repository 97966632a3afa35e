//! `amqctl up INVENTORY`: from an inventory to a proven cluster in one
//! command — plan, deploy (ZooKeeper installed where the inventory says apt
//! and it is missing), verify election, verify failover with one kill —
//! printing each stage and stopping at the first that fails.

use std::path::PathBuf;
use std::time::Duration;

use console::style;

use crate::deploy::progress::Progress;
use crate::deploy::rollout::Timeouts;
use crate::deploy::{connect_all, DeployOptions, HostArgs};
use crate::send::ConnectArgs;
use crate::verify::failover::FailoverArgs;
use crate::verify::{election, failover, Cluster, EXIT_FAILED};

#[derive(Debug, clap::Args)]
pub struct UpArgs {
    #[command(flatten)]
    pub hosts: HostArgs,
    /// The amq-broker binary to ship [default: this amqctl, which is the
    /// broker when installed under the name amq-broker].
    #[arg(long, value_name = "PATH")]
    pub broker_bin: Option<PathBuf>,
    /// Seconds to wait for ZooKeeper quorum and for each broker's role.
    #[arg(long, default_value_t = 60, value_name = "SECS")]
    pub timeout: u64,
    /// The group whose master the failover stage kills [default: the first
    /// master/slave group].
    #[arg(long, value_name = "NAME")]
    pub group: Option<String>,
    /// Stop after verify election (no kill).
    #[arg(long)]
    pub no_failover: bool,
    #[command(flatten)]
    pub connect: ConnectArgs,
}

fn stage(n: u32, name: &str) {
    println!("{}", style(format!("== {n}/4 {name}")).bold().cyan());
}

pub fn run(args: UpArgs) -> anyhow::Result<()> {
    stage(1, "plan");
    let (topo, plan) = args.hosts.load()?;
    print!("{}", crate::plan::render_text(&topo, &plan, None));

    stage(2, "deploy");
    let progress = Progress::new(args.hosts.plain);
    let opts = DeployOptions {
        connect: args.hosts.connect_options(&topo),
        dry_run: false,
        broker_bin: args.broker_bin.clone(),
        timeouts: Timeouts {
            zookeeper: Duration::from_secs(args.timeout),
            broker: Duration::from_secs(args.timeout),
        },
    };
    let deployed = crate::deploy::deploy(&topo, &plan, &opts, &progress);
    progress.finish();
    deployed?;

    stage(3, "verify election");
    let fleet = connect_all(&topo, &args.hosts.connect_options(&topo))?;
    let cluster = Cluster::new(&topo, &plan, &fleet);
    let login = args.connect.options()?;
    let list = election::check(&cluster, &[], &login);
    print!("{}", list.render_text());
    if !list.passed() {
        eprintln!("up: verify election failed; the cluster is deployed but not healthy (amqctl status, amqctl logs)");
        return Err(crate::cli::Exit(EXIT_FAILED).into());
    }

    if args.no_failover {
        println!("== 4/4 verify failover: skipped (--no-failover)");
        return Ok(());
    }
    stage(4, "verify failover (one kill)");
    let fargs = FailoverArgs::for_up(args.hosts.clone(), args.connect.clone(), args.group.clone());
    let outcome = failover::verify(&cluster, &fargs, &mut |l| eprintln!("{l}"))?;
    print!("{}", failover::render_text(&outcome));
    if !outcome.checks.passed() {
        return Err(crate::cli::Exit(EXIT_FAILED).into());
    }
    let urls = plan
        .failover_urls
        .iter()
        .map(|u| format!("  {}: {}", u.group, u.stomp))
        .collect::<Vec<_>>()
        .join("\n");
    println!(
        "{}\nclients connect with:\n{urls}",
        style(format!("cluster {} is up and proven", topo.cluster))
            .green()
            .bold()
    );
    Ok(())
}
