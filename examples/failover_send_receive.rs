//! Send and receive through a `failover:` URL with the library, printing
//! every connection event. Kill the broker it is connected to while it runs
//! and watch it move on without losing a receipted message.
//!
//! ```sh
//! cargo run --example failover_send_receive -- \
//!     'failover:(stomp://127.0.0.1:61613,stomp://127.0.0.1:61623)?randomize=false' /queue/demo 1000
//! ```
//! The STOMP passcode, if the broker wants one, comes from AMQ_USER /
//! AMQ_PASSWORD.

use amq_broker::client::{AckMode, ConnectOptions, OutgoingMessage};
use amq_broker::failover::{FailoverClient, FailoverUri};
use std::collections::BTreeSet;
use std::time::Duration;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let (Some(url), Some(destination)) = (args.next(), args.next()) else {
        eprintln!("usage: failover_send_receive URL DESTINATION [COUNT]");
        std::process::exit(2);
    };
    let count: u64 = args.next().map(|n| n.parse()).transpose()?.unwrap_or(100);

    let options = ConnectOptions {
        login: std::env::var("AMQ_USER").ok(),
        passcode: std::env::var("AMQ_PASSWORD").ok(),
        ..ConnectOptions::default()
    };
    // Every connect, disconnect and reconnect, with timestamps.
    let (client, mut events) = FailoverClient::start_observed(FailoverUri::parse(&url)?, options);
    tokio::spawn(async move {
        loop {
            match events.recv().await {
                Ok(event) => println!("event: {event}"),
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
            }
        }
    });
    client.wait_connected().await?;

    // The subscription survives failovers: the client re-subscribes.
    let mut subscription = client
        .subscribe(&destination, AckMode::ClientIndividual, &[])
        .await?;

    // Persistent sends return once the broker has the message; after a
    // failover the client re-sends whatever had no receipt yet.
    for n in 1..=count {
        let message = OutgoingMessage::new(destination.clone(), format!("message {n}"))
            .persistent(true)
            .header("n", n.to_string());
        client.send(message).await?;
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    println!("sent {count} receipted message(s)");

    // Receive them; duplicates are possible after a failover, losses are not.
    let mut seen = BTreeSet::new();
    while (seen.len() as u64) < count {
        let Ok(Some(message)) =
            tokio::time::timeout(Duration::from_secs(10), subscription.recv()).await
        else {
            break;
        };
        if let Some(n) = message.header("n").and_then(|n| n.parse::<u64>().ok()) {
            seen.insert(n);
        }
        client.ack(&message)?;
    }
    println!("received {} distinct message(s) of {count}", seen.len());
    client.close().await;
    if (seen.len() as u64) < count {
        return Err("some messages did not arrive".into());
    }
    Ok(())
}
