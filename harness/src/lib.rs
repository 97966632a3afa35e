//! Shared test harness for the whole workspace: free ports, process guards that
//! kill by PID on drop, and (in their own modules) ZooKeeper ensembles, brokers
//! and sshd test hosts. Tests in `tests/` and `broker/tests/` use only this.

pub mod activemq;
pub mod broker;
pub mod netns;
pub mod process;
pub mod sshd;
pub mod zookeeper;

pub use process::{free_port, free_ports, wait_for_port, ProcessGuard};
pub use zookeeper::{ZkEnsemble, ZkMode, ZkOptions};
