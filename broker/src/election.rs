//! Who is master, in which epoch: the pure election and fencing rules of the
//! replicated store. No I/O and no clocks, so `tests/ha_model.rs` can drive
//! every interleaving of joins, crashes, session expiries and partitions
//! through exactly this code; `coordination` feeds it what ZooKeeper shows
//! and carries out what it returns.
//!
//! # The rules
//! - Every member publishes a [`Status`]. A member that lost (or never had)
//!   a master is a **candidate** and reports its log [`Tip`] and `min_epoch`:
//!   the promise, persisted before it is published, never to accept a record
//!   of an epoch below it again.
//! - The elected master and its epoch live in one ZooKeeper node, replaced
//!   only by compare-and-set, so epochs strictly increase and each has one
//!   master.
//! - While the elected master stands (registered, and master or still
//!   promoting), nobody else is elected. When it is gone — or as soon as a
//!   quorum (`replicas/2+1`) of members have fenced its epoch, which is what
//!   lets a failover happen before the dead master's session expires — the
//!   candidates that fenced it elect the one with the highest tip (epoch of
//!   its last record, then position), ties to the higher weight, then the
//!   earliest registration.
//!
//! # Why that is safe
//! A receipt needs `replicas/2` slave acks in the master's epoch, so a
//! receipted record is on `replicas/2+1` members. The voters are
//! `replicas/2+1` members that no longer accept that epoch, so they overlap
//! the record's holders, their tips are final, and the highest tip holds
//! every receipted record (the argument of Raft's leader completeness, with
//! tips compared as Raft compares logs). A stale master — paused, partitioned,
//! or not yet aware its session expired — can still append locally, but can
//! no longer gather the acks for a receipt.

use std::cmp::Ordering;
use std::collections::BTreeMap;

/// The first epoch an election hands out: above the epoch a standalone
/// broker stamps on its records (1), so a journal written standalone never
/// looks like part of an elected master's history.
pub const FIRST_EPOCH: u64 = 2;

/// Quorum of a group of `replicas` members: `replicas/2 + 1`.
pub fn quorum(replicas: usize) -> usize {
    replicas / 2 + 1
}

/// Slave acks a receipt needs besides the master's own copy: `replicas/2`.
pub fn required_acks(replicas: usize) -> usize {
    replicas / 2
}

/// The end of a log: the epoch of its last record and its position. Ordered
/// epoch first, so a log that saw a later master outranks a longer log that
/// did not (the longer one holds a stale master's unreceipted tail).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Tip {
    pub epoch: u64,
    pub position: u64,
}

/// What a member publishes about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status {
    /// Serving as master of `epoch`.
    Master { epoch: u64 },
    /// Replicating from the master of `epoch`.
    Following { epoch: u64 },
    /// Without a master: will accept no record of an epoch below `min_epoch`.
    Candidate { min_epoch: u64, tip: Tip },
}

/// One registered member as ZooKeeper shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// Stable identity of the node (kept in its data directory).
    pub node_id: String,
    /// Registration order (the ephemeral sequential node's number).
    pub seq: u64,
    pub weight: i32,
    pub status: Status,
}

/// The content of the elected node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Elected {
    pub epoch: u64,
    pub node_id: String,
}

/// A consistent snapshot of the group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct View {
    pub replicas: usize,
    pub elected: Option<Elected>,
    pub members: Vec<Member>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// The elected master stands.
    Stands,
    /// `winner` is to become master of `epoch`, by compare-and-set of the
    /// elected node from the current one.
    Elect { winner: String, epoch: u64 },
    /// The standing master has been fenced by some members but fewer than a
    /// quorum (a partial partition): it should move itself to `epoch` so they
    /// can follow it again.
    Reassert { epoch: u64 },
    /// No master can be elected: too few candidates have fenced the old epoch.
    NoQuorum { candidates: usize, needed: usize },
}

impl View {
    /// Members by node id; a node that re-registered (new session while its
    /// old ephemeral node lingers) counts once, by its latest registration.
    pub fn latest_members(&self) -> Vec<&Member> {
        let mut by_id: BTreeMap<&str, &Member> = BTreeMap::new();
        for m in &self.members {
            match by_id.get(m.node_id.as_str()) {
                Some(old) if old.seq >= m.seq => {}
                _ => {
                    by_id.insert(&m.node_id, m);
                }
            }
        }
        let mut v: Vec<&Member> = by_id.into_values().collect();
        v.sort_by_key(|m| m.seq);
        v
    }

