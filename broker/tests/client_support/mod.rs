//! Real brokers for the client tests: Debian's ActiveMQ 5.17 run from a
//! private directory on free loopback ports (as
//! `shared/reference/anchors/amq-broker.sh` does), killed by PID on drop.

#![allow(dead_code)] // each test crate uses a different part

use amq_harness::{free_port, ProcessGuard};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

pub const ACTIVEMQ_JAR: &str = "/usr/share/activemq/bin/activemq.jar";

/// One standalone ActiveMQ 5.17 broker with a kahaDB store in `dir` (kept
/// across restarts) and only a STOMP connector.
pub struct ActiveMq {
    pub dir: PathBuf,
    pub stomp_port: u16,
    users: Vec<(String, String)>,
    process: Option<ProcessGuard>,
}

impl ActiveMq {
    /// Starts a broker in `dir` and waits until STOMP answers CONNECTED.
    /// `users` turns on the simple authentication plugin.
    pub fn start(dir: &Path, users: &[(&str, &str)]) -> ActiveMq {
        let mut amq = ActiveMq {
            dir: dir.to_owned(),
            stomp_port: free_port(),
            users: users
                .iter()
                .map(|(u, p)| (u.to_string(), p.to_string()))
                .collect(),
            process: None,
        };
        amq.launch();
        amq
    }

    pub fn url(&self) -> String {
        format!("stomp://127.0.0.1:{}", self.stomp_port)
    }

    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.stomp_port)
    }

    fn write_conf(&self) {
        let conf = self.dir.join("conf");
        std::fs::create_dir_all(&conf).unwrap();
        std::fs::create_dir_all(self.dir.join("data")).unwrap();
        std::fs::create_dir_all(self.dir.join("tmp")).unwrap();
        let plugins = if self.users.is_empty() {
            String::new()
        } else {
            let users: String = self
                .users
                .iter()
                .map(|(u, p)| {
                    format!(r#"<authenticationUser username="{u}" password="{p}" groups="users,admins"/>"#)
                })
                .collect();
            format!("<plugins><simpleAuthenticationPlugin><users>{users}</users></simpleAuthenticationPlugin></plugins>")
        };
        let xml = format!(
            r#"<beans xmlns="http://www.springframework.org/schema/beans"
  xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"
  xsi:schemaLocation="http://www.springframework.org/schema/beans http://www.springframework.org/schema/beans/spring-beans.xsd
  http://activemq.apache.org/schema/core http://activemq.apache.org/schema/core/activemq-core.xsd">
  <bean class="org.springframework.beans.factory.config.PropertyPlaceholderConfigurer"/>
  <broker xmlns="http://activemq.apache.org/schema/core" brokerName="amq{port}" useJmx="false"
          dataDirectory="${{activemq.data}}" schedulerSupport="false">
    <persistenceAdapter><kahaDB directory="{dir}/data/kahadb"/></persistenceAdapter>
    {plugins}
    <transportConnectors>
      <transportConnector name="stomp" uri="stomp://127.0.0.1:{port}?maximumConnections=1000"/>
    </transportConnectors>
  </broker>
</beans>
"#,
            port = self.stomp_port,
            dir = self.dir.display(),
        );
        std::fs::write(conf.join("activemq.xml"), xml).unwrap();
        std::fs::write(
            conf.join("log4j.properties"),
            format!(
                "log4j.rootLogger=INFO, logfile\nlog4j.logger.org.springframework=WARN\n\
                 log4j.appender.logfile=org.apache.log4j.FileAppender\n\
                 log4j.appender.logfile.File={}/data/activemq.log\n\
                 log4j.appender.logfile.layout=org.apache.log4j.PatternLayout\n\
                 log4j.appender.logfile.layout.ConversionPattern=%d | %-5p | %m | %c%n\n",
                self.dir.display()
            ),
        )
        .unwrap();
    }

    fn launch(&mut self) {
        self.write_conf();
        let dir = self.dir.display().to_string();
        let out = std::fs::File::create(self.dir.join("broker.out")).unwrap();
        let mut cmd = Command::new("java");
        cmd.args([
            "-Xms256M",
            "-Xmx256M",
            "-Dorg.apache.activemq.UseDedicatedTaskRunner=true",
        ])
        .args([
            "--add-opens",
            "java.base/java.lang=ALL-UNNAMED",
            "--add-opens",
            "java.base/java.util=ALL-UNNAMED",
            "--add-opens",
            "java.base/java.net=ALL-UNNAMED",
        ])
        .arg(format!("-Djava.io.tmpdir={dir}/tmp"))
        .arg(format!("-Dactivemq.classpath={dir}/conf"))
        .arg("-Dactivemq.home=/usr/share/activemq")
        .arg(format!("-Dactivemq.base={dir}"))
        .arg(format!("-Dactivemq.conf={dir}/conf"))
        .arg(format!("-Dactivemq.data={dir}/data"))
        .arg(format!(
            "-Dlog4j.configuration=file:{dir}/conf/log4j.properties"
        ))
        .args(["-jar", ACTIVEMQ_JAR, "start"])
        .arg(format!("xbean:file:{dir}/conf/activemq.xml"))
        .current_dir(&self.dir)
        .stdin(Stdio::null())
        .stdout(out.try_clone().unwrap())
        .stderr(out);
        let mut guard = ProcessGuard::spawn(format!("activemq:{}", self.stomp_port), &mut cmd)
            .expect("start java (is Debian's activemq installed?)");
        let deadline = Instant::now() + Duration::from_secs(90);
        while !stomp_ready(self.stomp_port) {
            assert!(
                guard.is_running(),
                "ActiveMQ exited during start-up; see {}/broker.out",
                dir
            );
            assert!(
                Instant::now() < deadline,
                "ActiveMQ not ready after 90 s; see {dir}/data/activemq.log"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        self.process = Some(guard);
    }

    /// `kill -9` by PID (and reap, so the port is free at once).
    pub fn kill(&mut self) {
        if let Some(mut p) = self.process.take() {
            p.kill();
        }
    }

    /// Starts again on the same port and store.
    pub fn restart(&mut self) {
        self.kill();
        self.launch();
    }
}

/// Whether a STOMP CONNECT on `port` gets CONNECTED (or an auth ERROR, which
/// also means the broker is up).
pub fn stomp_ready(port: u16) -> bool {
    let Ok(mut s) = TcpStream::connect_timeout(
        &format!("127.0.0.1:{port}").parse().unwrap(),
        Duration::from_millis(200),
    ) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    if s.write_all(b"CONNECT\naccept-version:1.2\nhost:localhost\n\n\0")
        .is_err()
    {
        return false;
    }
    let mut buf = [0u8; 16];
    match s.read(&mut buf) {
        Ok(n) => buf[..n].starts_with(b"CONNECTED") || buf[..n].starts_with(b"ERROR"),
        Err(_) => false,
    }
}

/// A fresh queue name per test run, so reruns against a kept store do not mix.
pub fn unique_queue(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("/queue/{prefix}.{}.{nanos}", std::process::id())
}
