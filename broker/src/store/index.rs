//! In-memory bookkeeping of the journal: which messages are live, in which
//! segment each lives, and which segments may be deleted.
//!
//! **Deletion rule.** A segment may be deleted when
//! 1. it is not the active (newest) segment,
//! 2. every enqueue in it has been acknowledged (`live == 0`), and
//! 3. it holds no ack whose enqueue is in an older segment that still exists
//!    (`pins == 0`): deleting that ack first would resurrect the message on
//!    the next recovery.
//!
//! Each ack pins its own segment until the enqueue's segment is deleted; the
//! deletion of a segment unpins the segments holding its acks, which may make
//! them deletable in turn. With [`Compaction::Prefix`] only the oldest
//! segment may go, so positions stay contiguous from `first_position` (what a
//! replication master needs to bring a slave up from any point).
//!
//! A file is unlinked only after the acks that freed it are durable.

use super::{Epoch, Position, Record, StoreError};
use crate::message::{Destination, MessageId};
use std::collections::{BTreeMap, HashMap, VecDeque};

pub type Key = (Destination, MessageId);

/// Which segments may be deleted once their messages are acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Compaction {
    /// Any segment meeting the deletion rule: a message left unacknowledged
    /// (say on the DLQ) pins only its own segment. Positions may then have
    /// gaps, which a replication master cannot serve reads across: for
    /// standalone (and shared-file) brokers only.
    AnySegment,
    /// Only the oldest segment, so the log stays contiguous from
    /// `first_position` and a slave can always be brought up to date
    /// (replicated stores). The default because it is always safe; one old
    /// unacknowledged message keeps every newer segment.
    #[default]
    Prefix,
}

/// Insert a sparse offset mark at least this many bytes after the previous.
const MARK_EVERY: u64 = 64 << 10;
/// Exact offsets of this many latest batches of the active segment, so a
/// replication sender tailing the log reads only what is new.
const RECENT: usize = 1024;

#[derive(Debug, Clone)]
pub struct Segment {
    pub first: Position,
    /// Last record in it; `first - 1` while empty.
    pub last: Position,
    pub size: u64,
    /// Live (unacknowledged) enqueues in it.
    pub live: u64,
    /// Acks in it whose enqueue lives in an older, still existing segment.
    pub pins: u64,
    /// Segments holding acks of this segment's enqueues → how many.
    pub acked_from: HashMap<Position, u64>,
    /// Highest position of an ack of one of this segment's enqueues.
    pub max_ack: Position,
    /// Sparse (position, byte offset) of batch starts, for reads.
    pub marks: Vec<(Position, u64)>,
    /// The latest batch starts, while this is the active segment.
    pub recent: VecDeque<(Position, u64)>,
}

