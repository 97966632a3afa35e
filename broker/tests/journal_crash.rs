//! Crash tests through the real `amq-broker` process: 8 concurrent producers
//! (so receipts ride on shared group-commit fsyncs) send 10,000 receipted
//! persistent messages, the broker is killed with SIGKILL in the middle and
//! restarted, and every receipted message must be consumed exactly once.
//! The negative control runs the same scenario with the journal's unsafe
//! mode and must see receipted messages lost: proof that the check can fail.

use amq_broker::store::UNSAFE_ENV;
use amq_harness::broker::{BrokerOptions, BrokerProcess};
use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::sync::Semaphore;

const TOTAL: usize = 10_000;
const PRODUCERS: usize = 8;
const WINDOW: usize = 64;
const QUEUE: &str = "/queue/journal.crash";

/// A STOMP frame as this test needs it.
struct Frame {
    command: String,
    headers: HashMap<String, String>,
    body: String,
}

/// Minimal STOMP 1.2 over TCP: enough to send, subscribe and read frames,
/// independent of the broker's own codec.
struct Conn {
    rd: BufReader<tokio::net::tcp::OwnedReadHalf>,
    wr: tokio::net::tcp::OwnedWriteHalf,
}

impl Conn {
    async fn connect(addr: SocketAddr) -> std::io::Result<Conn> {
        let s = TcpStream::connect(addr).await?;
        s.set_nodelay(true)?;
        let (rd, wr) = s.into_split();
        let mut c = Conn {
            rd: BufReader::new(rd),
            wr,
        };
        c.write("CONNECT\naccept-version:1.2\nhost:localhost\n\n")
            .await?;
        let f = c.read().await?;
        if f.command != "CONNECTED" {
            return Err(std::io::Error::other(format!("{}: {}", f.command, f.body)));
        }
        Ok(c)
    }

    async fn write(&mut self, frame: &str) -> std::io::Result<()> {
        self.wr.write_all(frame.as_bytes()).await?;
        self.wr.write_all(b"\0").await
    }

    async fn read(&mut self) -> std::io::Result<Frame> {
        read_frame(&mut self.rd).await
    }
}

async fn read_frame(rd: &mut (impl AsyncBufReadExt + Unpin)) -> std::io::Result<Frame> {
    let mut raw = Vec::new();
    loop {
        raw.clear();
        if rd.read_until(0, &mut raw).await? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        // Heart-beat EOLs may precede a frame.
        let start = raw.iter().position(|&b| b != b'\n' && b != b'\r');
        if let Some(start) = start.filter(|&s| raw[s] != 0) {
            let text = String::from_utf8_lossy(&raw[start..raw.len() - 1]).into_owned();
            let (head, body) = text.split_once("\n\n").unwrap_or((&text, ""));
            let mut lines = head.lines();
            let command = lines.next().unwrap_or_default().to_owned();
            let headers = lines
                .filter_map(|l| l.split_once(':'))
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect();
            return Ok(Frame {
                command,
                headers,
                body: body.to_owned(),
            });
        }
    }
}

/// Sends `p-0 .. p-(n-1)` persistent with receipts, at most `WINDOW`
/// unanswered, recording each receipted body, until done or the connection
/// dies.
async fn produce(addr: SocketAddr, p: usize, n: usize, receipted: Arc<Mutex<HashSet<String>>>) {
    let Ok(conn) = Conn::connect(addr).await else {
        return;
    };
    let Conn { mut rd, mut wr } = conn;
    let window = Arc::new(Semaphore::new(WINDOW));
    let sender = {
        let window = window.clone();
        tokio::spawn(async move {
            for i in 0..n {
                let Ok(permit) = window.acquire().await else {
                    return;
                };
                permit.forget();
                let frame = format!(
                    "SEND\ndestination:{QUEUE}\npersistent:true\nreceipt:{p}-{i}\n\n{p}-{i}\0"
                );
                if wr.write_all(frame.as_bytes()).await.is_err() {
                    return;
                }
            }
        })
    };
    let mut got = 0;
    while got < n {
        match read_frame(&mut rd).await {
            Ok(f) if f.command == "RECEIPT" => {
                receipted
                    .lock()
                    .unwrap()
                    .insert(f.headers["receipt-id"].clone());
                window.add_permits(1);
                got += 1;
            }
            _ => break,
        }
    }
    window.close();
    sender.abort();
}

