//! amq-broker: a STOMP message broker with ActiveMQ Classic's clustering
//! features (failover transport, networks of brokers, master/slave).

pub mod config;
pub mod client;
pub mod failover;
pub mod message;
pub mod stomp;
pub mod store;
