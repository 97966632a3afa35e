//! `amqctl status INVENTORY [--format text|json]`: every service's pid,
//! broker role (master/slave/standalone) or ZooKeeper mode, what the broker
//! reports beyond that (journal position, queue depths), which nodes are
//! down and which hosts cannot be reached. Exit code 3 when anything is down.

use crate::deploy::fleet::Fleet;
use crate::deploy::service::services;
use crate::deploy::{summary, HostArgs};
/// `--format text|json`, shared with `plan` (and `verify`, which imports it from here).
pub use crate::plan::Format;

#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    #[command(flatten)]
    pub hosts: HostArgs,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
}

/// Exit code when a service is down or a host unreachable.
pub const EXIT_DEGRADED: u8 = 3;

pub fn run(args: StatusArgs) -> anyhow::Result<()> {
    let (topo, plan) = args.hosts.load()?;
    let all = services(&topo, &plan);
    // Unreachable hosts are part of the answer, not a reason to give up.
    let (fleet, errors) = Fleet::connect(&topo, &args.hosts.connect_options(&topo));
    let states = summary::collect(&fleet, &all);
    let degraded =
        !errors.is_empty() || states.iter().any(|s| s.pid.is_none() || s.detail.is_none());
    match args.format {
        Format::Json => {
            let doc = serde_json::json!({
                "cluster": topo.cluster,
                "services": states,
                "unreachable": errors.iter().map(|e| e.to_string()).collect::<Vec<_>>(),
                "failover_urls": plan.failover_urls,
                "healthy": !degraded,
            });
            println!("{}", serde_json::to_string_pretty(&doc)?);
        }
        Format::Text => {
            print!("{}", summary::render(&states, &plan));
            for e in &errors {
                println!("unreachable: {e}");
            }
        }
    }
    if degraded {
        return Err(crate::cli::Exit(EXIT_DEGRADED).into());
    }
    Ok(())
}
