//! Segment files and recovery: `DIR/<first position, 20 digits>.log`, each a
//! sequence of entry frames ([`super::codec`]), possibly followed by zeroes
//! written ahead (`JournalOptions::preallocate`): a zero tail is the end of
//! the records, not damage. Batches never span segments.

use super::codec::{self, DecodeError};
use super::index::{Applied, Index};
use super::{Entry, Position, Recovered, StoreError};
use crate::message::Message;
use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

pub fn path(dir: &Path, first: Position) -> PathBuf {
    dir.join(format!("{:020}.log", first.0))
}

pub fn io_err(path: &Path) -> impl FnOnce(io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Segment files in `dir`, oldest first. Other files are left alone.
pub fn list(dir: &Path) -> Result<Vec<(Position, PathBuf)>, StoreError> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir).map_err(io_err(dir))? {
        let entry = entry.map_err(io_err(dir))?;
        let name = entry.file_name();
        let Some(stem) = name.to_str().and_then(|n| n.strip_suffix(".log")) else {
            continue;
        };
        if stem.len() == 20 && stem.bytes().all(|b| b.is_ascii_digit()) {
            if let Ok(first) = stem.parse() {
                out.push((Position(first), entry.path()));
            }
        }
    }
    out.sort();
    Ok(out)
}

/// Make a created or removed directory entry durable.
pub fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err(dir))
}

/// How recovery treats damage in the newest segment that is followed by
/// intact records (which a crash cannot produce: it tears only the end).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Damage {
    /// Refuse to open, naming file and offset.
    Refuse,
    /// Truncate there anyway, logging what is dropped (operator's decision).
    Truncate,
}

/// Read every segment, truncate a torn tail of the newest one, and rebuild
/// the index and the live messages.
pub fn recover(dir: &Path, damage: Damage) -> Result<(Index, Recovered), StoreError> {
    let files = list(dir)?;
    let mut index = Index::empty(Position(1));
    let mut messages: BTreeMap<Position, Message> = BTreeMap::new();
    for (i, (first, file)) in files.iter().enumerate() {
        let newest = i + 1 == files.len();
        if *first < index.next {
            return Err(StoreError::Corrupt {
                path: file.clone(),
                offset: 0,
                reason: format!("segment starts at {first}, before the end of the previous one"),
            });
        }
        let data = fs::read(file).map_err(io_err(file))?;
        index.start_segment(*first);
        index.next = *first;
        let good = scan_segment(file, &data, &mut index, &mut messages, newest, damage)?;
        if !zeroes(&data[good..]) {
            truncate(file, good as u64)?;
        }
        index.segments.get_mut(first).expect("started").size = good as u64;
    }
    let mut recovered = Recovered {
        position: Position(index.next.0 - 1),
        epoch: index.last_epoch,
        ..Recovered::default()
    };
    for m in messages.into_values() {
        recovered
            .destinations
            .entry(m.destination.clone())
            .or_default()
            .push(m);
    }
    Ok((index, recovered))
}

/// Apply the complete batches of one segment; returns the length of its
/// intact prefix (shorter than `data` only for a torn newest segment).
fn scan_segment(
    file: &Path,
    data: &[u8],
    index: &mut Index,
    messages: &mut BTreeMap<Position, Message>,
    newest: bool,
    damage: Damage,
) -> Result<usize, StoreError> {
    let seg = index.next;
    let mut off = 0;
    let mut batch_start = 0;
    let mut batch: Vec<Entry> = Vec::new();
    while off < data.len() {
        let decoded = Entry::decode(&data[off..]);
        if decoded.is_err() && zeroes(&data[off..]) {
            break;
        }
        let problem = match decoded {
            Ok((e, _)) if e.position != Position(index.next.0 + batch.len() as u64) => {
                Problem::Damaged(format!(
                    "record has position {}, expected {}",
                    e.position,
                    index.next.0 + batch.len() as u64
                ))
            }
            Ok((e, _)) if e.epoch < index.last_epoch => Problem::Damaged(format!(
                "epoch {} after epoch {}",
                e.epoch, index.last_epoch
            )),
            Ok((e, len)) => {
                off += len;
                let end = e.batch_end;
                batch.push(e);
                if end {
                    let entries = std::mem::take(&mut batch);
                    apply_batch(index, seg, batch_start as u64, entries, messages, file);
                    batch_start = off;
                }
                continue;
            }
            Err(DecodeError::Incomplete { .. }) => Problem::Torn,
            // The checksum holds but the content is not understood (a newer
            // format, or a bug): never a torn write, so never truncated.
            Err(DecodeError::Malformed(why)) => {
                return Err(StoreError::Corrupt {
                    path: file.to_owned(),
                    offset: off as u64,
                    reason: why.to_owned(),
                })
            }
            Err(e) => Problem::Damaged(e.to_string()),
        };
        let last_good = Position(index.next.0 + batch.len() as u64 - 1);
        // A crash tears only the end of the file: intact records after the
        // damage mean it is not a torn tail, and truncating would lose them.
        let followed = intact_after(data, off, last_good);
        if !newest || (followed && damage == Damage::Refuse) {
            let why = match problem {
                Problem::Torn => "truncated record".to_owned(),
                Problem::Damaged(why) => why,
            };
            let reason = if followed {
                format!("{why}; intact records follow, so this is not a torn tail (repair would truncate here and drop them)")
            } else {
                why
            };
            return Err(StoreError::Corrupt {
                path: file.to_owned(),
                offset: off as u64,
                reason,
            });
        }
        warn_truncation(file, batch_start, data.len(), &problem);
        return Ok(batch_start);
    }
    if !batch.is_empty() {
        // Records of a batch whose end never made it: the batch was not
        // acknowledged, and atomicity says none of it counts.
        if !newest {
            return Err(StoreError::Corrupt {
                path: file.to_owned(),
                offset: batch_start as u64,
                reason: "segment ends inside a batch".to_owned(),
            });
        }
        warn_truncation(file, batch_start, data.len(), &Problem::Torn);
    }
    Ok(batch_start)
}

