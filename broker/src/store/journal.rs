//! The local journal: segmented append-only files with group commit.
//!
//! `append` encodes outside any lock, then under the state lock assigns
//! positions, checks and updates the live index, decides segment roll-over,
//! keeps the sealed bytes in memory for replication ([`Recent`]) and queues
//! them to one writer thread. The writer takes everything queued, writes it
//! with one positional write (into zeroes written ahead, see
//! [`JournalOptions::preallocate`]) and makes it durable with one
//! `fdatasync`, then resolves all those appends: concurrent producers share
//! one fsync (group commit).

use super::codec::{self, encode_unsealed, seal};
use super::index::{Compaction, Index};
use super::segment::{self, io_err, Damage};
use super::{
    AppendFuture, Entry, Epoch, Position, Record, Recovered, Store, StoreError, StoreStats,
};
use bytes::Bytes;
use futures::future::BoxFuture;
use futures::FutureExt;
use std::collections::VecDeque;
use std::fs;
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex, MutexGuard, OnceLock};
use std::thread;
use std::time::{Duration, Instant};
use tokio::sync::{oneshot, watch};

/// When an append counts as done.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SyncPolicy {
    /// After `fdatasync` (shared by group commit). Survives kill -9 and power
    /// loss.
    #[default]
    Fsync,
    /// **Unsafe, for negative tests only.** Appends resolve at once and the
    /// writer writes only every [`UNSAFE_WRITE_DELAY`] without fsync, so a
    /// kill -9 loses acknowledged records. Logged loudly when enabled.
    UnsafeReceiptBeforeWrite,
}

/// Longest the writer waits for more appends to join a group commit.
const MAX_GATHER: Duration = Duration::from_micros(200);

/// How long the unsafe mode keeps acknowledged records only in memory.
pub const UNSAFE_WRITE_DELAY: Duration = Duration::from_millis(200);

/// Set to `1` in a broker's environment to force
/// [`SyncPolicy::UnsafeReceiptBeforeWrite`] on every journal it opens, so
/// negative tests (verify) can prove they detect loss of receipted messages
/// in a real deployment without a special build or config.
pub const UNSAFE_ENV: &str = "AMQ_JOURNAL_UNSAFE_RECEIPT_BEFORE_WRITE";

#[derive(Debug, Clone)]
pub struct JournalOptions {
    pub sync: SyncPolicy,
    /// Roll to a new segment when the current one would exceed this.
    pub segment_size: u64,
    pub compaction: Compaction,
    /// What to do about damage in the newest segment that intact records
    /// follow (not a torn tail): refuse to open (default) or truncate there.
    pub repair: bool,
    /// Keep this many bytes of zeroes written ahead of the end of the
    /// active segment (0: off). An fdatasync then only flushes data blocks:
    /// in a file that grows it must also journal the new size and extents,
    /// which costs ~40% more here (write+fdatasync of 1 KiB: 92 µs into
    /// written zeroes, 130 µs at the end of the file). Recovery reads a
    /// zero tail as the end of the segment.
    pub preallocate: u64,
}

impl Default for JournalOptions {
    fn default() -> Self {
        JournalOptions {
            sync: SyncPolicy::Fsync,
            segment_size: 32 << 20,
            compaction: Compaction::Prefix,
            repair: false,
            preallocate: 4 << 20,
        }
    }
}

/// The journal in one directory. Dropping it lets the writer finish what is
/// queued, fsync, and stop.
pub struct Journal {
    shared: Arc<Shared>,
    tx: mpsc::Sender<Command>,
    writer: Option<thread::JoinHandle<()>>,
    /// Holds the directory's exclusive lock until dropped.
    _lock: fs::File,
}

struct Shared {
    dir: PathBuf,
    options: JournalOptions,
    state: Mutex<State>,
    /// Last complete batch sequenced ([`Store::subscribe`]).
    appended: watch::Sender<Position>,
    /// Last position handed to the file (the limit of file reads).
    written: AtomicU64,
    failed: OnceLock<String>,
    stats: Counters,
}

struct State {
    index: Index,
    /// Epoch for local appends.
    epoch: Epoch,
    /// What `open` recovered, until the first `recover` or append.
    recovered: Option<Recovered>,
    recent: Recent,
}

