//! The HTTP status endpoint (ActiveMQ's console listens on 8161):
//! `/status` is JSON for tools (`amqctl verify`, operators' scripts),
//! `/metrics` is Prometheus text.
//!
//! `/status` ([`BrokerStatus`]):
//! ```text
//! { "brokerName": "b1",
//!   "role": "standalone" | "master" | "slave",  "master": "tcp://..." (slaves),
//!   "uptimeSeconds": 12.5, "connections": 3,
//!   "memoryUsed": 1024, "memoryLimit": 67108864,
//!   "journal": { "position": 42, "epoch": 1,
//!                "stats": { "appends", "records", "writes", "fsyncs", "bytes",
//!                           "segments", "liveMessages" } } | null,
//!   "destinations": [ { "name": "orders", "type": "queue" | "topic",
//!                       "depth", "consumers", "enqueued", "dequeued",
//!                       "expired", "deadLettered" } ],
//!   ... }
//! ```

use crate::broker::{Broker, BrokerStatus};
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use std::fmt::Write;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub fn router(broker: Arc<Broker>) -> Router {
    Router::new()
        .route("/status", get(status))
        .route("/metrics", get(metrics))
        .with_state(broker)
}

/// Serves the endpoint on `listener` until `shutdown`.
pub async fn run(
    listener: TcpListener,
    broker: Arc<Broker>,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    axum::serve(listener, router(broker))
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await
}

async fn status(State(broker): State<Arc<Broker>>) -> Json<BrokerStatus> {
    Json(broker.status())
}

async fn metrics(State(broker): State<Arc<Broker>>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        prometheus_text(&broker.status()),
    )
}

/// Prometheus exposition format, one family per quantity.
pub fn prometheus_text(s: &BrokerStatus) -> String {
    let mut out = String::new();
    let broker = escape_label(&s.broker_name);
    let mut family = |name: &str, kind: &str, help: &str, samples: &[(String, f64)]| {
        let _ = writeln!(out, "# HELP amq_{name} {help}\n# TYPE amq_{name} {kind}");
        for (labels, v) in samples {
            let _ = writeln!(out, "amq_{name}{{broker=\"{broker}\"{labels}}} {v}");
        }
    };
    let one = |v: f64| vec![(String::new(), v)];
    family(
        "uptime_seconds",
        "gauge",
        "Seconds since the broker started.",
        &one(s.uptime_seconds),
    );
    family(
        "role",
        "gauge",
        "1 for the broker's current role.",
        &[(format!(",role=\"{}\"", s.role.name()), 1.0)],
    );
    family(
        "connections",
        "gauge",
        "Open client connections.",
        &one(s.connections as f64),
    );
    family(
        "memory_used_bytes",
        "gauge",
        "Bytes held by non-persistent messages.",
        &one(s.memory_used as f64),
    );
    family(
        "memory_limit_bytes",
        "gauge",
        "Memory limit for non-persistent messages.",
        &one(s.memory_limit as f64),
    );
    if let Some(j) = &s.journal {
        let st = &j.stats;
        for (name, kind, help, v) in [
            (
                "journal_position",
                "gauge",
                "Position of the last journal record.",
                j.position,
            ),
            (
                "journal_appends_total",
                "counter",
                "Batches appended to the journal.",
                st.appends,
            ),
            (
                "journal_records_total",
                "counter",
                "Records appended to the journal.",
                st.records,
            ),
            (
                "journal_fsyncs_total",
                "counter",
                "fdatasync calls of the journal.",
                st.fsyncs,
            ),
            (
                "journal_bytes_total",
                "counter",
                "Bytes appended to the journal.",
                st.bytes,
            ),
            (
                "journal_segments",
                "gauge",
                "Journal segment files on disk.",
                st.segments,
            ),
        ] {
            family(name, kind, help, &one(v as f64));
        }
    }
    let per_dest = |f: &dyn Fn(&crate::broker::DestinationStatus) -> f64| -> Vec<(String, f64)> {
        s.destinations
            .iter()
            .map(|d| {
                (
                    format!(
                        ",type=\"{}\",destination=\"{}\"",
                        d.kind,
                        escape_label(&d.name)
                    ),
                    f(d),
                )
            })
            .collect()
    };
    family(
        "destination_depth",
        "gauge",
        "Messages not yet acknowledged.",
        &per_dest(&|d| d.depth as f64),
    );
    family(
        "destination_consumers",
        "gauge",
        "Subscriptions on the destination.",
        &per_dest(&|d| d.consumers as f64),
    );
    family(
        "destination_enqueued_total",
        "counter",
        "Messages sent to the destination.",
        &per_dest(&|d| d.counters.enqueued as f64),
    );
    family(
        "destination_dequeued_total",
        "counter",
        "Messages acknowledged.",
        &per_dest(&|d| d.counters.dequeued as f64),
    );
    family(
        "destination_expired_total",
        "counter",
        "Messages expired.",
        &per_dest(&|d| d.counters.expired as f64),
    );
    family(
        "destination_dead_lettered_total",
        "counter",
        "Messages moved to a dead-letter queue after too many redeliveries.",
        &per_dest(&|d| d.counters.dead_lettered as f64),
    );
    let per_bridge = |f: &dyn Fn(&crate::network::BridgeStatus) -> u64| -> Vec<(String, f64)> {
        s.bridges
            .iter()
            .map(|b| {
                (
                    format!(
                        ",connector=\"{}\",peer=\"{}\",direction=\"{}\"",
                        escape_label(&b.name),
                        escape_label(b.peer.as_deref().unwrap_or("")),
                        b.direction
                    ),
                    f(b) as f64,
                )
            })
            .collect()
    };
    family(
        "bridge_forwarded_out_total",
        "counter",
        "Messages a network bridge forwarded to its peer (receipted).",
        &per_bridge(&|b| b.forwarded_out),
    );
    family(
        "bridge_forwarded_in_total",
        "counter",
        "Messages received from a network bridge's peer.",
        &per_bridge(&|b| b.forwarded_in),
    );
    family(
        "bridge_up",
        "gauge",
        "1 while an outbound network bridge is connected.",
        &per_bridge(&|b| u64::from(b.state == "up")),
    );
    family(
        "network_duplicates_total",
        "counter",
        "Copies of network-forwarded messages dropped by message id.",
        &one(s.network_duplicates as f64),
    );
    out
}

fn escape_label(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}
