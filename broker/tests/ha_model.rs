//! A deterministic model of the replicated group, driven by proptest through
//! arbitrary interleavings of joins, crashes, restarts, session expiries,
//! partitions (messages delayed, reordered or dropped) and client writes.
//! Every node decides with the real `amq_broker::election` code; the model
//! supplies only ZooKeeper (members, elected node with compare-and-set), the
//! network (a bag of replicate/ack messages) and the logs.
//!
//! Checked after every step:
//! - no two nodes are master of the same epoch, and elected epochs increase;
//! - no node is elected that lacks a receipted record;
//! - no two receipted records share a position.
//!
//! The checker has teeth: with receipts that skip the slaves' acks proptest
//! finds a violation (`mutants_are_caught`); ranking candidates by position
//! alone, or forgetting the fencing promise on restart, fail the scripted
//! interleavings that show why each rule exists.

use amq_broker::election::{required_acks, Elected, EpochHistory, Local, Member, Role, Step, View};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestError, TestRunner};
use std::collections::BTreeMap;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mutant {
    None,
    /// A master receipts without waiting for any slave's ack.
    ReceiptWithoutAcks,
    /// Candidates are ranked by position alone (ActiveMQ's rule), ignoring
    /// the epoch of their last record.
    RankByPositionOnly,
    /// The fencing promise (`min_epoch`) is not persisted: a restarted node
    /// derives it from its log.
    ForgetPromiseOnRestart,
}

#[derive(Debug, Clone)]
enum Action {
    Register(usize),
    Publish(usize),
    Observe(usize),
    React(usize),
    LostMaster(usize),
    NoticeSessionLoss(usize),
    Expire(usize),
    Crash(usize),
    Restart(usize),
    Write(usize),
    SendReplicate {
        from: usize,
        to: usize,
    },
    SendAck(usize),
    Deliver(usize),
    Drop(usize),
    Receipt(usize),
    /// Every live node in turn takes each progress step once (register,
    /// publish, observe, react, replicate, ack, deliver, receipt), `rounds`
    /// times: lets the group settle between faults.
    Settle {
        rounds: usize,
        write: bool,
    },
}

fn action(n: usize) -> impl Strategy<Value = Action> {
    let node = 0..n;
    prop_oneof![
        3 => node.clone().prop_map(Action::Register),
        6 => node.clone().prop_map(Action::Publish),
        6 => node.clone().prop_map(Action::Observe),
        6 => node.clone().prop_map(Action::React),
        1 => node.clone().prop_map(Action::LostMaster),
        2 => node.clone().prop_map(Action::NoticeSessionLoss),
        1 => (0..8usize).prop_map(Action::Expire),
        1 => node.clone().prop_map(Action::Crash),
        2 => node.clone().prop_map(Action::Restart),
        5 => node.clone().prop_map(Action::Write),
        6 => (node.clone(), node.clone()).prop_map(|(from, to)| Action::SendReplicate { from, to }),
        5 => node.clone().prop_map(Action::SendAck),
        10 => (0..16usize).prop_map(Action::Deliver),
        1 => (0..16usize).prop_map(Action::Drop),
        4 => node.prop_map(Action::Receipt),
        8 => (1..4usize, any::<bool>()).prop_map(|(rounds, write)| Action::Settle { rounds, write }),
    ]
}

#[derive(Debug, Clone)]
enum Msg {
    /// The master's whole log as of sending, in `epoch`, on the slave's
    /// connection `conn` (a stream: it dies with the connection).
    Replicate {
        from: usize,
        to: usize,
        conn: u64,
        epoch: u64,
        log: Vec<u64>,
    },
    Ack {
        from: usize,
        to: usize,
        epoch: u64,
        position: u64,
    },
}

#[derive(Debug, Clone)]
struct Node {
    alive: bool,
    /// Epoch of the record at each position (index + 1): survives crashes.
    log: Vec<u64>,
    /// `min_epoch` survives crashes; the role does not.
    local: Local,
    session: Option<u64>,
    view: Option<View>,
    /// The epoch in which this follower's log was last reconciled with its
    /// master's history (it may ack only then).
    synced: Option<u64>,
    /// Master side: highest position acked per slave, in the current epoch.
    acks: BTreeMap<usize, u64>,
    /// Bumped on every role change and restart: a new replication connection.
    conn: u64,
}

impl Node {
    fn history(log: &[u64]) -> EpochHistory {
        let mut h = EpochHistory::new();
        for (i, &e) in log.iter().enumerate() {
            h.push(i as u64 + 1, e);
        }
        h
    }
}

