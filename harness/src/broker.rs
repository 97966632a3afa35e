//! A real `amq-broker` process for tests: a generated activemq.xml in a
//! temporary directory, STOMP and status ports picked free on 127.0.0.1, the
//! log in `broker.log`, and a [`ProcessGuard`] that kills it on drop.
//!
//! ```no_run
//! use amq_harness::broker::{BrokerOptions, BrokerProcess};
//! let mut b = BrokerProcess::start(BrokerOptions::new("b1")).unwrap();
//! let stomp = b.stomp_addr();          // 127.0.0.1:<free port>
//! let json = b.status().unwrap();       // GET /status
//! b.kill9();                            // crash it
//! b.restart().unwrap();                 // same directory, same ports
//! ```

use crate::process::{free_ports, ProcessGuard};
use std::fs;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// What goes into the generated activemq.xml and the command line.
#[derive(Debug, Clone)]
pub struct BrokerOptions {
    pub name: String,
    /// Content of `<persistenceAdapter>`; `None` means
    /// `<kahaDB directory="${activemq.data}/kahadb"/>`.
    pub persistence: Option<String>,
    /// More XML inside `<broker>` (plugins, destinationPolicy, systemUsage,
    /// networkConnectors, ...).
    pub extra_xml: String,
    /// Options appended to the STOMP connector URI (`maximumConnections=2`).
    pub stomp_options: String,
    /// The `amq-broker` binary; `None` finds it (see [`broker_binary`]).
    pub binary: Option<PathBuf>,
    pub env: Vec<(String, String)>,
    /// How long [`BrokerProcess::start`] waits for the ports.
    pub start_timeout: Duration,
    /// Fixed ports (pick them with [`crate::free_ports`] when brokers must
    /// know each other's addresses before they start); free ones if `None`.
    pub stomp_port: Option<u16>,
    pub status_port: Option<u16>,
}

impl BrokerOptions {
    pub fn new(name: impl Into<String>) -> Self {
        BrokerOptions {
            name: name.into(),
            persistence: None,
            extra_xml: String::new(),
            stomp_options: String::new(),
            binary: None,
            env: Vec::new(),
            start_timeout: Duration::from_secs(20),
            stomp_port: None,
            status_port: None,
        }
    }

    /// Adds a `<simpleAuthenticationPlugin>` with these `(user, password)`s.
    pub fn with_users(mut self, users: &[(&str, &str)]) -> Self {
        let mut xml = String::from("<plugins><simpleAuthenticationPlugin><users>");
        for (u, p) in users {
            xml.push_str(&format!(
                "<authenticationUser username=\"{u}\" password=\"{p}\" groups=\"users\"/>"
            ));
        }
        xml.push_str("</users></simpleAuthenticationPlugin></plugins>");
        self.extra_xml.push_str(&xml);
        self
    }
}

/// The `amq-broker` binary: `$AMQ_BROKER_BIN`, else next to the test
/// executable's directory (`target/<profile>/amq-broker`), where cargo puts
/// it when the broker package is built.
pub fn broker_binary() -> io::Result<PathBuf> {
    if let Ok(p) = std::env::var("AMQ_BROKER_BIN") {
        return Ok(PathBuf::from(p));
    }
    let exe = std::env::current_exe()?;
    for dir in exe.ancestors().skip(1).take(3) {
        let candidate = dir.join("amq-broker");
        if candidate.is_file() {
            return Ok(candidate);
        }
    }
    Err(io::Error::new(
        io::ErrorKind::NotFound,
        "amq-broker binary not found: build it (cargo build -p amq-broker) or set AMQ_BROKER_BIN",
    ))
}

pub struct BrokerProcess {
    opts: BrokerOptions,
    stomp_port: u16,
    status_port: u16,
    guard: Option<ProcessGuard>,
    // Dropped after `guard` (field order): the process dies before its dir.
    dir: tempfile::TempDir,
}

impl BrokerProcess {
    /// Writes the configuration, starts the broker and waits until both the
    /// status endpoint and the STOMP port answer.
    pub fn start(opts: BrokerOptions) -> io::Result<BrokerProcess> {
        let mut b = BrokerProcess::spawn(opts)?;
        b.wait_serving()?;
        Ok(b)
    }

    /// Starts without waiting for STOMP (a slave never opens it).
    pub fn spawn(opts: BrokerOptions) -> io::Result<BrokerProcess> {
        let dir = tempfile::Builder::new().prefix("amq-broker-").tempdir()?;
        let ports = free_ports(2);
        let mut b = BrokerProcess {
            stomp_port: opts.stomp_port.unwrap_or(ports[0]),
            status_port: opts.status_port.unwrap_or(ports[1]),
            opts,
            guard: None,
            dir,
        };
        fs::create_dir_all(b.dir.path().join("conf"))?;
        fs::write(b.config_path(), b.config_xml())?;
        b.launch()?;
        Ok(b)
    }

