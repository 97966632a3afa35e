//! The inventory file as written: raw serde types with source spans. Nothing
//! downstream uses these; [`crate::topology`] validates them into a
//! [`crate::topology::Topology`].
//!
//! Almost every field is optional here, even the required ones, so that
//! validation can report *all* missing keys at once with their table's
//! position instead of stopping at serde's first "missing field".

use std::collections::BTreeMap;
use std::fmt;
use std::ops::Range;

use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::Deserialize;
use toml::Spanned;

use crate::diag::{Collector, Diagnostics, SourceMap};

pub type S<T> = Spanned<T>;

#[derive(Debug, Deserialize)]
pub struct RawInventory {
    pub cluster: Option<S<RawCluster>>,
    #[serde(default)]
    pub hosts: Vec<S<RawHost>>,
    pub zookeeper: Option<S<RawZookeeper>>,
    #[serde(default)]
    pub groups: Vec<S<RawGroup>>,
    #[serde(default)]
    pub networks: Vec<S<RawNetwork>>,
    #[serde(default)]
    pub users: Vec<S<RawUser>>,
    pub clients: Option<S<RawClients>>,
}

#[derive(Debug, Deserialize)]
pub struct RawCluster {
    pub name: Option<S<String>>,
    pub base_dir: Option<S<String>>,
    pub allow_inline_secrets: Option<S<bool>>,
    pub broker: Option<S<String>>,
}

#[derive(Debug, Deserialize)]
pub struct RawHost {
    pub name: Option<S<String>>,
    pub address: Option<S<String>>,
    pub hostname: Option<S<String>>,
    pub aliases: Option<Vec<S<String>>>,
    pub connection: Option<S<String>>,
    pub ssh: Option<S<RawSsh>>,
    pub service_manager: Option<S<String>>,
    pub base_dir: Option<S<String>>,
    pub broker_bin: Option<S<String>>,
    pub java: Option<S<String>>,
    pub shared_mounts: Option<Vec<S<String>>>,
    pub manage_hosts: Option<S<bool>>,
}

#[derive(Debug, Deserialize)]
pub struct RawSsh {
    pub user: Option<S<String>>,
    pub port: Option<S<i64>>,
    pub identity_file: Option<S<String>>,
    pub known_hosts: Option<S<String>>,
    pub known_hosts_file: Option<S<String>>,
}

#[derive(Debug, Deserialize)]
pub struct RawZookeeper {
    pub install: Option<S<String>>,
    pub tick_time: Option<S<i64>>,
    pub init_limit: Option<S<i64>>,
    pub sync_limit: Option<S<i64>>,
    pub heap: Option<S<String>>,
    pub password: Option<S<RawSecret>>,
    #[serde(default)]
    pub nodes: Vec<S<RawZkNode>>,
}

#[derive(Debug, Deserialize)]
pub struct RawZkNode {
    pub id: Option<S<i64>>,
    pub host: Option<S<String>>,
    pub client_port: Option<S<i64>>,
    pub peer_port: Option<S<i64>>,
    pub election_port: Option<S<i64>>,
    pub data_dir: Option<S<String>>,
}

#[derive(Debug, Deserialize)]
pub struct RawGroup {
    pub name: Option<S<String>>,
    pub store: Option<S<String>>,
    // replicated
    pub replicas: Option<S<i64>>,
    pub zk_path: Option<S<String>>,
    pub zk_session_timeout: Option<S<String>>,
    pub sync: Option<S<String>>,
    pub security_token: Option<S<RawSecret>>,
    pub slave_redirect: Option<S<bool>>,
    // shared-file
    pub shared_dir: Option<S<String>>,
    pub lock_keep_alive_period: Option<S<i64>>,
    pub lock_acquire_sleep_interval: Option<S<i64>>,
    pub failover: Option<S<FailoverTable>>,
    pub failover_bound: Option<S<String>>,
    #[serde(default)]
    pub brokers: Vec<S<RawBroker>>,
}

#[derive(Debug, Deserialize)]
pub struct RawBroker {
    pub name: Option<S<String>>,
    pub host: Option<S<String>>,
    pub port_offset: Option<S<i64>>,
    pub stomp_port: Option<S<i64>>,
    pub openwire_port: Option<S<i64>>,
    pub status_port: Option<S<i64>>,
    pub replication_port: Option<S<i64>>,
    pub weight: Option<S<i64>>,
    pub hostname: Option<S<String>>,
    pub data_dir: Option<S<String>>,
}

#[derive(Debug, Deserialize)]
pub struct RawNetwork {
    pub name: Option<S<String>>,
    pub kind: Option<S<String>>,
    pub from: Option<S<String>>,
    pub to: Option<S<Vec<S<String>>>>,
    pub members: Option<S<Vec<S<String>>>>,
    pub address: Option<S<String>>,
    pub interface: Option<S<String>>,
    pub network_ttl: Option<S<i64>>,
    pub duplex: Option<S<bool>>,
    pub conduit_subscriptions: Option<S<bool>>,
    pub decrease_network_consumer_priority: Option<S<bool>>,
    pub user: Option<S<String>>,
}

