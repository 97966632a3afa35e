//! Persistence: every persistent state change of the broker is a [`Record`]
//! appended to a [`Store`]. The local implementation is the segmented,
//! append-only [`Journal`]; the replicated store (HA) wraps it and ships
//! exactly these records, with their [`Position`]s and [`Epoch`]s, to slaves.
//!
//! Contract shared by every implementation:
//! - **Positions** are dense and strictly increasing: the first record of an
//!   empty store gets `Position(1)`, each further record `previous + 1`.
//!   `Position::ZERO` means "nothing yet".
//! - **Sequencing is synchronous, durability asynchronous.** [`Store::append`]
//!   assigns positions and updates the store's view of live messages before it
//!   returns; the returned future only waits for durability. So the broker may
//!   call `append` while holding its queue lock (the log order is then the
//!   order the broker decided) and await the future after releasing it.
//! - **Batches are atomic.** All records of one `append` survive a crash, or
//!   none does. A transaction commit is one batch; a move to the DLQ is one
//!   batch `[Ack(original), Enqueue(copy to DLQ)]`.
//! - **Live messages** are keyed by `(destination, message id)`: an
//!   [`Record::Enqueue`] of a key that is already live, or an [`Record::Ack`]
//!   of a key that is not live, is refused (the batch is not appended).
//! - **Failure is sticky.** After a write or fsync error nothing on disk can be
//!   trusted to match memory, so every later operation fails with
//!   [`StoreError::Failed`]; the broker must stop (and a replica take over).
//!
//! On disk ([`Journal`]): `DIR/<first position, 20 digits>.log` segments of
//! CRC-32C-checked entry frames (layout in `codec.rs`), a batch never split
//! across segments, and `DIR/journal.lock` (flock, holder's pid) so only one
//! process writes. Recovery replays every segment; an incomplete or damaged
//! tail of the newest segment (what a crash leaves) is truncated back to the
//! last complete batch with a warning; damage anywhere else, or damage that
//! intact records follow, is [`StoreError::Corrupt`] naming file and offset.
//! Segment deletion follows the rule documented in `index.rs`: a segment
//! goes once all its enqueues are acked and none of its acks still refers
//! to an older segment that exists.

mod codec;
mod index;
mod journal;
mod segment;

pub use codec::DecodeError;
pub use index::Compaction;
pub use journal::{Journal, JournalOptions, SyncPolicy, UNSAFE_ENV, UNSAFE_WRITE_DELAY};

use crate::message::{Destination, Message, MessageId};
use futures::future::BoxFuture;
use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use tokio::sync::watch;

/// Place of a record in the log: dense, strictly increasing, never reused
/// except after [`Store::truncate_after`] on a slave.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Position(pub u64);

impl Position {
    /// Before the first record.
    pub const ZERO: Position = Position(0);

    pub fn next(self) -> Position {
        Position(self.0 + 1)
    }
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// Term of mastership that wrote a record. Standalone brokers write
/// [`Epoch::STANDALONE`]; the HA layer sets a new, higher epoch on every
/// election (see [`Store::set_epoch`]) so slaves can refuse a stale master.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Epoch(pub u64);

impl Epoch {
    pub const STANDALONE: Epoch = Epoch(1);
}

impl fmt::Display for Epoch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// One persistent state change.
#[derive(Debug, Clone, PartialEq)]
pub enum Record {
    /// A persistent message was accepted onto `message.destination`.
    Enqueue(Message),
    /// The message left the destination for good: acknowledged by a consumer,
    /// expired, or moved (the move is an `Ack` plus an `Enqueue` elsewhere in
    /// the same batch).
    Ack {
        destination: Destination,
        id: MessageId,
    },
}

impl Record {
    pub fn ack(destination: Destination, id: MessageId) -> Record {
        Record::Ack { destination, id }
    }
}

/// A record as stored: where it is, which epoch wrote it, and whether it ends
/// its batch. This is what replication ships and what a slave appends.
///
/// [`Entry::encode`]/[`Entry::decode`] are the journal's on-disk framing
/// (magic, length, CRC-32C, position, epoch, type, flags, payload), usable
/// as-is on the wire.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub position: Position,
    pub epoch: Epoch,
    /// The last record of an atomic batch. A reader that stops anywhere else
    /// stops inside a transaction.
    pub batch_end: bool,
    pub record: Record,
}

