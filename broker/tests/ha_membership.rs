//! Membership in a real ZooKeeper 3.8 ensemble (Debian's jars, free
//! loopback ports): registration, views, compare-and-set of the elected
//! node, digest ACLs, and session health when ZooKeeper goes away.

use amq_broker::coordination::{
    ElectedData, GroupView, Health, MemberData, Membership, ZkSettings,
};
use amq_broker::election::{Status, Tip};
use amq_harness::ZkEnsemble;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use zookeeper_client as zk;

fn settings(zk: &ZkEnsemble, path: &str, password: Option<&str>) -> ZkSettings {
    ZkSettings {
        address: zk.connect_string(),
        password: password.map(amq_broker::config::Secret::new),
        path: path.into(),
        session_timeout: Duration::from_secs(2),
        group: "grp".into(),
        replicas: 3,
    }
}

fn member(id: &str) -> MemberData {
    let mut d = MemberData {
        id: id.into(),
        group: "grp".into(),
        weight: 1,
        address: format!("tcp://127.0.0.1:1{id}"),
        client: None,
        role: String::new(),
        epoch: 0,
        min_epoch: 0,
        position: 0,
        position_epoch: 0,
    };
    d.set_status(
        &Status::Candidate {
            min_epoch: 0,
            tip: Tip::default(),
        },
        0,
        Tip::default(),
    );
    d
}

async fn wait_view(
    views: &mut watch::Receiver<Option<Arc<GroupView>>>,
    what: &str,
    pred: impl Fn(&GroupView) -> bool,
) -> Arc<GroupView> {
    let waited = tokio::time::timeout(
        Duration::from_secs(20),
        views.wait_for(|v| v.as_deref().is_some_and(&pred)),
    )
    .await
    .map(|r| r.expect("membership task alive").clone());
    match waited {
        Ok(v) => v.expect("some"),
        Err(_) => panic!(
            "timed out waiting for {what}: {:?}",
            views.borrow().as_deref().map(|v| &v.view)
        ),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_see_each_other_and_the_elected_node_changes_only_by_compare_and_set() {
    let zk = ZkEnsemble::start().expect("ZooKeeper ensemble");
    let a = Membership::start(settings(&zk, "/amq/test-cas", None), member("1")).unwrap();
    let b = Membership::start(settings(&zk, "/amq/test-cas", None), member("2")).unwrap();
    let mut va = a.views();
    let mut vb = b.views();
    let seen = wait_view(&mut va, "two members", |v| {
        v.view.latest_members().len() == 2
    })
    .await;
    assert_eq!(seen.view.replicas, 3);
    assert!(seen.elected.is_none());

    // Status changes are published and seen by the other member.
    let mut d = a.data();
    d.set_status(&Status::Master { epoch: 1 }, 1, Tip::default());
    a.publish(d);
    wait_view(&mut vb, "a's status", |v| {
        v.view.member("1").map(|m| &m.status) == Some(&Status::Master { epoch: 1 })
    })
    .await;

    // Both claim epoch 1 from the same view: exactly one wins.
    let view_a = wait_view(&mut va, "a view", |_| true).await;
    let view_b = wait_view(&mut vb, "b view", |_| true).await;
    let elected = |id: &str, epoch| ElectedData {
        epoch,
        id: id.into(),
        address: String::new(),
        client: None,
    };
    assert!(a.claim(view_a.clone(), elected("1", 1)).await.unwrap());
    assert!(!b.claim(view_b, elected("2", 1)).await.unwrap());
    let after = wait_view(&mut vb, "elected node", |v| v.elected.is_some()).await;
    assert_eq!(after.elected.as_ref().unwrap().id, "1");
    // A claim from a view older than the last change fails too.
    assert!(!a.claim(view_a, elected("1", 2)).await.unwrap());
    let fresh = wait_view(&mut vb, "fresh", |v| v.elected.is_some()).await;
    assert!(b.claim(fresh, elected("2", 2)).await.unwrap());
    wait_view(&mut va, "epoch 2", |v| {
        v.elected
            .as_ref()
            .is_some_and(|e| e.epoch == 2 && e.id == "2")
    })
    .await;

    // A member that leaves (session closed) disappears at once.
    drop(b);
    wait_view(&mut va, "b gone", |v| v.view.latest_members().len() == 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zk_password_means_digest_auth_and_acls() {
    let zk = ZkEnsemble::start().expect("ZooKeeper ensemble");
    let a = Membership::start(settings(&zk, "/amq/secure", Some("s3cret")), member("1")).unwrap();
    let mut va = a.views();
    let v = wait_view(&mut va, "registered", |v| {
        v.view.latest_members().len() == 1
    })
    .await;
    let node = format!("/amq/secure/0{:010}", v.my_seq);

    let anon = zk::Client::connect(&zk.connect_string()).await.unwrap();
    assert!(
        matches!(anon.get_data(&node).await, Err(zk::Error::NoAuth)),
        "anonymous read of {node}"
    );
    assert!(matches!(
        anon.list_children("/amq/secure").await,
        Err(zk::Error::NoAuth)
    ));
    let wrong = zk::Client::connector()
        .with_auth("digest", b"amqctl:wrong")
        .connect(&zk.connect_string())
        .await
        .unwrap();
    assert!(matches!(
        wrong.get_data(&node).await,
        Err(zk::Error::NoAuth)
    ));
    let right = zk::Client::connector()
        .with_auth("digest", b"amqctl:s3cret")
        .connect(&zk.connect_string())
        .await
        .unwrap();
    let (data, _) = right.get_data(&node).await.unwrap();
    let parsed: MemberData = serde_json::from_slice(&data).unwrap();
    assert_eq!(parsed.id, "1");
    // And the password itself is nowhere in what is published.
    assert!(!String::from_utf8_lossy(&data).contains("s3cret"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_is_lost_when_zookeeper_is_gone_and_recovers_with_a_new_registration() {
    let _ = tracing_subscriber::fmt().with_test_writer().try_init();
    let mut zk = ZkEnsemble::start().expect("ZooKeeper ensemble");
    let s = settings(&zk, "/amq/health", None);
    let fence_after = s.fence_after();
    let a = Membership::start(s, member("1")).unwrap();
    let mut health = a.health();
    let mut va = a.views();
    let first = wait_view(&mut va, "registered", |v| {
        v.view.latest_members().len() == 1
    })
    .await;
    assert_eq!(*health.borrow_and_update(), Health::Connected);

    let t0 = std::time::Instant::now();
    for i in 0..3 {
        zk.kill(i);
    }
    eprintln!("killed the ensemble in {:?}", t0.elapsed());
    tokio::time::timeout(
        Duration::from_secs(10),
        health.wait_for(|h| *h == Health::Lost),
    )
    .await
    .expect("health turns Lost")
    .unwrap();
    let took = t0.elapsed();
    // Disconnect detection plus the fencing bound, well before 2 x session.
    assert!(
        took >= fence_after / 2 && took < Duration::from_secs(4),
        "lost after {took:?}"
    );

    for i in 0..3 {
        zk.restart(i).unwrap();
    }
    tokio::time::timeout(
        Duration::from_secs(40),
        health.wait_for(|h| *h == Health::Connected),
    )
    .await
    .expect("health back to Connected")
    .unwrap();
    let again = wait_view(&mut va, "re-registered", |v| {
        v.members.iter().any(|(_, m)| m.id == "1")
    })
    .await;
    assert!(again.my_seq >= first.my_seq);
}
