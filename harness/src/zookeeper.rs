//! A real ZooKeeper 3.8 ensemble for tests, run from Debian's jars
//! (`/usr/share/java/zookeeper.jar`) in a temporary directory, on free
//! loopback ports. Every JVM is owned by a [`ProcessGuard`], so the whole
//! ensemble dies with the value, also when a test panics.
//!
//! Node indexes are 0-based (`myid` is index + 1).

use crate::process::{free_ports, ProcessGuard};
use std::fmt;
use std::fs;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Debian's layout; `zookeeper.jar`'s manifest Class-Path pulls in jute,
/// netty and slf4j-api. slf4j-simple gives a log on stderr (else NOP).
const ZK_JARS: [&str; 2] = [
    "/usr/share/java/zookeeper.jar",
    "/usr/share/java/slf4j-simple.jar",
];

/// What a node answers to the `srvr` four-letter word.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ZkMode {
    Leader,
    Follower,
    Standalone,
    /// Up, but without a quorum ("This ZooKeeper instance is not currently serving requests").
    NotServing,
    /// Not accepting connections (stopped, killed, paused, or still starting).
    Down,
}

impl ZkMode {
    pub fn is_serving(self) -> bool {
        matches!(self, ZkMode::Leader | ZkMode::Follower | ZkMode::Standalone)
    }
}

/// Ensemble settings. `tick_ms` bounds the session timeouts the servers grant
/// (2×tick … 20×tick), so the default 500 ms admits ActiveMQ's default
/// `zkSessionTimeout` of 2 s.
#[derive(Debug, Clone)]
pub struct ZkOptions {
    pub size: usize,
    pub tick_ms: u64,
    pub heap_mb: u32,
    /// How long [`ZkEnsemble::start`] waits for a leader.
    pub start_timeout: Duration,
}

impl Default for ZkOptions {
    fn default() -> Self {
        Self {
            size: 3,
            tick_ms: 500,
            heap_mb: 128,
            start_timeout: Duration::from_secs(60),
        }
    }
}

struct ZkNode {
    client_port: u16,
    peer_port: u16,
    election_port: u16,
    dir: PathBuf,
    guard: Option<ProcessGuard>,
}

pub struct ZkEnsemble {
    opts: ZkOptions,
    nodes: Vec<ZkNode>,
    java: PathBuf,
    // Dropped after `nodes` (field order), so the JVMs die before their dirs go.
    dir: tempfile::TempDir,
}

impl fmt::Debug for ZkEnsemble {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ZkEnsemble")
            .field("dir", &self.dir.path())
            .field("connect", &self.connect_string())
            .finish()
    }
}

impl ZkEnsemble {
    /// Starts a 3-node ensemble and waits until it has a leader and every
    /// node serves.
    pub fn start() -> io::Result<Self> {
        Self::start_with(ZkOptions::default())
    }

