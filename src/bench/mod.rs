//! `amqctl bench URL`: a STOMP load generator in the spirit of ActiveMQ's
//! producer/consumer tools. P producers and C consumers, each on its own
//! connection, move a bounded number of messages (and never run longer than
//! `--max-time`); every SEND asks for a receipt, so the figures are
//! receipted throughput and the SEND→RECEIPT latency, plus end-to-end
//! latency and a loss/duplicate check from sequence headers.
//!
//! `amqctl bench --serve-sink 127.0.0.1:PORT` runs a STOMP sink that
//! receipts and forwards at once — a broker that costs next to nothing — so
//! the same load against it shows the load tool's own ceiling
//! (`bench/broker.sh` runs it as a separate process beside the brokers);
//! `amqctl bench --sink` does both in one process.

mod sink;

use crate::send::ConnectArgs;
use amq_broker::client::{AckMode, OutgoingMessage};
use amq_broker::failover::FailoverClient;
use anyhow::{bail, Context};
use futures::stream::{FuturesUnordered, StreamExt};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    /// stomp://HOST:PORT or a failover: URL (omit with --sink).
    #[arg(required_unless_present_any = ["sink", "serve_sink"])]
    pub url: Option<String>,
    /// Measure against a built-in STOMP sink on a loopback port instead of a
    /// broker, to show how fast the load tool itself is.
    #[arg(long)]
    pub sink: bool,
    /// Only serve the sink on this loopback address until interrupted
    /// (SIGTERM or Ctrl-C), for measuring from another process.
    #[arg(long, value_name = "127.0.0.1:PORT", conflicts_with_all = ["url", "sink"])]
    pub serve_sink: Option<std::net::SocketAddr>,
    /// Destination; a fresh queue per run by default.
    #[arg(long)]
    pub destination: Option<String>,
    /// Producers, each on its own connection.
    #[arg(long, short = 'p', default_value_t = 1)]
    pub producers: usize,
    /// Consumers, each on its own connection (0: only produce).
    #[arg(long, short = 'c', default_value_t = 1)]
    pub consumers: usize,
    /// Messages in total, shared out among the producers.
    #[arg(long, short = 'n', default_value_t = 10_000)]
    pub count: u64,
    /// Stop after this many seconds even if not done.
    #[arg(long, default_value_t = 60.0)]
    pub max_time: f64,
    /// Body size in bytes.
    #[arg(long, default_value_t = 1024)]
    pub size: usize,
    /// Persistent messages (the broker stores each before its receipt).
    #[arg(long)]
    pub persistent: bool,
    /// Receipted sends each producer keeps in flight (1 = synchronous sends,
    /// as a JMS producer of persistent messages does).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=10_000))]
    pub in_flight: u64,
    /// Consumers' ack mode: auto, client or client-individual (one ACK per
    /// message).
    #[arg(long, default_value = "client-individual", value_parser = parse_ack)]
    pub ack: AckMode,
    /// ActiveMQ's `activemq.prefetchSize` for the consumers.
    #[arg(long)]
    pub prefetch: Option<u32>,
    /// Messages sent and consumed first, not measured (JIT warm-up).
    #[arg(long, default_value_t = 1000)]
    pub warmup: u64,
    /// One JSON object on stdout instead of the text report.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub connect: ConnectArgs,
}

fn parse_ack(s: &str) -> Result<AckMode, String> {
    s.parse()
}

pub fn run(args: BenchArgs) -> anyhow::Result<()> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?
        .block_on(bench(args))
}

/// Latency percentiles in milliseconds.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct Percentiles {
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

impl Percentiles {
    fn of(mut micros: Vec<u64>) -> Percentiles {
        if micros.is_empty() {
            return Percentiles::default();
        }
        micros.sort_unstable();
        let at = |p: f64| {
            let i = ((p / 100.0) * (micros.len() - 1) as f64).round() as usize;
            micros[i] as f64 / 1000.0
        };
        Percentiles {
            p50_ms: at(50.0),
            p99_ms: at(99.0),
            max_ms: at(100.0),
        }
    }
}