/// How much already written history [`Recent`] keeps besides what is not
/// written yet: a slave further behind reads files.
const RECENT_BYTES: usize = 2 << 20;

/// The newest sealed batches, so that `read_after` ships fresh records to
/// slaves from memory, without a file read and without waiting for the
/// writer (for `quorum_mem` the master's copy only has to be in memory).
/// Holds every batch not yet written, and up to [`RECENT_BYTES`] of older
/// ones.
#[derive(Default)]
struct Recent {
    chunks: VecDeque<Chunk>,
    bytes: usize,
}

struct Chunk {
    first: Position,
    last: Position,
    bytes: Bytes,
}

impl Recent {
    fn push(&mut self, chunk: Chunk, written: Position) {
        self.bytes += chunk.bytes.len();
        self.chunks.push_back(chunk);
        while self.bytes > RECENT_BYTES {
            match self.chunks.front() {
                Some(c) if c.last <= written => {
                    self.bytes -= c.bytes.len();
                    self.chunks.pop_front();
                }
                _ => break,
            }
        }
    }

    fn clear(&mut self) {
        self.chunks.clear();
        self.bytes = 0;
    }

    /// The chunks holding records after `after`, if memory reaches back
    /// that far.
    fn after(&self, after: Position) -> Option<Vec<Bytes>> {
        if self.chunks.front()?.first > after.next() {
            return None;
        }
        Some(
            self.chunks
                .iter()
                .filter(|c| c.last > after)
                .map(|c| c.bytes.clone())
                .collect(),
        )
    }
}

#[derive(Default)]
struct Counters {
    appends: AtomicU64,
    records: AtomicU64,
    writes: AtomicU64,
    fsyncs: AtomicU64,
    bytes: AtomicU64,
}

type Reply<T> = oneshot::Sender<Result<T, StoreError>>;

enum Command {
    Write {
        segment: Position,
        new_segment: bool,
        /// Where in the segment file `bytes` go.
        offset: u64,
        bytes: Bytes,
        last: Position,
        reply: Option<Reply<Position>>,
        /// Segments freed by this batch's acks: unlinked once it is durable.
        delete: Vec<Position>,
    },
    Truncate {
        after: Position,
        reply: Reply<()>,
    },
    Reset {
        next: Position,
        reply: Reply<()>,
    },
    /// Everything queued before is written (and synced).
    Barrier(mpsc::Sender<()>),
}

impl Journal {
    /// Open (creating if needed) the journal in `dir` and recover it: a torn
    /// tail is truncated with a warning; other damage is an error naming the
    /// file and offset. The live messages are kept for the first
    /// [`Store::recover`].
    pub fn open(dir: impl AsRef<Path>, mut options: JournalOptions) -> Result<Journal, StoreError> {
        let dir = dir.as_ref().to_owned();
        fs::create_dir_all(&dir).map_err(io_err(&dir))?;
        let lock = lock_dir(&dir)?;
        if std::env::var(UNSAFE_ENV).is_ok_and(|v| v == "1") {
            options.sync = SyncPolicy::UnsafeReceiptBeforeWrite;
        }
        if options.sync == SyncPolicy::UnsafeReceiptBeforeWrite {
            tracing::warn!(
                dir = %dir.display(),
                "JOURNAL SYNC POLICY IS UNSAFE: appends are acknowledged before they are written; \
                 a crash loses acknowledged messages. Use only to test that tests catch loss \
                 (SyncPolicy::UnsafeReceiptBeforeWrite or {UNSAFE_ENV}=1)."
            );
        }
        let damage = if options.repair {
            Damage::Truncate
        } else {
            Damage::Refuse
        };
        let (mut index, recovered) = segment::recover(&dir, damage)?;
        if options.compaction == Compaction::Prefix {
            warn_gaps(&dir, &index);
        }
        for first in index.collect_deletable(options.compaction) {
            let path = segment::path(&dir, first);
            fs::remove_file(&path).map_err(io_err(&path))?;
        }
        let epoch = index.last_epoch.max(Epoch::STANDALONE);
        tracing::info!(
            dir = %dir.display(),
            position = %recovered.position,
            messages = recovered.message_count(),
            segments = index.segments.len(),
            "journal recovered"
        );
        let (appended, _) = watch::channel(recovered.position);
        let shared = Arc::new(Shared {
            dir,
            options,
            written: AtomicU64::new(recovered.position.0),
            state: Mutex::new(State {
                index,
                epoch,
                recovered: Some(recovered),
                recent: Recent::default(),
            }),
            appended,
            failed: OnceLock::new(),
            stats: Counters::default(),
        });
        let (tx, rx) = mpsc::channel();
        let writer = {
            let shared = shared.clone();
            thread::Builder::new()
                .name("journal-writer".into())
                .spawn(move || Writer::new(shared).run(rx))
                .map_err(io_err(Path::new("journal-writer thread")))?
        };
        Ok(Journal {
            shared,
            tx,
            writer: Some(writer),
            _lock: lock,
        })
    }

