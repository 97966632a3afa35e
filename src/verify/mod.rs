//! `amqctl verify election|failover INVENTORY`: prove that a deployed
//! cluster does what the plan promises.
//!
//! - [`election`]: per group exactly one master, ZooKeeper's view and the
//!   brokers' status endpoints agree, slaves refuse clients (or redirect),
//!   the master has its slaves attached; the ensemble has a leader and a
//!   quorum; every hostname resolves on every host.
//! - [`failover`]: a receipted persistent producer and a consumer on the
//!   group's failover URL while the master is `kill -9`ed N times through
//!   the executor; election time, client pause, rejoin; nothing lost.
//!
//! Both print a check list (✓/✗ with the evidence, [`report`]) or JSON, and
//! exit non-zero on any ✗. Roles come from each broker's `/status`; a broker
//! without one (Debian's ActiveMQ) is judged by whether its STOMP connector
//! answers, which is what a shared-file slave's closed connectors mean.

pub mod election;
pub mod failover;
pub mod probe;
pub mod report;
pub mod zkview;

use crate::deploy::fleet::Fleet;
use crate::deploy::service::Service;
use crate::render::RenderedPlan;
use crate::topology::Topology;

/// Exit code of a verification that found a ✗.
pub const EXIT_FAILED: u8 = 1;

#[derive(Debug, clap::Args)]
pub struct VerifyArgs {
    #[command(subcommand)]
    pub what: What,
}

#[derive(Debug, clap::Subcommand)]
pub enum What {
    /// Exactly one master per group, ZooKeeper and the status endpoints
    /// agree, slaves refuse clients, the ensemble has a leader and a quorum,
    /// every hostname resolves on every host.
    Election(election::ElectionArgs),
    /// Kill the master N times under a receipted persistent load: a new
    /// master is elected in time, the client resumes, nothing is lost.
    Failover(failover::FailoverArgs),
}

pub fn run(args: VerifyArgs) -> anyhow::Result<()> {
    match args.what {
        What::Election(a) => election::run(a),
        What::Failover(a) => failover::run(a),
    }
}

/// A connected cluster: what verify works on.
pub struct Cluster<'t> {
    pub topo: &'t Topology,
    pub plan: &'t RenderedPlan,
    pub fleet: &'t Fleet,
    pub services: Vec<Service<'t>>,
}

impl<'t> Cluster<'t> {
    pub fn new(topo: &'t Topology, plan: &'t RenderedPlan, fleet: &'t Fleet) -> Cluster<'t> {
        Cluster {
            topo,
            plan,
            fleet,
            services: crate::deploy::service::services(topo, plan),
        }
    }

    /// The brokers of group `name`, in inventory order.
    pub fn members(&self, group: &str) -> Vec<&Service<'t>> {
        self.services
            .iter()
            .filter(|s| matches!(s.broker(), Some((g, _)) if g.name == group))
            .collect()
    }

    pub fn zookeeper(&self) -> Vec<&Service<'t>> {
        self.services.iter().filter(|s| s.is_zookeeper()).collect()
    }
}
