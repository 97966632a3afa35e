//! The table of every service — host, ports, pid, broker role or ZooKeeper
//! mode — and the client failover URLs. Printed after a deploy and by
//! `amqctl status`.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use comfy_table::{presets::NOTHING, Table};

use crate::render::RenderedPlan;

use super::fleet::{parallel, Fleet};
use super::health::{broker_status, zk_srvr};
use super::service::{state_of, Service, ServiceState};

const PROBE: std::time::Duration = std::time::Duration::from_millis(1500);

/// Probes every service: pids from each host (one command per host), roles
/// and modes from the services themselves (all in parallel).
pub fn collect(fleet: &Fleet, all: &[Service<'_>]) -> Vec<ServiceState> {
    let pids: BTreeMap<String, Vec<Option<u32>>> = fleet.each(|name, host| {
        let here: Vec<Service<'_>> = all
            .iter()
            .filter(|s| s.host.name == name)
            .cloned()
            .collect();
        state_of(host, &here).unwrap_or_else(|_| vec![None; here.len()])
    });
    let mut pid_of: BTreeMap<&str, Option<u32>> = BTreeMap::new();
    for (host, list) in &pids {
        let here = all.iter().filter(|s| &s.host.name == host);
        for (s, pid) in here.zip(list) {
            pid_of.insert(&s.name, *pid);
        }
    }
    parallel(all, |s| {
        let reachable = fleet.get(&s.host.name).is_some();
        let pid = pid_of.get(s.name.as_str()).copied().flatten();
        let (role, detail) = match s.broker() {
            Some(_) => match broker_status(&s.probe_addr(), PROBE) {
                Ok(st) => (st.role, Some(st.raw)),
                Err(_) => (down_label(reachable, pid), None),
            },
            None => match zk_srvr(&s.probe_addr(), PROBE) {
                Ok(st) => {
                    let zxid = serde_json::json!({ "zxid": st.zxid });
                    (st.mode, Some(zxid))
                }
                Err(e) if pid.is_some() => (format!("not serving ({e})"), None),
                Err(_) => (down_label(reachable, pid), None),
            },
        };
        ServiceState {
            host: s.host.name.clone(),
            service: s.name.clone(),
            kind: if s.is_zookeeper() {
                "zookeeper"
            } else {
                "broker"
            },
            group: s.broker().map(|(g, _)| g.name.clone()),
            ports: s.ports(),
            pid,
            role,
            detail,
        }
    })
}

fn down_label(reachable: bool, pid: Option<u32>) -> String {
    match (reachable, pid) {
        (false, _) => "host unreachable".into(),
        (true, Some(_)) => "running, no answer".into(),
        (true, None) => "down".into(),
    }
}

/// The summary table and the failover URLs, as text.
pub fn render(states: &[ServiceState], plan: &RenderedPlan) -> String {
    let mut table = Table::new();
    table.load_style(NOTHING);
    table.set_header(vec![
        "HOST",
        "SERVICE",
        "KIND",
        "PORTS",
        "PID",
        "ROLE/MODE",
        "DETAIL",
    ]);
    for s in states {
        table.add_row(vec![
            s.host.clone(),
            s.service.clone(),
            match &s.group {
                Some(g) => format!("broker ({g})"),
                None => s.kind.to_string(),
            },
            s.ports.clone(),
            s.pid.map(|p| p.to_string()).unwrap_or_else(|| "-".into()),
            s.role.clone(),
            detail_text(s),
        ]);
    }
    let mut out = format!("{table}\n");
    let down: Vec<&str> = states
        .iter()
        .filter(|s| s.pid.is_none() && s.detail.is_none())
        .map(|s| s.service.as_str())
        .collect();
    if !down.is_empty() {
        let _ = writeln!(out, "down: {}", down.join(", "));
    }
    if !plan.failover_urls.is_empty() {
        out.push_str("client failover URLs:\n");
        for u in &plan.failover_urls {
            let _ = writeln!(out, "  {} (STOMP):    {}", u.group, u.stomp);
            let _ = writeln!(out, "  {} (OpenWire): {}", u.group, u.openwire);
        }
    }
    out
}

/// A short text of what the status document says beyond the role: the
/// master a slave follows, journal position and queue depths for a broker,
/// the zxid for ZooKeeper.
fn detail_text(s: &ServiceState) -> String {
    let Some(d) = &s.detail else {
        return String::new();
    };
    let mut parts = Vec::new();
    if let Some(m) = d.get("master").filter(|m| !m.is_null()) {
        parts.push(format!("master {}", plain(m)));
    }
    if let Some(z) = d.get("zxid") {
        parts.push(format!("zxid {}", plain(z)));
    }
    if let Some(p) = d.pointer("/journal/position") {
        parts.push(format!("journal {}", plain(p)));
    }
    if let Some(dests) = d.get("destinations").and_then(|q| q.as_array()) {
        let depths: Vec<String> = dests
            .iter()
            .filter(|q| q.get("type").and_then(|t| t.as_str()) != Some("topic"))
            .filter_map(|q| {
                Some(format!(
                    "{}={}",
                    plain(q.get("name")?),
                    plain(q.get("depth")?)
                ))
            })
            .collect();
        if !depths.is_empty() {
            parts.push(format!("queues {}", depths.join(" ")));
        }
    }
    parts.join("; ")
}

fn plain(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}
