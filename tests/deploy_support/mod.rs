//! Shared by the deploy and ssh integration tests: inventories from
//! `tests/fixtures/deploy_*.toml` with free ports and temp directories
//! filled in, the amqctl and amq-broker binaries, a guard that destroys a
//! deployed cluster (and kills any process it left, by PID) when the test
//! ends, and a tiny STOMP exchange to prove a broker really serves.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;
use std::time::Duration;

/// `amqctl` (built by cargo for this test).
pub fn amqctl() -> Command {
    Command::new(env!("CARGO_BIN_EXE_amqctl"))
}

/// The `amq-broker` binary, built once if cargo has not built it for us.
pub fn broker_bin() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let dir = Path::new(env!("CARGO_BIN_EXE_amqctl"))
            .parent()
            .unwrap()
            .to_path_buf();
        let bin = dir.join("amq-broker");
        if !bin.is_file() {
            let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
            let status = Command::new(cargo)
                .args(["build", "-p", "amq-broker", "--bin", "amq-broker"])
                .status()
                .expect("run cargo build -p amq-broker");
            assert!(status.success(), "building amq-broker failed");
        }
        assert!(bin.is_file(), "{} missing", bin.display());
        bin
    })
    .clone()
}

/// A fixture with every `{{key}}` replaced; keys ending in `_port`-like
/// names not given in `vars` get a free port each.
pub fn inventory(fixture: &str, vars: &BTreeMap<&str, String>) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(fixture);
    let text = std::fs::read_to_string(&path).unwrap();
    let mut out = String::new();
    let mut rest = text.as_str();
    let mut ports = unique_free_ports(64).into_iter();
    let mut assigned: BTreeMap<String, String> = BTreeMap::new();
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let end = rest[start..].find("}}").expect("closing }}") + start;
        let key = &rest[start + 2..end];
        let value = match vars.get(key) {
            Some(v) => v.clone(),
            None => assigned
                .entry(key.to_string())
                .or_insert_with(|| ports.next().expect("enough ports").to_string())
                .clone(),
        };
        out.push_str(&value);
        rest = &rest[end + 2..];
    }
    out.push_str(rest);
    out
}

/// Free ports never handed out before in this test process: tests run in
/// parallel, and a port one cluster released may be the next one's pick.
fn unique_free_ports(n: usize) -> Vec<u16> {
    static GIVEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    let mut given = GIVEN.lock().unwrap_or_else(|e| e.into_inner());
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        for p in amq_harness::free_ports(n) {
            if out.len() < n && !given.contains(&p) && !out.contains(&p) {
                out.push(p);
            }
        }
    }
    given.extend(&out);
    out
}

/// The result of one amqctl run.
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn of(out: Output) -> Run {
        Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// Services in the order the progress lines say they were stopped.
    pub fn stopped(&self) -> Vec<&str> {
        self.stderr
            .lines()
            .filter_map(|l| l.split("stopping ").nth(1))
            .collect()
    }

    #[track_caller]
    pub fn ok(self) -> Run {
        assert_eq!(
            self.code, 0,
            "stdout:\n{}\nstderr:\n{}",
            self.stdout, self.stderr
        );
        self
    }
}

/// A deployed cluster's base directory. On drop: `amqctl destroy
/// --purge-data`, then SIGKILL by PID for any service process still alive
/// (found through the pid files it had before).
pub struct Deployed {
    pub inventory: PathBuf,
    pub base: PathBuf,
    pub logs: PathBuf,
    /// How to run amqctl (directly, or inside a namespace).
    pub runner: Box<dyn Fn() -> Command>,
}

impl Deployed {
    pub fn amqctl(&self, args: &[&str]) -> Run {
        let mut cmd = (self.runner)();
        // `amqctl SUBCOMMAND INVENTORY [ARGS]`
        cmd.arg(args[0])
            .arg(&self.inventory)
            .args(&args[1..])
            .arg("--plain")
            .arg("--log-dir")
            .arg(&self.logs);
        Run::of(cmd.output().expect("run amqctl"))
    }

    pub fn deploy(&self, extra: &[&str]) -> Run {
        let bin = broker_bin();
        let mut args = vec![
            "deploy",
            "--broker-bin",
            bin.to_str().unwrap(),
            "--timeout",
            "60",
        ];
        args.extend_from_slice(extra);
        self.amqctl(&args)
    }

    /// `status --format json` as a map service → (pid, role).
    pub fn status(&self) -> (i32, BTreeMap<String, (Option<u64>, String)>) {
        let run = self.amqctl(&["status", "--format", "json"]);
        let doc: serde_json::Value = serde_json::from_str(&run.stdout)
            .unwrap_or_else(|e| panic!("status json: {e}\n{}\n{}", run.stdout, run.stderr));
        let map = doc["services"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| {
                (
                    s["service"].as_str().unwrap().to_string(),
                    (s["pid"].as_u64(), s["role"].as_str().unwrap().to_string()),
                )
            })
            .collect();
        (run.code, map)
    }

