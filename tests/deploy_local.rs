//! `amqctl deploy` through the local executor, end to end with the real
//! components: Debian's ZooKeeper (3 nodes) and the bundled broker, on free
//! loopback ports under a temp directory. Then re-deploy (a no-op), dry run,
//! a config change (only the changed services restart, rolling), stop /
//! start / logs, and destroy (nothing left running).

mod deploy_support;

use std::collections::BTreeMap;

use deploy_support::{assert_has, is_alive, local_cluster, port_of, stomp_roundtrip, Deployed};

fn standalone_cluster(name: &str) -> (tempfile::TempDir, Deployed, String) {
    local_cluster("deploy_standalone.toml", name, &[])
}

#[test]
fn deploy_is_ordered_idempotent_rolling_and_destroyable() {
    let (_tmp, d, text) = standalone_cluster("dlocal");

    // First deploy: everything starts, in order.
    let first = d.deploy(&[]).ok();
    assert_has(&first.stdout, "started: ");
    let zk_at = first
        .stderr
        .find("ZooKeeper: 3 node(s) serving")
        .expect(&first.stderr);
    let east_at = first.stderr.find("starting east1").unwrap();
    let west_at = first.stderr.find("starting west1").unwrap();
    assert!(
        zk_at < east_at && east_at < west_at,
        "start order:\n{}",
        first.stderr
    );

    let (code, services) = d.status();
    assert_eq!(code, 0, "{services:?}");
    assert_eq!(services.len(), 5);
    let leaders = services.values().filter(|(_, r)| r == "leader").count();
    let followers = services.values().filter(|(_, r)| r == "follower").count();
    assert_eq!((leaders, followers), (1, 2), "{services:?}");
    assert_eq!(services["east1"].1, "standalone");
    assert_eq!(services["west1"].1, "standalone");
    let pids: BTreeMap<String, u64> = services
        .iter()
        .map(|(k, (p, _))| (k.clone(), p.expect("running")))
        .collect();

    // A message really goes through each deployed broker.
    let east = format!("127.0.0.1:{}", port_of(&text, "east1", "stomp_port"));
    assert_eq!(
        stomp_roundtrip(&east, "deploy.test", "hello east").unwrap(),
        "hello east"
    );

    // Secrets-free files are 0644, launch scripts 0755.
    let run_sh = d.base.join("east1/run.sh");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&run_sh).unwrap().permissions().mode() & 0o777,
        0o755
    );

    // Per-host log of every command.
    let log = deploy_support::read(&d.logs.join("local.log"));
    assert!(log.contains("sha256sum"), "{log}");
    assert!(log.contains("setsid"), "{log}");

    // Second deploy changes nothing and says so; nothing restarted.
    let second = d.deploy(&[]).ok();
    assert_has(&second.stdout, "no changes");
    let (_, again) = d.status();
    for (svc, pid) in &pids {
        assert_eq!(
            again[svc].0,
            Some(*pid),
            "{svc} was restarted by a no-op deploy"
        );
    }
    let dry = d.deploy(&["--dry-run"]);
    assert_eq!(dry.code, 0, "{}{}", dry.stdout, dry.stderr);
    assert!(dry.stdout.contains("no changes"));

    // Change the ZooKeeper heap: the dry run shows the diff, changes nothing,
    // and exits 3 ("changes pending").
    let changed = std::fs::read_to_string(&d.inventory)
        .unwrap()
        .replace("heap = \"128m\"", "heap = \"144m\"");
    std::fs::write(&d.inventory, changed).unwrap();
    let before = std::fs::read_to_string(d.base.join("zk1/run.sh")).unwrap();
    let dry = d.deploy(&["--dry-run"]);
    assert_eq!(dry.code, 3, "{}{}", dry.stdout, dry.stderr);
    assert_has(&dry.stdout, "-exec java -Xms128m");
    assert_has(&dry.stdout, "+exec java -Xms144m");
    assert_has(&dry.stdout, "would restart zk1");
    assert!(
        !dry.stdout.contains("would restart east1"),
        "{}",
        dry.stdout
    );
    assert_eq!(
        std::fs::read_to_string(d.base.join("zk1/run.sh")).unwrap(),
        before
    );

    // Applying it restarts the ZooKeeper nodes one by one, the leader last,
    // and leaves the brokers alone.
    let leader = services
        .iter()
        .find(|(_, (_, r))| r == "leader")
        .map(|(k, _)| k.clone())
        .unwrap();
    let rolled = d.deploy(&[]).ok();
    let order = rolled.stopped();
    assert_eq!(order.len(), 3, "{}", rolled.stderr);
    assert_eq!(order[2], leader, "leader restarted last: {order:?}");
    let (code, after) = d.status();
    assert_eq!(code, 0);
    assert_eq!(after["east1"].0, Some(pids["east1"]));
    assert_eq!(after["west1"].0, Some(pids["west1"]));
    assert_ne!(after["zk1"].0, Some(pids["zk1"]));

    // A new broker binary: both brokers restart (each stopped before the
    // binary is replaced), ZooKeeper does not.
    let (_, before) = d.status();
    let new_bin = d.base.parent().unwrap().join("amq-broker-v2");
    let mut bytes = std::fs::read(deploy_support::broker_bin()).unwrap();
    bytes.extend_from_slice(b"\n# v2\n"); // still the same ELF, another checksum
    std::fs::write(&new_bin, bytes).unwrap();
    std::fs::set_permissions(&new_bin, std::fs::Permissions::from_mode(0o755)).unwrap();
    let bin_arg = ["--broker-bin", new_bin.to_str().unwrap()];
    let dry = d.amqctl(&["deploy", "--dry-run", bin_arg[0], bin_arg[1]]);
    assert_eq!(dry.code, 3, "{}{}", dry.stdout, dry.stderr);
    assert_has(&dry.stdout, "bin/amq-broker: binary");
    assert_has(&dry.stdout, "would restart east1");
    assert_has(&dry.stdout, "would restart west1");
    assert!(!dry.stdout.contains("would restart zk"), "{}", dry.stdout);
    let upgraded = d.amqctl(&["deploy", bin_arg[0], bin_arg[1]]).ok();
    let stop_east = upgraded
        .stderr
        .find("stopping east1")
        .expect(&upgraded.stderr);
    let put_binary = upgraded
        .stderr
        .find("uploading 1 file(s) of east1")
        .expect(&upgraded.stderr);
    assert!(
        stop_east < put_binary,
        "binary replaced while running:\n{}",
        upgraded.stderr
    );
    assert_eq!(
        std::fs::read(d.base.join("bin/amq-broker")).unwrap(),
        std::fs::read(&new_bin).unwrap()
    );
    let (_, after) = d.status();
    assert_ne!(after["east1"].0, before["east1"].0);
    assert_ne!(after["west1"].0, before["west1"].0);
    assert_eq!(after["zk1"].0, before["zk1"].0);
    let again = d.amqctl(&["deploy", bin_arg[0], bin_arg[1]]).ok();
    assert_has(&again.stdout, "no changes");

    // stop --node, status reports it down (exit 3), start brings it back.
    d.amqctl(&["stop", "--node", "west1"]).ok();
    assert!(!is_alive(pids["west1"] as u32));
    let (code, down) = d.status();
    assert_eq!(code, 3);
    assert_eq!(down["west1"].1, "down");
    d.amqctl(&["start"]).ok();
    let (code, up) = d.status();
    assert_eq!(code, 0);
    assert_eq!(up["west1"].1, "standalone");
    let logs = d.amqctl(&["logs", "west1", "-n", "50"]).ok();
    assert_has(&logs.stdout, "started");

    // destroy: nothing of it keeps running; data kept unless purged.
    let running = d.recorded_pids();
    assert_eq!(running.len(), 5);
    let destroyed = d.amqctl(&["destroy"]).ok();
    assert_has(&destroyed.stdout, "kept");
    for pid in &running {
        assert!(!is_alive(*pid), "pid {pid} still running after destroy");
    }
    assert!(!d.base.join("east1/run.sh").exists());
    assert!(!d.base.join("bin/amq-broker").exists());
    assert!(
        d.base.join("zk1/data").exists(),
        "data kept without --purge-data"
    );
    d.amqctl(&["destroy", "--purge-data"]).ok();
    assert!(
        !d.base.exists(),
        "base dir left: {:?}",
        std::fs::read_dir(&d.base).map(|r| r.count())
    );
}