struct Model {
    replicas: usize,
    mutant: Mutant,
    nodes: Vec<Node>,
    /// ZooKeeper: registrations by sequence number → (node, published member).
    members: BTreeMap<u64, (usize, Member)>,
    elected: Option<Elected>,
    next_seq: u64,
    net: Vec<Msg>,
    /// Receipted records: position → epoch.
    receipted: BTreeMap<u64, u64>,
    elections: usize,
}

impl Model {
    fn new(replicas: usize, mutant: Mutant) -> Self {
        let nodes = (0..replicas)
            .map(|i| Node {
                alive: true,
                log: Vec::new(),
                local: Local {
                    node_id: format!("n{i}"),
                    min_epoch: 0,
                    role: Role::Candidate,
                },
                session: None,
                view: None,
                synced: None,
                acks: BTreeMap::new(),
                conn: 0,
            })
            .collect();
        Self {
            replicas,
            mutant,
            nodes,
            members: BTreeMap::new(),
            elected: None,
            next_seq: 1,
            net: Vec::new(),
            receipted: BTreeMap::new(),
            elections: 0,
        }
    }

    fn member_of(&self, i: usize) -> Member {
        let n = &self.nodes[i];
        let mut tip = Node::history(&n.log).tip();
        if self.mutant == Mutant::RankByPositionOnly {
            tip.epoch = 0;
        }
        Member {
            node_id: n.local.node_id.clone(),
            seq: n.session.unwrap_or(0),
            weight: 1,
            status: n.local.status(tip),
        }
    }

    fn snapshot(&self) -> View {
        View {
            replicas: self.replicas,
            elected: self.elected.clone(),
            members: self.members.values().map(|(_, m)| m.clone()).collect(),
        }
    }

    fn apply(&mut self, i: usize, step: &Step) -> Result<(), String> {
        match step {
            Step::Claim { epoch, expected } => {
                if self.nodes[i].session.is_none() || &self.elected != expected {
                    return Ok(()); // the compare-and-set fails
                }
                for (&p, &e) in &self.receipted {
                    if self.nodes[i].log.get(p as usize - 1) != Some(&e) {
                        return Err(format!(
                            "node {i} elected for epoch {epoch} lacks receipted record {p}@{e}: log {:?}",
                            self.nodes[i].log
                        ));
                    }
                }
                if let Some(old) = &self.elected {
                    if *epoch <= old.epoch {
                        return Err(format!("epoch went from {} to {epoch}", old.epoch));
                    }
                }
                self.elected = Some(Elected {
                    epoch: *epoch,
                    node_id: self.nodes[i].local.node_id.clone(),
                });
                self.elections += 1;
                let n = &mut self.nodes[i];
                n.local.claimed(*epoch);
                // (no epoch-start record: the implementation writes none)
                n.acks.clear();
                n.conn += 1;
            }
            other => {
                let n = &mut self.nodes[i];
                n.local.apply(other);
                n.synced = None;
                n.acks.clear();
                n.conn += 1;
            }
        }
        Ok(())
    }