    pub fn dir(&self) -> &Path {
        &self.shared.dir
    }

    /// Block until everything appended so far is written and, with
    /// [`SyncPolicy::Fsync`], durable.
    pub fn flush(&self) {
        let (tx, rx) = mpsc::channel();
        if self.tx.send(Command::Barrier(tx)).is_ok() {
            let _ = rx.recv();
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.shared.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn check_failed(&self) -> Result<(), StoreError> {
        match self.shared.failed.get() {
            Some(why) => Err(StoreError::Failed(why.clone())),
            None => Ok(()),
        }
    }

    /// Sequence a batch of unsealed frames: `replicated` is `None` for local
    /// appends (next positions, current epoch, records validated against the
    /// live set) or the entries' own positions and epochs (slave side).
    fn sequence(
        &self,
        records: &[Record],
        mut bytes: Vec<u8>,
        lens: &[usize],
        replicated: Option<&[(Position, Epoch)]>,
        ends_batch: bool,
    ) -> AppendFuture {
        if let Err(e) = self.check_failed() {
            return ready(Err(e));
        }
        let mut state = self.lock();
        let state = &mut *state;
        state.recovered = None;
        let index = &mut state.index;
        let first = index.next;
        match replicated {
            None => {
                if let Err(e) = index.validate(records) {
                    return ready(Err(e));
                }
            }
            Some(stamps) => {
                for (i, &(p, e)) in stamps.iter().enumerate() {
                    let expected = Position(first.0 + i as u64);
                    if p != expected {
                        return ready(Err(StoreError::OutOfOrder { expected, got: p }));
                    }
                    let prev = if i == 0 {
                        index.last_epoch
                    } else {
                        stamps[i - 1].1
                    };
                    if e < prev {
                        return ready(Err(StoreError::EpochBackwards {
                            current: prev,
                            requested: e,
                        }));
                    }
                }
            }
        }
        let total = bytes.len() as u64;
        // Roll only between batches: recovery treats a segment that ends
        // inside a batch as corrupt.
        let new_segment = match index.active() {
            None => true,
            Some(a) => {
                !index.open_batch && a.size > 0 && a.size + total > self.shared.options.segment_size
            }
        };
        index.open_batch = !ends_batch;
        if new_segment {
            index.start_segment(first);
        }
        let epoch = state.epoch;
        let stamp = |i: usize| match replicated {
            None => (Position(first.0 + i as u64), epoch),
            Some(stamps) => stamps[i],
        };
        let mut at = 0;
        for (i, len) in lens.iter().enumerate() {
            let (p, e) = stamp(i);
            seal(&mut bytes[at..at + len], p, e);
            at += len;
        }
        let last = Position(first.0 + lens.len() as u64 - 1);
        let (segment, offset) = {
            let active = index.active_mut().expect("an active segment");
            let offset = active.size;
            active.mark(first, offset);
            active.size += total;
            active.last = last;
            (active.first, offset)
        };
        for (i, r) in records.iter().enumerate() {
            let (p, e) = stamp(i);
            index.apply(segment, p, r);
            index.note_epoch(e, p);
        }
        index.next = last.next();
        state.epoch = state.epoch.max(index.last_epoch);
        // Only acks and roll-overs can make a segment deletable.
        let delete = if new_segment || records.iter().any(|r| matches!(r, Record::Ack { .. })) {
            index.collect_deletable(self.shared.options.compaction)
        } else {
            Vec::new()
        };
        let stats = &self.shared.stats;
        stats.appends.fetch_add(1, Ordering::Relaxed);
        stats
            .records
            .fetch_add(lens.len() as u64, Ordering::Relaxed);
        let bytes = Bytes::from(bytes);
        let written = Position(self.shared.written.load(Ordering::Acquire));
        state.recent.push(
            Chunk {
                first,
                last,
                bytes: bytes.clone(),
            },
            written,
        );
        // Readers get whole batches only (a slave's append may end inside one).
        if ends_batch {
            self.shared.appended.send_replace(last);
        }
        let unsafe_mode = self.shared.options.sync == SyncPolicy::UnsafeReceiptBeforeWrite;
        let (reply, rx) = if unsafe_mode {
            (None, None)
        } else {
            let (tx, rx) = oneshot::channel();
            (Some(tx), Some(rx))
        };
        // Sent under the lock so the writer sees batches in position order.
        let sent = self.tx.send(Command::Write {
            segment,
            new_segment,
            offset,
            bytes,
            last,
            reply,
            delete,
        });
        if sent.is_err() {
            return ready(Err(StoreError::Closed));
        }
        match rx {
            None => ready(Ok(last)),
            Some(rx) => async move { rx.await.map_err(|_| StoreError::Closed)? }.boxed(),
        }
    }

    /// Run a control command on the writer (after everything queued before).
    fn control(
        &self,
        cmd: impl FnOnce(Reply<()>) -> Command,
    ) -> BoxFuture<'static, Result<(), StoreError>> {
        let (tx, rx) = oneshot::channel();
        if self.tx.send(cmd(tx)).is_err() {
            return ready(Err(StoreError::Closed));
        }
        async move { rx.await.map_err(|_| StoreError::Closed)? }.boxed()
    }
}

/// With prefix compaction the segments are contiguous: a gap means segment
/// files were removed behind the journal's back (or it was written with
/// [`Compaction::AnySegment`]), and whatever they held is gone.
fn warn_gaps(dir: &Path, index: &Index) {
    let segments: Vec<_> = index.segments.values().collect();
    for pair in segments.windows(2) {
        if pair[0].last.next() != pair[1].first {
            tracing::warn!(
                dir = %dir.display(),
                "journal positions {} to {} are missing: segment files deleted outside the broker?",
                pair[0].last.next(),
                pair[1].first.0 - 1
            );
        }
    }
}

/// One process per journal: two writers would interleave records. The lock
/// (flock) goes away with the process, also on kill -9.
fn lock_dir(dir: &Path) -> Result<fs::File, StoreError> {
    use std::io::Read;
    use std::os::fd::AsRawFd;
    let path = dir.join("journal.lock");
    let mut file = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(&path)
        .map_err(io_err(&path))?;
    // SAFETY: flock on a descriptor owned by `file`, which outlives the call.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        let err = std::io::Error::last_os_error();
        if err.kind() != std::io::ErrorKind::WouldBlock {
            return Err(io_err(&path)(err));
        }
        let mut holder = String::new();
        let _ = file.read_to_string(&mut holder);
        return Err(StoreError::Locked {
            path,
            holder: holder.trim().to_owned(),
        });
    }
    file.set_len(0)
        .and_then(|()| write!(file, "{}", std::process::id()))
        .map_err(io_err(&path))?;
    Ok(file)
}