/// Written ahead and never used: no frame starts with a zero byte.
fn zeroes(data: &[u8]) -> bool {
    data.iter().all(|&b| b == 0)
}

enum Problem {
    Torn,
    Damaged(String),
}

fn warn_truncation(file: &Path, at: usize, len: usize, problem: &Problem) {
    let what = match problem {
        Problem::Torn => "torn tail (incomplete record or batch)".to_owned(),
        Problem::Damaged(why) => format!("damaged tail ({why})"),
    };
    tracing::warn!(
        file = %file.display(),
        offset = at,
        dropped_bytes = len - at,
        "journal recovery: {what}; truncating the unacknowledged tail"
    );
}

/// Whether an intact frame newer than `last_good` starts anywhere after
/// `from` (then the damage is in the middle, not a torn tail).
fn intact_after(data: &[u8], from: usize, last_good: Position) -> bool {
    (from + 1..data.len().saturating_sub(codec::HEADER_LEN - 1)).any(|at| {
        data[at..at + 4] == codec::MAGIC
            && codec::frame(&data[at..]).is_ok_and(|f| f.position > last_good)
    })
}

fn apply_batch(
    index: &mut Index,
    seg: Position,
    offset: u64,
    entries: Vec<Entry>,
    messages: &mut BTreeMap<Position, Message>,
    file: &Path,
) {
    let segment = index.segments.get_mut(&seg).expect("segment started");
    segment.mark(entries[0].position, offset);
    let last = entries.last().expect("non-empty batch");
    segment.last = last.position;
    index.next = last.position.next();
    for e in entries {
        index.note_epoch(e.epoch, e.position);
        match (index.apply(seg, e.position, &e.record), e.record) {
            (Applied::Enqueued, super::Record::Enqueue(m)) => {
                messages.insert(e.position, m);
            }
            (Applied::Acked(at), _) => {
                messages.remove(&at.position);
            }
            (Applied::Ignored, super::Record::Enqueue(m)) => tracing::warn!(
                file = %file.display(),
                position = %e.position,
                "journal recovery: message {} on {} stored twice; keeping the first",
                m.id,
                m.destination
            ),
            _ => {}
        }
    }
}

pub fn truncate(file: &Path, len: u64) -> Result<(), StoreError> {
    let f = fs::OpenOptions::new()
        .write(true)
        .open(file)
        .map_err(io_err(file))?;
    f.set_len(len).map_err(io_err(file))?;
    f.sync_all().map_err(io_err(file))
}

/// Read entries after `after` from one segment file, starting the scan at
/// byte `offset` (a batch start at or before `after + 1`), stopping after
/// `limit` (the last written position) or, at a batch end, once `max_bytes`
/// are collected. A partially written frame ends the read.
pub fn read(
    file: &Path,
    offset: u64,
    after: Position,
    limit: Position,
    max_bytes: usize,
) -> Result<Vec<Entry>, StoreError> {
    use std::io::{Seek, SeekFrom};
    let f = fs::File::open(file).map_err(io_err(file))?;
    let mut r = io::BufReader::with_capacity(256 << 10, f);
    r.seek(SeekFrom::Start(offset)).map_err(io_err(file))?;
    let mut out = Vec::new();
    let mut bytes = 0;
    let mut frame = vec![0u8; codec::HEADER_LEN];
    loop {
        frame.resize(codec::HEADER_LEN, 0);
        if !read_full(&mut r, &mut frame).map_err(io_err(file))? {
            break;
        }
        let len = u32::from_le_bytes(frame[4..8].try_into().expect("4")) as usize;
        if frame[0..4] != codec::MAGIC || len > codec::MAX_PAYLOAD {
            break;
        }
        frame.resize(codec::HEADER_LEN + len, 0);
        if !read_full(&mut r, &mut frame[codec::HEADER_LEN..]).map_err(io_err(file))? {
            break;
        }
        let Ok((entry, n)) = Entry::decode(&frame) else {
            break;
        };
        if entry.position > limit {
            break;
        }
        if entry.position > after {
            bytes += n;
            let end = entry.batch_end;
            out.push(entry);
            if end && bytes >= max_bytes {
                break;
            }
        }
    }
    // Never hand out part of a batch.
    while out.last().is_some_and(|e| !e.batch_end) {
        out.pop();
    }
    Ok(out)
}

/// Fill `buf` completely; `false` at end of file (also mid-buffer).
fn read_full(r: &mut impl io::Read, buf: &mut [u8]) -> io::Result<bool> {
    let mut filled = 0;
    while filled < buf.len() {
        match r.read(&mut buf[filled..]) {
            Ok(0) => return Ok(false),
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(true)
}

/// Byte offset of the first record after `after` in a segment file (its
/// length if none), for truncation.
pub fn offset_after(file: &Path, after: Position) -> Result<u64, StoreError> {
    let data = fs::read(file).map_err(io_err(file))?;
    let mut off = 0;
    while off < data.len() {
        match codec::frame(&data[off..]) {
            Ok(f) if f.position > after => break,
            Ok(f) => off += f.total,
            Err(_) if zeroes(&data[off..]) => break,
            Err(e) => {
                return Err(StoreError::Corrupt {
                    path: file.to_owned(),
                    offset: off as u64,
                    reason: e.to_string(),
                })
            }
        }
    }
    Ok(off as u64)
}
