//! The command line. One subcommand per module: add a variant to [`Command`]
//! holding that module's clap `Args`, and one arm to [`Command::run`].

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::diag::Diagnostics;

#[derive(Debug, Parser)]
#[command(
    name = "amqctl",
    version,
    about = "Plan, deploy and verify ActiveMQ-style broker clusters from one inventory"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Validate an inventory, render every file and show what will happen.
    Plan(crate::plan::PlanArgs),
    /// Ship the broker and every rendered file to the hosts and start the
    /// cluster in order, idempotently (`--dry-run` shows the diff).
    Deploy(crate::deploy::DeployArgs),
    /// Every service's pid, role or ZooKeeper mode, and what is down.
    Status(crate::status::StatusArgs),
    /// Stop services (all, or `--node NAME`), brokers first.
    Stop(crate::stop::StopArgs),
    /// Start services that are not running, in order, with health gates.
    Start(crate::start::StartArgs),
    /// Stop everything and remove what deploy put there (data only with `--purge-data`).
    Destroy(crate::destroy::DestroyArgs),
    /// The last lines of a service's log.
    Logs(crate::logs::LogsArgs),
    /// Send messages to a destination through a stomp:// or failover: URL.
    Send(crate::send::SendArgs),
    /// Receive messages from a destination and print them.
    Receive(crate::receive::ReceiveArgs),
    /// STOMP load: P producers + C consumers, receipted throughput and latency.
    Bench(crate::bench::BenchArgs),
    /// Prove the cluster: `verify election` (one master, slaves refuse,
    /// quorum) and `verify failover` (kill the master under load, lose nothing).
    Verify(crate::verify::VerifyArgs),
    /// plan → deploy → verify election → verify failover (one kill).
    Up(crate::up::UpArgs),
    /// Stop every service of the cluster (`--destroy` also removes its files).
    Down(crate::down::DownArgs),
}

impl Command {
    pub fn run(self) -> anyhow::Result<()> {
        match self {
            Command::Plan(args) => crate::plan::run(args),
            Command::Deploy(args) => crate::deploy::run(args),
            Command::Status(args) => crate::status::run(args),
            Command::Stop(args) => crate::stop::run(args),
            Command::Start(args) => crate::start::run(args),
            Command::Destroy(args) => crate::destroy::run(args),
            Command::Logs(args) => crate::logs::run(args),
            Command::Send(args) => crate::send::run(args),
            Command::Receive(args) => crate::receive::run(args),
            Command::Bench(args) => crate::bench::run(args),
            Command::Verify(args) => crate::verify::run(args),
            Command::Up(args) => crate::up::run(args),
            Command::Down(args) => crate::down::run(args),
        }
    }
}

/// Exit codes: 0 ok (warnings allowed), 1 invalid inventory or failure, 2 usage.
pub const EXIT_OK: u8 = 0;
pub const EXIT_INVALID: u8 = 1;
pub const EXIT_USAGE: u8 = 2;

/// A usage mistake clap cannot see (e.g. two options that exclude each other
/// only in some cases): exits 2 like clap's own usage errors.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

/// Ends the process with this exit code; the command has already printed
/// what went wrong (e.g. `plan --format json` prints its errors as JSON).
#[derive(Debug, thiserror::Error)]
#[error("exit code {0}")]
pub struct Exit(pub u8);

/// Parses the command line and runs it; maps errors to exit codes and prints
/// them (inventory diagnostics with their source excerpts).
pub fn main() -> ExitCode {
    let cli = Cli::parse(); // prints usage errors itself and exits 2
    match cli.command.run() {
        Ok(()) => ExitCode::from(EXIT_OK),
        Err(e) => {
            if let Some(Exit(code)) = e.downcast_ref::<Exit>() {
                ExitCode::from(*code)
            } else if let Some(d) = e.downcast_ref::<Diagnostics>() {
                eprint!("{}", d.render());
                ExitCode::from(EXIT_INVALID)
            } else if let Some(u) = e.downcast_ref::<UsageError>() {
                eprintln!("error: {u}");
                ExitCode::from(EXIT_USAGE)
            } else {
                eprintln!("error: {e:#}");
                ExitCode::from(EXIT_INVALID)
            }
        }
    }
}
