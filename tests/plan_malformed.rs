//! Malformed inventories: each is rejected (or warned about) with the exact
//! message, file, line and column, and every problem is reported at once.

use std::path::Path;

use amqctl::Topology;

/// Secrets the fixtures reference by environment variable.
fn env(name: &str) -> Option<String> {
    match name {
        "TEST_ZK_PASSWORD" => Some("zk-secret".into()),
        "TEST_TOKEN" => Some("token-secret".into()),
        _ => None,
    }
}

/// Every diagnostic (errors and warnings), one line each, in source order.
fn diagnostics(text: &str) -> (bool, Vec<String>) {
    match Topology::from_str(Path::new("inv.toml"), text, &env) {
        Ok((_, warnings)) => (true, warnings.iter().map(ToString::to_string).collect()),
        Err(d) => (false, d.all().iter().map(ToString::to_string).collect()),
    }
}

#[track_caller]
fn rejected(text: &str, expected: &[&str]) {
    let (ok, got) = diagnostics(text);
    assert!(!ok, "inventory was accepted; diagnostics: {got:#?}");
    assert_eq!(got, expected);
}

#[track_caller]
fn warned(text: &str, expected: &[&str]) {
    let (ok, got) = diagnostics(text);
    assert!(ok, "inventory was rejected: {got:#?}");
    assert_eq!(got, expected);
}

/// A valid pseudo-cluster head: one loopback host.
const HEAD: &str = r#"[cluster]
name = "t"

[[hosts]]
name = "local"
address = "127.0.0.1"
"#;

fn with_head(rest: &str) -> String {
    format!("{HEAD}{rest}")
}

const ONE_BROKER: &str = r#"
[[groups]]
name = "g"

[[groups.brokers]]
name = "b1"
host = "local"
"#;

#[test]
fn toml_syntax_error() {
    rejected(
        "[cluster]\nname = \"t\n",
        &["inv.toml:2:10: error: invalid basic string, expected `\"`; fix the TOML syntax at this position"],
    );
}

#[test]
fn wrong_value_type() {
    rejected(
        &with_head(&ONE_BROKER.replace("host = \"local\"", "host = \"local\"\nstomp_port = \"61613\"")),
        &[
            "inv.toml:14:14: error: invalid type: string \"61613\", expected an integer; use the type this key takes (see the README, \"Inventory format\")",
        ],
    );
}

#[test]
fn unknown_keys_are_all_reported_with_suggestions() {
    rejected(
        &with_head(
            r#"colour = "red"

[zookeper]
install = "apt"

[[groups]]
name = "g"

[[groups.brokers]]
name = "b1"
host = "local"
stomp_prot = 61613
"#,
        ),
        &[
            "inv.toml:7:1: error: unknown key `colour` in [hosts]; remove it; keys allowed here: name, address, hostname, aliases, connection, ssh, service_manager, base_dir, broker_bin, java, shared_mounts, manage_hosts",
            "inv.toml:9:2: error: unknown key `zookeper` in the top level; did you mean `zookeeper`?",
            "inv.toml:18:1: error: unknown key `stomp_prot` in [groups.brokers]; did you mean `stomp_port`?",
        ],
    );
}

#[test]
fn missing_required_keys() {
    rejected(
        r#"[cluster]

[[hosts]]
name = "local"

[[groups]]
name = "g"

[[groups.brokers]]
host = "local"
"#,
        &[
            "inv.toml:1:1: error: missing `name` in [cluster]; add `name = ...` to this table",
            "inv.toml:3:1: error: missing `address` in [[hosts]]; add `address = ...` to this table",
            "inv.toml:9:1: error: missing `name` in [[groups.brokers]]; add `name = ...` to this table",
        ],
    );
}