    pub fn member(&self, node_id: &str) -> Option<&Member> {
        self.latest_members()
            .into_iter()
            .find(|m| m.node_id == node_id)
    }

    fn current_epoch(&self) -> u64 {
        self.elected.as_ref().map_or(0, |e| e.epoch)
    }

    /// The elected master is registered and is master of its epoch, or is
    /// about to be (it won the compare-and-set but has not published yet; it
    /// has not fenced its own epoch).
    pub fn master_stands(&self) -> bool {
        let Some(e) = &self.elected else { return false };
        match self.member(&e.node_id).map(|m| &m.status) {
            Some(Status::Master { epoch }) => *epoch == e.epoch,
            Some(Status::Candidate { min_epoch, .. }) => *min_epoch <= e.epoch,
            Some(Status::Following { epoch }) => *epoch < e.epoch,
            None => false,
        }
    }

    /// Candidates that can vote in the election after the current epoch:
    /// those that promised to refuse it.
    fn voters(&self) -> Vec<&Member> {
        let current = self.current_epoch();
        self.latest_members()
            .into_iter()
            .filter(|m| match m.status {
                Status::Candidate { min_epoch, .. } => {
                    self.elected.is_none() || min_epoch > current
                }
                _ => false,
            })
            .collect()
    }

    pub fn decide(&self) -> Decision {
        let needed = quorum(self.replicas);
        let voters = self.voters();
        if self.master_stands() && voters.len() < needed {
            let master = self.member(&self.elected.as_ref().expect("stands").node_id);
            let serving = matches!(master.map(|m| &m.status), Some(Status::Master { .. }));
            return if serving && !voters.is_empty() {
                Decision::Reassert {
                    epoch: self.next_epoch(&voters),
                }
            } else {
                Decision::Stands
            };
        }
        if voters.len() < needed {
            return Decision::NoQuorum {
                candidates: voters.len(),
                needed,
            };
        }
        let winner = voters
            .iter()
            .copied()
            .max_by(|a, b| rank(a, b))
            .expect("a quorum is never empty");
        Decision::Elect {
            winner: winner.node_id.clone(),
            epoch: self.next_epoch(&voters),
        }
    }

    /// Above the current epoch, every record the voters hold, and every
    /// voter's promise (so they all can follow it), even if the elected node
    /// was lost with ZooKeeper's data.
    fn next_epoch(&self, voters: &[&Member]) -> u64 {
        voters
            .iter()
            .map(|m| match m.status {
                Status::Candidate { min_epoch, tip } => min_epoch.max(tip.epoch + 1),
                _ => 0,
            })
            .chain([self.current_epoch() + 1, FIRST_EPOCH])
            .max()
            .unwrap_or(FIRST_EPOCH)
    }
}

/// Election order: higher tip, then higher weight, then earlier registration.
fn rank(a: &Member, b: &Member) -> Ordering {
    let tip = |m: &Member| match m.status {
        Status::Candidate { tip, .. } => tip,
        _ => Tip::default(),
    };
    tip(a)
        .cmp(&tip(b))
        .then(a.weight.cmp(&b.weight))
        .then(b.seq.cmp(&a.seq))
}

/// A node's own state as far as the election is concerned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Local {
    pub node_id: String,
    /// Persisted: no record of a lower epoch is accepted.
    pub min_epoch: u64,
    pub role: Role,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Role {
    Master { epoch: u64 },
    Following { epoch: u64, master: String },
    Candidate,
}

/// What a node should do next. Every step that raises `min_epoch` must be
/// persisted before it is published or acted on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Follow `master` in `epoch` (raise `min_epoch` to it).
    Follow { epoch: u64, master: String },
    /// Give up the current master: refuse its epoch from now on.
    Fence { min_epoch: u64 },
    /// Stop serving as master at once and become a candidate.
    Demote { min_epoch: u64 },
    /// Try to become master of `epoch` by compare-and-set of the elected
    /// node from `expected`.
    Claim {
        epoch: u64,
        expected: Option<Elected>,
    },
}