#[test]
fn broker_that_cannot_start_names_host_service_and_log() {
    let (_tmp, d, text) = standalone_cluster("dfail");
    // Occupy west1's status port so it cannot bind it.
    let status_port = port_of(&text, "west1", "status_port");
    // The port came from a bind to port 0, so a short-lived outgoing
    // connection may hold it as its local port for a moment: retry briefly.
    let squat = (0..50)
        .find_map(|_| {
            let l = std::net::TcpListener::bind(format!("127.0.0.1:{status_port}")).ok();
            if l.is_none() {
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
            l
        })
        .expect("the status port stays taken by another socket");
    let run = d.deploy(&[]);
    assert_eq!(run.code, 1, "{}{}", run.stdout, run.stderr);
    assert_has(&run.stderr, "local: west1");
    assert_has(&run.stderr, "west1/out.log");
    assert_has(&run.stderr, "exited before reporting a role");
    // The others are consistent: east1 and ZooKeeper run.
    let (_, st) = d.status();
    assert_eq!(st["east1"].1, "standalone");
    assert_eq!(st["west1"].1, "down");

    // Once the port is free, deploying again continues where it failed:
    // only west1 starts, nothing that runs is touched.
    drop(squat);
    let resumed = d.deploy(&[]).ok();
    assert_has(&resumed.stdout, "started: west1,");
    assert_has(&resumed.stdout, "0 file(s) changed");
    let (code, after) = d.status();
    assert_eq!(code, 0, "{after:?}");
    assert_eq!(after["west1"].1, "standalone");
    assert_eq!(after["east1"].0, st["east1"].0);
    assert_eq!(after["zk1"].0, st["zk1"].0);
}
