//! `amqctl receive URL DESTINATION`: consume messages through the failover
//! client and print them. Exits non-zero when fewer than `--count` arrive.

use crate::send::ConnectArgs;
use amq_broker::client::AckMode;
use anyhow::bail;
use std::collections::HashSet;
use std::io::Write;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Print {
    /// The body, one message per line.
    Body,
    /// Every header, then the body.
    Headers,
    /// One JSON object per message: headers and body (UTF-8 if it is).
    Json,
    /// Nothing but the summary.
    None,
}

#[derive(Debug, clap::Args)]
pub struct ReceiveArgs {
    /// stomp://HOST:PORT, or failover:(stomp://H1:P1,stomp://H2:P2)?OPTIONS.
    pub url: String,
    /// /queue/NAME or /topic/NAME.
    pub destination: String,
    /// How many messages to wait for.
    #[arg(long, short = 'n', default_value_t = 1)]
    pub count: u64,
    /// Stop when no message has arrived for this many seconds.
    #[arg(long, default_value_t = 10.0)]
    pub wait: f64,
    /// Acknowledgement mode: client-individual acknowledges each message
    /// after it is printed.
    #[arg(long, default_value = "client-individual", value_parser = parse_ack)]
    pub ack: AckMode,
    /// JMS selector (ActiveMQ's `selector` header).
    #[arg(long)]
    pub selector: Option<String>,
    /// ActiveMQ's `activemq.prefetchSize`.
    #[arg(long)]
    pub prefetch: Option<u32>,
    #[arg(long, value_enum, default_value = "body")]
    pub print: Print,
    #[command(flatten)]
    pub connect: ConnectArgs,
}

fn parse_ack(s: &str) -> Result<AckMode, String> {
    s.parse()
}

pub fn run(args: ReceiveArgs) -> anyhow::Result<()> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?
        .block_on(receive(args))
}

async fn receive(args: ReceiveArgs) -> anyhow::Result<()> {
    let client = args.connect.connect(&args.url).await?;
    let mut headers = Vec::new();
    if let Some(s) = &args.selector {
        headers.push(("selector".to_owned(), s.clone()));
    }
    if let Some(p) = args.prefetch {
        headers.push(("activemq.prefetchSize".to_owned(), p.to_string()));
    }
    let mut sub = client
        .subscribe(&args.destination, args.ack, &headers)
        .await?;
    let idle = Duration::from_secs_f64(args.wait);
    let started = Instant::now();
    let (mut received, mut redelivered) = (0u64, 0u64);
    let mut seen = HashSet::new();
    let mut duplicates = 0u64;
    let mut out = std::io::stdout().lock();
    while received < args.count {
        let Ok(Some(msg)) = tokio::time::timeout(idle, sub.recv()).await else {
            break;
        };
        received += 1;
        redelivered += msg.redelivered() as u64;
        if !seen.insert(msg.message_id().to_owned()) {
            duplicates += 1;
        }
        match args.print {
            Print::Body => {
                out.write_all(msg.body())?;
                if !msg.body().ends_with(b"\n") {
                    out.write_all(b"\n")?;
                }
            }
            Print::Headers => {
                for (k, v) in &msg.frame.headers {
                    writeln!(out, "{k}: {v}")?;
                }
                writeln!(out)?;
                out.write_all(msg.body())?;
                writeln!(out, "\n")?;
            }
            Print::Json => {
                let headers: serde_json::Map<String, serde_json::Value> = msg
                    .frame
                    .headers
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone().into()))
                    .collect();
                let body = match std::str::from_utf8(msg.body()) {
                    Ok(s) => serde_json::json!(s),
                    Err(_) => serde_json::json!({ "bytes": msg.body().len() }),
                };
                writeln!(
                    out,
                    "{}",
                    serde_json::json!({ "headers": headers, "body": body })
                )?;
            }
            Print::None => {}
        }
        out.flush()?;
        if args.ack != AckMode::Auto {
            client.ack(&msg)?;
        }
    }
    drop(out);
    client.close().await;
    eprintln!(
        "received {received} message(s) from {} in {} ms ({redelivered} redelivered, {duplicates} duplicate(s))",
        args.destination,
        started.elapsed().as_millis()
    );
    if received < args.count {
        bail!(
            "received {received} of {} message(s): nothing arrived for {:.1} s (--wait)",
            args.count,
            idle.as_secs_f64()
        );
    }
    Ok(())
}