/// What a broker rebuilds its queues from.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Recovered {
    /// Un-acknowledged persistent messages per destination, in append order.
    pub destinations: BTreeMap<Destination, Vec<Message>>,
    /// Position of the last record (`Position::ZERO` if empty).
    pub position: Position,
    /// Epoch of the last record (`Epoch::default()` if empty).
    pub epoch: Epoch,
}

impl Recovered {
    pub fn message_count(&self) -> usize {
        self.destinations.values().map(Vec::len).sum()
    }
}

/// Counters for `/status`, `/metrics` and the benchmark.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StoreStats {
    /// Calls to `append`/`append_replicated` (batches).
    pub appends: u64,
    /// Records appended.
    pub records: u64,
    /// Group-commit writes (one `write` of everything queued).
    pub writes: u64,
    /// fdatasync calls; `appends / fsyncs` is the group-commit ratio.
    pub fsyncs: u64,
    pub bytes: u64,
    /// Segment files on disk now.
    pub segments: u64,
    /// Persistent messages not yet acknowledged.
    pub live_messages: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("journal I/O error on {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Damage that is not a torn tail: truncating it would silently drop
    /// records written after it.
    #[error("journal corrupt in {path} at byte offset {offset}: {reason}")]
    Corrupt {
        path: PathBuf,
        offset: u64,
        reason: String,
    },
    #[error("journal {path} is in use by another process (pid {holder}); one broker per journal directory")]
    Locked { path: PathBuf, holder: String },
    /// A previous write or fsync failed; nothing more is accepted.
    #[error("journal failed earlier and accepts nothing more: {0}")]
    Failed(String),
    #[error("message {id} is already stored on {destination}")]
    DuplicateMessage {
        destination: Destination,
        id: MessageId,
    },
    #[error("ack of message {id} on {destination}, which is not stored")]
    UnknownMessage {
        destination: Destination,
        id: MessageId,
    },
    #[error("empty batch")]
    EmptyBatch,
    #[error("record of {0} bytes exceeds the journal's limit")]
    TooLarge(usize),
    #[error("epoch {requested} is older than the current epoch {current}")]
    EpochBackwards { current: Epoch, requested: Epoch },
    /// Replicated entries must continue the log exactly.
    #[error("expected position {expected}, got {got}")]
    OutOfOrder { expected: Position, got: Position },
    /// The requested records were deleted with their segment (every message in
    /// it was acknowledged). A slave that needs them must start over from
    /// `first_available` ([`Store::reset`]).
    #[error("records after {requested} are gone; the log now starts at {first_available}")]
    Compacted {
        requested: Position,
        first_available: Position,
    },
    /// Truncating to `requested` would re-expose acknowledged messages whose
    /// enqueue records were already deleted. Resynchronise with
    /// [`Store::reset`] instead.
    #[error("cannot truncate to {requested}: acknowledgements up to {horizon} already let segments be deleted")]
    TruncateBelowHorizon {
        requested: Position,
        horizon: Position,
    },
    #[error("the journal is closed")]
    Closed,
    /// A replicated write did not reach enough slaves in time (or the node
    /// stopped being master first). Only this operation failed; the store
    /// is intact, so the broker keeps running and the client gets an ERROR.
    #[error("not replicated: {0}")]
    NotReplicated(String),
}

/// Resolves with the position of the batch's last record once the batch is
/// durable under the store's policy.
pub type AppendFuture = BoxFuture<'static, Result<Position, StoreError>>;