    fn step(&mut self, a: &Action) -> Result<(), String> {
        let n = self.nodes.len();
        match *a {
            Action::Register(i) => {
                if self.nodes[i].alive && self.nodes[i].session.is_none() {
                    let seq = self.next_seq;
                    self.next_seq += 1;
                    self.nodes[i].session = Some(seq);
                    let m = self.member_of(i);
                    self.members.insert(seq, (i, m));
                }
            }
            Action::Publish(i) => {
                if let (true, Some(seq)) = (self.nodes[i].alive, self.nodes[i].session) {
                    let m = self.member_of(i);
                    self.members.insert(seq, (i, m));
                }
            }
            Action::Observe(i) => {
                if self.nodes[i].alive && self.nodes[i].session.is_some() {
                    self.nodes[i].view = Some(self.snapshot());
                }
            }
            Action::React(i) => {
                let node = &self.nodes[i];
                if let (true, Some(view)) = (node.alive, &node.view) {
                    if let Some(step) = node.local.react(view) {
                        self.apply(i, &step)?;
                    }
                }
            }
            Action::LostMaster(i) => {
                if self.nodes[i].alive {
                    if let Some(step) = self.nodes[i].local.lost_master() {
                        self.apply(i, &step)?;
                    }
                }
            }
            Action::NoticeSessionLoss(i) => {
                if self.nodes[i].alive && self.nodes[i].session.is_none() {
                    if let Some(step) = self.nodes[i].local.lost_session() {
                        self.apply(i, &step)?;
                    }
                }
            }
            Action::Expire(k) => {
                if let Some(&seq) = self.members.keys().nth(k % self.members.len().max(1)) {
                    let (i, _) = self.members.remove(&seq).expect("present");
                    if self.nodes[i].session == Some(seq) {
                        self.nodes[i].session = None;
                    }
                }
            }
            Action::Crash(i) => {
                let node = &mut self.nodes[i];
                node.alive = false;
                node.local.role = Role::Candidate;
                node.view = None;
                node.synced = None;
                node.acks.clear();
                node.conn += 1;
                // The session lingers in ZooKeeper until it expires.
                node.session = None;
            }
            Action::Restart(i) => {
                let node = &mut self.nodes[i];
                if !node.alive {
                    node.alive = true;
                    if self.mutant == Mutant::ForgetPromiseOnRestart {
                        node.local.min_epoch = node.log.last().copied().unwrap_or(0);
                    }
                }
            }
            Action::Write(i) => {
                let node = &mut self.nodes[i];
                if let (true, Role::Master { epoch }) = (node.alive, &node.local.role) {
                    node.log.push(*epoch);
                }
            }
            Action::SendReplicate { from, to } => {
                let node = &self.nodes[from];
                if let (true, Role::Master { epoch }) = (node.alive, &node.local.role) {
                    if from != to && self.net.len() < 16 {
                        self.net.push(Msg::Replicate {
                            from,
                            to,
                            conn: self.nodes[to].conn,
                            epoch: *epoch,
                            log: node.log.clone(),
                        });
                    }
                }
            }
            Action::SendAck(i) => {
                let node = &self.nodes[i];
                if let (true, Role::Following { epoch, master }) = (node.alive, &node.local.role) {
                    if node.synced == Some(*epoch) && self.net.len() < 16 {
                        let to = (0..n)
                            .find(|&j| &self.nodes[j].local.node_id == master)
                            .expect("known master");
                        self.net.push(Msg::Ack {
                            from: i,
                            to,
                            epoch: *epoch,
                            position: node.log.len() as u64,
                        });
                    }
                }
            }
            Action::Deliver(k) | Action::Drop(k) if !self.net.is_empty() => {
                let msg = self.net.swap_remove(k % self.net.len());
                if matches!(a, Action::Deliver(_)) {
                    self.deliver(msg);
                }
            }
            Action::Deliver(_) | Action::Drop(_) => {}
            Action::Settle { rounds, write } => {
                for _ in 0..rounds {
                    for i in 0..n {
                        for a in [
                            Action::Register(i),
                            Action::Publish(i),
                            Action::Observe(i),
                            Action::React(i),
                            Action::Publish(i),
                        ] {
                            self.step(&a)?;
                        }
                    }
                    for i in 0..n {
                        if write {
                            self.step(&Action::Write(i))?;
                        }
                        for to in 0..n {
                            self.step(&Action::SendReplicate { from: i, to })?;
                        }
                        while !self.net.is_empty() {
                            self.step(&Action::Deliver(0))?;
                        }
                        for j in 0..n {
                            self.step(&Action::SendAck(j))?;
                        }
                        while !self.net.is_empty() {
                            self.step(&Action::Deliver(0))?;
                        }
                        self.step(&Action::Receipt(i))?;
                    }
                }
            }
            Action::Receipt(i) => {
                let node = &self.nodes[i];
                if let (true, Role::Master { epoch }) = (node.alive, &node.local.role) {
                    let need = match self.mutant {
                        Mutant::ReceiptWithoutAcks => 0,
                        _ => required_acks(self.replicas),
                    };
                    for (idx, &e) in node.log.iter().enumerate() {
                        let p = idx as u64 + 1;
                        if e != *epoch {
                            continue;
                        }
                        let acks = node.acks.values().filter(|&&a| a >= p).count();
                        if acks >= need {
                            match self.receipted.insert(p, e) {
                                Some(old) if old != e => {
                                    return Err(format!(
                                        "position {p} receipted in epoch {old} and again in epoch {e}"
                                    ));
                                }
                                _ => {}
                            }
                        }
                    }
                }
            }
        }
        self.check()
    }