/// Consumes everything on the queue (auto ack) until it stays quiet.
async fn drain(addr: SocketAddr) -> Vec<String> {
    let mut c = Conn::connect(addr).await.expect("consumer connects");
    c.write(&format!(
        "SUBSCRIBE\nid:0\ndestination:{QUEUE}\nack:auto\nactivemq.prefetchSize:1000\n\n"
    ))
    .await
    .unwrap();
    let mut bodies = Vec::new();
    while let Ok(Ok(f)) = tokio::time::timeout(Duration::from_secs(3), c.read()).await {
        assert_eq!(f.command, "MESSAGE", "{}", f.body);
        bodies.push(f.body);
    }
    bodies
}

struct Outcome {
    receipted: HashSet<String>,
    consumed: Vec<String>,
}

/// Produce with 8 producers, kill -9 once half is receipted, restart, drain.
async fn crash_run(opts: BrokerOptions) -> Outcome {
    let mut broker = BrokerProcess::start(opts).unwrap();
    let addr = broker.stomp_addr();
    let receipted = Arc::new(Mutex::new(HashSet::new()));
    let producers: Vec<_> = (0..PRODUCERS)
        .map(|p| tokio::spawn(produce(addr, p, TOTAL / PRODUCERS, receipted.clone())))
        .collect();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while receipted.lock().unwrap().len() < TOTAL / 2 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "producers stalled\n{}",
            broker.log()
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    tokio::task::block_in_place(|| broker.kill9());
    for p in producers {
        p.await.unwrap();
    }
    let receipted = receipted.lock().unwrap().clone();
    assert!(
        receipted.len() < TOTAL,
        "kill -9 came after the last receipt"
    );
    tokio::task::block_in_place(|| broker.restart()).unwrap();
    let consumed = drain(broker.stomp_addr()).await;
    Outcome {
        receipted,
        consumed,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_with_concurrent_producers_loses_no_receipted_message() {
    let out = crash_run(BrokerOptions::new("journal-crash")).await;
    let mut count: HashMap<&str, usize> = HashMap::new();
    for b in &out.consumed {
        *count.entry(b.as_str()).or_default() += 1;
    }
    for (body, n) in &count {
        assert_eq!(*n, 1, "{body} consumed {n} times");
        let (p, i) = body.split_once('-').expect("a body this test sent");
        assert!(p.parse::<usize>().unwrap() < PRODUCERS && i.parse::<usize>().unwrap() < TOTAL);
    }
    let lost: Vec<&String> = out
        .receipted
        .iter()
        .filter(|r| !count.contains_key(r.as_str()))
        .collect();
    assert!(
        lost.is_empty(),
        "{} receipted messages lost, e.g. {:?}",
        lost.len(),
        &lost[..lost.len().min(5)]
    );
    eprintln!(
        "journal crash: {} receipted before kill -9, {} consumed after restart ({} sent but unreceipted survived)",
        out.receipted.len(),
        out.consumed.len(),
        out.consumed.len() - out.receipted.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn negative_control_unsafe_journal_loses_receipted_messages() {
    let mut opts = BrokerOptions::new("journal-crash-unsafe");
    opts.env.push((UNSAFE_ENV.to_owned(), "1".to_owned()));
    let out = crash_run(opts).await;
    let consumed: HashSet<&str> = out.consumed.iter().map(String::as_str).collect();
    let lost = out
        .receipted
        .iter()
        .filter(|r| !consumed.contains(r.as_str()))
        .count();
    assert!(
        lost > 0,
        "the unsafe journal lost nothing: the crash check could not tell ({} receipted, {} consumed)",
        out.receipted.len(),
        out.consumed.len()
    );
    eprintln!(
        "negative control: {lost} of {} receipted messages lost with the unsafe journal",
        out.receipted.len()
    );
}
