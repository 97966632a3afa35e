//! `amqctl logs INVENTORY NODE [-n LINES]`: the last lines of a service's
//! output (its log file, or its journal under systemd), fetched from its host.

use std::io::Write as _;

use crate::deploy::service::{select, services};
use crate::deploy::{connect_all, HostArgs};
use crate::executor::Host;

#[derive(Debug, clap::Args)]
pub struct LogsArgs {
    #[command(flatten)]
    pub hosts: HostArgs,
    /// The service (e.g. `zk1`, `broker-a`), or a host for all of its services.
    pub node: String,
    /// How many lines from the end.
    #[arg(short = 'n', long, default_value_t = 100)]
    pub lines: usize,
}

pub fn run(args: LogsArgs) -> anyhow::Result<()> {
    let (topo, plan) = args.hosts.load()?;
    let all = services(&topo, &plan);
    let picked = select(&all, Some(&args.node))?;
    let mut opts = args.hosts.connect_options(&topo);
    opts.only = picked.iter().map(|s| s.host.name.clone()).collect();
    let fleet = connect_all(&topo, &opts)?;
    let mut stdout = std::io::stdout().lock();
    for s in &picked {
        let host = fleet.get(&s.host.name).expect("connected above");
        let out = host.run(&s.log_command(args.lines), None)?;
        if picked.len() > 1 {
            writeln!(
                stdout,
                "==> {} on {} ({}) <==",
                s.name,
                s.host.name,
                s.log_file().display()
            )?;
        }
        stdout.write_all(&out.stdout)?;
    }
    Ok(())
}
