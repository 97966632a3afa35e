//! `amqctl send URL DESTINATION`: send messages through the failover client,
//! for trying a cluster by hand (and for scripts: a non-zero exit means some
//! message is not confirmed).

use amq_broker::client::{ConnectOptions, OutgoingMessage};
use amq_broker::failover::{EventKind, FailoverClient, FailoverEvent, FailoverUri};
use anyhow::{bail, Context};
use std::path::PathBuf;
use std::time::{Duration, Instant};
use tokio::sync::broadcast;

/// How to reach and log in to the broker; shared by send, receive and bench.
#[derive(Debug, Clone, clap::Args)]
pub struct ConnectArgs {
    /// STOMP login. The passcode comes from the AMQ_PASSWORD environment
    /// variable or --password-file, never from the command line.
    #[arg(long, env = "AMQ_USER")]
    pub user: Option<String>,
    /// File holding the passcode (first line).
    #[arg(long, value_name = "PATH")]
    pub password_file: Option<PathBuf>,
    /// Print every connection event (connects, failed attempts, back-off)
    /// to stderr; disconnects and reconnects are always printed.
    #[arg(long, short)]
    pub verbose: bool,
}

impl ConnectArgs {
    pub fn options(&self) -> anyhow::Result<ConnectOptions> {
        let passcode = match &self.password_file {
            Some(path) => Some(
                std::fs::read_to_string(path)
                    .with_context(|| format!("reading the passcode from {}", path.display()))?
                    .lines()
                    .next()
                    .unwrap_or_default()
                    .to_owned(),
            ),
            None => std::env::var("AMQ_PASSWORD").ok(),
        };
        Ok(ConnectOptions {
            login: self.user.clone(),
            passcode,
            ..ConnectOptions::default()
        })
    }

    /// Connects (waiting as the URL's options say) and prints the client's
    /// events to stderr from a background task.
    pub async fn connect(&self, url: &str) -> anyhow::Result<FailoverClient> {
        let uri = FailoverUri::parse(url).with_context(|| format!("broker URL {url:?}"))?;
        let (client, mut events) = FailoverClient::start_observed(uri, self.options()?);
        let verbose = self.verbose;
        tokio::spawn(async move {
            loop {
                match events.recv().await {
                    Ok(e) => print_event(&e, verbose),
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        eprintln!("({n} connection events not shown)")
                    }
                    Err(broadcast::error::RecvError::Closed) => break,
                }
            }
        });
        client.wait_connected().await?;
        Ok(client)
    }
}

fn print_event(e: &FailoverEvent, verbose: bool) {
    let notable = matches!(
        e.kind,
        EventKind::Disconnected { .. }
            | EventKind::Reconnected { .. }
            | EventKind::Redirected { .. }
            | EventKind::PriorityBackup { .. }
            | EventKind::GaveUp { .. }
    );
    if verbose || notable {
        eprintln!("{e}");
    }
}

fn parse_header(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_owned(), v.to_owned())),
        _ => Err(format!("expected NAME=VALUE, got {s:?}")),
    }
}

#[derive(Debug, clap::Args)]
pub struct SendArgs {
    /// stomp://HOST:PORT, or failover:(stomp://H1:P1,stomp://H2:P2)?OPTIONS
    /// with ActiveMQ's failover options.
    pub url: String,
    /// /queue/NAME or /topic/NAME.
    pub destination: String,
    /// How many messages.
    #[arg(long, short = 'n', default_value_t = 1)]
    pub count: u64,
    /// Persistent messages: each is confirmed by a receipt once the broker
    /// stored it, and re-sent after a failover until it is.
    #[arg(long)]
    pub persistent: bool,
    /// Ask for a receipt also for non-persistent messages.
    #[arg(long)]
    pub receipt: bool,
    /// Message body; `{n}` becomes the message number (default "message {n}").
    #[arg(long, conflicts_with_all = ["body_file", "size"])]
    pub body: Option<String>,
    /// Send this file's content as the body.
    #[arg(long, value_name = "PATH", conflicts_with = "size")]
    pub body_file: Option<PathBuf>,
    /// A body of this many bytes.
    #[arg(long, value_name = "BYTES")]
    pub size: Option<usize>,
    /// Extra header NAME=VALUE (repeatable).
    #[arg(long = "header", short = 'H', value_parser = parse_header)]
    pub headers: Vec<(String, String)>,
    /// Receipted messages in flight at once.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=10_000))]
    pub in_flight: u64,
    /// Give up after this many seconds.
    #[arg(long, default_value_t = 60.0)]
    pub max_time: f64,
    #[command(flatten)]
    pub connect: ConnectArgs,
}

/// Header carrying the 1-based message number, so `receive` can spot gaps.
pub const SEQ_HEADER: &str = "amqctl-seq";

pub fn run(args: SendArgs) -> anyhow::Result<()> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?
        .block_on(send(args))
}

async fn send(args: SendArgs) -> anyhow::Result<()> {
    let template: Option<bytes::Bytes> = match (&args.body_file, args.size) {
        (Some(p), _) => Some(
            std::fs::read(p)
                .with_context(|| format!("reading {}", p.display()))?
                .into(),
        ),
        (None, Some(n)) => Some(vec![b'x'; n].into()),
        _ => None,
    };
    let text = args
        .body
        .clone()
        .unwrap_or_else(|| "message {n}".to_owned());
    let body = move |n: u64| match &template {
        Some(b) => b.clone(),
        None => text.replace("{n}", &n.to_string()).into(),
    };
    let client = args.connect.connect(&args.url).await?;
    let started = Instant::now();
    let deadline = Duration::from_secs_f64(args.max_time);
    let receipted = args.persistent || args.receipt;
    let mut in_flight = tokio::task::JoinSet::new();
    let mut confirmed = 0u64;
    let work = async {
        for n in 1..=args.count {
            let mut msg = OutgoingMessage::new(args.destination.clone(), body(n))
                .persistent(args.persistent)
                .header(SEQ_HEADER, n.to_string());
            msg.headers.extend(args.headers.iter().cloned());
            if !receipted {
                client.send(msg).await?;
                continue;
            }
            if in_flight.len() as u64 >= args.in_flight {
                in_flight.join_next().await.expect("non-empty")??;
                confirmed += 1;
            }
            let c = client.clone();
            in_flight.spawn(async move { c.send_receipted(msg).await });
        }
        while let Some(r) = in_flight.join_next().await {
            r??;
            confirmed += 1;
        }
        anyhow::Ok(())
    };
    let result = tokio::time::timeout(deadline, work).await;
    let elapsed = started.elapsed();
    client.close().await;
    match result {
        Err(_) => bail!(
            "gave up after {:.1} s (--max-time): {confirmed} of {} message(s) confirmed",
            deadline.as_secs_f64(),
            args.count
        ),
        Ok(Err(e)) => Err(e.context(format!(
            "{confirmed} of {} message(s) confirmed",
            args.count
        ))),
        Ok(Ok(())) => {
            let how = if receipted {
                format!("{confirmed} receipted")
            } else {
                "no receipts requested".to_owned()
            };
            println!(
                "sent {} message(s) to {} via {} ({how}) in {} ms",
                args.count,
                args.destination,
                args.url,
                elapsed.as_millis()
            );
            Ok(())
        }
    }
}