    fn config_xml(&self) -> String {
        let o = &self.opts;
        let persistence = o
            .persistence
            .clone()
            .unwrap_or_else(|| "<kahaDB directory=\"${activemq.data}/kahadb\"/>".into());
        let query = if o.stomp_options.is_empty() {
            String::new()
        } else {
            format!("?{}", o.stomp_options.replace('&', "&amp;"))
        };
        format!(
            r#"<beans xmlns="http://www.springframework.org/schema/beans">
  <broker xmlns="http://activemq.apache.org/schema/core" brokerName="{name}" dataDirectory="${{activemq.data}}">
    <persistenceAdapter>{persistence}</persistenceAdapter>
    <transportConnectors>
      <transportConnector name="stomp" uri="stomp://127.0.0.1:{port}{query}"/>
    </transportConnectors>
    {extra}
  </broker>
</beans>
"#,
            name = o.name,
            port = self.stomp_port,
            extra = o.extra_xml,
        )
    }

    fn launch(&mut self) -> io::Result<()> {
        let binary = match &self.opts.binary {
            Some(b) => b.clone(),
            None => broker_binary()?,
        };
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())?;
        let mut cmd = Command::new(binary);
        cmd.arg("--config")
            .arg(self.config_path())
            .arg("--status")
            .arg(self.status_addr().to_string())
            .arg(format!("-Dactivemq.data={}", self.data_dir().display()))
            .envs(self.opts.env.iter().cloned())
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        self.guard = Some(ProcessGuard::spawn(
            format!("amq-broker {}", self.opts.name),
            &mut cmd,
        )?);
        Ok(())
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("conf/activemq.xml")
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("broker.log")
    }

    pub fn log(&self) -> String {
        fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    pub fn stomp_addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.stomp_port))
    }

    pub fn status_addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.status_port))
    }

    pub fn pid(&self) -> u32 {
        self.guard.as_ref().map(ProcessGuard::pid).unwrap_or(0)
    }

    pub fn is_running(&mut self) -> bool {
        self.guard.as_mut().is_some_and(ProcessGuard::is_running)
    }

    /// Waits until the status endpoint answers.
    pub fn wait_status(&mut self) -> io::Result<()> {
        self.wait_until(|b| b.status().is_ok(), "the status endpoint")
    }

    /// Waits until the status endpoint and the STOMP port answer.
    pub fn wait_serving(&mut self) -> io::Result<()> {
        self.wait_until(
            |b| {
                b.status().is_ok()
                    && TcpStream::connect_timeout(&b.stomp_addr(), Duration::from_millis(100))
                        .is_ok()
            },
            "STOMP",
        )
    }

    fn wait_until(&mut self, ready: impl Fn(&Self) -> bool, what: &str) -> io::Result<()> {
        let deadline = Instant::now() + self.opts.start_timeout;
        while Instant::now() < deadline {
            if ready(self) {
                return Ok(());
            }
            if !self.is_running() {
                return Err(io::Error::other(format!(
                    "amq-broker {} exited before {what} answered; log:\n{}",
                    self.opts.name,
                    self.log()
                )));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Err(io::Error::new(
            io::ErrorKind::TimedOut,
            format!(
                "amq-broker {}: {what} did not answer in time; log:\n{}",
                self.opts.name,
                self.log()
            ),
        ))
    }

    /// `GET /status`: the JSON body.
    pub fn status(&self) -> io::Result<String> {
        self.http_get("/status")
    }

    /// `GET path` on the status endpoint: the body of a 200 answer.
    pub fn http_get(&self, path: &str) -> io::Result<String> {
        let mut s = TcpStream::connect_timeout(&self.status_addr(), Duration::from_millis(500))?;
        s.set_read_timeout(Some(Duration::from_secs(5)))?;
        write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")?;
        let mut resp = String::new();
        s.read_to_string(&mut resp)?;
        let (head, body) = resp
            .split_once("\r\n\r\n")
            .ok_or_else(|| io::Error::other("malformed HTTP answer"))?;
        if !head.starts_with("HTTP/1.0 200") && !head.starts_with("HTTP/1.1 200") {
            return Err(io::Error::other(format!(
                "GET {path}: {}",
                head.lines().next().unwrap_or("")
            )));
        }
        Ok(body.to_owned())
    }

    /// Sends a signal by PID (`libc::SIGSTOP` to freeze it, `SIGCONT`, ...).
    pub fn signal(&self, sig: i32) -> io::Result<()> {
        match &self.guard {
            Some(g) => g.signal(sig),
            None => Err(io::Error::new(io::ErrorKind::NotFound, "not running")),
        }
    }

    /// `kill -9` (and reap).
    pub fn kill9(&mut self) {
        if let Some(mut g) = self.guard.take() {
            g.kill();
        }
    }

    /// SIGTERM, then waits for the exit (SIGKILL after `timeout`).
    pub fn terminate(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let mut g = self.guard.take()?;
        let _ = g.signal(libc::SIGTERM);
        let status = g.wait_exit(timeout);
        g.kill();
        status
    }

    /// Starts the broker again over the same directory and ports (after
    /// [`kill9`](Self::kill9) or [`terminate`](Self::terminate)).
    pub fn restart(&mut self) -> io::Result<()> {
        self.kill9();
        self.launch()?;
        self.wait_serving()
    }
}
