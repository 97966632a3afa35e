//! `amqctl down INVENTORY`: the opposite of `up` — stop every service
//! (brokers first, the ZooKeeper ensemble last), keeping files and data;
//! `--destroy` also removes what deploy put there, `--purge-data` the data.

use crate::deploy::progress::Progress;
use crate::deploy::service::services;
use crate::deploy::{connect_all, HostArgs};
use crate::destroy::DestroyArgs;
use crate::stop::stop_services;

#[derive(Debug, clap::Args)]
pub struct DownArgs {
    #[command(flatten)]
    pub hosts: HostArgs,
    /// Also remove the deployed files (as `amqctl destroy`).
    #[arg(long)]
    pub destroy: bool,
    /// With --destroy: delete ZooKeeper data, journals and shared stores too.
    #[arg(long, requires = "destroy")]
    pub purge_data: bool,
}

pub fn run(args: DownArgs) -> anyhow::Result<()> {
    if args.destroy {
        return crate::destroy::run(DestroyArgs {
            hosts: args.hosts,
            purge_data: args.purge_data,
        });
    }
    let (topo, plan) = args.hosts.load()?;
    let all = services(&topo, &plan);
    let progress = Progress::new(args.hosts.plain);
    let fleet = connect_all(&topo, &args.hosts.connect_options(&topo))?;
    let result = stop_services(&fleet, &all, &progress);
    progress.finish();
    result?;
    println!(
        "cluster {} is down: {} service(s) stopped; files and data kept (amqctl up to start again)",
        topo.cluster,
        all.len()
    );
    Ok(())
}
