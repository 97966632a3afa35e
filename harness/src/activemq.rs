//! Debian's ActiveMQ 5.17 started from any `activemq.xml` in a private
//! directory (the recipe of `shared/reference/anchors/amq-broker.sh`: the run
//! jar directly, no wrapper, no service), killed by PID on drop.

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
    guard: ProcessGuard,
}

impl ActiveMq {
    /// Starts ActiveMQ on `config` with `dir` as its `activemq.base` (conf,
    /// data, tmp, logs) and returns at once; see [`ActiveMq::wait_stomp`].
    /// Logs go to `dir/activemq.log` (Debian's ActiveMQ uses log4j 1.2).
    pub fn spawn(name: &str, dir: &Path, config: &Path, heap: &str) -> io::Result<ActiveMq> {
        Self::spawn_in(None, name, dir, config, heap)
    }

    /// [`ActiveMq::spawn`] inside network namespace `netns` (`ip netns exec`,
    /// which execs java, so the guarded PID is the JVM's).
    pub fn spawn_in(
        netns: Option<&str>,
        name: &str,
        dir: &Path,
        config: &Path,
        heap: &str,
    ) -> io::Result<ActiveMq> {
        let conf = dir.join("conf");
        for d in [&conf, &dir.join("data"), &dir.join("tmp")] {
            std::fs::create_dir_all(d)?;
        }
        std::fs::write(
            conf.join("log4j.properties"),
            format!(
                "log4j.rootLogger=INFO, logfile\n\
                 log4j.logger.org.springframework=WARN\n\
                 log4j.logger.org.apache.xbean=WARN\n\
                 log4j.appender.logfile=org.apache.log4j.FileAppender\n\
                 log4j.appender.logfile.File={}/activemq.log\n\
                 log4j.appender.logfile.layout=org.apache.log4j.PatternLayout\n\
                 log4j.appender.logfile.layout.ConversionPattern=%d{{HH:mm:ss,SSS}} | %-5p | %m | %c%n\n",
                dir.display()
            ),
        )?;
        let d = dir.display();
        let out = std::fs::File::create(dir.join("broker.out"))?;
        let mut cmd = match netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns, "java"]);
                c
            }
            None => Command::new("java"),
        };
        cmd.arg(format!("-Xms{heap}"))
            .arg(format!("-Xmx{heap}"))
            .arg("-Dorg.apache.activemq.UseDedicatedTaskRunner=true")
            .arg("--add-reads=java.xml=java.logging");
        for m in [
            "java.base/java.security",
            "java.base/java.net",
            "java.base/java.lang",
            "java.base/java.util",
            "java.naming/javax.naming.spi",
            "java.rmi/sun.rmi.transport.tcp",
            "java.base/java.util.concurrent",
            "java.base/java.util.concurrent.atomic",
        ] {
            cmd.arg("--add-opens").arg(format!("{m}=ALL-UNNAMED"));
        }
        cmd.arg(format!("-Djava.io.tmpdir={d}/tmp"))
            .arg(format!("-Dactivemq.classpath={d}/conf"))
            .arg(format!("-Dactivemq.home={ACTIVEMQ_HOME}"))
            .arg(format!("-Dactivemq.base={d}"))
            .arg(format!("-Dactivemq.conf={d}/conf"))
            .arg(format!("-Dactivemq.data={d}/data"))
            .arg(format!(
                "-Dlog4j.configuration=file:{d}/conf/log4j.properties"
            ))
            .arg("-jar")
            .arg(format!("{ACTIVEMQ_HOME}/bin/activemq.jar"))
            .arg("start")
            .arg(format!("xbean:file:{}", config.display()))
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out);
        let guard = ProcessGuard::spawn(format!("activemq:{name}"), &mut cmd)?;
        Ok(ActiveMq {
            dir: dir.to_path_buf(),
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
        let read = |f: &str| std::fs::read_to_string(self.dir.join(f)).unwrap_or_default();
        format!("{}{}", read("activemq.log"), read("broker.out"))
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