fn ready<T: Send + 'static>(v: Result<T, StoreError>) -> BoxFuture<'static, Result<T, StoreError>> {
    futures::future::ready(v).boxed()
}

fn encode_batch<'a>(
    records: impl ExactSizeIterator<Item = &'a Record>,
) -> Result<(Vec<u8>, Vec<usize>), StoreError> {
    let n = records.len();
    let mut bytes = Vec::new();
    let mut lens = Vec::with_capacity(n);
    for (i, r) in records.enumerate() {
        let len = encode_unsealed(r, i + 1 == n, &mut bytes);
        if len - codec::HEADER_LEN > codec::MAX_PAYLOAD {
            return Err(StoreError::TooLarge(len));
        }
        lens.push(len);
    }
    Ok((bytes, lens))
}

impl Store for Journal {
    fn append(&self, records: Vec<Record>) -> AppendFuture {
        if records.is_empty() {
            return ready(Err(StoreError::EmptyBatch));
        }
        match encode_batch(records.iter()) {
            Ok((bytes, lens)) => self.sequence(&records, bytes, &lens, None, true),
            Err(e) => ready(Err(e)),
        }
    }

    fn recover(&self) -> Result<Recovered, StoreError> {
        if let Some(r) = self.lock().recovered.take() {
            return Ok(r);
        }
        self.check_failed()?;
        self.flush();
        // The files are complete up to the last append; nothing is torn.
        segment::recover(&self.shared.dir, Damage::Refuse).map(|(_, r)| r)
    }