#[derive(Debug, serde::Serialize)]
pub struct Report {
    pub url: String,
    pub destination: String,
    pub persistent: bool,
    pub size: usize,
    pub producers: usize,
    pub consumers: usize,
    pub in_flight: u64,
    pub ack: &'static str,
    pub count: u64,
    pub receipted: u64,
    pub consumed: u64,
    pub lost: u64,
    pub duplicates: u64,
    /// Receipted messages per second (first SEND → last RECEIPT).
    pub produce_rate: f64,
    /// Consumed messages per second (first → last MESSAGE).
    pub consume_rate: f64,
    /// Messages per second through the broker (start → last MESSAGE, or
    /// last RECEIPT without consumers).
    pub throughput: f64,
    pub receipt_latency: Percentiles,
    pub end_to_end_latency: Percentiles,
    pub elapsed_s: f64,
    pub timed_out: bool,
}

/// Header naming the producer and sequence number of a message.
const SEQ: &str = "bench-seq";
/// Header with the send time (µs since the run started; same process).
const TS: &str = "bench-ts";

async fn bench(args: BenchArgs) -> anyhow::Result<()> {
    if let Some(addr) = args.serve_sink {
        if !addr.ip().is_loopback() {
            bail!("the sink listens on loopback addresses only, not {addr}");
        }
        let sink = sink::Sink::start(addr).await?;
        eprintln!("STOMP sink listening on {}", sink.addr());
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
        return Ok(());
    }
    let (url, _sink) = if args.sink {
        let sink = sink::Sink::start(([127, 0, 0, 1], 0).into()).await?;
        (format!("stomp://{}", sink.addr()), Some(sink))
    } else {
        (args.url.clone().expect("clap requires URL"), None)
    };
    let destination = args.destination.clone().unwrap_or_else(|| {
        format!(
            "/queue/amqctl.bench.{}.{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_millis())
                .unwrap_or(0)
        )
    });
    if args.producers == 0 {
        bail!("--producers must be at least 1");
    }
    if args.warmup > 0 {
        let warm = Load {
            destination: format!("{destination}.warmup"),
            count: args.warmup,
            ..Load::new(&args, &url, &destination)
        };
        warm.run().await.context("warm-up")?;
    }
    let report = Load::new(&args, &url, &destination).run().await?;
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        print_report(&report);
    }
    if report.lost > 0 {
        bail!("{} receipted message(s) were never consumed", report.lost);
    }
    Ok(())
}

fn print_report(r: &Report) {
    println!(
        "amqctl bench {}  {} {} B, {} producer(s) × {} in flight + {} consumer(s), ack {}",
        r.url,
        if r.persistent {
            "persistent"
        } else {
            "non-persistent"
        },
        r.size,
        r.producers,
        r.in_flight,
        r.consumers,
        r.ack
    );
    println!(
        "  sent      {:>8} receipted  {:>9.0} msg/s   receipt latency p50 {:.3} ms  p99 {:.3} ms  max {:.1} ms",
        r.receipted, r.produce_rate, r.receipt_latency.p50_ms, r.receipt_latency.p99_ms, r.receipt_latency.max_ms
    );
    if r.consumers > 0 {
        println!(
            "  received  {:>8}            {:>9.0} msg/s   end-to-end latency p50 {:.3} ms  p99 {:.3} ms  max {:.1} ms",
            r.consumed, r.consume_rate, r.end_to_end_latency.p50_ms, r.end_to_end_latency.p99_ms, r.end_to_end_latency.max_ms
        );
        println!("  lost {}, duplicates {}", r.lost, r.duplicates);
    }
    println!(
        "  throughput {:.0} msg/s over {:.2} s{}",
        r.throughput,
        r.elapsed_s,
        if r.timed_out {
            " (stopped by --max-time)"
        } else {
            ""
        }
    );
}

/// One measured run.
struct Load {
    url: String,
    destination: String,
    connect: ConnectArgs,
    producers: usize,
    consumers: usize,
    count: u64,
    max_time: Duration,
    size: usize,
    persistent: bool,
    in_flight: u64,
    ack: AckMode,
    prefetch: Option<u32>,
}

#[derive(Default)]
struct ConsumerTally {
    micros: Vec<u64>,
    seen: HashMap<String, u32>,
    first: Option<Instant>,
    last: Option<Instant>,
}

