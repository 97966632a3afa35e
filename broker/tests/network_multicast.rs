//! Multicast discovery (`multicast://default`: 239.255.2.3:6155, TTL 1),
//! confined to a network namespace this test creates: only `lo`, with
//! 224.0.0.0/4 routed to it, so no datagram can leave. The test thread joins
//! the namespace (setns), so the brokers it starts and its clients live there.

mod network_support;

use amq_broker::client::AckMode;
use network_support::*;
use std::process::Command;
use std::time::Duration;

/// A throwaway namespace, deleted on drop.
struct Netns(String);

impl Netns {
    fn create() -> Netns {
        let name = format!("amqmc-{}", std::process::id());
        let ns = Netns(name.clone());
        for args in [
            vec!["netns", "add", &name],
            vec!["-n", &name, "link", "set", "lo", "up"],
            vec!["-n", &name, "route", "add", "224.0.0.0/4", "dev", "lo"],
        ] {
            let out = Command::new("ip").args(&args).output().expect("ip");
            assert!(
                out.status.success(),
                "ip {}: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        ns
    }

    /// Moves the calling thread (and threads and processes it starts later)
    /// into the namespace.
    fn enter(&self) {
        use std::os::fd::AsRawFd;
        let f = std::fs::File::open(format!("/var/run/netns/{}", self.0)).expect("netns file");
        // SAFETY: a valid namespace fd; only this thread changes namespace.
        let r = unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) };
        assert_eq!(r, 0, "setns: {}", std::io::Error::last_os_error());
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

/// Bridges to whoever announces on the default group, and announces itself
/// (on an OpenWire connector, as rendered configs do; amq-broker announces
/// its STOMP connector).
const MULTICAST: &str = r#"<networkConnectors><networkConnector name="mc" uri="multicast://default"/></networkConnectors>
<transportConnectors><transportConnector name="openwire" uri="tcp://127.0.0.1:61616" discoveryUri="multicast://default"/></transportConnectors>"#;

#[test]
fn brokers_find_each_other_by_multicast_and_expire_a_dead_peer() {
    let ns = Netns::create();
    std::thread::spawn(move || {
        ns.enter();
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let mut b2 = start("m2", MULTICAST);
        let b1 = start("m1", MULTICAST);
        rt.block_on(async {
            let c2 = connect(b2.stomp_addr()).await;
            let mut sub = subscribe(&c2, "/queue/mc", AckMode::ClientIndividual).await;
            wait_demand(&b1, 1);
            let sent = produce(b1.stomp_addr(), "/queue/mc", &bodies("mc", 200)).await;
            assert_eq!(sent.len(), 200);
            let got = consume(&c2, &mut sub, 200, Duration::from_secs(10)).await;
            assert_eq!(got.len(), 200, "got {} of 200", got.len());
            assert_eq!(duplicates(&got), 0);
        });
        let to_m2 = || bridges(&b1).into_iter().find(|b| b["peer"] == "m2");
        wait_until("m1 to count 200 forwarded", Duration::from_secs(5), || {
            to_m2().is_some_and(|b| b["forwardedOut"] == 200)
        });
        assert_eq!(
            to_m2().unwrap()["uri"],
            format!("stomp://{}", b2.stomp_addr())
        );
        // And m2 found m1 the same way.
        assert!(bridges(&b2).iter().any(|b| b["peer"] == "m1"));

        // kill -9 sends no "dead": m1 expires m2 after 10 missed
        // announcements (5 s) and drops the bridge.
        b2.kill9();
        wait_until("m1 to expire m2", Duration::from_secs(15), || {
            bridges(&b1).is_empty()
        });
        drop(rt);
        drop(b1);
        drop(ns);
    })
    .join()
    .expect("the test thread");
}