#[test]
fn duplicate_names_and_ids() {
    rejected(
        &with_head(
            r#"
[[hosts]]
name = "local"
address = "127.0.0.2"

[zookeeper]
[[zookeeper.nodes]]
id = 1
host = "local"

[[zookeeper.nodes]]
id = 1
host = "local"
client_port = 2182
peer_port = 2889
election_port = 3889

[[groups]]
name = "g"
[[groups.brokers]]
name = "b1"
host = "local"

[[groups]]
name = "h"
[[groups.brokers]]
name = "b1"
host = "local"
port_offset = 10
"#,
        ),
        &[
            "inv.toml:9:8: error: duplicate host name `local` (first defined at inv.toml:5:8); host names must be unique",
            "inv.toml:12:1: warning: a ZooKeeper ensemble of 2 nodes tolerates 0 failures, no more than an ensemble of 1 would; use an odd number of nodes (1 or 3)",
            "inv.toml:18:6: error: duplicate ZooKeeper id `1` (first defined at inv.toml:14:6); every ZooKeeper node needs its own `id`",
            "inv.toml:33:8: error: duplicate service name `b1` (first defined at inv.toml:27:8); brokers and ZooKeeper nodes (named zk<id>) need distinct names: each gets its own directory",
        ],
    );
}

#[test]
fn two_services_sharing_ports_on_one_host() {
    rejected(
        &with_head(
            r#"
[zookeeper]
[[zookeeper.nodes]]
id = 1
host = "local"
client_port = 61616

[[groups]]
name = "g"
store = "shared-file"

[[groups.brokers]]
name = "b1"
host = "local"

[[groups.brokers]]
name = "b2"
host = "local"
"#,
        ),
        &[
            "inv.toml:8:1: warning: a ZooKeeper ensemble of 1 node tolerates no failure; use 3 nodes (tolerates 1) or 5 (tolerates 2)",
            "inv.toml:18:1: error: b1 uses port 61616 (client_port of zk1, openwire_port of b1) on host `local`, already used by zk1 (first used at inv.toml:12:15); give every service on a host its own ports (in a pseudo-cluster, set the ports or a `port_offset` per broker)",
            "inv.toml:22:1: error: b2 uses ports 61613 (stomp_port), 8161 (status_port) on host `local`, already used by b1 (first used at inv.toml:18:1); give every service on a host its own ports (in a pseudo-cluster, set the ports or a `port_offset` per broker)",
            "inv.toml:22:1: error: b2 uses port 61616 (client_port of zk1, openwire_port of b2) on host `local`, already used by zk1 (first used at inv.toml:12:15); give every service on a host its own ports (in a pseudo-cluster, set the ports or a `port_offset` per broker)",
        ],
    );
}

#[test]
fn references_to_missing_hosts_groups_and_users() {
    rejected(
        &with_head(&format!(
            r#"{ONE_BROKER}
[[groups]]
name = "h"

[[groups.brokers]]
name = "b2"
host = "locl"
port_offset = 10

[[networks]]
from = "g"
to = ["nowhere"]
user = "bridge"
"#
        )),
        &[
            "inv.toml:20:8: error: unknown host `locl`; did you mean `local`? (hosts: local)",
            "inv.toml:25:7: error: unknown group `nowhere`; define it in [[groups]] or use one of: g, h",
            "inv.toml:26:8: error: unknown user `bridge`; define it in [[users]]; a network bridge logs in as one of them",
        ],
    );
}

#[test]
fn replicated_replicas_must_match_brokers() {
    rejected(
        &with_head(
            r#"
[zookeeper]
[[zookeeper.nodes]]
id = 1
host = "local"
[[zookeeper.nodes]]
id = 2
host = "local"
client_port = 2182
peer_port = 2889
election_port = 3889
[[zookeeper.nodes]]
id = 3
host = "local"
client_port = 2183
peer_port = 2890
election_port = 3890

[[groups]]
name = "ha"
store = "replicated"
replicas = 5

[[groups.brokers]]
name = "b1"
host = "local"
[[groups.brokers]]
name = "b2"
host = "local"
port_offset = 10
[[groups.brokers]]
name = "b3"
host = "local"
port_offset = 20
"#,
        ),
        &[
            "inv.toml:28:12: error: group `ha` has replicas = 5 but 3 broker(s); set `replicas = 3` (the election quorum is replicas/2+1 of the group's brokers) or add brokers",
        ],
    );
}

