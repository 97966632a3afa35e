//! Binary encoding of journal entries and of the protocol-neutral message.
//!
//! Entry frame (little endian), 32-byte header then payload:
//!
//! | offset | size | field                                               |
//! |--------|------|-----------------------------------------------------|
//! | 0      | 4    | magic `AMQJ`                                        |
//! | 4      | 4    | payload length                                      |
//! | 8      | 4    | CRC-32C of bytes 12..end (header rest + payload)    |
//! | 12     | 8    | position                                            |
//! | 20     | 8    | epoch                                               |
//! | 28     | 1    | record type (1 enqueue, 2 ack)                      |
//! | 29     | 1    | flags (bit 0: last record of its batch)             |
//! | 30     | 2    | reserved, zero                                      |
//!
//! Decoding never panics and never trusts a length before checking it
//! against the bytes actually present.

use super::{Entry, Epoch, Position, Record};
use crate::message::{Destination, Message, MessageId, PropertyValue};
use bytes::Bytes;
use std::collections::BTreeMap;

pub const MAGIC: [u8; 4] = *b"AMQJ";
pub const HEADER_LEN: usize = 32;
/// Larger payloads are refused on write and treated as damage on read.
pub const MAX_PAYLOAD: usize = 256 << 20;

const TYPE_ENQUEUE: u8 = 1;
const TYPE_ACK: u8 = 2;
const FLAG_BATCH_END: u8 = 1;
/// Version of the message encoding inside an enqueue payload, so fields can
/// be added (OpenWire) without guessing.
const MESSAGE_VERSION: u8 = 1;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The buffer ends before the entry does (a torn tail, or read more).
    #[error("incomplete entry: {needed} bytes needed, {available} available")]
    Incomplete { needed: usize, available: usize },
    #[error("bad magic")]
    BadMagic,
    #[error("payload length {0} exceeds the limit")]
    TooLong(usize),
    #[error("checksum mismatch")]
    BadChecksum,
    /// The checksum holds but the content is not understood.
    #[error("malformed entry: {0}")]
    Malformed(&'static str),
}

impl Entry {
    /// Append the framed entry to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let start = out.len();
        encode_unsealed(&self.record, self.batch_end, out);
        seal(&mut out[start..], self.position, self.epoch);
    }

    /// Decode one entry from the start of `buf`; returns it and its encoded
    /// length.
    pub fn decode(buf: &[u8]) -> Result<(Entry, usize), DecodeError> {
        let header = frame(buf)?;
        let len = header.total;
        let body = &buf[HEADER_LEN..len];
        let record = match header.kind {
            TYPE_ENQUEUE => Record::Enqueue(decode_message(body)?),
            TYPE_ACK => {
                let mut r = Reader::new(body);
                let destination = r.destination()?;
                let id = MessageId(r.string()?);
                r.finish()?;
                Record::Ack { destination, id }
            }
            _ => return Err(DecodeError::Malformed("unknown record type")),
        };
        Ok((
            Entry {
                position: header.position,
                epoch: header.epoch,
                batch_end: header.batch_end,
                record,
            },
            len,
        ))
    }
}

/// The checked header of an entry whose whole frame is present in the buffer.
#[derive(Debug, Clone, Copy)]
pub struct Frame {
    pub position: Position,
    pub epoch: Epoch,
    pub kind: u8,
    pub batch_end: bool,
    /// Header plus payload.
    pub total: usize,
}