    /// Every pid recorded in a `run.pid` under the base directory (up to
    /// three levels deep: `<base>/<host>/<service>/run.pid`).
    pub fn recorded_pids(&self) -> Vec<u32> {
        fn walk(dir: &Path, depth: u32, out: &mut Vec<u32>) {
            let Ok(entries) = std::fs::read_dir(dir) else {
                return;
            };
            for e in entries.flatten() {
                let p = e.path();
                if p.file_name().is_some_and(|n| n == "run.pid") {
                    if let Ok(text) = std::fs::read_to_string(&p) {
                        out.extend(text.trim().parse::<u32>());
                    }
                } else if depth > 0 && p.is_dir() {
                    walk(&p, depth - 1, out);
                }
            }
        }
        let mut pids = Vec::new();
        walk(&self.base, 3, &mut pids);
        pids
    }
}

impl Drop for Deployed {
    fn drop(&mut self) {
        let pids = self.recorded_pids();
        let _ = self.amqctl(&["destroy", "--purge-data"]);
        for pid in pids {
            if is_alive(pid) {
                let _ = Command::new("kill").arg("-9").arg(pid.to_string()).status();
            }
        }
        let _ = std::fs::remove_dir_all(&self.base);
    }
}

/// Alive = exists and is not a zombie (a killed process lingers as one
/// until its parent, here init, reaps it).
pub fn is_alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            let state = stat.rsplit(')').next().unwrap_or("").trim_start();
            !(state.starts_with('Z') || state.starts_with('X'))
        }
        Err(_) => false,
    }
}

/// Sends one message to `queue` and receives it back on the same broker,
/// over raw STOMP 1.2 frames (TCP_NODELAY on).
pub fn stomp_roundtrip(addr: &str, queue: &str, body: &str) -> Result<String, String> {
    let mut s = TcpStream::connect(addr).map_err(|e| format!("connect {addr}: {e}"))?;
    s.set_nodelay(true).ok();
    s.set_read_timeout(Some(Duration::from_secs(10))).ok();
    let mut r = BufReader::new(s.try_clone().unwrap());
    let mut send = |frame: String| s.write_all(frame.as_bytes()).map_err(|e| e.to_string());
    send("CONNECT\naccept-version:1.2\nhost:localhost\n\n\0".into())?;
    let connected = read_frame(&mut r)?;
    if !connected.starts_with("CONNECTED") {
        return Err(format!("expected CONNECTED, got {connected}"));
    }
    send(format!(
        "SEND\ndestination:/queue/{queue}\nreceipt:r1\ncontent-type:text/plain\n\n{body}\0"
    ))?;
    let receipt = read_frame(&mut r)?;
    if !receipt.starts_with("RECEIPT") {
        return Err(format!("expected RECEIPT, got {receipt}"));
    }
    send(format!(
        "SUBSCRIBE\ndestination:/queue/{queue}\nid:1\nack:auto\n\n\0"
    ))?;
    let msg = read_frame(&mut r)?;
    if !msg.starts_with("MESSAGE") {
        return Err(format!("expected MESSAGE, got {msg}"));
    }
    let _ = send("DISCONNECT\n\n\0".into());
    Ok(msg.split("\n\n").nth(1).unwrap_or("").to_string())
}

fn read_frame(r: &mut impl BufRead) -> Result<String, String> {
    let mut buf = Vec::new();
    loop {
        buf.clear();
        r.read_until(0, &mut buf)
            .map_err(|e| format!("read: {e}"))?;
        if buf.is_empty() {
            return Err("connection closed".into());
        }
        let frame = String::from_utf8_lossy(&buf);
        let frame = frame
            .trim_start_matches(['\n', '\r'])
            .trim_end_matches('\0');
        if !frame.is_empty() {
            return Ok(frame.to_string());
        }
    }
}

/// Reads a whole small file or "" (for log assertions).
pub fn read(path: &Path) -> String {
    let mut s = String::new();
    if let Ok(mut f) = std::fs::File::open(path) {
        let _ = f.read_to_string(&mut s);
    }
    s
}

/// A fixture deployed through the local executor under a fresh temp dir.
/// Keep the returned `TempDir` alive as long as the cluster.
pub fn local_cluster(
    fixture: &str,
    name: &str,
    extra: &[(&str, &str)],
) -> (tempfile::TempDir, Deployed, String) {
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path().join("base");
    let mut vars = BTreeMap::from([
        ("name", name.to_string()),
        ("base", base.display().to_string()),
    ]);
    for (k, v) in extra {
        vars.insert(k, v.to_string());
    }
    let text = inventory(fixture, &vars);
    let inv = tmp.path().join("inventory.toml");
    std::fs::write(&inv, &text).unwrap();
    let d = Deployed {
        inventory: inv,
        base,
        logs: tmp.path().join("logs"),
        runner: Box::new(amqctl),
    };
    (tmp, d, text)
}

/// The value of `key = N` in the inventory entry named `name`.
pub fn port_of(text: &str, name: &str, key: &str) -> String {
    let at = text
        .find(&format!("name = \"{name}\""))
        .unwrap_or_else(|| panic!("no {name}"));
    text[at..]
        .lines()
        .find(|l| l.starts_with(key))
        .and_then(|l| l.split('=').nth(1))
        .unwrap_or_else(|| panic!("no {key} for {name}"))
        .trim()
        .to_string()
}

/// Asserts that `text` contains `needle`, showing all of `text` when not.
#[track_caller]
pub fn assert_has(text: &str, needle: &str) {
    assert!(text.contains(needle), "expected {needle:?} in:\n{text}");
}