    pub fn start_with(opts: ZkOptions) -> io::Result<Self> {
        for jar in ZK_JARS {
            if !Path::new(jar).exists() {
                return Err(io::Error::new(
                    io::ErrorKind::NotFound,
                    format!("{jar} is missing: install Debian's `zookeeper` and `libslf4j-java` (scripts/test.sh does)"),
                ));
            }
        }
        let java = std::env::var_os("JAVA")
            .map(PathBuf::from)
            .or_else(|| find_on_path("java"))
            .ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::NotFound,
                    "`java` not on PATH: install default-jre-headless",
                )
            })?;
        let dir = tempfile::Builder::new().prefix("amq-zk-").tempdir()?;
        let ports = free_ports(3 * opts.size);
        let nodes: Vec<ZkNode> = (0..opts.size)
            .map(|i| ZkNode {
                client_port: ports[3 * i],
                peer_port: ports[3 * i + 1],
                election_port: ports[3 * i + 2],
                dir: dir.path().join(format!("node{}", i + 1)),
                guard: None,
            })
            .collect();
        let mut ensemble = Self {
            opts,
            nodes,
            java,
            dir,
        };
        ensemble.write_configs()?;
        for i in 0..ensemble.nodes.len() {
            ensemble.launch(i)?;
        }
        let timeout = ensemble.opts.start_timeout;
        ensemble.wait_for_quorum(timeout)?;
        Ok(ensemble)
    }

    fn write_configs(&self) -> io::Result<()> {
        let servers: String = self
            .nodes
            .iter()
            .enumerate()
            .map(|(i, n)| {
                format!(
                    "server.{}=127.0.0.1:{}:{}\n",
                    i + 1,
                    n.peer_port,
                    n.election_port
                )
            })
            .collect();
        for (i, n) in self.nodes.iter().enumerate() {
            fs::create_dir_all(n.dir.join("data"))?;
            fs::write(n.dir.join("data/myid"), format!("{}\n", i + 1))?;
            let cfg = format!(
                "tickTime={tick}\ninitLimit=10\nsyncLimit=5\ndataDir={data}\n\
                 clientPort={port}\nclientPortAddress=127.0.0.1\n\
                 4lw.commands.whitelist=srvr,stat,ruok,mntr,conf\n\
                 admin.enableServer=false\n{servers}",
                tick = self.opts.tick_ms,
                data = n.dir.join("data").display(),
                port = n.client_port,
            );
            fs::write(n.dir.join("zoo.cfg"), cfg)?;
        }
        Ok(())
    }

    fn launch(&mut self, i: usize) -> io::Result<()> {
        let node = &self.nodes[i];
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(node.dir.join("zk.log"))?;
        let heap = format!("-Xmx{}m", self.opts.heap_mb);
        let mut cmd = Command::new(&self.java);
        cmd.args([
            "-Xms32m",
            heap.as_str(),
            // Small, short-lived test servers: start fast, stay small.
            "-XX:+UseSerialGC",
            "-XX:TieredStopAtLevel=1",
            "-Dorg.slf4j.simpleLogger.showDateTime=true",
            "-Dorg.slf4j.simpleLogger.dateTimeFormat=HH:mm:ss.SSS",
            "-cp",
            &ZK_JARS.join(":"),
            "org.apache.zookeeper.server.quorum.QuorumPeerMain",
        ])
        .arg(node.dir.join("zoo.cfg"))
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
        let guard = ProcessGuard::spawn(format!("zookeeper-{}", i + 1), &mut cmd)?;
        self.nodes[i].guard = Some(guard);
        Ok(())
    }

    pub fn size(&self) -> usize {
        self.nodes.len()
    }

    /// `127.0.0.1:p1,127.0.0.1:p2,…` — the form of `zkAddress`.
    pub fn connect_string(&self) -> String {
        self.nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.client_port))
            .collect::<Vec<_>>()
            .join(",")
    }

    pub fn client_addr(&self, i: usize) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.nodes[i].client_port))
    }

    pub fn pid(&self, i: usize) -> Option<u32> {
        self.nodes[i].guard.as_ref().map(|g| g.pid())
    }

    pub fn is_running(&mut self, i: usize) -> bool {
        self.nodes[i].guard.as_mut().is_some_and(|g| g.is_running())
    }

    /// Asks node `i` with `srvr` (bounded to about a second).
    pub fn mode(&self, i: usize) -> ZkMode {
        match four_letter_word(self.client_addr(i), "srvr") {
            Err(_) => ZkMode::Down,
            Ok(out) if out.contains("Mode: leader") => ZkMode::Leader,
            Ok(out) if out.contains("Mode: follower") => ZkMode::Follower,
            Ok(out) if out.contains("Mode: standalone") => ZkMode::Standalone,
            Ok(out) if out.contains("not currently serving") => ZkMode::NotServing,
            Ok(_) => ZkMode::Down,
        }
    }

    /// The index of the node that says it leads, if any.
    pub fn leader(&self) -> Option<usize> {
        (0..self.nodes.len()).find(|&i| self.mode(i) == ZkMode::Leader)
    }

    /// Waits until every running node serves and exactly one of them leads;
    /// returns the leader's index.
    pub fn wait_for_quorum(&mut self, timeout: Duration) -> io::Result<usize> {
        let deadline = Instant::now() + timeout;
        loop {
            let running: Vec<usize> = (0..self.nodes.len())
                .filter(|&i| self.is_running(i))
                .collect();
            let modes: Vec<(usize, ZkMode)> = running.iter().map(|&i| (i, self.mode(i))).collect();
            let leaders: Vec<usize> = modes
                .iter()
                .filter(|(_, m)| *m == ZkMode::Leader)
                .map(|(i, _)| *i)
                .collect();
            if leaders.len() == 1 && modes.iter().all(|(_, m)| m.is_serving()) {
                return Ok(leaders[0]);
            }
            if Instant::now() >= deadline {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!(
                        "ZooKeeper ensemble has no quorum after {timeout:?}: {modes:?}; logs under {}",
                        self.dir.path().display()
                    ),
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `kill -9` of node `i` (reaped, so it is really gone).
    pub fn kill(&mut self, i: usize) {
        if let Some(mut g) = self.nodes[i].guard.take() {
            g.kill();
        }
    }

    /// Kills the current leader; returns its index.
    pub fn kill_leader(&mut self) -> io::Result<usize> {
        let leader = self
            .leader()
            .ok_or_else(|| io::Error::other("the ensemble has no leader to kill"))?;
        self.kill(leader);
        Ok(leader)
    }

    /// Orderly stop: SIGTERM, then SIGKILL after 5 s.
    pub fn stop(&mut self, i: usize) {
        if let Some(mut g) = self.nodes[i].guard.take() {
            let _ = g.signal(libc::SIGTERM);
            if g.wait_exit(Duration::from_secs(5)).is_none() {
                g.kill();
            }
        }
    }

    /// Starts a stopped or killed node again with its old data (returns at
    /// once; use [`wait_for_quorum`](Self::wait_for_quorum) to wait for it).
    pub fn restart(&mut self, i: usize) -> io::Result<()> {
        self.kill(i);
        self.launch(i)
    }

    /// Sends a signal to node `i` (e.g. `libc::SIGSTOP`/`SIGCONT` to freeze it).
    pub fn signal(&self, i: usize, sig: i32) -> io::Result<()> {
        match &self.nodes[i].guard {
            Some(g) => g.signal(sig),
            None => Err(io::Error::new(io::ErrorKind::NotFound, "node not running")),
        }
    }

    /// Node `i`'s log, for failure messages.
    pub fn log(&self, i: usize) -> String {
        fs::read_to_string(self.nodes[i].dir.join("zk.log")).unwrap_or_default()
    }
}

/// Sends a four-letter word and returns the answer (the server closes the
/// connection after answering).
pub fn four_letter_word(addr: SocketAddr, word: &str) -> io::Result<String> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_millis(500))?;
    s.set_read_timeout(Some(Duration::from_secs(1)))?;
    s.set_write_timeout(Some(Duration::from_secs(1)))?;
    s.write_all(word.as_bytes())?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    Ok(out)
}

