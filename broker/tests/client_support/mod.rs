//! Real brokers for the client tests, behind one trait so that every
//! scenario runs against both: `amq-broker` (the harness's
//! [`BrokerProcess`]) and Debian's ActiveMQ 5.17 (the harness's process
//! recipe, with a kahaDB store and a STOMP connector on a free loopback
//! port). Both are killed by PID on drop.

#![allow(dead_code)] // each test crate uses a different part

use amq_harness::activemq::{ActiveMq as ActiveMqProcess, ACTIVEMQ_HOME};
use amq_harness::broker::{BrokerOptions, BrokerProcess};
use amq_harness::free_port;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// A running STOMP broker a test can crash and restart.
pub trait TestBroker: Send {
    fn stomp_port(&self) -> u16;
    /// `kill -9` by PID (and reap, so the port is free at once).
    fn kill(&mut self);
    /// Starts again on the same port and store.
    fn restart(&mut self);

    fn url(&self) -> String {
        format!("stomp://127.0.0.1:{}", self.stomp_port())
    }
    fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.stomp_port())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    AmqBroker,
    ActiveMq,
}

/// Starts a broker of `kind` with a store in `dir` (ActiveMQ) or its own
/// temporary directory (amq-broker); `users` turns on authentication.
pub fn start(kind: Kind, dir: &Path, users: &[(&str, &str)]) -> Box<dyn TestBroker> {
    match kind {
        Kind::ActiveMq => Box::new(ActiveMq::start(dir, users)),
        Kind::AmqBroker => {
            let mut opts = BrokerOptions::new(format!("client{}", free_port()));
            if !users.is_empty() {
                opts = opts.with_users(users);
            }
            Box::new(BrokerProcess::start(opts).expect("start amq-broker"))
        }
    }
}

impl TestBroker for BrokerProcess {
    fn stomp_port(&self) -> u16 {
        self.stomp_addr().port()
    }
    fn kill(&mut self) {
        self.kill9();
    }
    fn restart(&mut self) {
        BrokerProcess::restart(self).expect("restart amq-broker");
    }
}

/// One standalone ActiveMQ 5.17 broker with a kahaDB store in `dir` (kept
/// across restarts) and only a STOMP connector.
pub struct ActiveMq {
    pub dir: PathBuf,
    pub stomp_port: u16,
    users: Vec<(String, String)>,
    process: Option<ActiveMqProcess>,
}

impl TestBroker for ActiveMq {
    fn stomp_port(&self) -> u16 {
        self.stomp_port
    }
    fn kill(&mut self) {
        if let Some(mut p) = self.process.take() {
            p.kill();
        }
    }
    fn restart(&mut self) {
        self.kill();
        self.launch();
    }
}

impl ActiveMq {
    /// Starts a broker in `dir` and waits until STOMP answers.
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

    fn write_conf(&self) -> PathBuf {
        let conf = self.dir.join("conf");
        std::fs::create_dir_all(&conf).unwrap();
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
        let path = conf.join("activemq.xml");
        std::fs::write(&path, xml).unwrap();
        path
    }

    fn launch(&mut self) {
        let config = self.write_conf();
        let d = self.dir.display().to_string();
        let log = self.dir.join("activemq.log");
        std::fs::write(
            self.dir.join("conf/log4j.properties"),
            format!(
                "log4j.rootLogger=INFO, logfile\nlog4j.logger.org.springframework=WARN\n\
                 log4j.appender.logfile=org.apache.log4j.FileAppender\n\
                 log4j.appender.logfile.File={}\n\
                 log4j.appender.logfile.layout=org.apache.log4j.PatternLayout\n\
                 log4j.appender.logfile.layout.ConversionPattern=%d | %-5p | %m | %c%n\n",
                log.display()
            ),
        )
        .unwrap();
        std::fs::create_dir_all(self.dir.join("tmp")).unwrap();
        // The run-jar recipe of shared/reference/anchors/amq-broker.sh.
        let mut cmd = Command::new("java");
        cmd.args([
            "-Xms256M",
            "-Xmx256M",
            "-Dorg.apache.activemq.UseDedicatedTaskRunner=true",
        ]);
        for m in [
            "java.base/java.lang",
            "java.base/java.util",
            "java.base/java.net",
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
            .args([
                "-jar",
                &format!("{ACTIVEMQ_HOME}/bin/activemq.jar"),
                "start",
            ])
            .arg(format!("xbean:file:{}", config.display()))
            .current_dir(&self.dir);
        let name = format!("client{}", self.stomp_port);
        let mut process = ActiveMqProcess::start(&name, cmd, &self.dir, &log)
            .expect("start java (is Debian's activemq installed?)");
        let deadline = Instant::now() + Duration::from_secs(90);
        while !stomp_ready(self.stomp_port) {
            assert!(
                process.is_running(),
                "ActiveMQ exited during start-up:\n{}",
                process.log()
            );
            assert!(
                Instant::now() < deadline,
                "ActiveMQ not ready after 90 s:\n{}",
                process.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        self.process = Some(process);
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