/// Check magic, length and CRC of the entry at the start of `buf` without
/// decoding its payload (recovery of positions, segment scans).
pub fn frame(buf: &[u8]) -> Result<Frame, DecodeError> {
    if buf.len() < HEADER_LEN {
        return Err(DecodeError::Incomplete {
            needed: HEADER_LEN,
            available: buf.len(),
        });
    }
    if buf[0..4] != MAGIC {
        return Err(DecodeError::BadMagic);
    }
    let len = u32::from_le_bytes(buf[4..8].try_into().expect("4 bytes")) as usize;
    if len > MAX_PAYLOAD {
        return Err(DecodeError::TooLong(len));
    }
    let total = HEADER_LEN + len;
    if buf.len() < total {
        return Err(DecodeError::Incomplete {
            needed: total,
            available: buf.len(),
        });
    }
    let crc = u32::from_le_bytes(buf[8..12].try_into().expect("4 bytes"));
    if crc32c::crc32c(&buf[12..total]) != crc {
        return Err(DecodeError::BadChecksum);
    }
    // Checked, so that one frame has one meaning: unknown flags or reserved
    // bits are a newer format (or damage), not something to ignore.
    if buf[29] & !FLAG_BATCH_END != 0 || buf[30..32] != [0, 0] {
        return Err(DecodeError::Malformed("unknown flags"));
    }
    let u64_at = |at: usize| u64::from_le_bytes(buf[at..at + 8].try_into().expect("8 bytes"));
    Ok(Frame {
        position: Position(u64_at(12)),
        epoch: Epoch(u64_at(20)),
        kind: buf[28],
        batch_end: buf[29] & FLAG_BATCH_END != 0,
        total,
    })
}

fn encode_record(record: &Record, out: &mut Vec<u8>) -> u8 {
    match record {
        Record::Enqueue(m) => {
            encode_message(m, out);
            TYPE_ENQUEUE
        }
        Record::Ack { destination, id } => {
            put_destination(out, destination);
            put_str(out, &id.0);
            TYPE_ACK
        }
    }
}

/// Append an entry frame for `record` with position and epoch left zero
/// (encoding can then happen before the record is sequenced); [`seal`]
/// fills them in. Returns the frame's length.
pub fn encode_unsealed(record: &Record, batch_end: bool, out: &mut Vec<u8>) -> usize {
    let start = out.len();
    out.extend_from_slice(&[0; HEADER_LEN]);
    let kind = encode_record(record, out);
    let len = out.len() - start - HEADER_LEN;
    let header = &mut out[start..start + HEADER_LEN];
    header[0..4].copy_from_slice(&MAGIC);
    header[4..8].copy_from_slice(&(len as u32).to_le_bytes());
    header[28] = kind;
    header[29] = if batch_end { FLAG_BATCH_END } else { 0 };
    HEADER_LEN + len
}

/// Stamp position and epoch into an unsealed frame and compute its CRC.
pub fn seal(frame: &mut [u8], position: Position, epoch: Epoch) {
    frame[12..20].copy_from_slice(&position.0.to_le_bytes());
    frame[20..28].copy_from_slice(&epoch.0.to_le_bytes());
    let crc = crc32c::crc32c(&frame[12..]);
    frame[8..12].copy_from_slice(&crc.to_le_bytes());
}

pub fn encode_message(m: &Message, out: &mut Vec<u8>) {
    out.push(MESSAGE_VERSION);
    put_str(out, &m.id.0);
    put_destination(out, &m.destination);
    out.push(m.persistent as u8);
    out.push(m.priority);
    put_opt_u64(out, m.expires);
    out.extend_from_slice(&m.timestamp.to_le_bytes());
    match &m.reply_to {
        Some(d) => {
            out.push(1);
            put_destination(out, d);
        }
        None => out.push(0),
    }
    match &m.correlation_id {
        Some(c) => {
            out.push(1);
            put_str(out, c);
        }
        None => out.push(0),
    }
    out.extend_from_slice(&(m.properties.len() as u32).to_le_bytes());
    for (k, v) in &m.properties {
        put_str(out, k);
        match v {
            PropertyValue::String(s) => {
                out.push(0);
                put_str(out, s);
            }
            PropertyValue::Bool(b) => {
                out.push(1);
                out.push(*b as u8);
            }
            PropertyValue::Int(i) => {
                out.push(2);
                out.extend_from_slice(&i.to_le_bytes());
            }
            PropertyValue::Long(l) => {
                out.push(3);
                out.extend_from_slice(&l.to_le_bytes());
            }
            PropertyValue::Double(d) => {
                out.push(4);
                out.extend_from_slice(&d.to_bits().to_le_bytes());
            }
            PropertyValue::Bytes(b) => {
                out.push(5);
                put_bytes(out, b);
            }
        }
    }
    put_bytes(out, &m.body);
    out.extend_from_slice(&m.redelivery_count.to_le_bytes());
    out.extend_from_slice(&(m.broker_path.len() as u32).to_le_bytes());
    for b in &m.broker_path {
        put_str(out, b);
    }
}

