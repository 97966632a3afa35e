//! The `amq-broker` program: `amq-broker --config activemq.xml [--status
//! HOST:PORT] [-Dname=value]...`. In the library so that `amqctl` can also
//! run as the broker when installed under that name (one binary to ship).
//!
//! Reads and validates the configuration (errors exit non-zero before
//! anything listens), opens the store, binds the status endpoint and the
//! STOMP connectors, and serves until SIGTERM/SIGINT: then clients are told
//! (ERROR) and disconnected and the journal is synced before exiting.

use crate::broker::{Broker, BrokerSettings};
use crate::config::{BrokerConfig, Persistence, Placeholders};
use crate::role::Role;
use crate::store::{Journal, JournalOptions, Store};
use crate::{server, status};
use anyhow::{bail, Context};
use clap::Parser;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

#[derive(Parser)]
#[command(
    version,
    about = "A STOMP message broker configured by ActiveMQ's activemq.xml"
)]
struct Args {
    /// activemq.xml to run (a path, or ActiveMQ's xbean:file:PATH).
    #[arg(long, short = 'c', value_name = "PATH")]
    config: PathBuf,
    /// Serve /status (JSON) and /metrics (Prometheus) on HOST:PORT.
    #[arg(long, value_name = "HOST:PORT")]
    status: Option<String>,
    /// Placeholder values, like Java system properties:
    /// -Dactivemq.data=/var/lib/amq. ACTIVEMQ_DATA etc. work too.
    #[arg(short = 'D', value_name = "NAME=VALUE", value_parser = parse_define)]
    define: Vec<(String, String)>,
    /// Validate the configuration, print its warnings, and exit.
    #[arg(long)]
    check: bool,
}

fn parse_define(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .ok_or_else(|| format!("{s:?} is not NAME=VALUE"))
}

