//! `amqctl up` from an inventory to a proven cluster (plan → deploy →
//! verify election → verify failover with one kill), and `amqctl down`
//! stopping every service of it.

mod deploy_support;
mod verify_support;

#[test]
fn up_proves_the_cluster_and_down_stops_it() {
    let (_tmp, d) = verify_support::cluster("verify_shared.toml", "vup");
    // No --broker-bin: amqctl ships itself, the broker under its other name.
    let run = d.amqctl(&["up"]).ok();
    let stages: Vec<&str> = run
        .stdout
        .lines()
        .filter(|l| l.contains("== ") && l.contains("/4 "))
        .collect();
    assert_eq!(stages.len(), 4, "{}", run.stdout);
    for (i, name) in ["plan", "deploy", "verify election", "verify failover"]
        .iter()
        .enumerate()
    {
        assert!(stages[i].contains(name), "{stages:?}");
    }
    assert!(run.stdout.contains("all 5 checks passed"), "{}", run.stdout);
    assert!(run.stdout.contains("is up and proven"), "{}", run.stdout);
    assert!(
        run.stdout.contains("failover:(stomp://127.0.0.1:"),
        "{}",
        run.stdout
    );

    assert!(
        std::fs::read(d.base.join("bin/amq-broker")).unwrap()
            == std::fs::read(env!("CARGO_BIN_EXE_amqctl")).unwrap(),
        "the shipped broker is this amqctl"
    );

    let pids = d.recorded_pids();
    assert_eq!(pids.len(), 2, "both brokers run");
    let down = d.amqctl(&["down"]).ok();
    assert!(
        down.stdout.contains("is down: 2 service(s) stopped"),
        "{}",
        down.stdout
    );
    for pid in pids {
        assert!(
            !deploy_support::is_alive(pid),
            "pid {pid} still runs after down"
        );
    }
    let (code, services) = d.status();
    assert_eq!(code, 3, "status reports the cluster down");
    assert!(
        services.values().all(|(pid, _)| pid.is_none()),
        "{services:?}"
    );
    // Files and data stay for the next `up`.
    assert!(d.base.join("p1/activemq.xml").exists());
}