    fn position(&self) -> Position {
        Position(self.lock().index.next.0 - 1)
    }

    fn first_position(&self) -> Position {
        self.lock().index.first_position()
    }

    fn epoch(&self) -> Epoch {
        self.lock().epoch
    }

    fn set_epoch(&self, epoch: Epoch) -> Result<(), StoreError> {
        let mut state = self.lock();
        if epoch < state.epoch {
            return Err(StoreError::EpochBackwards {
                current: state.epoch,
                requested: epoch,
            });
        }
        state.epoch = epoch;
        Ok(())
    }

    fn subscribe(&self) -> watch::Receiver<Position> {
        self.shared.appended.subscribe()
    }

    fn read_recent(
        &self,
        after: Position,
        max_bytes: usize,
    ) -> Option<Result<Vec<Entry>, StoreError>> {
        if let Err(e) = self.check_failed() {
            return Some(Err(e));
        }
        let chunks = {
            let state = self.lock();
            // Deleted with their segment: the same answer as from the files.
            if after.next() < state.index.first_position() {
                return None;
            }
            state.recent.after(after)?
        };
        let mut out = Vec::new();
        let mut size = 0;
        'chunks: for b in &chunks {
            let mut at = 0;
            while at < b.len() {
                // Sealed by `sequence` itself: a failure would be a bug, and
                // the files are the fallback.
                let (e, n) = Entry::decode(&b[at..]).ok()?;
                at += n;
                if e.position <= after {
                    continue;
                }
                size += n;
                let end = e.batch_end;
                out.push(e);
                if end && size >= max_bytes {
                    break 'chunks;
                }
            }
        }
        while out.last().is_some_and(|e| !e.batch_end) {
            out.pop();
        }
        Some(Ok(out))
    }

    fn read_after(&self, after: Position, max_bytes: usize) -> Result<Vec<Entry>, StoreError> {
        if let Some(r) = self.read_recent(after, max_bytes) {
            return r;
        }
        let limit = Position(self.shared.written.load(Ordering::Acquire));
        if after >= limit {
            return Ok(Vec::new());
        }
        let wanted = after.next();
        let (file, offset) = {
            let state = self.lock();
            let index = &state.index;
            match index.segment_of(wanted) {
                Some(s) => (
                    segment::path(&self.shared.dir, s.first),
                    s.offset_for(wanted),
                ),
                None => {
                    return Err(StoreError::Compacted {
                        requested: after,
                        first_available: index.first_position(),
                    })
                }
            }
        };
        match segment::read(&file, offset, after, limit, max_bytes) {
            // Deleted between the lookup and the open.
            Err(StoreError::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
                Err(StoreError::Compacted {
                    requested: after,
                    first_available: self.first_position(),
                })
            }
            other => other,
        }
    }

    fn append_replicated(&self, entries: Vec<Entry>) -> AppendFuture {
        if entries.is_empty() {
            return ready(Err(StoreError::EmptyBatch));
        }
        let stamps: Vec<(Position, Epoch)> =
            entries.iter().map(|e| (e.position, e.epoch)).collect();
        let mut bytes = Vec::new();
        let mut lens = Vec::with_capacity(entries.len());
        for e in &entries {
            lens.push(encode_unsealed(&e.record, e.batch_end, &mut bytes));
        }
        let ends_batch = entries.last().is_some_and(|e| e.batch_end);
        let records: Vec<Record> = entries.into_iter().map(|e| e.record).collect();
        self.sequence(&records, bytes, &lens, Some(&stamps), ends_batch)
    }

    fn truncate_after(&self, position: Position) -> BoxFuture<'static, Result<(), StoreError>> {
        if let Err(e) = self.check_failed() {
            return ready(Err(e));
        }
        {
            let mut state = self.lock();
            let index = &mut state.index;
            if position.next() >= index.next {
                return ready(Ok(()));
            }
            if position < index.horizon {
                return ready(Err(StoreError::TruncateBelowHorizon {
                    requested: position,
                    horizon: index.horizon,
                }));
            }
            let first = index.first_position();
            if position.next() < first {
                return ready(Err(StoreError::Compacted {
                    requested: position,
                    first_available: first,
                }));
            }
            index.next = position.next();
        }
        self.control(|reply| Command::Truncate {
            after: position,
            reply,
        })
    }

    fn reset(&self, next: Position) -> BoxFuture<'static, Result<(), StoreError>> {
        if let Err(e) = self.check_failed() {
            return ready(Err(e));
        }
        if next == Position::ZERO {
            return ready(Err(StoreError::OutOfOrder {
                expected: Position(1),
                got: next,
            }));
        }
        self.lock().index.next = next;
        self.control(|reply| Command::Reset { next, reply })
    }

    fn epoch_history(&self) -> Vec<(Epoch, Position)> {
        self.lock().index.epoch_history()
    }

    fn stats(&self) -> StoreStats {
        let s = &self.shared.stats;
        let state = self.lock();
        StoreStats {
            appends: s.appends.load(Ordering::Relaxed),
            records: s.records.load(Ordering::Relaxed),
            writes: s.writes.load(Ordering::Relaxed),
            fsyncs: s.fsyncs.load(Ordering::Relaxed),
            bytes: s.bytes.load(Ordering::Relaxed),
            segments: state.index.segments.len() as u64,
            live_messages: state.index.live.len() as u64,
        }
    }
}

