//! The rendered ZooKeeper files run: a 3-node ensemble on free loopback
//! ports, installed where the plan says and started with the rendered
//! `run.sh` (Debian's jars), elects exactly one leader, answers the
//! whitelisted four-letter words and reports the `myid` it was given.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use amq_harness::zookeeper::four_letter_word;
use amq_harness::{free_ports, ProcessGuard};
use amqctl::render::{render, Launch};
use amqctl::Topology;

mod plan_support;

#[test]
fn rendered_ensemble_elects_one_leader() {
    let tmp = tempfile::tempdir().unwrap();
    let p = free_ports(9);
    let mut inventory = format!(
        "[cluster]\nname = \"zk\"\nbase_dir = \"{}\"\n\n[[hosts]]\nname = \"local\"\naddress = \"127.0.0.1\"\n\n[zookeeper]\ninstall = \"apt\"\nheap = \"128m\"\n",
        tmp.path().join("base").display()
    );
    // Ids deliberately not 1..3 in list order: myid comes from `id`.
    for (i, id) in [7, 3, 5].iter().enumerate() {
        inventory.push_str(&format!(
            "\n[[zookeeper.nodes]]\nid = {id}\nhost = \"local\"\nclient_port = {}\npeer_port = {}\nelection_port = {}\n",
            p[3 * i],
            p[3 * i + 1],
            p[3 * i + 2]
        ));
    }
    inventory.push_str("\n[[groups]]\nname = \"g\"\n[[groups.brokers]]\nname = \"b\"\nhost = \"local\"\nport_offset = 7\n");
    let (topo, _) = Topology::from_str(Path::new("zk.toml"), &inventory, &|_| None)
        .unwrap_or_else(|d| panic!("{d}"));
    let plan = render(&topo).unwrap();
    plan_support::install(&plan);

    let mut nodes = Vec::new();
    for id in [7, 3, 5] {
        let (_, svc) = plan.service(&format!("zk{id}")).unwrap();
        let Launch::Process {
            script, log_file, ..
        } = &svc.launch
        else {
            panic!("a loopback host runs processes")
        };
        let log = std::fs::File::create(log_file).unwrap();
        let mut cmd = Command::new(script);
        cmd.stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        let guard = ProcessGuard::spawn(format!("zk{id}"), &mut cmd).unwrap();
        nodes.push((id, guard, log_file.clone()));
    }
    let addr = |i: usize| SocketAddr::from(([127, 0, 0, 1], p[3 * i]));
    let mode = |i: usize| four_letter_word(addr(i), "srvr").unwrap_or_default();

    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let modes: Vec<String> = (0..3).map(mode).collect();
        let leaders = modes.iter().filter(|m| m.contains("Mode: leader")).count();
        let followers = modes
            .iter()
            .filter(|m| m.contains("Mode: follower"))
            .count();
        if leaders == 1 && followers == 2 {
            break;
        }
        for (id, guard, log) in nodes.iter_mut() {
            assert!(
                guard.is_running(),
                "zk{id} exited:\n{}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
        assert!(Instant::now() < deadline, "no quorum after 60 s: {modes:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
    for (i, (id, _, _)) in nodes.iter().enumerate() {
        // ruok is off by default in 3.8: answering it proves the whitelist.
        assert_eq!(four_letter_word(addr(i), "ruok").unwrap(), "imok");
        let conf = four_letter_word(addr(i), "conf").unwrap();
        assert!(conf.contains(&format!("serverId={id}")), "zk{id}: {conf}");
    }
    // every JVM is killed by PID when the guards drop
}
