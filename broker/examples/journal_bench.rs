//! Journal micro-benchmark: durable appends per second with 1 and 8
//! concurrent appenders (1 KiB messages), fsyncs per second, and the group
//! commit ratio (appends per fsync), beside the raw write+fdatasync rate of
//! the same disk. Run through `bench/journal.sh`.
//!
//! Usage: journal_bench [--dir DIR] [--appends N] [--appenders 1,8] [--reps 3]
//!
//! Each configuration runs `--reps` times, interleaved with the raw fsync
//! probe (other load on the machine shifts both alike); medians are shown.

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
    reps: usize,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        dir: None,
        appends: 20_000,
        appenders: vec![1, 8],
        reps: 3,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--dir" => args.dir = Some(value()?.into()),
            "--reps" => args.reps = value()?.parse().map_err(|e| format!("--reps: {e}"))?,
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

struct Run {
    appends_per_s: f64,
    fsyncs_per_s: f64,
    appends_per_fsync: f64,
    p50: Duration,
    p99: Duration,
    raw: f64,
}

async fn run(dir: &std::path::Path, appenders: usize, appends: usize, raw: f64) -> Run {
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
    Run {
        appends_per_s: s.appends as f64 / secs,
        fsyncs_per_s: s.fsyncs as f64 / secs,
        appends_per_fsync: s.appends as f64 / s.fsyncs.max(1) as f64,
        p50: percentile(&lat, 0.5),
        p99: percentile(&lat, 0.99),
        raw,
    }
}

/// Time to open a journal holding `appends` live 1 KiB messages and recover
/// them (what a broker restart costs), median of 3.
async fn recovery_ms(base: &std::path::Path, appends: usize) -> (f64, u64, usize) {
    let d = tempfile::tempdir_in(base).expect("temp dir");
    run(d.path(), 32, appends, 0.0).await;
    let bytes: u64 = std::fs::read_dir(d.path())
        .expect("journal dir")
        .filter_map(|e| e.ok()?.metadata().ok())
        .map(|m| m.len())
        .sum();
    let mut times = Vec::new();
    let mut recovered = 0;
    for _ in 0..3 {
        let start = Instant::now();
        let j = Journal::open(d.path(), JournalOptions::default()).expect("journal");
        recovered = j.recover().expect("recover").message_count();
        times.push(start.elapsed().as_secs_f64() * 1e3);
    }
    (median(times), bytes, recovered)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
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
    let mut runs: Vec<Vec<Run>> = args.appenders.iter().map(|_| Vec::new()).collect();
    for _ in 0..args.reps.max(1) {
        for (k, &n) in args.appenders.iter().enumerate() {
            let d = tempfile::tempdir_in(&base).expect("temp dir");
            let raw = raw_fsync_rate(d.path(), 2_000);
            runs[k].push(run(d.path(), n, args.appends, raw).await);
        }
    }
    println!(
        "journal: {} durable 1 KiB appends per run, median of {} runs, in {}",
        args.appends,
        args.reps.max(1),
        base.display()
    );
    println!(
        "{:>9} {:>12} {:>10} {:>14} {:>10} {:>10} {:>12} {:>13}",
        "appenders",
        "appends/s",
        "fsyncs/s",
        "appends/fsync",
        "p50 ms",
        "p99 ms",
        "raw fsync/s",
        "x raw fsync"
    );
    for (k, &n) in args.appenders.iter().enumerate() {
        let r = &runs[k];
        let m = |f: &dyn Fn(&Run) -> f64| median(r.iter().map(f).collect());
        println!(
            "{:>9} {:>12.0} {:>10.0} {:>14.2} {:>10.3} {:>10.3} {:>12.0} {:>13.2}",
            n,
            m(&|x| x.appends_per_s),
            m(&|x| x.fsyncs_per_s),
            m(&|x| x.appends_per_fsync),
            m(&|x| x.p50.as_secs_f64() * 1e3),
            m(&|x| x.p99.as_secs_f64() * 1e3),
            m(&|x| x.raw),
            m(&|x| x.appends_per_s / x.raw),
        );
    }
    let (ms, bytes, n) = recovery_ms(&base, args.appends).await;
    println!(
        "recovery: open + recover {n} live messages ({:.1} MiB of segments) in {ms:.1} ms",
        bytes as f64 / (1 << 20) as f64
    );
}