#[test]
fn small_replicated_group_and_even_ensemble_are_warnings() {
    warned(
        &with_head(
            r#"
[zookeeper]
[[zookeeper.nodes]]
id = 1
host = "local"
[[zookeeper.nodes]]
id = 2
host = "local"
client_port = 2182
peer_port = 2889
election_port = 3889

[[groups]]
name = "ha"
store = "replicated"

[[groups.brokers]]
name = "b1"
host = "local"
[[groups.brokers]]
name = "b2"
host = "local"
port_offset = 10
"#,
        ),
        &[
            "inv.toml:8:1: warning: a ZooKeeper ensemble of 2 nodes tolerates 0 failures, no more than an ensemble of 1 would; use an odd number of nodes (1 or 3)",
            "inv.toml:20:8: warning: replicated group `ha` has 2 broker(s): no failover tolerated (tolerance = replicas - (replicas/2+1) = 0); use 3 brokers (tolerates 1 failure) or 5 (tolerates 2)",
        ],
    );
}

#[test]
fn single_node_ensemble_is_a_warning() {
    warned(
        &with_head(
            r#"
[zookeeper]
[[zookeeper.nodes]]
id = 7
host = "local"

[[groups]]
name = "ha"
store = "replicated"
[[groups.brokers]]
name = "b1"
host = "local"
[[groups.brokers]]
name = "b2"
host = "local"
port_offset = 10
[[groups.brokers]]
name = "b3"
host = "local"
port_offset = 20
"#,
        ),
        &[
            "inv.toml:8:1: warning: a ZooKeeper ensemble of 1 node tolerates no failure; use 3 nodes (tolerates 1) or 5 (tolerates 2)",
        ],
    );
}

#[test]
fn replicated_group_needs_zookeeper() {
    rejected(
        &with_head(&ONE_BROKER.replace("name = \"g\"", "name = \"g\"\nstore = \"replicated\"")),
        &[
            "inv.toml:9:8: warning: replicated group `g` has 1 broker(s): no failover tolerated (tolerance = replicas - (replicas/2+1) = 0); use 3 brokers (tolerates 1 failure) or 5 (tolerates 2)",
            "inv.toml:10:9: error: replicated group `g` needs a ZooKeeper ensemble; add a [zookeeper] table with `[[zookeeper.nodes]]` (3 nodes), or use store = \"shared-file\"",
        ],
    );
}

#[test]
fn shared_file_across_hosts_needs_a_shared_mount() {
    rejected(
        r#"[cluster]
name = "t"

[[hosts]]
name = "h1"
address = "10.0.0.1"
shared_mounts = ["/mnt/amq"]

[[hosts]]
name = "h2"
address = "10.0.0.2"

[[groups]]
name = "pair"
store = "shared-file"
shared_dir = "/mnt/amq/pair"

[[groups.brokers]]
name = "b1"
host = "h1"

[[groups.brokers]]
name = "b2"
host = "h2"
"#,
        &[
            "inv.toml:16:14: error: shared-file group `pair` spans several hosts, but host `h2` declares no shared mount containing /mnt/amq/pair; a shared-file lock only works where every broker sees the same file system: mount it on `h2` and add it to that host's `shared_mounts`, or put the group's brokers on one host",
        ],
    );
}

#[test]
fn shared_file_across_hosts_without_shared_dir() {
    rejected(
        r#"[cluster]
name = "t"

[[hosts]]
name = "h1"
address = "10.0.0.1"

[[hosts]]
name = "h2"
address = "10.0.0.2"

[[groups]]
name = "pair"
store = "shared-file"

[[groups.brokers]]
name = "b1"
host = "h1"

[[groups.brokers]]
name = "b2"
host = "h2"
"#,
        &[
            "inv.toml:13:8: error: shared-file group `pair` spans hosts h1, h2 but has no `shared_dir`; set `shared_dir` to a directory on a file system every one of these hosts mounts (and list the mount in each host's `shared_mounts`)",
        ],
    );
}

#[test]
fn unresolvable_hostname() {
    rejected(
        r#"[cluster]
name = "t"

[[hosts]]
name = "h1"
address = "10.0.0.1"
hostname = "amq1"

[[groups]]
name = "g"

[[groups.brokers]]
name = "b1"
host = "h1"
hostname = "amq-one"
"#,
        &[
            "inv.toml:15:12: error: hostname `amq-one` does not resolve: no hosts entry or inventory address has it; add it as a host's `hostname` or `aliases` (amqctl renders them into every host's /etc/hosts), or use an address",
        ],
    );
}

