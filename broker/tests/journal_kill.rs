//! kill -9 of a process appending to the journal, at random moments, over
//! several rounds on the same directory: after each restart every append
//! that had resolved (fsync done) is there, every resolved ack is applied,
//! and nothing appears twice. A negative control with the unsafe sync mode
//! must lose resolved appends, so the check is known to bite.
//!
//! The appending process is this test binary re-run with `--ignored
//! --exact kill_child`; it logs each resolved append to a file (page cache
//! survives kill -9, so the log is complete up to the kill).

mod journal_util;

use amq_broker::store::{Journal, JournalOptions, Record, Store, UNSAFE_ENV};
use amq_harness::ProcessGuard;
use journal_util::*;
use std::collections::{HashMap, HashSet};
use std::fs;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const CHILD_DIR: &str = "JOURNAL_KILL_CHILD_DIR";
const CHILD_ROUND: &str = "JOURNAL_KILL_CHILD_ROUND";
const APPENDERS: usize = 8;

/// The appending process (only when started by the tests below).
#[test]
#[ignore = "helper process for the kill -9 tests"]
fn kill_child() {
    let (Ok(dir), Ok(round)) = (std::env::var(CHILD_DIR), std::env::var(CHILD_ROUND)) else {
        return;
    };
    let dir = Path::new(&dir).to_owned();
    let log = Arc::new(Mutex::new(
        fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join(format!("log-{round}")))
            .unwrap(),
    ));
    let note = move |line: String| {
        log.lock().unwrap().write_all(line.as_bytes()).unwrap();
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async move {
        let j: Arc<dyn Store> =
            Arc::new(Journal::open(dir.join("journal"), JournalOptions::default()).unwrap());
        let tasks: Vec<_> = (0..APPENDERS)
            .map(|t| {
                let (j, note, round) = (j.clone(), note.clone(), round.clone());
                tokio::spawn(async move {
                    let mut mine: Vec<String> = Vec::new();
                    // Bounded: the parent kills long before this ends.
                    for n in 0..20_000usize {
                        let ids: Vec<String> = (0..1 + n % 3)
                            .map(|k| format!("r{round}-t{t}-{n}-{k}"))
                            .collect();
                        let mut batch: Vec<Record> = ids.iter().map(|id| enq("q", id)).collect();
                        let acked = (n % 4 == 3 && !mine.is_empty()).then(|| mine.remove(0));
                        if let Some(id) = &acked {
                            note(format!("I {id}\n"));
                            batch.push(ack("q", id));
                        }
                        j.append(batch).await.unwrap();
                        let mut line = String::new();
                        for id in &ids {
                            line += &format!("E {id}\n");
                        }
                        if let Some(id) = acked {
                            line += &format!("A {id}\n");
                        }
                        note(line);
                        mine.extend(ids);
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
    });
}

#[derive(Default)]
struct Knowledge {
    /// Enqueues whose append resolved.
    enqueued: HashSet<String>,
    /// Acks that were attempted (may or may not have become durable).
    ack_intended: HashSet<String>,
    /// Acks whose append resolved.
    acked: HashSet<String>,
}

impl Knowledge {
    fn read_log(&mut self, path: &Path) -> usize {
        let text = fs::read_to_string(path).unwrap_or_default();
        // A line cut by the kill is ignored.
        let complete = &text[..text.rfind('\n').map_or(0, |i| i + 1)];
        let mut resolved = 0;
        for line in complete.lines() {
            match line.split_once(' ') {
                Some(("E", id)) => {
                    resolved += 1;
                    self.enqueued.insert(id.to_owned());
                }
                Some(("I", id)) => {
                    self.ack_intended.insert(id.to_owned());
                }
                Some(("A", id)) => {
                    self.acked.insert(id.to_owned());
                }
                _ => {}
            }
        }
        resolved
    }
}

fn log_lines(path: &Path) -> usize {
    fs::read(path)
        .map(|b| b.iter().filter(|&&c| c == b'\n').count())
        .unwrap_or(0)
}

/// Run the child until its log has `lines` lines, then kill -9 it.
fn run_and_kill(dir: &Path, round: usize, lines: usize, unsafe_mode: bool) {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args(["--ignored", "--exact", "kill_child", "--test-threads=1"])
        .env(CHILD_DIR, dir)
        .env(CHILD_ROUND, round.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    if unsafe_mode {
        cmd.env(UNSAFE_ENV, "1");
    } else {
        cmd.env_remove(UNSAFE_ENV);
    }
    let mut child = ProcessGuard::spawn("journal kill child", &mut cmd).unwrap();
    let log = dir.join(format!("log-{round}"));
    let deadline = Instant::now() + Duration::from_secs(60);
    while log_lines(&log) < lines {
        assert!(child.is_running(), "the appending process exited early");
        assert!(Instant::now() < deadline, "the appending process stalled");
        std::thread::sleep(Duration::from_micros(300));
    }
    child.kill();
}

/// Missing resolved enqueues after recovery; panics on any other violation.
fn check(dir: &Path, k: &Knowledge) -> Vec<String> {
    let j = Journal::open(dir.join("journal"), JournalOptions::default()).unwrap();
    let r = j.recover().unwrap();
    let live = ids(&r, "q");
    let mut count: HashMap<&str, usize> = HashMap::new();
    for id in &live {
        *count.entry(id).or_default() += 1;
    }
    for (id, n) in &count {
        assert_eq!(*n, 1, "{id} recovered {n} times");
        assert!(
            !k.acked.contains(*id),
            "{id} was acked durably yet came back"
        );
    }
    let mut missing: Vec<String> = k
        .enqueued
        .iter()
        .filter(|id| !k.ack_intended.contains(*id) && !count.contains_key(id.as_str()))
        .cloned()
        .collect();
    missing.sort();
    missing
}

#[test]
fn kill_9_while_appending_loses_nothing_that_resolved() {
    let dir = tempfile::tempdir().unwrap();
    let mut k = Knowledge::default();
    let mut rng = fastrand::Rng::with_seed(7);
    let mut resolved = 0;
    for round in 0..5 {
        run_and_kill(dir.path(), round, rng.usize(200..3000), false);
        resolved += k.read_log(&dir.path().join(format!("log-{round}")));
        let missing = check(dir.path(), &k);
        assert!(
            missing.is_empty(),
            "round {round}: {} resolved enqueues lost, e.g. {:?}",
            missing.len(),
            &missing[..missing.len().min(5)]
        );
    }
    eprintln!(
        "journal kill -9: 5 rounds, {resolved} resolved enqueues, {} resolved acks, all accounted for",
        k.acked.len()
    );
}

#[test]
fn negative_control_unsafe_mode_loses_resolved_appends() {
    let dir = tempfile::tempdir().unwrap();
    let mut k = Knowledge::default();
    run_and_kill(dir.path(), 0, 3000, true);
    k.read_log(&dir.path().join("log-0"));
    let missing = check(dir.path(), &k);
    assert!(
        !missing.is_empty(),
        "the unsafe mode lost nothing: the check could not tell ({} resolved)",
        k.enqueued.len()
    );
    eprintln!(
        "negative control: {} of {} resolved enqueues lost",
        missing.len(),
        k.enqueued.len()
    );
}