fn find_on_path(name: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ensemble_elects_a_leader_and_re_elects_after_leader_kill() {
        let mut zk = ZkEnsemble::start().expect("start ensemble");
        let leader = zk.leader().expect("a leader after start");
        let modes: Vec<ZkMode> = (0..3).map(|i| zk.mode(i)).collect();
        assert_eq!(modes.iter().filter(|m| **m == ZkMode::Leader).count(), 1);
        assert_eq!(
            modes.iter().filter(|m| **m == ZkMode::Follower).count(),
            2,
            "{modes:?}"
        );

        assert_eq!(zk.kill_leader().unwrap(), leader);
        assert_eq!(zk.mode(leader), ZkMode::Down);
        let new_leader = zk.wait_for_quorum(Duration::from_secs(30)).unwrap();
        assert_ne!(new_leader, leader);

        // One node alone has no quorum: it stops serving.
        let other = (0..3).find(|&i| i != leader && i != new_leader).unwrap();
        zk.kill(new_leader);
        let deadline = Instant::now() + Duration::from_secs(30);
        while zk.mode(other) != ZkMode::NotServing && zk.mode(other) != ZkMode::Down {
            assert!(Instant::now() < deadline, "lone node kept serving");
            std::thread::sleep(Duration::from_millis(50));
        }

        // Restarting both brings the quorum back, with the old data.
        zk.restart(leader).unwrap();
        zk.restart(new_leader).unwrap();
        zk.wait_for_quorum(Duration::from_secs(60)).unwrap();
        assert!((0..3).all(|i| zk.mode(i).is_serving()));
    }
}