#[derive(Debug, Deserialize)]
pub struct RawUser {
    pub name: Option<S<String>>,
    pub password: Option<S<RawSecret>>,
    pub groups: Option<Vec<S<String>>>,
}

#[derive(Debug, Deserialize)]
pub struct RawClients {
    pub failover: Option<S<FailoverTable>>,
}

/// Failover transport options keyed by ActiveMQ's own URI option names, kept
/// as written so validation can name unknown options and suggest the real one.
pub type FailoverTable = BTreeMap<String, S<toml::Value>>;

/// A secret as written: `{ env = "VAR" }`, `{ file = "/path" }`, or (only with
/// `cluster.allow_inline_secrets`) `{ value = "..." }` or a bare string.
#[derive(Debug, Default)]
pub struct RawSecret {
    pub env: Option<String>,
    pub file: Option<String>,
    pub value: Option<String>,
    /// A bare string was given instead of a table.
    pub bare: bool,
    /// Keys other than env/file/value, reported by validation.
    pub unknown: Vec<String>,
}

impl<'de> Deserialize<'de> for RawSecret {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawSecret;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a table like { env = \"VAR\" } or { file = \"/path\" }")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<RawSecret, E> {
                Ok(RawSecret {
                    value: Some(v.to_string()),
                    bare: true,
                    ..RawSecret::default()
                })
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawSecret, A::Error> {
                let mut s = RawSecret::default();
                while let Some(key) = map.next_key::<String>()? {
                    match key.as_str() {
                        "env" => s.env = Some(map.next_value()?),
                        "file" => s.file = Some(map.next_value()?),
                        "value" => s.value = Some(map.next_value()?),
                        _ => {
                            map.next_value::<de::IgnoredAny>()?;
                            s.unknown.push(key);
                        }
                    }
                }
                Ok(s)
            }
        }
        d.deserialize_any(V)
    }
}

