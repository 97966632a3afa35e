//! Helpers shared by the journal tests.
#![allow(dead_code)]

use amq_broker::message::{Destination, Message, MessageId, PropertyValue};
use amq_broker::store::{Entry, Journal, JournalOptions, Record, Recovered, Store};
use bytes::Bytes;
use std::collections::BTreeMap;
use std::path::Path;

pub fn queue(name: &str) -> Destination {
    Destination::Queue(name.to_owned())
}

pub fn msg(dest: &str, id: &str, body: &[u8]) -> Message {
    let mut properties = BTreeMap::new();
    properties.insert("custom".to_owned(), PropertyValue::String(id.to_owned()));
    properties.insert("n".to_owned(), PropertyValue::Long(body.len() as i64));
    Message {
        id: MessageId(id.to_owned()),
        destination: queue(dest),
        persistent: true,
        priority: Message::DEFAULT_PRIORITY,
        expires: None,
        timestamp: 1_700_000_000_000,
        reply_to: Some(queue("replies")),
        correlation_id: None,
        properties,
        body: Bytes::copy_from_slice(body),
        redelivery_count: 0,
        broker_path: Vec::new(),
    }
}

pub fn enq(dest: &str, id: &str) -> Record {
    Record::Enqueue(msg(dest, id, format!("body of {id}").as_bytes()))
}

pub fn ack(dest: &str, id: &str) -> Record {
    Record::ack(queue(dest), MessageId(id.to_owned()))
}

pub fn open(dir: &Path) -> Journal {
    Journal::open(dir, JournalOptions::default()).expect("journal opens")
}

pub fn small_segments(size: u64) -> JournalOptions {
    JournalOptions {
        segment_size: size,
        ..JournalOptions::default()
    }
}

/// Ids of the recovered messages on queue `dest`, in order.
pub fn ids(r: &Recovered, dest: &str) -> Vec<String> {
    r.destinations
        .get(&queue(dest))
        .map(|ms| ms.iter().map(|m| m.id.0.clone()).collect())
        .unwrap_or_default()
}

pub fn segment_files(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".log"))
        .collect();
    v.sort();
    v
}

/// Appends messages `0..n` on queue `q`, one batch each.
pub async fn enqueue_numbered(j: &dyn Store, n: usize) {
    for i in 0..n {
        append(j, vec![enq("q", &i.to_string())]).await;
    }
}

pub async fn append(j: &dyn Store, records: Vec<Record>) -> u64 {
    j.append(records).await.expect("append").0
}

/// Compact description of recovered state, for readable assertion failures.
pub fn summary(r: &Recovered) -> String {
    let mut s = format!("position {} epoch {}:", r.position, r.epoch);
    for (d, ms) in &r.destinations {
        let ids: Vec<&str> = ms.iter().map(|m| m.id.0.as_str()).collect();
        s += &format!(" {d}=[{}]", ids.join(","));
    }
    s
}

#[track_caller]
pub fn assert_same(got: &Recovered, want: &Recovered) {
    assert!(got == want, "got  {}\nwant {}", summary(got), summary(want));
}

/// Runs `f` with the log captured; returns its result and the log text.
pub fn with_log<T>(f: impl FnOnce() -> T) -> (T, String) {
    use std::sync::{Arc, Mutex};
    #[derive(Clone)]
    struct Sink(Arc<Mutex<Vec<u8>>>);
    impl std::io::Write for Sink {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let buf = Arc::new(Mutex::new(Vec::new()));
    let sink = Sink(buf.clone());
    let subscriber = tracing_subscriber::fmt()
        .with_ansi(false)
        .with_writer(move || sink.clone())
        .finish();
    let out = tracing::subscriber::with_default(subscriber, f);
    let text = String::from_utf8_lossy(&buf.lock().unwrap()).into_owned();
    (out, text)
}

/// Bytes of whole records at the start of a segment file (the rest is
/// zeroes written ahead, or damage).
pub fn records_len(data: &[u8]) -> usize {
    let mut off = 0;
    while let Ok((_, len)) = Entry::decode(&data[off..]) {
        off += len;
    }
    off
}
