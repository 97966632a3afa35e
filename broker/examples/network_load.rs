//! The load of `bench/network.sh`: one producer on one broker, one consumer
//! on another (or the same), bounded by count and time.
//!
//! ```text
//! network_load --produce 127.0.0.1:61613 --consume 127.0.0.1:61623 \
//!     --count 20000 --size 1024 --persistent --in-flight 64 --max-time 60
//! ```
//!
//! The consumer subscribes first (client-individual, one ACK per message)
//! and the producer starts after `--settle-ms`, so a network of brokers has
//! time to learn the demand. Every SEND asks for a receipt; `--in-flight`
//! receipted SENDs are outstanding at once. Prints one JSON line: messages
//! received, distinct, throughput (received / seconds from the first SEND to
//! the last message), and whether it finished in time.

use amq_broker::client::{AckMode, ConnectOptions, Connection, OutgoingMessage};
use futures::stream::{FuturesUnordered, StreamExt};
use std::collections::HashSet;
use std::time::{Duration, Instant};

struct Args {
    produce: String,
    consume: String,
    destination: String,
    count: usize,
    size: usize,
    persistent: bool,
    in_flight: usize,
    max_time: Duration,
    settle: Duration,
}

fn parse() -> Result<Args, String> {
    let mut a = Args {
        produce: String::new(),
        consume: String::new(),
        destination: "/queue/network.bench".into(),
        count: 10_000,
        size: 1024,
        persistent: false,
        in_flight: 64,
        max_time: Duration::from_secs(60),
        settle: Duration::from_millis(1000),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        if flag == "--persistent" {
            a.persistent = true;
            continue;
        }
        let v = it.next().ok_or(format!("{flag} needs a value"))?;
        let num = |v: &str| {
            v.parse::<u64>()
                .map_err(|_| format!("{flag} {v}: not a number"))
        };
        match flag.as_str() {
            "--produce" => a.produce = v,
            "--consume" => a.consume = v,
            "--destination" => a.destination = v,
            "--count" => a.count = num(&v)?.clamp(1, 1_000_000) as usize,
            "--size" => a.size = num(&v)? as usize,
            "--in-flight" => a.in_flight = num(&v)?.clamp(1, 10_000) as usize,
            "--max-time" => a.max_time = Duration::from_secs(num(&v)?.clamp(1, 600)),
            "--settle-ms" => a.settle = Duration::from_millis(num(&v)?),
            _ => return Err(format!("unknown flag {flag}")),
        }
    }
    for addr in [&a.produce, &a.consume] {
        let host = addr.rsplit_once(':').map(|(h, _)| h).unwrap_or("");
        if !matches!(host, "127.0.0.1" | "localhost" | "[::1]") {
            return Err(format!("{addr:?}: loopback addresses only"));
        }
    }
    Ok(a)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args = match parse() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("network_load: {e}");
            std::process::exit(2);
        }
    };
    let options = ConnectOptions::default();
    let consumer = Connection::connect(&args.consume, &options)
        .await
        .expect("consumer connects");
    let mut sub = consumer
        .subscribe(
            &args.destination,
            AckMode::ClientIndividual,
            &[("activemq.prefetchSize".into(), "1000".into())],
        )
        .await
        .expect("subscribe");
    tokio::time::sleep(args.settle).await;
    let producer = Connection::connect(&args.produce, &options)
        .await
        .expect("producer connects");

    let start = Instant::now();
    let deadline = start + args.max_time;
    let body = vec![b'x'; args.size];
    let (count, persistent, in_flight, destination) = (
        args.count,
        args.persistent,
        args.in_flight,
        args.destination.clone(),
    );
    let produce = tokio::spawn(async move {
        let mut pending = FuturesUnordered::new();
        let mut sent = 0;
        while sent < count && Instant::now() < deadline {
            while pending.len() >= in_flight {
                if let Some(Err(e)) = pending.next().await {
                    panic!("send failed: {e}");
                }
            }
            let m = OutgoingMessage::new(destination.clone(), body.clone())
                .persistent(persistent)
                .header("seq", sent.to_string());
            pending.push(producer.request(m.to_frame()).expect("send"));
            sent += 1;
        }
        while let Some(r) = pending.next().await {
            r.expect("receipt");
        }
        sent
    });

    let mut seen = HashSet::with_capacity(args.count);
    let mut received = 0usize;
    let mut last = start;
    while seen.len() < args.count {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, sub.recv()).await {
            Ok(Some(d)) => {
                received += 1;
                seen.insert(d.header("seq").unwrap_or("").to_owned());
                let _ = consumer.ack(&d);
                last = Instant::now();
            }
            _ => break,
        }
    }
    let sent = produce.await.expect("producer");
    let secs = last.duration_since(start).as_secs_f64().max(1e-9);
    println!(
        "{{\"sent\":{sent},\"received\":{received},\"distinct\":{},\"seconds\":{secs:.3},\"throughput\":{:.1},\"complete\":{}}}",
        seen.len(),
        seen.len() as f64 / secs,
        seen.len() == args.count
    );
    let _ = consumer.disconnect().await;
}