    fn deliver(&mut self, msg: Msg) {
        match msg {
            Msg::Replicate {
                from,
                to,
                conn,
                epoch,
                log,
            } => {
                let master_id = self.nodes[from].local.node_id.clone();
                let slave = &mut self.nodes[to];
                let follows = matches!(&slave.local.role,
                    Role::Following { epoch: e, master } if *master == master_id && *e == epoch);
                if !slave.alive || conn != slave.conn || !follows || slave.local.min_epoch > epoch {
                    return;
                }
                // In-stream order: an older snapshot never undoes a newer one.
                if slave.synced == Some(epoch) && log.len() <= slave.log.len() {
                    return;
                }
                let common = Node::history(&log).common_prefix(&Node::history(&slave.log)) as usize;
                slave.log.truncate(common);
                slave.log.extend_from_slice(&log[common..]);
                slave.synced = Some(epoch);
            }
            Msg::Ack {
                from,
                to,
                epoch,
                position,
            } => {
                let master = &mut self.nodes[to];
                if master.alive && master.local.role == (Role::Master { epoch }) {
                    let a = master.acks.entry(from).or_insert(0);
                    *a = (*a).max(position);
                }
            }
        }
    }

    fn check(&self) -> Result<(), String> {
        let mut masters: BTreeMap<u64, usize> = BTreeMap::new();
        for (i, node) in self.nodes.iter().enumerate() {
            if let (true, Role::Master { epoch }) = (node.alive, &node.local.role) {
                if let Some(j) = masters.insert(*epoch, i) {
                    return Err(format!(
                        "nodes {j} and {i} are both master of epoch {epoch}"
                    ));
                }
            }
        }
        Ok(())
    }
}

fn run(replicas: usize, mutant: Mutant, actions: &[Action]) -> Result<Model, String> {
    let mut m = Model::new(replicas, mutant);
    for (k, a) in actions.iter().enumerate() {
        m.step(a).map_err(|e| format!("step {k} ({a:?}): {e}"))?;
    }
    Ok(m)
}

/// How deep the random runs went: (runs with a failover, i.e. two or more
/// elections, and receipts in a later epoch than the first; most elections).
#[derive(Debug, Default)]
struct Depth {
    failovers_with_receipts: usize,
    max_elections: usize,
}

fn check_model(replicas: usize, cases: u32, steps: usize, mutant: Mutant) -> Result<Depth, String> {
    let depth = std::sync::Mutex::new(Depth::default());
    // Unoptimised builds (the plain test command) explore a tenth as much;
    // `cargo test --release --test ha_model` runs the full budget.
    let cases = if cfg!(debug_assertions) {
        cases / 10
    } else {
        cases
    };
    let mut runner = TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    });
    let strategy = proptest::collection::vec(action(replicas), 1..steps);
    runner
        .run(&strategy, |actions| {
            let m = run(replicas, mutant, &actions).map_err(TestCaseError::fail)?;
            let mut d = depth.lock().unwrap();
            d.max_elections = d.max_elections.max(m.elections);
            let first_epoch = m.receipted.values().min().copied().unwrap_or(0);
            if m.elections >= 2 && m.receipted.values().any(|&e| e > first_epoch) && first_epoch > 0
            {
                d.failovers_with_receipts += 1;
            }
            Ok(())
        })
        .map(|()| depth.into_inner().unwrap())
        .map_err(|e| match e {
            TestError::Fail(why, actions) => format!("{why}\nactions: {actions:?}"),
            other => other.to_string(),
        })
}

#[test]
fn three_members_never_split_brain_nor_lose_a_receipt() {
    let depth = check_model(3, 3000, 300, Mutant::None).unwrap();
    eprintln!("{depth:?}");
    assert!(
        depth.failovers_with_receipts > 50 && depth.max_elections >= 4,
        "{depth:?}"
    );
}

#[test]
fn five_members_never_split_brain_nor_lose_a_receipt() {
    let depth = check_model(5, 1000, 400, Mutant::None).unwrap();
    eprintln!("{depth:?}");
    assert!(depth.failovers_with_receipts > 5, "{depth:?}");
}

#[test]
fn mutants_are_caught() {
    assert!(
        check_model(3, 20_000, 300, Mutant::ReceiptWithoutAcks).is_err(),
        "receipts without acks were not caught: the model is too weak"
    );
}

