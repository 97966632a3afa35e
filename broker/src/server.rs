//! Accepting client connections: [`run`] serves one bound listener until
//! told to stop (what tests use, on `127.0.0.1:0`); [`serve`] opens the
//! configured connectors only while the broker's role allows serving and
//! closes them (and every client connection) the moment it does not.

use crate::broker::Broker;
use crate::connection::{self, ConnectionSettings};
use crate::stomp::{encode_to_bytes, Frame, Version};
use std::io;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// How long connections get to say goodbye when the server stops.
const CLOSE_GRACE: Duration = Duration::from_secs(5);

/// One client connector: where to listen and how to speak.
#[derive(Debug, Clone)]
pub struct Connector {
    pub name: String,
    /// `host:port` to bind.
    pub bind: String,
    pub settings: Arc<ConnectionSettings>,
    pub max_connections: Option<usize>,
}

/// Serves STOMP clients on `listener` until `shutdown` is cancelled; then
/// every connection is told (ERROR) and closed before this returns.
pub async fn run(
    listener: TcpListener,
    broker: Arc<Broker>,
    settings: Arc<ConnectionSettings>,
    max_connections: Option<usize>,
    shutdown: CancellationToken,
) {
    let mut connections = JoinSet::new();
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = shutdown.cancelled() => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
        };
        let (mut stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // Out of file descriptors and the like: back off, keep serving.
                tracing::warn!("accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        if max_connections.is_some_and(|m| connections.len() >= m) {
            tracing::warn!(%peer, "refused: maximumConnections reached");
            connections.spawn(async move {
                let err = Frame::error(
                    "maximum connections reached",
                    "the connector's maximumConnections limit is reached; try later",
                );
                if let Ok(bytes) = encode_to_bytes(&err, Version::V1_0) {
                    let _ = stream.write_all(&bytes).await;
                }
            });
            continue;
        }
        connections.spawn(connection::serve(
            stream,
            broker.clone(),
            settings.clone(),
            shutdown.clone(),
        ));
    }
    drop(listener);
    let drained = tokio::time::timeout(CLOSE_GRACE, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            "{} connections did not close in time; dropping them",
            connections.len()
        );
        connections.abort_all();
    }
}

/// Binds every connector, failing on the first that cannot listen.
pub async fn bind(connectors: &[Connector]) -> io::Result<Vec<TcpListener>> {
    let mut listeners = Vec::with_capacity(connectors.len());
    for c in connectors {
        let l = TcpListener::bind(&c.bind).await.map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("cannot listen on {} ({}): {e}", c.bind, c.name),
            )
        })?;
        tracing::info!(connector = %c.name, address = %l.local_addr()?, "listening for STOMP clients");
        listeners.push(l);
    }
    Ok(listeners)
}

/// Serves `connectors` whenever the broker's role allows it, until
/// `shutdown`. `listeners` (already bound, so start-up errors surface before
/// anything else happens) are used for the first serving period; later
/// periods (after a promotion) bind again. Losing the role closes the
/// listeners, so clients get "connection refused" and fail over.
pub async fn serve(
    broker: Arc<Broker>,
    connectors: Vec<Connector>,
    mut listeners: Option<Vec<TcpListener>>,
    shutdown: CancellationToken,
) -> io::Result<()> {
    let mut role = broker.watch_role();
    loop {
        tokio::select! {
            r = role.wait_for(|r| r.serves_clients()) => { if r.is_err() { return Ok(()); } }
            _ = shutdown.cancelled() => return Ok(()),
        }
        let bound = match listeners.take() {
            Some(l) => l,
            None => bind(&connectors).await?,
        };
        let serving = shutdown.child_token();
        let mut runs = JoinSet::new();
        for (l, c) in bound.into_iter().zip(&connectors) {
            runs.spawn(run(
                l,
                broker.clone(),
                c.settings.clone(),
                c.max_connections,
                serving.clone(),
            ));
        }
        tokio::select! {
            _ = role.wait_for(|r| !r.serves_clients()) => {
                tracing::info!(role = %broker.role(), "stopped serving clients");
            }
            _ = shutdown.cancelled() => {}
        }
        serving.cancel();
        while runs.join_next().await.is_some() {}
        if shutdown.is_cancelled() {
            return Ok(());
        }
    }
}

/// The STOMP connectors of a configuration, with its limits and users.
pub fn connectors(config: &crate::config::BrokerConfig) -> Vec<Connector> {
    config
        .stomp_connectors()
        .map(|c| {
            let mut settings = ConnectionSettings {
                authentication: config.authentication.clone(),
                ..ConnectionSettings::default()
            };
            if let Some(max) = c.max_frame_size() {
                settings.limits.max_frame_size = max;
            }
            if let Some(g) = c
                .options
                .get("transport.hbGracePeriodMultiplier")
                .and_then(|g| g.parse().ok())
            {
                settings.heartbeat_grace = g;
            }
            Connector {
                name: c.name.clone(),
                bind: c.bind_address(),
                settings: Arc::new(settings),
                max_connections: c.maximum_connections(),
            }
        })
        .collect()
}