impl Local {
    /// The next step given a snapshot of the group, or `None` to stay put.
    /// (Losing the master's stream or the ZooKeeper session are events of
    /// their own: [`Local::lost_master`], [`Local::lost_session`].)
    pub fn react(&self, view: &View) -> Option<Step> {
        let elected = view.elected.as_ref();
        let current = view.current_epoch();
        let claim = |epoch| Step::Claim {
            epoch,
            expected: view.elected.clone(),
        };
        match &self.role {
            Role::Master { epoch } => {
                if current < *epoch {
                    // A view from before this node's own claim: wait for a
                    // newer one.
                    return None;
                }
                if current > *epoch || elected.is_some_and(|e| e.node_id != self.node_id) {
                    return Some(Step::Demote {
                        min_epoch: current.max(*epoch + 1),
                    });
                }
                // Too few members left for a quorum: like ActiveMQ, no
                // master at all until enough come back.
                if view.latest_members().len() < quorum(view.replicas) {
                    return Some(Step::Demote {
                        min_epoch: epoch + 1,
                    });
                }
                match view.decide() {
                    Decision::Reassert { epoch } => Some(claim(epoch)),
                    // A quorum fenced this epoch: stop now rather than wait
                    // for the elected node to change.
                    Decision::Elect { .. } => Some(Step::Demote {
                        min_epoch: epoch + 1,
                    }),
                    _ => None,
                }
            }
            Role::Following { epoch, master } => match elected {
                Some(e) if e.epoch > *epoch && e.node_id != self.node_id => Some(Step::Follow {
                    epoch: e.epoch,
                    master: e.node_id.clone(),
                }),
                Some(e) if e.epoch == *epoch && &e.node_id == master && view.master_stands() => {
                    None
                }
                _ => Some(Step::Fence {
                    min_epoch: self.min_epoch.max(current + 1).max(*epoch + 1),
                }),
            },
            Role::Candidate => {
                if let Some(e) = elected {
                    if e.epoch >= self.min_epoch {
                        if e.node_id != self.node_id && view.master_stands() {
                            return Some(Step::Follow {
                                epoch: e.epoch,
                                master: e.node_id.clone(),
                            });
                        }
                        // A master that is gone, or this node's own
                        // mastership from before a restart: fence it.
                        return Some(Step::Fence {
                            min_epoch: e.epoch + 1,
                        });
                    }
                }
                match view.decide() {
                    Decision::Elect { winner, epoch } if winner == self.node_id => {
                        Some(claim(epoch))
                    }
                    _ => None,
                }
            }
        }
    }

    /// The master's replication stream broke (or went silent) and cannot be
    /// re-established.
    pub fn lost_master(&self) -> Option<Step> {
        match self.role {
            Role::Following { epoch, .. } => Some(Step::Fence {
                min_epoch: self.min_epoch.max(epoch + 1),
            }),
            _ => None,
        }
    }

    /// The ZooKeeper session expired, or was disconnected longer than the
    /// fencing bound.
    pub fn lost_session(&self) -> Option<Step> {
        match self.role {
            Role::Master { epoch } => Some(Step::Demote {
                min_epoch: epoch + 1,
            }),
            _ => None,
        }
    }

    /// Applies a step that needs no outside confirmation (all but `Claim`,
    /// whose outcome the compare-and-set decides: see [`Local::claimed`]).
    pub fn apply(&mut self, step: &Step) {
        match step {
            Step::Follow { epoch, master } => {
                self.min_epoch = self.min_epoch.max(*epoch);
                self.role = Role::Following {
                    epoch: *epoch,
                    master: master.clone(),
                };
            }
            Step::Fence { min_epoch } | Step::Demote { min_epoch } => {
                self.min_epoch = self.min_epoch.max(*min_epoch);
                self.role = Role::Candidate;
            }
            Step::Claim { .. } => {}
        }
    }

    /// The compare-and-set for `epoch` succeeded.
    pub fn claimed(&mut self, epoch: u64) {
        self.min_epoch = self.min_epoch.max(epoch);
        self.role = Role::Master { epoch };
    }

    /// What to publish, given the log's tip.
    pub fn status(&self, tip: Tip) -> Status {
        match self.role {
            Role::Master { epoch } => Status::Master { epoch },
            Role::Following { epoch, .. } => Status::Following { epoch },
            Role::Candidate => Status::Candidate {
                min_epoch: self.min_epoch,
                tip,
            },
        }
    }
}

/// Which epoch wrote which part of a log: `(epoch, first position)` runs,
/// ascending; the log holds positions `first..=last` (1-based; earlier ones
/// were compacted away and are taken to match). Slaves and master compare
/// these to find where a slave's log leaves the master's history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EpochHistory {
    runs: Vec<(u64, u64)>,
    first: u64,
    last: u64,
}

impl Default for EpochHistory {
    fn default() -> Self {
        Self {
            runs: Vec::new(),
            first: 1,
            last: 0,
        }
    }
}

impl EpochHistory {
    pub fn new() -> Self {
        Self::default()
    }

