//! Debian's ActiveMQ 5.17 as a test process: started from a command (such as
//! the `run.sh` amqctl renders for `broker = "activemq"`, which runs the jar
//! directly as `shared/reference/anchors/amq-broker.sh` does), watched
//! through its log, killed by PID on drop; plus a loopback-only network
//! namespace for multicast.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::ProcessGuard;

pub const ACTIVEMQ_HOME: &str = "/usr/share/activemq";

/// Whether Debian's `activemq` package is installed.
pub fn activemq_installed() -> bool {
    Path::new(ACTIVEMQ_HOME).join("bin/activemq.jar").exists()
}

/// One ActiveMQ JVM.
pub struct ActiveMq {
    dir: PathBuf,
    log: PathBuf,
    guard: ProcessGuard,
}

impl ActiveMq {
    /// Starts ActiveMQ with `cmd` (e.g. a rendered `run.sh` that `exec`s
    /// java, so the guarded PID is the JVM's); `log` is the file its log4j
    /// config writes. The command's stdout/stderr go to `dir/broker.out`.
    pub fn start(name: &str, mut cmd: Command, dir: &Path, log: &Path) -> io::Result<ActiveMq> {
        std::fs::create_dir_all(dir)?;
        let out = std::fs::File::create(dir.join("broker.out"))?;
        cmd.stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out);
        let guard = ProcessGuard::spawn(format!("activemq:{name}"), &mut cmd)?;
        Ok(ActiveMq {
            dir: dir.to_path_buf(),
            log: log.to_path_buf(),
            guard,
        })
    }

    pub fn pid(&self) -> u32 {
        self.guard.pid()
    }

    pub fn is_running(&mut self) -> bool {
        self.guard.is_running()
    }

    /// The broker's log and its stdout/stderr, for assertions and failure messages.
    pub fn log(&self) -> String {
        let read = |f: &Path| std::fs::read_to_string(f).unwrap_or_default();
        format!("{}{}", read(&self.log), read(&self.dir.join("broker.out")))
    }

    /// Waits until a STOMP CONNECT on `addr` is answered, or fails with the
    /// log (also when the JVM exits first).
    pub fn wait_stomp(&mut self, addr: SocketAddr, timeout: Duration) -> Result<(), String> {
        let deadline = Instant::now() + timeout;
        loop {
            if stomp_connected(addr) {
                return Ok(());
            }
            if !self.guard.is_running() {
                return Err(format!("ActiveMQ exited during start-up:\n{}", self.log()));
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "no STOMP CONNECTED on {addr} after {timeout:?}:\n{}",
                    self.log()
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits until the log contains `needle`.
    pub fn wait_log(&self, needle: &str, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if self.log().contains(needle) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }

    /// `kill -9` by PID and reap.
    pub fn kill(&mut self) {
        self.guard.kill();
    }
}

/// A network namespace of its own with only `lo` up and a multicast route on
/// it (so multicast stays inside); deleted on drop. Drop the processes
/// running in it first.
pub struct LoopbackNetns {
    name: String,
}

impl LoopbackNetns {
    pub fn create(name: &str) -> io::Result<LoopbackNetns> {
        let ip = |args: &[&str]| -> io::Result<()> {
            let st = Command::new("ip").args(args).status()?;
            if st.success() {
                Ok(())
            } else {
                Err(io::Error::other(format!("ip {} failed", args.join(" "))))
            }
        };
        let _ = Command::new("ip")
            .args(["netns", "del", name])
            .stderr(Stdio::null())
            .status();
        ip(&["netns", "add", name])?;
        let ns = LoopbackNetns {
            name: name.to_string(),
        };
        ip(&["-n", name, "link", "set", "lo", "up"])?;
        ip(&["-n", name, "route", "add", "224.0.0.0/4", "dev", "lo"])?;
        Ok(ns)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Polls (up to `timeout`) until a STOMP CONNECT to 127.0.0.1:`port`
    /// inside the namespace is answered with CONNECTED.
    pub fn wait_stomp(&self, port: u16, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if self.stomp_connected(port) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        false
    }

    /// Whether a STOMP CONNECT to 127.0.0.1:`port` inside the namespace is
    /// answered with CONNECTED (checked by a bounded bash from inside it).
    pub fn stomp_connected(&self, port: u16) -> bool {
        let script = format!(
            "exec 3<>/dev/tcp/127.0.0.1/{port} || exit 1; \
             printf 'CONNECT\\naccept-version:1.2\\nhost:localhost\\n\\n\\0' >&3; \
             IFS= read -r -t 2 line <&3 && [ \"$line\" = CONNECTED ]"
        );
        Command::new("timeout")
            .args([
                "3", "ip", "netns", "exec", &self.name, "bash", "-c", &script,
            ])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }
}

impl Drop for LoopbackNetns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

/// Whether a STOMP 1.2 CONNECT to `addr` is answered with CONNECTED.
pub fn stomp_connected(addr: SocketAddr) -> bool {
    let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_millis(200)) else {
        return false;
    };
    let _ = s.set_nodelay(true);
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    if s.write_all(b"CONNECT\naccept-version:1.2\nhost:localhost\n\n\0")
        .is_err()
    {
        return false;
    }
    let mut buf = [0u8; 10];
    let mut got = 0;
    while got < buf.len() {
        match s.read(&mut buf[got..]) {
            Ok(0) | Err(_) => break,
            Ok(n) => got += n,
        }
    }
    buf[..got].starts_with(b"CONNECTED\n")
}