/// Storage behind the broker. Object safe: hold it as `Arc<dyn Store>`.
///
/// The methods without a future may block on disk I/O (`recover`,
/// `read_after`): call them at start-up, or via `spawn_blocking`.
pub trait Store: Send + Sync {
    /// Sequence `records` as one atomic batch and make them durable
    /// (journal: fdatasync, shared with concurrent appends by group commit).
    /// Positions are taken in call order; see the module docs.
    fn append(&self, records: Vec<Record>) -> AppendFuture;

    /// Live (un-acknowledged) persistent messages per destination, read back
    /// from the store itself. Call at start-up, or when a slave is promoted,
    /// with no appends in flight.
    fn recover(&self) -> Result<Recovered, StoreError>;

    /// Position of the last sequenced record (`Position::ZERO` if none).
    fn position(&self) -> Position;

    /// Position of the oldest record still stored; `position() + 1` when the
    /// store holds no records.
    fn first_position(&self) -> Position;

    /// Epoch stamped on records appended from now on by [`Store::append`].
    fn epoch(&self) -> Epoch;

    /// Switch to a new epoch (HA: after winning an election). Must not go
    /// backwards.
    fn set_epoch(&self, epoch: Epoch) -> Result<(), StoreError>;

    /// Last position of the complete batches readable by
    /// [`Store::read_after`] (sequenced, not necessarily written or
    /// fsynced yet): a replication sender waits on this to stream. Goes back
    /// after `truncate_after`/`reset`.
    fn subscribe(&self) -> watch::Receiver<Position>;

    /// Entries with position > `after`, whole batches only, up to about
    /// `max_bytes` of encoded size (at least one batch if any is available).
    /// Empty when nothing newer is written yet. Fails with
    /// [`StoreError::Compacted`] if those records are already deleted.
    fn read_after(&self, after: Position, max_bytes: usize) -> Result<Vec<Entry>, StoreError>;

    /// [`Store::read_after`] if the entries are still in memory, `None` if
    /// it would read files. Never blocks, so a sender streaming fresh
    /// records to slaves stays on its async task.
    fn read_recent(
        &self,
        after: Position,
        max_bytes: usize,
    ) -> Option<Result<Vec<Entry>, StoreError>>;

    /// Slave side: append entries received from the master, keeping their
    /// positions and epochs. The first must be `position() + 1`; epochs must
    /// not go backwards. Resolves when durable, like `append`.
    fn append_replicated(&self, entries: Vec<Entry>) -> AppendFuture;

    /// Slave side: drop every record after `position` (the tail that the
    /// master never had). Resolves once the log ends at `position` (at the
    /// end of the batch before it, if `position` is inside a batch: check
    /// [`Store::position`]). No appends may be in flight. Fails with
    /// [`StoreError::TruncateBelowHorizon`] or [`StoreError::Compacted`] when
    /// the records needed are gone: then [`Store::reset`] and copy from the
    /// master instead.
    fn truncate_after(&self, position: Position) -> BoxFuture<'static, Result<(), StoreError>>;

    /// Slave side: discard the whole log; the next record appended (by
    /// `append_replicated`) must have position `next` (also after a restart
    /// before it arrives). No appends may be in flight. For a slave whose
    /// missing records the master already deleted: it then receives
    /// everything from the master's [`Store::first_position`] on.
    fn reset(&self, next: Position) -> BoxFuture<'static, Result<(), StoreError>>;

    /// Which epoch wrote which stored records: `(epoch, first position
    /// written in it)` runs, ascending, clipped to [`Store::first_position`];
    /// the last run extends to [`Store::position`]. Empty when no record is
    /// stored. Master and slave compare these to find where a slave's log
    /// leaves the master's history (then [`Store::truncate_after`]).
    fn epoch_history(&self) -> Vec<(Epoch, Position)>;

    fn stats(&self) -> StoreStats;
}