impl Load {
    fn new(args: &BenchArgs, url: &str, destination: &str) -> Load {
        Load {
            url: url.to_owned(),
            destination: destination.to_owned(),
            connect: args.connect.clone(),
            producers: args.producers,
            consumers: args.consumers,
            count: args.count,
            max_time: Duration::from_secs_f64(args.max_time),
            size: args.size,
            persistent: args.persistent,
            in_flight: args.in_flight,
            ack: args.ack,
            prefetch: args.prefetch,
        }
    }

    async fn client(&self) -> anyhow::Result<FailoverClient> {
        self.connect.connect(&self.url).await
    }

    async fn run(&self) -> anyhow::Result<Report> {
        let deadline = Instant::now() + self.max_time;
        let consumed = Arc::new(AtomicU64::new(0));
        let tally = Arc::new(Mutex::new(ConsumerTally::default()));
        let t0 = Instant::now();

        // Consumers first, so that every message has somewhere to go.
        let mut consumers = tokio::task::JoinSet::new();
        let mut headers = Vec::new();
        if let Some(p) = self.prefetch {
            headers.push(("activemq.prefetchSize".to_owned(), p.to_string()));
        }
        // Set by the consumer that takes the last message, to stop the others.
        let (done_tx, done) = tokio::sync::watch::channel(false);
        let done_tx = Arc::new(done_tx);
        let mut consumer_clients = Vec::new();
        for _ in 0..self.consumers {
            let client = self.client().await?;
            let mut sub = client
                .subscribe(&self.destination, self.ack, &headers)
                .await?;
            consumer_clients.push(client.clone());
            let (consumed, tally, ack, count) =
                (consumed.clone(), tally.clone(), self.ack, self.count);
            let (mut done, done_tx) = (done.clone(), done_tx.clone());
            consumers.spawn(async move {
                let mut local = ConsumerTally::default();
                loop {
                    let left = deadline.saturating_duration_since(Instant::now());
                    let next = tokio::select! {
                        m = tokio::time::timeout(left, sub.recv()) => m,
                        _ = done.wait_for(|d| *d) => break,
                    };
                    let Ok(Some(msg)) = next else {
                        break;
                    };
                    let now = Instant::now();
                    if let Some(ts) = msg.header(TS).and_then(|v| v.parse::<u64>().ok()) {
                        let sent = t0 + Duration::from_micros(ts);
                        local
                            .micros
                            .push(now.saturating_duration_since(sent).as_micros() as u64);
                    }
                    if let Some(seq) = msg.header(SEQ) {
                        *local.seen.entry(seq.to_owned()).or_default() += 1;
                    }
                    local.first.get_or_insert(now);
                    local.last = Some(now);
                    if ack != AckMode::Auto {
                        let _ = client.ack(&msg);
                    }
                    if consumed.fetch_add(1, Ordering::Relaxed) + 1 >= count {
                        let _ = done_tx.send(true);
                        break;
                    }
                }
                let mut t = tally.lock().expect("tally lock");
                t.micros.extend(local.micros);
                for (k, v) in local.seen {
                    *t.seen.entry(k).or_default() += v;
                }
                t.first = match (t.first, local.first) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                };
                t.last = t.last.max(local.last);
            });
        }