impl Drop for Journal {
    fn drop(&mut self) {
        // Closing the channel makes the writer drain, sync and exit.
        let (tx, _) = mpsc::channel();
        drop(std::mem::replace(&mut self.tx, tx));
        if let Some(w) = self.writer.take() {
            let _ = w.join();
        }
    }
}

/// Source of the zeroes written ahead ([`JournalOptions::preallocate`]).
static ZEROES: [u8; 64 << 10] = [0; 64 << 10];

/// The segment file being appended to.
struct Active {
    first: Position,
    file: fs::File,
    /// Where the next record goes.
    end: u64,
    /// The file holds records or written zeroes up to here.
    zeroed: u64,
}

/// The single writer thread.
struct Writer {
    shared: Arc<Shared>,
    file: Option<Active>,
    buf: Vec<u8>,
    replies: Vec<(Position, Reply<Position>)>,
    delete: Vec<Position>,
    last: Option<Position>,
    dirty: bool,
}

impl Writer {
    fn new(shared: Arc<Shared>) -> Self {
        Writer {
            shared,
            file: None,
            buf: Vec::new(),
            replies: Vec::new(),
            delete: Vec::new(),
            last: None,
            dirty: false,
        }
    }

    fn run(mut self, rx: mpsc::Receiver<Command>) {
        let unsafe_mode = self.shared.options.sync == SyncPolicy::UnsafeReceiptBeforeWrite;
        // Appends in the previous group, and how long its fsync took.
        let mut expected = 1;
        let mut last_sync = Duration::ZERO;
        while let Ok(cmd) = rx.recv() {
            // Unsafe mode: acknowledged records wait in memory for a while.
            if unsafe_mode {
                thread::sleep(UNSAFE_WRITE_DELAY);
            }
            let mut writes = self.handle(cmd);
            // The appenders that the previous commit resolved are probably
            // on their way back: wait for as many as last time, at most as
            // long as an fsync takes, so they share the next one instead of
            // alternating between a small and a large group.
            let deadline = Instant::now() + last_sync.min(MAX_GATHER);
            loop {
                let cmd = match rx.try_recv() {
                    Ok(cmd) => cmd,
                    Err(mpsc::TryRecvError::Disconnected) => break,
                    Err(mpsc::TryRecvError::Empty) => {
                        let now = Instant::now();
                        if writes >= expected || now >= deadline {
                            break;
                        }
                        match rx.recv_timeout(deadline - now) {
                            Ok(cmd) => cmd,
                            Err(_) => break,
                        }
                    }
                };
                writes += self.handle(cmd);
            }
            expected = writes.max(1);
            let start = Instant::now();
            self.commit(false);
            last_sync = start.elapsed();
        }
        // Closed: whatever the policy, leave everything on disk.
        self.commit(true);
    }