/// Parses the inventory text. Syntax and type errors come back as
/// diagnostics; unknown keys are returned alongside the raw inventory so
/// validation can report them together with everything else.
pub fn parse(map: &SourceMap<'_>, text: &str) -> Result<(RawInventory, Diagnostics), Diagnostics> {
    let mut c = Collector::new(SourceMap::new(map.file(), text));
    let mut ignored: Vec<Vec<Seg>> = Vec::new();
    let de = toml::de::Deserializer::parse(text);
    let result = match de {
        Ok(de) => serde_ignored::deserialize(de, |path| ignored.push(segments(&path)))
            .map_err(|e| (e.message().to_string(), e.span())),
        Err(e) => Err((e.message().to_string(), e.span())),
    };
    report_unknown_keys(&mut c, text, &ignored);
    match result {
        Ok(raw) => Ok((raw, c.out)),
        Err((message, span)) => {
            let span = span.unwrap_or(0..0);
            let help = if message.contains("invalid type") {
                "use the type this key takes (see the README, \"Inventory format\")"
            } else {
                "fix the TOML syntax at this position"
            };
            // serde speaks Rust types; the inventory speaks TOML.
            let message = message
                .trim_end()
                .replace("expected i64", "expected an integer")
                .replace("expected a boolean", "expected true or false");
            c.error(span, message, help);
            Err(c.out)
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Seg {
    Key(String),
    Index(usize),
}

fn segments(path: &serde_ignored::Path<'_>) -> Vec<Seg> {
    use serde_ignored::Path;
    match path {
        Path::Root => Vec::new(),
        Path::Seq { parent, index } => {
            let mut v = segments(parent);
            v.push(Seg::Index(*index));
            v
        }
        // `Spanned<T>` deserializes through a private wrapper key; it is not
        // part of the document's path.
        Path::Map { parent, key } if key.starts_with("$__serde_spanned") => segments(parent),
        Path::Map { parent, key } => {
            let mut v = segments(parent);
            v.push(Seg::Key(key.clone()));
            v
        }
        Path::Some { parent }
        | Path::NewtypeStruct { parent }
        | Path::NewtypeVariant { parent } => segments(parent),
    }
}

fn report_unknown_keys(c: &mut Collector<'_>, text: &str, ignored: &[Vec<Seg>]) {
    let Ok(doc) = toml::de::DeTable::parse(text) else {
        return;
    };
    for path in ignored {
        let Some(Seg::Key(key)) = path.last() else {
            continue;
        };
        let span = key_span(doc.get_ref(), path).unwrap_or(0..0);
        let table = table_name(&path[..path.len() - 1]);
        let known = known_keys(&path[..path.len() - 1]);
        let help = match closest(key, known) {
            Some(k) => format!("did you mean `{k}`?"),
            None if known.is_empty() => "remove it".to_string(),
            None => format!("remove it; keys allowed here: {}", known.join(", ")),
        };
        c.error(span, format!("unknown key `{key}` in {table}"), help);
    }
}

/// The span of the key at `path` in the parsed document.
fn key_span(doc: &toml::de::DeTable<'_>, path: &[Seg]) -> Option<Range<usize>> {
    let mut table = doc;
    let mut value: Option<&toml::de::DeValue<'_>> = None;
    for (i, seg) in path.iter().enumerate() {
        match seg {
            Seg::Key(k) => {
                if let Some(v) = value {
                    table = v.as_table()?;
                }
                let (key, v) = table.iter().find(|(key, _)| key.get_ref() == k)?;
                if i == path.len() - 1 {
                    return Some(key.span());
                }
                value = Some(v.get_ref());
            }
            Seg::Index(n) => {
                let arr = value?.as_array()?;
                value = Some(arr.get(*n)?.get_ref());
            }
        }
    }
    None
}

/// `[groups.brokers]`-style name of the table holding a key.
fn table_name(path: &[Seg]) -> String {
    let keys: Vec<&str> = path
        .iter()
        .filter_map(|s| match s {
            Seg::Key(k) => Some(k.as_str()),
            Seg::Index(_) => None,
        })
        .collect();
    if keys.is_empty() {
        "the top level".to_string()
    } else {
        format!("[{}]", keys.join("."))
    }
}

fn known_keys(path: &[Seg]) -> &'static [&'static str] {
    let keys: Vec<&str> = path
        .iter()
        .filter_map(|s| match s {
            Seg::Key(k) => Some(k.as_str()),
            Seg::Index(_) => None,
        })
        .collect();
    match keys.as_slice() {
        [] => fields::<RawInventory>(),
        ["cluster"] => fields::<RawCluster>(),
        ["hosts"] => fields::<RawHost>(),
        ["hosts", "ssh"] => fields::<RawSsh>(),
        ["zookeeper"] => fields::<RawZookeeper>(),
        ["zookeeper", "nodes"] => fields::<RawZkNode>(),
        ["groups"] => fields::<RawGroup>(),
        ["groups", "brokers"] => fields::<RawBroker>(),
        ["networks"] => fields::<RawNetwork>(),
        ["users"] => fields::<RawUser>(),
        ["clients"] => fields::<RawClients>(),
        _ => &[],
    }
}

/// The field names serde knows for a struct, read from its derived
/// `Deserialize` impl (so the list can never drift from the struct).
fn fields<'de, T: Deserialize<'de>>() -> &'static [&'static str] {
    struct Probe(&'static [&'static str]);
    #[derive(Debug)]
    struct Done;
    impl fmt::Display for Done {
        fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("done")
        }
    }
    impl std::error::Error for Done {}
    impl de::Error for Done {
        fn custom<M: fmt::Display>(_: M) -> Self {
            Done
        }
    }
    impl<'de> Deserializer<'de> for &mut Probe {
        type Error = Done;
        fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Done> {
            Err(Done)
        }
        fn deserialize_struct<V: Visitor<'de>>(
            self,
            _: &'static str,
            fields: &'static [&'static str],
            _: V,
        ) -> Result<V::Value, Done> {
            self.0 = fields;
            Err(Done)
        }
        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes
            byte_buf option unit unit_struct newtype_struct seq tuple tuple_struct map
            enum identifier ignored_any
        }
    }
    let mut probe = Probe(&[]);
    let _ = T::deserialize(&mut probe);
    probe.0
}

/// The known key nearest to `key` (edit distance ≤ 2, or equal ignoring case
/// and `_`), for "did you mean" hints.
pub fn closest<'a>(key: &str, known: &[&'a str]) -> Option<&'a str> {
    let norm = |s: &str| s.replace(['_', '-'], "").to_ascii_lowercase();
    if let Some(k) = known.iter().find(|k| norm(k) == norm(key)) {
        return Some(k);
    }
    known
        .iter()
        .map(|k| (edit_distance(key, k), *k))
        .filter(|(d, _)| *d <= 2)
        .min()
        .map(|(_, k)| k)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != *cb);
            cur.push(sub.min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_lists_come_from_serde() {
        assert!(fields::<RawBroker>().contains(&"stomp_port"));
        assert!(fields::<RawInventory>().contains(&"zookeeper"));
    }

    #[test]
    fn closest_prefers_case_and_underscore_matches() {
        assert_eq!(
            closest("stomp_prot", &["stomp_port", "status_port"]),
            Some("stomp_port")
        );
        assert_eq!(
            closest("max_reconnect_delay", &["maxReconnectDelay"]),
            Some("maxReconnectDelay")
        );
        assert_eq!(closest("zzz", &["stomp_port"]), None);
    }
}
