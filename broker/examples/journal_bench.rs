//! Journal micro-benchmark: durable appends per second with 1 and 8
//! concurrent appenders (1 KiB messages), fsyncs per second, and the group
//! commit ratio (appends per fsync), beside the raw write+fdatasync rate of
//! the same disk. Run through `bench/journal.sh`.
//!
//! Usage: journal_bench [--dir DIR] [--appends N] [--appenders 1,8]

use amq_broker::message::{Destination, Message, MessageId};
use amq_broker::store::{Journal, JournalOptions, Record, Store};
use bytes::Bytes;
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

struct Args {
    dir: Option<PathBuf>,
    appends: usize,
    appenders: Vec<usize>,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        dir: None,
        appends: 20_000,
        appenders: vec![1, 8],
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--dir" => args.dir = Some(value()?.into()),
            "--appends" => {
                args.appends = value()?.parse().map_err(|e| format!("--appends: {e}"))?
            }
            "--appenders" => {
                args.appenders = value()?
                    .split(',')
                    .map(|n| n.parse().map_err(|e| format!("--appenders: {e}")))
                    .collect::<Result<_, _>>()?
            }
            _ => return Err(format!("unknown argument {flag}")),
        }
    }
    Ok(args)
}

fn message(n: usize) -> Message {
    Message {
        id: MessageId(format!("ID:bench-1-{n}")),
        destination: Destination::Queue("bench".into()),
        persistent: true,
        priority: Message::DEFAULT_PRIORITY,
        expires: None,
        timestamp: 1_700_000_000_000,
        reply_to: None,
        correlation_id: None,
        properties: Default::default(),
        body: Bytes::from(vec![b'x'; 1024]),
        redelivery_count: 0,
        broker_path: Vec::new(),
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 * p) as usize).min(sorted.len() - 1)]
}

/// The disk's own rate: one 1 KiB write + fdatasync after another.
fn raw_fsync_rate(dir: &std::path::Path, n: usize) -> f64 {
    let path = dir.join("raw-fsync-probe");
    let mut f = std::fs::File::create(&path).expect("probe file");
    let buf = [b'x'; 1024];
    let start = Instant::now();
    for _ in 0..n {
        f.write_all(&buf).expect("write");
        f.sync_data().expect("fdatasync");
    }
    let rate = n as f64 / start.elapsed().as_secs_f64();
    let _ = std::fs::remove_file(path);
    rate
}

async fn run(
    dir: &std::path::Path,
    appenders: usize,
    appends: usize,
) -> (f64, f64, f64, Duration, Duration) {
    let journal: Arc<dyn Store> =
        Arc::new(Journal::open(dir, JournalOptions::default()).expect("journal"));
    let per = appends / appenders;
    let start = Instant::now();
    let tasks: Vec<_> = (0..appenders)
        .map(|t| {
            let j = journal.clone();
            tokio::spawn(async move {
                let mut lat = Vec::with_capacity(per);
                for i in 0..per {
                    let rec = Record::Enqueue(message(t * per + i));
                    let t0 = Instant::now();
                    j.append(vec![rec]).await.expect("append");
                    lat.push(t0.elapsed());
                }
                lat
            })
        })
        .collect();
    let mut lat = Vec::new();
    for t in tasks {
        lat.extend(t.await.expect("appender"));
    }
    let secs = start.elapsed().as_secs_f64();
    let s = journal.stats();
    lat.sort();
    (
        s.appends as f64 / secs,
        s.fsyncs as f64 / secs,
        s.appends as f64 / s.fsyncs.max(1) as f64,
        percentile(&lat, 0.5),
        percentile(&lat, 0.99),
    )
}

#[tokio::main]
async fn main() {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("journal_bench: {e}");
            std::process::exit(2);
        }
    };
    let base = args.dir.clone().unwrap_or_else(std::env::temp_dir);
    let raw = {
        let d = tempfile::tempdir_in(&base).expect("temp dir");
        raw_fsync_rate(d.path(), 5_000)
    };
    println!(
        "disk: raw 1 KiB write+fdatasync: {raw:.0}/s (in {})",
        base.display()
    );
    println!(
        "{:>9} {:>10} {:>12} {:>10} {:>14} {:>10} {:>10} {:>12}",
        "appenders",
        "appends",
        "appends/s",
        "fsyncs/s",
        "appends/fsync",
        "p50 ms",
        "p99 ms",
        "x raw fsync"
    );
    for &n in &args.appenders {
        let d = tempfile::tempdir_in(&base).expect("temp dir");
        let (rate, fsyncs, ratio, p50, p99) = run(d.path(), n, args.appends).await;
        println!(
            "{:>9} {:>10} {:>12.0} {:>10.0} {:>14.2} {:>10.3} {:>10.3} {:>12.2}",
            n,
            args.appends / n * n,
            rate,
            fsyncs,
            ratio,
            p50.as_secs_f64() * 1e3,
            p99.as_secs_f64() * 1e3,
            rate / raw
        );
    }
}