pub fn decode_message(buf: &[u8]) -> Result<Message, DecodeError> {
    let mut r = Reader::new(buf);
    if r.u8()? != MESSAGE_VERSION {
        return Err(DecodeError::Malformed("unknown message encoding version"));
    }
    let id = MessageId(r.string()?);
    let destination = r.destination()?;
    let persistent = r.bool()?;
    let priority = r.u8()?;
    let expires = if r.bool()? { Some(r.u64()?) } else { None };
    let timestamp = r.u64()?;
    let reply_to = if r.bool()? {
        Some(r.destination()?)
    } else {
        None
    };
    let correlation_id = if r.bool()? { Some(r.string()?) } else { None };
    let count = r.u32()?;
    let mut properties = BTreeMap::new();
    for _ in 0..count {
        let key = r.string()?;
        if properties
            .last_key_value()
            .is_some_and(|(last, _)| *last >= key)
        {
            return Err(DecodeError::Malformed("property keys out of order"));
        }
        let value = match r.u8()? {
            0 => PropertyValue::String(r.string()?),
            1 => PropertyValue::Bool(r.bool()?),
            2 => PropertyValue::Int(r.u32()? as i32),
            3 => PropertyValue::Long(r.u64()? as i64),
            4 => PropertyValue::Double(f64::from_bits(r.u64()?)),
            5 => PropertyValue::Bytes(Bytes::copy_from_slice(r.bytes()?)),
            _ => return Err(DecodeError::Malformed("unknown property type")),
        };
        properties.insert(key, value);
    }
    let body = Bytes::copy_from_slice(r.bytes()?);
    let redelivery_count = r.u32()?;
    let hops = r.u32()?;
    let mut broker_path = Vec::new();
    for _ in 0..hops {
        broker_path.push(r.string()?);
    }
    r.finish()?;
    Ok(Message {
        id,
        destination,
        persistent,
        priority,
        expires,
        timestamp,
        reply_to,
        correlation_id,
        properties,
        body,
        redelivery_count,
        broker_path,
    })
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    out.extend_from_slice(&(b.len() as u32).to_le_bytes());
    out.extend_from_slice(b);
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    put_bytes(out, s.as_bytes());
}

fn put_opt_u64(out: &mut Vec<u8>, v: Option<u64>) {
    match v {
        Some(v) => {
            out.push(1);
            out.extend_from_slice(&v.to_le_bytes());
        }
        None => out.push(0),
    }
}

fn put_destination(out: &mut Vec<u8>, d: &Destination) {
    out.push(match d {
        Destination::Queue(_) => 0,
        Destination::Topic(_) => 1,
    });
    put_str(out, d.name());
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.buf.len())
            .ok_or(DecodeError::Malformed("field runs past the payload"))?;
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.take(1)?[0])
    }

    fn bool(&mut self) -> Result<bool, DecodeError> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(DecodeError::Malformed("bad boolean")),
        }
    }

    fn u32(&mut self) -> Result<u32, DecodeError> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().expect("4")))
    }

    fn u64(&mut self) -> Result<u64, DecodeError> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into().expect("8")))
    }

    fn bytes(&mut self) -> Result<&'a [u8], DecodeError> {
        let n = self.u32()? as usize;
        self.take(n)
    }

    fn string(&mut self) -> Result<String, DecodeError> {
        std::str::from_utf8(self.bytes()?)
            .map(str::to_owned)
            .map_err(|_| DecodeError::Malformed("string is not UTF-8"))
    }

    fn destination(&mut self) -> Result<Destination, DecodeError> {
        match self.u8()? {
            0 => Ok(Destination::Queue(self.string()?)),
            1 => Ok(Destination::Topic(self.string()?)),
            _ => Err(DecodeError::Malformed("unknown destination kind")),
        }
    }

    fn finish(&self) -> Result<(), DecodeError> {
        if self.pos == self.buf.len() {
            Ok(())
        } else {
            Err(DecodeError::Malformed("trailing bytes after the payload"))
        }
    }
}