    /// Apply one command; returns how many appends it carried (0 or 1).
    fn handle(&mut self, cmd: Command) -> usize {
        match cmd {
            Command::Write {
                segment,
                new_segment,
                offset,
                bytes,
                last,
                reply,
                delete,
            } => {
                if self.shared.failed.get().is_some() {
                    fail(reply, &self.shared);
                    return 1;
                }
                if let Err(e) = self.select(segment, new_segment, offset) {
                    self.fail(e);
                    fail(reply, &self.shared);
                    return 1;
                }
                self.buf.extend_from_slice(&bytes);
                self.last = Some(last);
                self.delete.extend(delete);
                if let Some(r) = reply {
                    self.replies.push((last, r));
                }
                1
            }
            Command::Truncate { after, reply } => {
                self.commit(false);
                let _ = reply.send(self.rewrite(|dir| truncate_files(dir, after)));
                0
            }
            Command::Reset { next, reply } => {
                self.commit(false);
                let _ = reply.send(self.rewrite(|dir| reset_files(dir, next)));
                0
            }
            Command::Barrier(done) => {
                self.commit(false);
                let _ = done.send(());
                0
            }
        }
    }

    /// Make `segment` the file being appended to, at `offset` (batches of
    /// one segment arrive in order, so only the first one's offset counts).
    fn select(
        &mut self,
        segment: Position,
        new_segment: bool,
        offset: u64,
    ) -> Result<(), StoreError> {
        if let Some(a) = self.file.as_ref().filter(|a| a.first == segment) {
            debug_assert_eq!(offset, a.end + self.buf.len() as u64);
            return Ok(());
        }
        // Roll-over: what belongs to the old segment is made durable first,
        // so a crash can tear only the newest segment.
        self.flush_buf()?;
        self.sync(false)?;
        let dir = &self.shared.dir;
        let path = segment::path(dir, segment);
        let file = fs::OpenOptions::new()
            .write(true)
            .create_new(new_segment)
            .open(&path)
            .map_err(io_err(&path))?;
        if new_segment {
            segment::sync_dir(dir)?;
        }
        // A recovered segment may still have zeroes ahead from before.
        let zeroed = file.metadata().map_err(io_err(&path))?.len();
        self.file = Some(Active {
            first: segment,
            file,
            end: offset,
            zeroed,
        });
        Ok(())
    }