#[test]
fn invalid_failover_options() {
    rejected(
        &with_head(&format!(
            r#"{ONE_BROKER}
[clients.failover]
backOffMultiplier = 2.0
max_reconnect_delay = 100
randomize = "no"
maxReconnectAttempts = -5
"#
        )),
        &[
            "inv.toml:16:1: error: `backOffMultiplier` is not a failover transport option; use `reconnectDelayExponent` (failover: has no backOffMultiplier setter and ActiveMQ rejects the URI; backOffMultiplier belongs to static:/multicast: discovery)",
            "inv.toml:17:1: error: unknown failover option `max_reconnect_delay`; did you mean `maxReconnectDelay`? (failover options use ActiveMQ's URI names)",
            "inv.toml:18:13: error: invalid value for failover option `randomize`; use true or false",
            "inv.toml:19:24: error: invalid value for failover option `maxReconnectAttempts`; use an integer ≥ -1",
        ],
    );
}

#[test]
fn secrets_must_be_referenced_and_set() {
    rejected(
        &with_head(&format!(
            r#"{ONE_BROKER}
[[users]]
name = "admin"
password = "hunter2"

[[users]]
name = "app"
password = {{ env = "TEST_UNSET_PASSWORD" }}

[[users]]
name = "ops"
password = {{ file = "/nonexistent/amqctl-secret" }}

[[users]]
name = "bot"
password = {{ env = "TEST_TOKEN", file = "/x" }}
"#
        )),
        &[
            "inv.toml:17:12: error: the password of user `admin` is written inline; reference it as `{ env = \"VAR\" }` or `{ file = \"/path\" }` (or set `allow_inline_secrets = true` in [cluster] for throwaway setups)",
            "inv.toml:21:12: error: environment variable TEST_UNSET_PASSWORD (the password of user `app`) is not set; export TEST_UNSET_PASSWORD=... before running amqctl, or use `{ file = \"/path\" }`",
            "inv.toml:25:12: error: cannot read secret file /nonexistent/amqctl-secret: No such file or directory (os error 2); create it (mode 0600) or point `file` at the right path (relative paths are from the inventory's directory)",
            "inv.toml:29:12: error: the password of user `bot` must name exactly one of `env`, `file` or `value`; write `{ env = \"VAR\" }` or `{ file = \"/path\" }`",
        ],
    );
}

#[test]
fn standalone_group_has_one_broker() {
    rejected(
        &with_head(&format!(
            r#"{ONE_BROKER}
[[groups.brokers]]
name = "b2"
host = "local"
port_offset = 10
"#
        )),
        &[
            "inv.toml:15:1: error: standalone group `g` has 2 brokers; a standalone group has exactly one broker: give each standalone broker its own group, or use store = \"shared-file\" or \"replicated\" for master/slave",
        ],
    );
}

#[test]
fn store_specific_keys_on_the_wrong_store() {
    rejected(
        &with_head(&ONE_BROKER.replace(
            "name = \"g\"",
            "name = \"g\"\nreplicas = 3\nlock_acquire_sleep_interval = 500",
        )),
        &[
            "inv.toml:10:12: error: `replicas` applies only to store = \"replicated\", but group `g` is standalone; remove `replicas` or set `store = \"replicated\"`",
            "inv.toml:11:31: error: `lock_acquire_sleep_interval` applies only to store = \"shared-file\", but group `g` is standalone; remove `lock_acquire_sleep_interval` or set `store = \"shared-file\"`",
        ],
    );
}

#[test]
fn invalid_enumerations_and_paths() {
    rejected(
        &with_head(
            r#"service_manager = "upstart"
base_dir = "relative/dir"

[[groups]]
name = "g"
store = "leveldb"

[[groups.brokers]]
name = "b1"
host = "local"
"#,
        ),
        &[
            "inv.toml:7:19: error: invalid service_manager \"upstart\"; use one of \"systemd\", \"process\"",
            "inv.toml:8:12: error: path `relative/dir` is not absolute; give an absolute path on the target host, e.g. `/var/lib/amqctl`",
            "inv.toml:12:9: error: invalid store \"leveldb\"; use one of \"replicated\", \"shared-file\", \"standalone\"",
        ],
    );
}