impl Segment {
    pub fn new(first: Position) -> Self {
        Segment {
            first,
            last: Position(first.0 - 1),
            size: 0,
            live: 0,
            pins: 0,
            acked_from: HashMap::new(),
            max_ack: Position::ZERO,
            marks: Vec::new(),
            recent: VecDeque::new(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.last < self.first
    }

    /// Record that a batch starting at `position` begins at byte `offset`.
    pub fn mark(&mut self, position: Position, offset: u64) {
        match self.marks.last() {
            Some(&(_, at)) if offset - at < MARK_EVERY => {}
            _ => self.marks.push((position, offset)),
        }
        if self.recent.len() == RECENT {
            self.recent.pop_front();
        }
        self.recent.push_back((position, offset));
    }

    /// The byte offset from which to scan for `position`: the start of its
    /// batch if recent, else the nearest sparse mark before it.
    pub fn offset_for(&self, position: Position) -> u64 {
        if self.recent.front().is_some_and(|&(p, _)| p <= position) {
            // At least the front qualifies, so the index is >= 1.
            let i = self.recent.partition_point(|&(p, _)| p <= position);
            return self.recent[i - 1].1;
        }
        let i = self.marks.partition_point(|&(p, _)| p <= position);
        i.checked_sub(1).map_or(0, |k| self.marks[k].1)
    }
}

#[derive(Debug, Clone, Copy)]
pub struct LiveAt {
    pub segment: Position,
    pub position: Position,
}

#[derive(Debug, Default)]
pub struct Index {
    /// By first position; the last one is the active segment.
    pub segments: BTreeMap<Position, Segment>,
    pub live: HashMap<Key, LiveAt>,
    /// Highest position of an ack whose enqueue was deleted with its segment:
    /// truncating below it would bring acknowledged messages back.
    pub horizon: Position,
    /// Position the next record gets.
    pub next: Position,
    /// Epoch of the last record.
    pub last_epoch: Epoch,
    /// The last record does not end its batch (a slave receiving a batch in
    /// pieces): no roll-over until it does.
    pub open_batch: bool,
    /// `(epoch, first position written in it)`, ascending.
    pub epochs: Vec<(Epoch, Position)>,
}

/// What applying a record did to a live message (recovery keeps the bodies).
pub enum Applied {
    Enqueued,
    Acked(LiveAt),
    /// Ack of a message whose enqueue is gone (deleted segment) or a
    /// duplicate enqueue (tolerated on replay, refused on local appends).
    Ignored,
}

impl Index {
    pub fn empty(next: Position) -> Self {
        Index {
            next,
            ..Index::default()
        }
    }

    pub fn active(&self) -> Option<&Segment> {
        self.segments.values().next_back()
    }

    pub fn active_mut(&mut self) -> Option<&mut Segment> {
        self.segments.values_mut().next_back()
    }

    pub fn first_position(&self) -> Position {
        self.segments
            .values()
            .find(|s| !s.is_empty())
            .map_or(self.next, |s| s.first)
    }

    /// Note that the record at `position` was written in `epoch`.
    pub fn note_epoch(&mut self, epoch: Epoch, position: Position) {
        if self.epochs.last().is_none_or(|&(e, _)| e != epoch) {
            self.epochs.push((epoch, position));
        }
        self.last_epoch = epoch;
    }

    /// The epoch runs of the records still stored.
    pub fn epoch_history(&self) -> Vec<(Epoch, Position)> {
        let first = self.first_position();
        if first >= self.next {
            return Vec::new();
        }
        let keep = self
            .epochs
            .partition_point(|&(_, start)| start <= first)
            .max(1)
            - 1;
        let mut runs = self.epochs[keep..].to_vec();
        if let Some(run) = runs.first_mut() {
            run.1 = run.1.max(first);
        }
        runs
    }

    pub fn start_segment(&mut self, first: Position) {
        if let Some(previous) = self.active_mut() {
            previous.recent = VecDeque::new();
        }
        self.segments.insert(first, Segment::new(first));
    }

    /// Check a local batch against the live set without changing anything,
    /// so that a refused batch leaves no trace.
    pub fn validate(&self, records: &[super::Record]) -> Result<(), StoreError> {
        let mut overlay: HashMap<Key, bool> = HashMap::new();
        for r in records {
            let key = key_of(r);
            let live = overlay
                .get(&key)
                .copied()
                .unwrap_or_else(|| self.live.contains_key(&key));
            match r {
                Record::Enqueue(_) if live => {
                    return Err(StoreError::DuplicateMessage {
                        destination: key.0,
                        id: key.1,
                    })
                }
                Record::Ack { .. } if !live => {
                    return Err(StoreError::UnknownMessage {
                        destination: key.0,
                        id: key.1,
                    })
                }
                _ => {}
            }
            overlay.insert(key, matches!(r, Record::Enqueue(_)));
        }
        Ok(())
    }

    /// Apply a sequenced record stored in segment `segment` (which must
    /// exist).
    pub fn apply(&mut self, segment: Position, position: Position, record: &Record) -> Applied {
        let key = key_of(record);
        match record {
            Record::Enqueue(_) => {
                if self.live.contains_key(&key) {
                    return Applied::Ignored;
                }
                self.live.insert(key, LiveAt { segment, position });
                self.seg(segment).live += 1;
                Applied::Enqueued
            }
            Record::Ack { .. } => {
                let Some(at) = self.live.remove(&key) else {
                    self.horizon = self.horizon.max(position);
                    return Applied::Ignored;
                };
                let owner = self.seg(at.segment);
                owner.live -= 1;
                owner.max_ack = owner.max_ack.max(position);
                if at.segment != segment {
                    *owner.acked_from.entry(segment).or_default() += 1;
                    self.seg(segment).pins += 1;
                }
                Applied::Acked(at)
            }
        }
    }

    fn seg(&mut self, first: Position) -> &mut Segment {
        self.segments
            .get_mut(&first)
            .expect("records are applied to existing segments")
    }

    /// Remove every segment the deletion rule allows, cascading, and return
    /// their first positions (the files to unlink).
    pub fn collect_deletable(&mut self, compaction: Compaction) -> Vec<Position> {
        let mut gone = Vec::new();
        loop {
            let active = self.active().map(|s| s.first);
            let candidate = match compaction {
                Compaction::Prefix => self.segments.values().next(),
                Compaction::AnySegment => {
                    self.segments.values().find(|s| s.live == 0 && s.pins == 0)
                }
            }
            .filter(|s| s.live == 0 && s.pins == 0 && Some(s.first) != active)
            .map(|s| s.first);
            let Some(first) = candidate else {
                return gone;
            };
            let seg = self.segments.remove(&first).expect("candidate exists");
            self.horizon = self.horizon.max(seg.max_ack);
            for (holder, n) in seg.acked_from {
                if let Some(h) = self.segments.get_mut(&holder) {
                    h.pins -= n;
                }
            }
            gone.push(first);
        }
    }

    /// The segment that holds `position`, if it is still stored.
    pub fn segment_of(&self, position: Position) -> Option<&Segment> {
        self.segments
            .range(..=position)
            .next_back()
            .map(|(_, s)| s)
            .filter(|s| position <= s.last)
    }
}

pub fn key_of(record: &Record) -> Key {
    match record {
        Record::Enqueue(m) => (m.destination.clone(), m.id.clone()),
        Record::Ack { destination, id } => (destination.clone(), id.clone()),
    }
}