    /// Notes the record at `position` written in `epoch` (positions arrive in
    /// order).
    pub fn push(&mut self, position: u64, epoch: u64) {
        if self.runs.last().is_none_or(|&(e, _)| e != epoch) {
            self.runs.push((epoch, position));
        }
        self.last = position;
    }

    /// Forgets everything after `position`.
    pub fn truncate_after(&mut self, position: u64) {
        self.runs.retain(|&(_, start)| start <= position);
        self.last = self.last.min(position);
    }

    pub fn last(&self) -> u64 {
        self.last
    }

    pub fn tip(&self) -> Tip {
        Tip {
            epoch: self.epoch_at(self.last).unwrap_or(0),
            position: self.last,
        }
    }

    pub fn runs(&self) -> &[(u64, u64)] {
        &self.runs
    }

    pub fn first(&self) -> u64 {
        self.first
    }

    /// From a store's runs (see `Store::epoch_history`) and its range.
    pub fn from_runs(runs: Vec<(u64, u64)>, first: u64, last: u64) -> Self {
        Self { runs, first, last }
    }

    fn epoch_at(&self, position: u64) -> Option<u64> {
        if position > self.last || position == 0 {
            return None;
        }
        self.runs
            .iter()
            .rev()
            .find(|&&(_, start)| start <= position)
            .map(|&(e, _)| e)
    }