    fn flush_buf(&mut self) -> Result<(), StoreError> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let a = self
            .file
            .as_mut()
            .expect("a file is selected before writing");
        let path = segment::path(&self.shared.dir, a.first);
        a.file
            .write_all_at(&self.buf, a.end)
            .map_err(io_err(&path))?;
        a.end += self.buf.len() as u64;
        zero_ahead(a, &self.shared.options).map_err(io_err(&path))?;
        let stats = &self.shared.stats;
        stats.writes.fetch_add(1, Ordering::Relaxed);
        stats
            .bytes
            .fetch_add(self.buf.len() as u64, Ordering::Relaxed);
        self.buf.clear();
        self.dirty = true;
        Ok(())
    }

    /// fdatasync the current file if written to, when the policy asks for
    /// it or `force`.
    fn sync(&mut self, force: bool) -> Result<(), StoreError> {
        if !self.dirty || !(force || self.shared.options.sync == SyncPolicy::Fsync) {
            return Ok(());
        }
        if let Some(a) = &self.file {
            let path = segment::path(&self.shared.dir, a.first);
            a.file.sync_data().map_err(io_err(&path))?;
            self.shared.stats.fsyncs.fetch_add(1, Ordering::Relaxed);
        }
        self.dirty = false;
        Ok(())
    }

    /// Write what is buffered, publish it to readers, fsync (by policy, or
    /// `force`), then resolve the appends and unlink freed segments.
    fn commit(&mut self, force: bool) {
        if let Err(e) = self.flush_buf() {
            self.fail(e);
        }
        if self.shared.failed.get().is_none() {
            if let Some(last) = self.last.take() {
                // In the file now: memory may let it go.
                self.shared.written.store(last.0, Ordering::Release);
            }
            if let Err(e) = self.sync(force) {
                self.fail(e);
            }
        }
        if self.shared.failed.get().is_none() {
            for first in self.delete.drain(..) {
                let path = segment::path(&self.shared.dir, first);
                match fs::remove_file(&path) {
                    Ok(()) => tracing::debug!(file = %path.display(), "journal segment deleted"),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => {
                        tracing::warn!(file = %path.display(), "cannot delete journal segment: {e}")
                    }
                }
            }
        }
        for (last, reply) in self.replies.drain(..) {
            let result = match self.shared.failed.get() {
                Some(why) => Err(StoreError::Failed(why.clone())),
                None => Ok(last),
            };
            let _ = reply.send(result);
        }
    }

    fn fail(&mut self, e: StoreError) {
        tracing::error!("journal failed, accepting no more writes: {e}");
        let _ = self.shared.failed.set(e.to_string());
        self.buf.clear();
    }

    /// Change the files under the writer (truncate, reset) and rebuild the
    /// index from them.
    fn rewrite(
        &mut self,
        change: impl FnOnce(&Path) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        if let Some(why) = self.shared.failed.get() {
            return Err(StoreError::Failed(why.clone()));
        }
        self.file = None;
        self.delete.clear();
        let dir = self.shared.dir.clone();
        let result = change(&dir)
            .and_then(|()| segment::sync_dir(&dir))
            .and_then(|()| segment::recover(&dir, Damage::Refuse));
        match result {
            Ok((index, _)) => {
                let mut state = self.shared.state.lock().unwrap_or_else(|e| e.into_inner());
                state.epoch = state.epoch.max(index.last_epoch);
                let position = Position(index.next.0 - 1);
                state.index = index;
                state.recovered = None;
                state.recent.clear();
                self.shared.written.store(position.0, Ordering::Release);
                self.shared.appended.send_replace(position);
                drop(state);
                Ok(())
            }
            Err(e) => {
                self.fail(StoreError::Failed(e.to_string()));
                Err(e)
            }
        }
    }
}

/// Tops up the zeroes ahead of the records once less than half of
/// [`JournalOptions::preallocate`] is left: a few ms every couple of MiB,
/// flushed by the group's fdatasync. Never past the segment size, where a
/// roll-over comes first.
fn zero_ahead(a: &mut Active, options: &JournalOptions) -> std::io::Result<()> {
    let chunk = options.preallocate;
    if chunk == 0 || a.zeroed >= a.end + chunk / 2 {
        return Ok(());
    }
    let to = (a.end + chunk).min(options.segment_size);
    let mut at = a.zeroed.max(a.end);
    while at < to {
        let n = (to - at).min(ZEROES.len() as u64);
        a.file.write_all_at(&ZEROES[..n as usize], at)?;
        at += n;
    }
    a.zeroed = a.zeroed.max(to);
    Ok(())
}

fn fail(reply: Option<Reply<Position>>, shared: &Shared) {
    if let Some(r) = reply {
        let why = shared.failed.get().cloned().unwrap_or_default();
        let _ = r.send(Err(StoreError::Failed(why)));
    }
}

fn truncate_files(dir: &Path, after: Position) -> Result<(), StoreError> {
    for (first, path) in segment::list(dir)?.into_iter().rev() {
        if first > after {
            if first == after.next() {
                // Keep it, empty, so the log still ends at `after`.
                segment::truncate(&path, 0)?;
                continue;
            }
            fs::remove_file(&path).map_err(io_err(&path))?;
        } else {
            let at = segment::offset_after(&path, after)?;
            return segment::truncate(&path, at);
        }
    }
    Ok(())
}

fn reset_files(dir: &Path, next: Position) -> Result<(), StoreError> {
    for (_, path) in segment::list(dir)? {
        fs::remove_file(&path).map_err(io_err(&path))?;
    }
    let path = segment::path(dir, next);
    fs::File::create(&path)
        .and_then(|f| f.sync_all())
        .map_err(io_err(&path))
}