/// Runs the broker with the process arguments; the exit code says how it
/// ended.
pub fn main() -> ExitCode {
    let level = std::env::var("AMQ_LOG")
        .ok()
        .and_then(|l| l.parse().ok())
        .unwrap_or(tracing::Level::INFO);
    tracing_subscriber::fmt()
        .with_max_level(level)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let args = Args::parse();
    let config = match load(&args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("amq-broker: {e:#}");
            return ExitCode::from(2);
        }
    };
    if args.check {
        println!(
            "{}: broker {} OK ({} warnings)",
            config.file.display(),
            config.broker_name,
            config.warnings.len()
        );
        return ExitCode::SUCCESS;
    }
    match runtime().block_on(run(config, args.status)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("amq-broker: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn load(args: &Args) -> anyhow::Result<BrokerConfig> {
    let mut placeholders = Placeholders::for_config_file(&args.config);
    for (k, v) in &args.define {
        placeholders.set(k, v);
    }
    let config = BrokerConfig::load(&args.config, &placeholders)?;
    for w in &config.warnings {
        tracing::warn!("{w}");
    }
    if config.stomp_connectors().next().is_none() {
        bail!(
            "{}: no stomp:// transportConnector: amq-broker serves STOMP; add e.g. <transportConnector name=\"stomp\" uri=\"stomp://0.0.0.0:61613\"/>",
            config.file.display()
        );
    }
    Ok(config)
}

/// The journal of a standalone broker (`None` for `persistent="false"`).
fn open_store(config: &BrokerConfig) -> anyhow::Result<Option<Arc<Journal>>> {
    match &config.persistence {
        Persistence::Memory => Ok(None),
        Persistence::KahaDb(k) => {
            let options = JournalOptions {
                segment_size: k.journal_max_file_length,
                ..JournalOptions::default()
            };
            let journal = Journal::open(&k.directory, options)
                .with_context(|| format!("opening the journal in {}", k.directory.display()))?;
            Ok(Some(Arc::new(journal)))
        }
        Persistence::ReplicatedLevelDb(rl) => {
            let journal =
                Journal::open(&rl.directory, JournalOptions::default()).with_context(|| {
                    format!("opening the replicated store in {}", rl.directory.display())
                })?;
            Ok(Some(Arc::new(journal)))
        }
    }
}

/// One worker thread fewer than there are cores: the journal writer thread
/// (write + fdatasync for every group commit) keeps a core of its own, and
/// on small machines a synchronous producer's send -> fsync -> receipt chain
/// then hops between fewer threads (1+1 persistent: ~4.6k instead of ~3.7k
/// msg/s on 2 cores, `bench/broker.sh`). TOKIO_WORKER_THREADS overrides.
fn runtime() -> tokio::runtime::Runtime {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if std::env::var_os("TOKIO_WORKER_THREADS").is_none() {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        builder.worker_threads(cores.saturating_sub(1).max(1));
    }
    builder.enable_all().build().expect("tokio runtime")
}

async fn run(config: BrokerConfig, status_addr: Option<String>) -> anyhow::Result<()> {
    // KahaDB: the directory's exclusive lock first (a shared-file slave
    // waits here, connectors closed, journal untouched).
    let lock = match &config.persistence {
        Persistence::KahaDb(k) => {
            let (interval, fail) = k.shared_file_locker.as_ref().map_or((10_000, false), |l| {
                (l.lock_acquire_sleep_interval, l.fail_if_locked)
            });
            Some(
                crate::lock::wait_as_slave(
                    &k.directory,
                    Duration::from_millis(interval),
                    fail,
                    BrokerSettings::from_config(&config),
                    status_addr.as_deref(),
                )
                .await?,
            )
        }
        _ => None,
    };
    let journal = open_store(&config)?;
    let replicated = match &config.persistence {
        Persistence::ReplicatedLevelDb(rl) => Some(rl.clone()),
        _ => None,
    };
    let repl = replicated.as_ref().zip(journal.clone()).map(|(rl, j)| {
        crate::replication::Replicator::new(
            j as Arc<dyn Store>,
            crate::ha::replication_settings(rl),
        )
    });
    let store = match &repl {
        Some(r) => Some(crate::replication::ReplicatedStore::new(r.clone()) as Arc<dyn Store>),
        None => journal.clone().map(|j| j as Arc<dyn Store>),
    };
    let role = match (&repl, &config.persistence) {
        (Some(_), _) => Role::Slave { master: None },
        (None, Persistence::KahaDb(k)) if k.shared_file_locker.is_some() => Role::Master,
        _ => Role::Standalone,
    };
    let broker = Broker::new(BrokerSettings::from_config(&config), store, role)
        .context("recovering the journal")?;
    let status = broker.status();
    tracing::info!(
        broker = %config.broker_name,
        recovered = status.destinations.iter().map(|d| d.depth).sum::<usize>(),
        position = status.journal.as_ref().map(|j| j.position).unwrap_or(0),
        "store ready"
    );

    let shutdown = CancellationToken::new();
    let status_task = match status_addr {
        Some(addr) => {
            let listener = tokio::net::TcpListener::bind(&addr)
                .await
                .with_context(|| format!("cannot listen on {addr} for the status endpoint"))?;
            tracing::info!(address = %listener.local_addr()?, "status endpoint: /status, /metrics");
            Some(tokio::spawn(status::run(
                listener,
                broker.clone(),
                shutdown.clone(),
            )))
        }
        None => None,
    };
    let connectors = server::connectors(&config);
    // An elected broker binds its connectors only once it is master.
    let listeners = match repl {
        Some(_) => None,
        None => Some(server::bind(&connectors).await?),
    };
    tracing::info!(broker = %config.broker_name, "started");

    let expiry = tokio::spawn({
        let broker = broker.clone();
        let shutdown = shutdown.clone();
        async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            while tokio::select! { _ = tick.tick() => true, _ = shutdown.cancelled() => false } {
                let _ = broker.expire();
            }
        }
    });
    tokio::spawn(stop_on_signal_or_failure(broker.failed(), shutdown.clone()));
    if let (Some(rl), Some(r)) = (&replicated, &repl) {
        crate::ha::start(&config, rl, broker.clone(), r.clone(), shutdown.clone()).await?;
    }
    let lock_guard = match (lock, &config.persistence) {
        (Some(lock), Persistence::KahaDb(k)) => Some(tokio::spawn(crate::lock::hold(
            lock,
            Duration::from_millis(k.lock_keep_alive_period),
            broker.clone(),
            shutdown.clone(),
        ))),
        _ => None,
    };
    // Advisories and network connectors (bridges run while we serve clients).
    let network = tokio::spawn(crate::network::run(
        broker.clone(),
        config.clone(),
        shutdown.clone(),
    ));

    server::serve(broker.clone(), connectors, listeners, shutdown.clone()).await?;
    shutdown.cancel();
    let lost_lock = match lock_guard {
        Some(g) => g.await?,
        None => None,
    };
    let _ = expiry.await;
    let _ = network.await;
    if let Some(t) = status_task {
        let _ = t.await;
    }
    let failed = broker.failed().is_cancelled();
    drop(broker);
    if let Some(j) = journal {
        tokio::task::spawn_blocking(move || j.flush()).await?;
        tracing::info!("journal synced");
    }
    if let Some(e) = lost_lock {
        bail!("{e}");
    }
    if failed {
        bail!("stopped after a store failure");
    }
    tracing::info!("stopped");
    Ok(())
}

async fn stop_on_signal_or_failure(failed: CancellationToken, shutdown: CancellationToken) {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
        _ = int.recv() => tracing::info!("SIGINT: shutting down"),
        _ = failed.cancelled() => tracing::error!("store failed: shutting down"),
    }
    shutdown.cancel();
}
