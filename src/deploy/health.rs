//! Health probes amqctl runs itself (not through a host): ZooKeeper's
//! four-letter words on the client port, and the broker's `/status` JSON.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::Duration;

use serde::Serialize;

/// What `srvr` says about one ZooKeeper node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ZkStat {
    /// `leader`, `follower` or `standalone`.
    pub mode: String,
    /// The last zxid the node has seen (hex, as ZooKeeper prints it).
    pub zxid: String,
}

/// Sends a four-letter word and returns the whole answer.
pub fn four_letter(addr: &str, word: &str, timeout: Duration) -> std::io::Result<String> {
    let mut stream = connect(addr, timeout)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.write_all(word.as_bytes())?;
    let mut out = String::new();
    stream.read_to_string(&mut out)?;
    Ok(out)
}

/// `srvr`: the node's mode, or an error when it is not serving (no quorum
/// answers "This ZooKeeper instance is not currently serving requests").
pub fn zk_srvr(addr: &str, timeout: Duration) -> std::io::Result<ZkStat> {
    let text = four_letter(addr, "srvr", timeout)?;
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .map(|v| v.trim().to_string())
    };
    match field("Mode:") {
        Some(mode) => Ok(ZkStat {
            mode,
            zxid: field("Zxid:").unwrap_or_default(),
        }),
        None => Err(std::io::Error::other(format!(
            "not serving: {}",
            text.lines().next().unwrap_or("(empty answer)")
        ))),
    }
}

/// The broker's `/status` document. Fields beyond these are kept in `raw`
/// for `status --format json`.
#[derive(Debug, Clone, Serialize)]
pub struct BrokerStatus {
    /// `master`, `slave` or `standalone` (or whatever the broker reports while electing).
    pub role: String,
    pub broker_name: Option<String>,
    pub raw: serde_json::Value,
}

impl BrokerStatus {
    /// A node that serves clients.
    pub fn is_active(&self) -> bool {
        matches!(self.role.as_str(), "master" | "standalone")
    }
}

/// `GET /status` over plain HTTP/1.0 (a JSON document on the broker's status port).
pub fn broker_status(addr: &str, timeout: Duration) -> std::io::Result<BrokerStatus> {
    let body = http_get(addr, "/status", timeout)?;
    let raw: serde_json::Value = serde_json::from_slice(&body).map_err(|e| {
        std::io::Error::other(format!("/status is not JSON ({e}): {}", preview(&body)))
    })?;
    let text = |key: &str| raw.get(key).and_then(|v| v.as_str()).map(str::to_string);
    let role = text("role")
        .ok_or_else(|| std::io::Error::other(format!("/status has no role: {}", preview(&body))))?;
    Ok(BrokerStatus {
        role,
        broker_name: text("brokerName").or_else(|| text("broker_name")),
        raw,
    })
}

fn http_get(addr: &str, path: &str, timeout: Duration) -> std::io::Result<Vec<u8>> {
    let mut stream = connect(addr, timeout)?;
    stream.set_read_timeout(Some(timeout))?;
    write!(
        stream,
        "GET {path} HTTP/1.0\r\nHost: {addr}\r\nAccept: application/json\r\nConnection: close\r\n\r\n"
    )?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response)?;
    let split = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| std::io::Error::other("malformed HTTP response"))?;
    let head = String::from_utf8_lossy(&response[..split]).into_owned();
    let status_line = head.lines().next().unwrap_or_default();
    if status_line.split_whitespace().nth(1) != Some("200") {
        return Err(std::io::Error::other(format!("GET {path}: {status_line}")));
    }
    Ok(response[split + 4..].to_vec())
}

fn connect(addr: &str, timeout: Duration) -> std::io::Result<TcpStream> {
    let addrs: Vec<SocketAddr> = addr.to_socket_addrs()?.collect();
    let mut last = std::io::Error::other(format!("{addr} resolves to no address"));
    for a in addrs {
        match TcpStream::connect_timeout(&a, timeout) {
            Ok(s) => {
                let _ = s.set_nodelay(true);
                return Ok(s);
            }
            Err(e) => last = e,
        }
    }
    Err(last)
}

fn preview(body: &[u8]) -> String {
    String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    fn serve_once(answer: &'static [u8]) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            // Read the whole request before answering and drain whatever is
            // left before closing: closing with unread bytes sends a RST,
            // which the client would see as "connection reset" instead of
            // the answer.
            s.set_read_timeout(Some(Duration::from_millis(200)))
                .unwrap();
            let mut req = Vec::new();
            let mut buf = [0u8; 512];
            while let Ok(n @ 1..) = s.read(&mut buf) {
                req.extend_from_slice(&buf[..n]);
                if req.ends_with(b"\r\n\r\n") || req == b"srvr" {
                    break;
                }
            }
            s.write_all(answer).unwrap();
            let _ = s.shutdown(std::net::Shutdown::Write);
            while let Ok(1..) = s.read(&mut buf) {}
        });
        addr
    }

    #[test]
    fn parses_srvr_and_not_serving() {
        let addr = serve_once(b"Zookeeper version: 3.8.0\nLatency min/avg/max: 0/0.0/0\nZxid: 0x100000002\nMode: leader\nNode count: 5\n");
        let stat = zk_srvr(&addr, Duration::from_secs(2)).unwrap();
        assert_eq!(stat.mode, "leader");
        assert_eq!(stat.zxid, "0x100000002");
        let addr = serve_once(b"This ZooKeeper instance is not currently serving requests\n");
        let err = zk_srvr(&addr, Duration::from_secs(2)).unwrap_err();
        assert!(err.to_string().contains("not serving"), "{err}");
    }

    #[test]
    fn parses_status_json_and_rejects_non_200() {
        let addr = serve_once(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n\r\n{\"role\":\"slave\",\"brokerName\":\"g1\"}");
        let st = broker_status(&addr, Duration::from_secs(2)).unwrap();
        assert_eq!(st.role, "slave");
        assert_eq!(st.broker_name.as_deref(), Some("g1"));
        assert!(!st.is_active());
        let addr = serve_once(b"HTTP/1.1 503 Service Unavailable\r\n\r\n");
        let err = broker_status(&addr, Duration::from_secs(2)).unwrap_err();
        assert!(err.to_string().contains("503"), "{err}");
    }
}