#[test]
fn bad_networks() {
    rejected(
        &with_head(
            r#"
[[groups]]
name = "a"
[[groups.brokers]]
name = "a1"
host = "local"

[[groups]]
name = "b"
[[groups.brokers]]
name = "b1"
host = "local"
port_offset = 10

[[networks]]
from = "a"
to = ["a", "b", "b"]

[[networks]]
kind = "multicast"
members = ["a"]
address = "10.1.2.3:6155"
"#,
        ),
        &[
            "inv.toml:23:7: error: network connects group `a` to itself; list only other groups in `to`",
            "inv.toml:23:17: error: duplicate target group `b` (first defined at inv.toml:23:12); list each group once",
            "inv.toml:27:11: error: a multicast network needs at least 2 member groups; list the groups that discover each other",
            "inv.toml:28:11: error: invalid multicast address \"10.1.2.3:6155\"; use \"default\" (239.255.2.3:6155) or an IPv4 multicast address with port, e.g. \"239.255.2.3:6155\"",
        ],
    );
}

#[test]
fn two_host_entries_for_one_address_share_its_ports() {
    rejected(
        &with_head(&format!(
            r#"
[[hosts]]
name = "clients"
address = "127.0.0.1"
{ONE_BROKER}
[[groups]]
name = "h"
[[groups.brokers]]
name = "b2"
host = "clients"
stomp_port = 61613
openwire_port = 61617
status_port = 8162
"#
        )),
        &[
            "inv.toml:9:8: error: the host name `clients` is reserved; rename the host (plan --out writes the client failover URLs to DIR/clients/)",
            "inv.toml:24:14: error: b2 uses port 61613 (stomp_port) on host `clients`, already used by b1 (first used at inv.toml:15:1); give every service on a host its own ports (in a pseudo-cluster, set the ports or a `port_offset` per broker)",
        ],
    );
}

#[test]
fn secret_files_are_read_and_must_be_private() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("admin.pw");
    std::fs::write(&secret, "s3cret\n").unwrap();
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o644)).unwrap();
    let text = with_head(&format!(
        "{ONE_BROKER}\n[[users]]\nname = \"admin\"\npassword = {{ file = \"admin.pw\" }}\n"
    ));
    let inv = dir.path().join("inv.toml");
    let (topo, warnings) = Topology::from_str(&inv, &text, &env).unwrap();
    assert_eq!(
        topo.users[0].password.expose(),
        "s3cret",
        "trailing newline dropped"
    );
    let warnings: Vec<String> = warnings.iter().map(ToString::to_string).collect();
    assert_eq!(
        warnings,
        [format!(
            "{inv}:17:12: warning: secret file {pw} is readable by other users (mode 0644); chmod 600 {pw}",
            inv = inv.display(),
            pw = secret.display()
        )]
    );
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
    let (_, warnings) = Topology::from_str(&inv, &text, &env).unwrap();
    assert!(warnings.is_empty());
}

#[test]
fn activemq_has_no_replicated_store() {
    rejected(
        r#"[cluster]
name = "t"
broker = "activemq"

[[hosts]]
name = "local"
address = "127.0.0.1"

[zookeeper]
[[zookeeper.nodes]]
id = 1
host = "local"

[[groups]]
name = "ha"
store = "replicated"
[[groups.brokers]]
name = "b1"
host = "local"
"#,
        &[
            "inv.toml:9:1: warning: a ZooKeeper ensemble of 1 node tolerates no failure; use 3 nodes (tolerates 1) or 5 (tolerates 2)",
            "inv.toml:15:8: warning: replicated group `ha` has 1 broker(s): no failover tolerated (tolerance = replicas - (replicas/2+1) = 0); use 3 brokers (tolerates 1 failure) or 5 (tolerates 2)",
            "inv.toml:16:9: error: group `ha` is replicated, but ActiveMQ 5.17 has no replicated store (broker chosen at inv.toml:3:10); use store = \"shared-file\", or the bundled broker (`broker = \"amq-broker\"`): <replicatedLevelDB> was removed from ActiveMQ in 5.17",
        ],
    );
}

#[test]
fn failover_bound_must_be_a_time_span() {
    rejected(
        &with_head(&ONE_BROKER.replace(
            "name = \"g\"",
            "name = \"g\"\nfailover_bound = \"soon\"",
        )),
        &[
            "inv.toml:10:18: error: invalid failover_bound \"soon\"; use a time span such as \"7s\" or \"2500ms\"",
        ],
    );
}
