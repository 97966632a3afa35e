//! The pseudo-cluster deployed through the local executor, end to end: three
//! ZooKeeper nodes and a three-broker replicated group elected through them.
//! Exactly one master, a STOMP message through it, a re-deploy that changes
//! nothing, a rolling re-deploy that restarts the slaves before the master,
//! and destroy leaving nothing running.

mod deploy_support;

use std::collections::BTreeMap;

use deploy_support::{assert_has, is_alive, local_cluster, port_of, stomp_roundtrip};

fn roles(st: &BTreeMap<String, (Option<u64>, String)>) -> (Vec<String>, Vec<String>) {
    let pick = |role: &str| {
        ["amq1", "amq2", "amq3"]
            .iter()
            .filter(|b| st[**b].1 == role)
            .map(|b| b.to_string())
            .collect::<Vec<_>>()
    };
    (pick("master"), pick("slave"))
}

#[test]
fn pseudo_cluster_elects_one_master_redeploys_rolling_and_destroys() {
    let (_tmp, d, text) = local_cluster(
        "deploy_pseudo.toml",
        "dpseudo",
        &[("zk_session_timeout", "2s")],
    );

    let first = d.deploy(&[]).ok();
    assert_has(&first.stdout, "started: ");
    let (code, st) = d.status();
    assert_eq!(code, 0, "{st:?}");
    let (masters, slaves) = roles(&st);
    assert_eq!(masters.len(), 1, "exactly one master: {st:?}");
    assert_eq!(slaves.len(), 2, "{st:?}");
    let master = masters[0].clone();
    assert_eq!(
        st.values().filter(|(_, r)| r == "leader").count(),
        1,
        "one ZooKeeper leader: {st:?}"
    );

    // A message through the master; a slave refuses clients.
    let master_addr = format!("127.0.0.1:{}", port_of(&text, &master, "stomp_port"));
    assert_eq!(
        stomp_roundtrip(&master_addr, "pseudo.deploy", "via the master").unwrap(),
        "via the master"
    );
    let slave_addr = format!("127.0.0.1:{}", port_of(&text, &slaves[0], "stomp_port"));
    assert!(stomp_roundtrip(&slave_addr, "pseudo.deploy", "x").is_err());

    // Re-deploy: nothing to do, nothing restarted.
    let pids: Vec<u32> = d.recorded_pids();
    let again = d.deploy(&[]).ok();
    assert_has(&again.stdout, "no changes");
    assert_eq!(d.recorded_pids(), pids);

    // A group-wide config change rolls: slaves first, the master last, each
    // gated on the group having a master again.
    let changed = std::fs::read_to_string(&d.inventory)
        .unwrap()
        .replace("zk_session_timeout = \"2s\"", "zk_session_timeout = \"3s\"");
    std::fs::write(&d.inventory, changed).unwrap();
    let rolled = d.deploy(&[]).ok();
    let stopped = rolled.stopped();
    assert_eq!(stopped.len(), 3, "{}", rolled.stderr);
    assert_eq!(stopped[2], master, "master restarted last: {stopped:?}");
    let (code, st) = d.status();
    assert_eq!(code, 0, "{st:?}");
    let (masters, _) = roles(&st);
    assert_eq!(masters.len(), 1, "{st:?}");

    // destroy: every process gone, nothing left under the base directory.
    let running = d.recorded_pids();
    assert_eq!(running.len(), 6);
    d.amqctl(&["destroy", "--purge-data"]).ok();
    for pid in running {
        assert!(!is_alive(pid), "pid {pid} still running after destroy");
    }
    assert!(!d.base.exists());
}