    /// The last position up to which both logs hold the same records (the
    /// same epoch wrote them; an epoch has one master, which writes each
    /// position once). A slave truncates after this and streams from here.
    pub fn common_prefix(&self, other: &EpochHistory) -> u64 {
        let end = self.last.min(other.last);
        let from = self.first.max(other.first);
        let mut starts: Vec<u64> = self
            .runs
            .iter()
            .chain(&other.runs)
            .map(|&(_, s)| s.max(from))
            .filter(|&s| s <= end)
            .collect();
        starts.sort_unstable();
        starts.dedup();
        for s in starts {
            if self.epoch_at(s) != other.epoch_at(s) {
                return s - 1;
            }
        }
        end
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cand(id: &str, seq: u64, min_epoch: u64, epoch: u64, pos: u64) -> Member {
        Member {
            node_id: id.into(),
            seq,
            weight: 1,
            status: Status::Candidate {
                min_epoch,
                tip: Tip {
                    epoch,
                    position: pos,
                },
            },
        }
    }

    fn view(elected: Option<(u64, &str)>, members: Vec<Member>) -> View {
        View {
            replicas: 3,
            elected: elected.map(|(epoch, id)| Elected {
                epoch,
                node_id: id.into(),
            }),
            members,
        }
    }

    #[test]
    fn cold_start_needs_a_quorum_then_highest_tip_wins() {
        let v = view(None, vec![cand("a", 1, 0, 0, 5)]);
        assert_eq!(
            v.decide(),
            Decision::NoQuorum {
                candidates: 1,
                needed: 2
            }
        );
        let v = view(None, vec![cand("a", 1, 0, 0, 5), cand("b", 2, 0, 0, 9)]);
        assert_eq!(
            v.decide(),
            Decision::Elect {
                winner: "b".into(),
                epoch: FIRST_EPOCH
            }
        );
    }

    #[test]
    fn ties_go_to_weight_then_earliest_registration() {
        let mut heavy = cand("c", 3, 0, 0, 5);
        heavy.weight = 5;
        let v = view(None, vec![cand("a", 1, 0, 0, 5), cand("b", 2, 0, 0, 5)]);
        assert!(matches!(v.decide(), Decision::Elect { winner, .. } if winner == "a"));
        let v = view(
            None,
            vec![cand("a", 1, 0, 0, 5), cand("b", 2, 0, 0, 5), heavy],
        );
        assert!(matches!(v.decide(), Decision::Elect { winner, .. } if winner == "c"));
    }

    #[test]
    fn a_later_epoch_outranks_a_longer_stale_tail() {
        let v = view(
            Some((3, "gone")),
            vec![cand("a", 1, 4, 2, 120), cand("b", 2, 4, 3, 110)],
        );
        assert_eq!(
            v.decide(),
            Decision::Elect {
                winner: "b".into(),
                epoch: 4
            }
        );
    }

    #[test]
    fn standing_master_blocks_election_until_a_quorum_fenced_it() {
        let master = Member {
            node_id: "m".into(),
            seq: 1,
            weight: 1,
            status: Status::Master { epoch: 2 },
        };
        let unfenced = cand("a", 2, 2, 2, 7);
        let v = view(Some((2, "m")), vec![master.clone(), unfenced]);
        assert_eq!(v.decide(), Decision::Stands);
        let v = view(Some((2, "m")), vec![master.clone(), cand("a", 2, 3, 2, 7)]);
        assert_eq!(v.decide(), Decision::Reassert { epoch: 3 });
        let v = view(
            Some((2, "m")),
            vec![master, cand("a", 2, 3, 2, 7), cand("b", 3, 3, 2, 8)],
        );
        assert_eq!(
            v.decide(),
            Decision::Elect {
                winner: "b".into(),
                epoch: 3
            }
        );
    }

    #[test]
    fn a_re_registered_node_counts_once_by_its_latest_registration() {
        let old = Member {
            node_id: "m".into(),
            seq: 1,
            weight: 1,
            status: Status::Master { epoch: 2 },
        };
        let v = view(Some((2, "m")), vec![old, cand("m", 4, 3, 2, 9)]);
        assert!(!v.master_stands());
        assert_eq!(v.latest_members().len(), 1);
    }

    #[test]
    fn follower_fences_a_vanished_master_and_candidate_follows_a_standing_one() {
        let f = Local {
            node_id: "a".into(),
            min_epoch: 2,
            role: Role::Following {
                epoch: 2,
                master: "m".into(),
            },
        };
        let v = view(Some((2, "m")), vec![cand("a", 2, 2, 2, 7)]);
        assert_eq!(f.react(&v), Some(Step::Fence { min_epoch: 3 }));

        let c = Local {
            node_id: "a".into(),
            min_epoch: 2,
            role: Role::Candidate,
        };
        let master = Member {
            node_id: "m".into(),
            seq: 1,
            weight: 1,
            status: Status::Master { epoch: 2 },
        };
        let v = view(Some((2, "m")), vec![master, cand("a", 2, 2, 2, 7)]);
        assert_eq!(
            c.react(&v),
            Some(Step::Follow {
                epoch: 2,
                master: "m".into()
            })
        );
    }

    #[test]
    fn master_demotes_when_the_elected_node_moves_on_or_its_session_is_lost() {
        let m = Local {
            node_id: "m".into(),
            min_epoch: 2,
            role: Role::Master { epoch: 2 },
        };
        let v = view(Some((3, "b")), vec![]);
        assert_eq!(m.react(&v), Some(Step::Demote { min_epoch: 3 }));
        assert_eq!(m.lost_session(), Some(Step::Demote { min_epoch: 3 }));
        // A view from before its own claim is no reason to step down.
        assert_eq!(m.react(&view(Some((1, "m")), vec![])), None);
        assert_eq!(m.react(&view(None, vec![])), None);
        // Nor is a healthy group; a group below quorum is.
        let me = Member {
            node_id: "m".into(),
            seq: 1,
            weight: 1,
            status: Status::Master { epoch: 2 },
        };
        let other = Member {
            node_id: "s".into(),
            seq: 2,
            weight: 1,
            status: Status::Following { epoch: 2 },
        };
        assert_eq!(
            m.react(&view(Some((2, "m")), vec![me.clone(), other])),
            None
        );
        assert_eq!(
            m.react(&view(Some((2, "m")), vec![me])),
            Some(Step::Demote { min_epoch: 3 })
        );
    }

    #[test]
    fn common_prefix_finds_where_histories_diverge() {
        let mut master = EpochHistory::new();
        let mut slave = EpochHistory::new();
        for p in 1..=10 {
            master.push(p, 1);
            slave.push(p, 1);
        }
        for p in 11..=20 {
            master.push(p, 3);
        }
        for p in 11..=15 {
            slave.push(p, 2); // a stale master's unreceipted tail
        }
        assert_eq!(master.common_prefix(&slave), 10);
        assert_eq!(slave.common_prefix(&master), 10);
        slave.truncate_after(10);
        assert_eq!(
            slave.tip(),
            Tip {
                epoch: 1,
                position: 10
            }
        );
        for p in 11..=14 {
            slave.push(p, 3);
        }
        assert_eq!(master.common_prefix(&slave), 14);
        assert_eq!(EpochHistory::new().common_prefix(&master), 0);

        // A slave reset past the master's compacted start matches from there.
        let reset = EpochHistory::from_runs(vec![], 15, 14);
        assert_eq!(master.common_prefix(&reset), 14);
        let compacted = EpochHistory::from_runs(vec![(3, 12)], 12, 20);
        assert_eq!(compacted.common_prefix(&master), 20);
    }
}
