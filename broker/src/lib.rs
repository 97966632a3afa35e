//! amq-broker: a STOMP message broker with ActiveMQ Classic's clustering
//! features (failover transport, networks of brokers, master/slave).

pub mod broker;
pub mod cli;
pub mod client;
pub mod config;
pub mod connection;
pub mod coordination;
pub mod election;
pub mod failover;
pub mod ha;
pub mod lock;
pub mod message;
pub mod network;
pub mod replication;
pub mod role;
pub mod selector;
pub mod server;
pub mod status;
pub mod stomp;
pub mod store;