/// The model does make progress: a scripted cold start elects a master that
/// gets receipts, and after it dies the survivors elect one holding them.
#[test]
fn scripted_failover_keeps_receipts() {
    use Action::*;
    let mut script = vec![];
    for i in 0..3 {
        script.push(Register(i));
    }
    for i in 0..3 {
        script.push(Observe(i));
    }
    // Equal tips: the earliest registration (n0) wins.
    script.extend([React(0)]);
    let mut m = run(3, Mutant::None, &script).unwrap();
    assert_eq!(m.elected.as_ref().map(|e| e.node_id.as_str()), Some("n0"));
    let more = [
        Publish(0),
        Observe(1),
        React(1),
        Observe(2),
        React(2),
        Write(0),
        Write(0),
        SendReplicate { from: 0, to: 1 },
        Deliver(0),
        SendAck(1),
        Deliver(0),
        Receipt(0),
        Crash(0),
        LostMaster(1),
        LostMaster(2),
        Publish(1),
        Publish(2),
        Observe(1),
        Observe(2),
        React(1),
        React(2),
    ];
    for a in &more {
        m.step(a).unwrap();
    }
    assert_eq!(m.receipted.len(), 2, "both writes receipted");
    let e = m.elected.clone().unwrap();
    assert_eq!((e.epoch, e.node_id.as_str()), (3, "n1"));
    assert_eq!(m.elections, 2);
}

/// Fast failover relies on the fencing promise outliving a crash: a voter
/// that restarts and forgets it re-follows the stale master, which then
/// receipts a record the new master (elected from the voter's old tip)
/// lacks. Too specific for random search to find, so scripted.
#[test]
fn the_fencing_promise_must_survive_a_restart() {
    use Action::*;
    let script = [
        Register(0),
        Register(1),
        Register(2),
        Observe(0),
        React(0), // n0: master of epoch 1
        Observe(1),
        React(1),
        Observe(2),
        React(2),
        Publish(0),
        Publish(1),
        Publish(2),
        // n0 goes silent (paused) but keeps its session: both slaves fence it.
        LostMaster(1),
        LostMaster(2),
        Publish(1),
        Publish(2),
        Observe(1), // n1 sees it wins epoch 2 ...
        Crash(2),
        Restart(2),
        Register(2),
        Observe(2),
        React(2), // ... while n2, restarted, considers following n0 again
        Write(0),
        SendReplicate { from: 0, to: 2 },
        Deliver(0),
        SendAck(2),
        Deliver(0),
        Receipt(0),
        React(1), // n1 claims epoch 2 from its view
    ];
    let m = run(3, Mutant::None, &script).expect("safe with a persisted promise");
    assert_eq!(
        m.elected.as_ref().map(|e| (e.epoch, e.node_id.as_str())),
        Some((3, "n1"))
    );
    let err = run(3, Mutant::ForgetPromiseOnRestart, &script)
        .err()
        .expect("violation");
    assert!(err.contains("lacks receipted record"), "{err}");
}

/// Why tips compare the epoch of the last record before the position: a
/// demoted stale master holds a longer tail of unreceipted records, and
/// ranking by position alone (ActiveMQ's rule) would elect it over the slave
/// that holds the new master's receipted record.
#[test]
fn ranking_by_position_alone_would_lose_a_receipt() {
    use Action::*;
    let script = [
        Register(0),
        Register(1),
        Register(2),
        Observe(0),
        React(0), // n0: master of epoch 2
        Observe(1),
        React(1),
        Observe(2),
        React(2),
        LostMaster(1),
        LostMaster(2),
        Publish(1),
        Publish(2),
        Observe(1),
        React(1), // n1: master of epoch 3 ...
        Write(0),
        Write(0),
        Write(0), // ... while stale n0 writes a longer, unreceipted tail
        Observe(2),
        React(2), // n2 follows n1
        Write(1),
        SendReplicate { from: 1, to: 2 },
        Deliver(0),
        SendAck(2),
        Deliver(0),
        Receipt(1), // n1's record is receipted (n1 + n2)
        Observe(0),
        React(0), // n0 learns of epoch 3 and demotes
        Publish(0),
        Crash(1),
        LostMaster(2),
        Expire(1), // n1's session
        Observe(0),
        React(0),
        Publish(0),
        Publish(2),
        Observe(0),
        Observe(2),
        React(0),
        React(2),
    ];
    let m = run(3, Mutant::None, &script).expect("safe when tips compare epochs first");
    assert_eq!(
        m.elected.as_ref().map(|e| (e.epoch, e.node_id.as_str())),
        Some((4, "n2"))
    );
    let err = run(3, Mutant::RankByPositionOnly, &script)
        .err()
        .expect("violation");
    assert!(err.contains("lacks receipted record"), "{err}");
}