        // Producers: each sends its share with `in_flight` receipts pending.
        let receipt_micros = Arc::new(Mutex::new(Vec::with_capacity(self.count as usize)));
        let receipted = Arc::new(AtomicU64::new(0));
        let last_receipt = Arc::new(Mutex::new(None::<Instant>));
        let body = bytes::Bytes::from(vec![b'x'; self.size]);
        let mut producers = tokio::task::JoinSet::new();
        let started = Instant::now();
        for p in 0..self.producers {
            let share = self.count / self.producers as u64
                + u64::from((p as u64) < self.count % self.producers as u64);
            let client = self.client().await?;
            let (dest, body, persistent, in_flight) = (
                self.destination.clone(),
                body.clone(),
                self.persistent,
                self.in_flight,
            );
            let (receipt_micros, receipted, last_receipt) = (
                receipt_micros.clone(),
                receipted.clone(),
                last_receipt.clone(),
            );
            producers.spawn(async move {
                // The sends run inside this task (no task per message), at
                // most `in_flight` at a time.
                let mut pending = FuturesUnordered::new();
                let mut local = Vec::with_capacity(share as usize);
                for n in 0..share {
                    if Instant::now() >= deadline {
                        break;
                    }
                    if pending.len() as u64 >= in_flight {
                        if let Some(Ok(us)) = pending.next().await {
                            local.push(us);
                        }
                    }
                    let sent = Instant::now();
                    let msg = OutgoingMessage::new(dest.clone(), body.clone())
                        .persistent(persistent)
                        .header(SEQ, format!("{p}-{n}"))
                        .header(TS, sent.duration_since(t0).as_micros().to_string());
                    let c = &client;
                    pending.push(async move {
                        c.send_receipted(msg)
                            .await
                            .map(|()| sent.elapsed().as_micros() as u64)
                    });
                }
                while let Some(r) = pending.next().await {
                    if let Ok(us) = r {
                        local.push(us);
                    }
                }
                drop(pending);
                {
                    let mut last = last_receipt.lock().expect("lock");
                    *last = (*last).max(Some(Instant::now()));
                }
                receipted.fetch_add(local.len() as u64, Ordering::Relaxed);
                receipt_micros.lock().expect("lock").extend(local);
                client.close().await;
            });
        }
        while let Some(r) = producers.join_next().await {
            r?;
        }
        let produce_elapsed = started.elapsed();
        let receipted = receipted.load(Ordering::Relaxed);
        // Consumers stop at `count`, at the deadline, or (below) once the
        // stream has dried up for a few seconds after the last receipt.
        let drain = async {
            let mut last = consumed.load(Ordering::Relaxed);
            let mut still = Instant::now();
            while !consumers.is_empty() {
                tokio::select! {
                    _ = consumers.join_next() => {}
                    _ = tokio::time::sleep(Duration::from_millis(100)) => {
                        let now = consumed.load(Ordering::Relaxed);
                        if now != last {
                            last = now;
                            still = Instant::now();
                        } else if still.elapsed() > Duration::from_secs(3) || Instant::now() >= deadline {
                            consumers.abort_all();
                        }
                    }
                }
            }
        };
        drain.await;
        for c in consumer_clients {
            c.close().await;
        }
        let elapsed = started.elapsed();

        let tally = std::mem::take(&mut *tally.lock().expect("tally lock"));
        let consumed = consumed.load(Ordering::Relaxed).min(self.count);
        let duplicates: u64 = tally
            .seen
            .values()
            .map(|&c| u64::from(c.saturating_sub(1)))
            .sum();
        let lost = if self.consumers > 0 && self.destination.starts_with("/queue/") {
            receipted.saturating_sub(tally.seen.len() as u64)
        } else {
            0
        };
        let last_receipt = last_receipt
            .lock()
            .expect("lock")
            .unwrap_or_else(Instant::now);
        let secs = |d: Duration| d.as_secs_f64().max(1e-9);
        let consume_span = match (tally.first, tally.last) {
            (Some(a), Some(b)) => secs(b - a),
            _ => 0.0,
        };
        let receipt_micros = std::mem::take(&mut *receipt_micros.lock().expect("lock"));
        let end = if self.consumers > 0 {
            tally.last.unwrap_or(last_receipt)
        } else {
            last_receipt
        };
        Ok(Report {
            url: self.url.clone(),
            destination: self.destination.clone(),
            persistent: self.persistent,
            size: self.size,
            producers: self.producers,
            consumers: self.consumers,
            in_flight: self.in_flight,
            ack: self.ack.as_str(),
            count: self.count,
            receipted,
            consumed,
            lost,
            duplicates,
            produce_rate: receipted as f64 / secs(last_receipt.saturating_duration_since(started)),
            consume_rate: if consume_span > 0.0 {
                consumed as f64 / consume_span
            } else {
                0.0
            },
            throughput: if self.consumers > 0 {
                consumed
            } else {
                receipted
            } as f64
                / secs(end.saturating_duration_since(started)),
            receipt_latency: Percentiles::of(receipt_micros),
            end_to_end_latency: Percentiles::of(tally.micros),
            elapsed_s: elapsed.as_secs_f64(),
            timed_out: produce_elapsed >= self.max_time || Instant::now() >= deadline,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_pick_nearest_rank() {
        let p = Percentiles::of((1..=1000).collect());
        assert_eq!(p.p50_ms, 0.501);
        assert_eq!(p.p99_ms, 0.990);
        assert_eq!(p.max_ms, 1.0);
        let empty = Percentiles::of(Vec::new());
        assert_eq!(empty.p99_ms, 0.0);
    }
}
