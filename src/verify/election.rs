//! `amqctl verify election INVENTORY`: the cluster as it stands — no load,
//! nothing killed. Per group: every status endpoint answers, exactly one
//! master, ZooKeeper's view and the status endpoints agree on which, the
//! master serves STOMP, every slave refuses clients (or redirects to the
//! master), the master has `replicas/2` slaves attached. The ZooKeeper
//! ensemble: a leader and a quorum. Every host: reachable, and every
//! hostname of the topology resolves there to the planned address.

use std::collections::BTreeMap;
use std::time::Duration;

use amq_broker::client::ConnectOptions;

use crate::deploy::fleet::{parallel, Fleet};
use crate::deploy::health::{four_letter, zk_srvr, ZkStat};
use crate::deploy::preflight::{expected_names, run_facts};
use crate::deploy::service::Service;
use crate::deploy::HostArgs;
use crate::executor::{ExecError, Host};
use crate::plan::Format;
use crate::send::ConnectArgs;
use crate::topology::{Group, Store};

use super::probe::{self, Answer, Observed, Role};
use super::report::CheckList;
use super::zkview::{GroupView, ZkReader};
use super::{Cluster, EXIT_FAILED};

#[derive(Debug, clap::Args)]
pub struct ElectionArgs {
    #[command(flatten)]
    pub hosts: HostArgs,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
    #[command(flatten)]
    pub connect: ConnectArgs,
}

pub fn run(args: ElectionArgs) -> anyhow::Result<()> {
    let (topo, plan) = args.hosts.load()?;
    let (fleet, unreachable) = Fleet::connect(&topo, &args.hosts.connect_options(&topo));
    let cluster = Cluster::new(&topo, &plan, &fleet);
    let list = check(&cluster, &unreachable, &args.connect.options()?);
    match args.format {
        Format::Json => {
            let doc = serde_json::json!({
                "cluster": topo.cluster,
                "passed": list.passed(),
                "sections": list.sections,
            });
            println!("{}", serde_json::to_string_pretty(&doc)?);
        }
        Format::Text => print!("{}", list.render_text()),
    }
    if list.passed() {
        Ok(())
    } else {
        Err(crate::cli::Exit(EXIT_FAILED).into())
    }
}

/// Every check of the cluster, in the order an operator reads them: hosts,
/// ZooKeeper, then each group.
pub fn check(c: &Cluster<'_>, unreachable: &[ExecError], login: &ConnectOptions) -> CheckList {
    let mut list = CheckList::default();
    hosts(c, unreachable, &mut list);
    if !c.zookeeper().is_empty() {
        ensemble(c, &mut list);
    }
    let views = zookeeper_views(c);
    for group in &c.topo.groups {
        let view = views.get(&group.name);
        self::group(c, group, view, login, &mut list);
    }
    list
}

fn hosts(c: &Cluster<'_>, unreachable: &[ExecError], list: &mut CheckList) {
    list.section("hosts");
    for e in unreachable {
        list.check("reachable", false, e.to_string());
    }
    let names = expected_names(c.topo);
    let facts = c
        .fleet
        .each(|name, host| run_facts(c.topo, c.topo.host(name), host));
    for (name, f) in facts {
        let f = match f {
            Ok(f) => f,
            Err(p) => {
                list.check(format!("{name}: hostnames resolve"), false, p.what);
                continue;
            }
        };
        if names.is_empty() {
            list.check(
                format!("{name}: hostnames resolve"),
                true,
                "every node is addressed by IP address; nothing to resolve",
            );
            continue;
        }
        let mut good = Vec::new();
        let mut bad = Vec::new();
        for (n, addr) in &names {
            let got = f.forward.get(n).cloned().unwrap_or_default();
            if got.iter().any(|a| a == addr) {
                good.push(format!("{n} → {addr}"));
            } else if got.is_empty() {
                bad.push(format!("{n} does not resolve (expected {addr})"));
            } else {
                bad.push(format!("{n} → {} (expected {addr})", got.join(", ")));
            }
        }
        let evidence = if bad.is_empty() {
            good.join(", ")
        } else {
            format!(
                "{}; fix /etc/hosts or DNS on {name} (or manage_hosts = true)",
                bad.join("; ")
            )
        };
        list.check(
            format!("{name}: hostnames resolve"),
            bad.is_empty(),
            evidence,
        );
    }
}

/// `srvr` of every node, and `mntr` of the leader for its synced followers.
fn ensemble(c: &Cluster<'_>, list: &mut CheckList) {
    let zk = c.zookeeper();
    let size = zk.len();
    let quorum = size / 2 + 1;
    list.section(format!(
        "ZooKeeper ensemble ({size} nodes, quorum {quorum})"
    ));
    let stats: Vec<Result<ZkStat, String>> = parallel(&zk, |s| {
        zk_srvr(&s.probe_addr(), probe::PROBE_TIMEOUT).map_err(|e| e.to_string())
    });
    let describe: Vec<String> = zk
        .iter()
        .zip(&stats)
        .map(|(s, st)| match st {
            Ok(st) => format!("{} {}", s.name, st.mode),
            Err(e) => format!("{} not serving ({e})", s.name),
        })
        .collect();
    let leaders: Vec<&&Service<'_>> = zk
        .iter()
        .zip(&stats)
        .filter(|(_, st)| {
            matches!(st, Ok(st) if st.mode == "leader" || (size == 1 && st.mode == "standalone"))
        })
        .map(|(s, _)| s)
        .collect();
    let serving = stats.iter().filter(|s| s.is_ok()).count();
    list.check("one leader", leaders.len() == 1, describe.join(", "));
    let mut evidence = format!("{serving} of {size} nodes serve (quorum {quorum})");
    if let Some(leader) = leaders.first() {
        if let Ok(mntr) = four_letter(&leader.probe_addr(), "mntr", probe::PROBE_TIMEOUT) {
            if let Some(n) = mntr_value(&mntr, "zk_synced_followers") {
                evidence.push_str(&format!(
                    "; leader {} has {n} synced follower(s)",
                    leader.name
                ));
            }
        }
    }
    list.check("quorum", serving >= quorum && leaders.len() == 1, evidence);
}

fn mntr_value(text: &str, key: &str) -> Option<String> {
    text.lines().find_map(|l| {
        let (k, v) = l.split_once('\t')?;
        (k == key).then(|| v.trim().to_string())
    })
}

/// ZooKeeper's view of every replicated group (one session for all).
fn zookeeper_views(c: &Cluster<'_>) -> BTreeMap<String, Result<GroupView, String>> {
    let replicated: Vec<&Group> = c
        .topo
        .groups
        .iter()
        .filter(|g| matches!(g.store, Store::Replicated(_)))
        .collect();
    if replicated.is_empty() {
        return BTreeMap::new();
    }
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            return replicated
                .iter()
                .map(|g| (g.name.clone(), Err(e.to_string())))
                .collect()
        }
    };
    rt.block_on(async {
        let reader = ZkReader::connect(c.topo, Duration::from_secs(3)).await;
        let mut out = BTreeMap::new();
        for g in replicated {
            let view = match &reader {
                Ok(r) => r.group(g).await.map_err(|e| e.to_string()),
                Err(e) => Err(e.to_string()),
            };
            out.insert(g.name.clone(), view);
        }
        out
    })
}

fn group(
    c: &Cluster<'_>,
    group: &Group,
    view: Option<&Result<GroupView, String>>,
    login: &ConnectOptions,
    list: &mut CheckList,
) {
    let members = c.members(&group.name);
    list.section(format!(
        "group {} ({}, {} broker{})",
        group.name,
        group.store.kind(),
        members.len(),
        if members.len() == 1 { "" } else { "s" }
    ));
    let hosts: Vec<Option<std::sync::Arc<crate::executor::Logged>>> =
        members.iter().map(|s| c.fleet.get(&s.host.name)).collect();
    let observed: Vec<Observed> = parallel(&(0..members.len()).collect::<Vec<_>>(), |&i| {
        probe::role(
            members[i],
            hosts[i].as_deref().map(|h| h as &dyn Host),
            login,
        )
    });
    let roles = describe_roles(&members, &observed);
    let down: Vec<&str> = members
        .iter()
        .zip(&observed)
        .filter(|(_, o)| matches!(o.role, Role::Down(_)))
        .map(|(s, _)| s.name.as_str())
        .collect();
    list.check(
        "every broker answers",
        down.is_empty(),
        if down.is_empty() {
            roles.clone()
        } else {
            format!("down: {}; {roles}", down.join(", "))
        },
    );

    let active: Vec<(&Service<'_>, &Observed)> = members
        .iter()
        .copied()
        .zip(&observed)
        .filter(|(_, o)| o.role.is_active())
        .collect();
    if !group.is_master_slave() {
        list.check("serves clients", active.len() == 1, roles.clone());
    } else {
        let masters: Vec<&str> = active.iter().map(|(s, _)| s.name.as_str()).collect();
        list.check(
            "exactly one master",
            masters.len() == 1,
            match masters.len() {
                0 => format!("no master: {roles}"),
                1 => format!("{} is master ({roles})", masters[0]),
                _ => format!("{} masters at once: {}", masters.len(), masters.join(", ")),
            },
        );
    }

    if let (Store::Replicated(_), Some(view)) = (&group.store, view) {
        zookeeper_agrees(group, view, &active, list);
    }

    // The master serves clients; every slave refuses them or redirects.
    if let [(master, _)] = active.as_slice() {
        let answer = probe::connect(&probe::stomp_addr(master), login);
        list.check(
            format!("{} accepts clients", master.name),
            answer == Answer::Accepted,
            format!(
                "STOMP {}: {}",
                probe::stomp_addr(master),
                answer_text(&answer)
            ),
        );
    }
    if group.is_master_slave() {
        let master_addr = match active.as_slice() {
            [(m, _)] => Some(probe::stomp_addr(m)),
            _ => None,
        };
        let redirect = matches!(&group.store, Store::Replicated(r) if r.slave_redirect);
        for (s, o) in members.iter().zip(&observed) {
            if o.role.is_active() || matches!(o.role, Role::Down(_)) {
                continue;
            }
            let addr = probe::stomp_addr(s);
            let answer = probe::connect(&addr, login);
            let ok = match &answer {
                Answer::Refused(_) => true,
                Answer::Redirected(to) => match (to, &master_addr) {
                    (Some(to), Some(m)) => to.ends_with(m.rsplit(':').next().unwrap_or("-")),
                    _ => true,
                },
                Answer::Accepted => false,
            };
            let mut evidence = format!("STOMP {addr}: {}", answer_text(&answer));
            if redirect && matches!(answer, Answer::Refused(_)) {
                evidence.push_str(" (slave_redirect is on, but refusing is safe too)");
            }
            if let (Answer::Redirected(Some(to)), false) = (&answer, ok) {
                evidence.push_str(&format!(
                    "; the master is {}, not {to}",
                    master_addr.as_deref().unwrap_or("-")
                ));
            }
            list.check(format!("{} (slave) refuses clients", s.name), ok, evidence);
        }
    }

    if let Store::Replicated(r) = &group.store {
        if let [(master, _)] = active.as_slice() {
            let needed = r.replicas as usize / 2;
            let following: Vec<&str> = members
                .iter()
                .zip(&observed)
                .filter(|(s, o)| {
                    s.name != master.name
                        && o.role == Role::Slave
                        && o.status
                            .as_ref()
                            .and_then(|st| st.get("master"))
                            .is_some_and(|m| !m.is_null())
                })
                .map(|(s, _)| s.name.as_str())
                .collect();
            list.check(
                "slaves attached",
                following.len() >= needed,
                format!(
                    "{} follow{} {} (needs replicas/2 = {needed})",
                    if following.is_empty() {
                        "none".to_string()
                    } else {
                        following.join(", ")
                    },
                    if following.len() == 1 { "s" } else { "" },
                    master.name
                ),
            );
        }
    }
}

fn zookeeper_agrees(
    group: &Group,
    view: &Result<GroupView, String>,
    active: &[(&Service<'_>, &Observed)],
    list: &mut CheckList,
) {
    let view = match view {
        Ok(v) => v,
        Err(e) => {
            list.check("ZooKeeper agrees", false, format!("cannot read it: {e}"));
            return;
        }
    };
    let name_of = |m: &amq_broker::coordination::MemberData| {
        GroupView::broker_of(group, m)
            .map(|b| b.name.clone())
            .unwrap_or_else(|| m.id.clone())
    };
    let registered: Vec<String> = view
        .members
        .iter()
        .map(|(_, m)| {
            let stale =
                m.role == "master" && view.elected.as_ref().map(|e| e.epoch) != Some(m.epoch);
            if stale {
                format!("{} master of epoch {} (stale)", name_of(m), m.epoch)
            } else {
                format!("{} {}", name_of(m), m.role)
            }
        })
        .collect();
    let elected = view.elected.as_ref().map(|e| {
        let by_id = group
            .brokers
            .iter()
            .find(|b| b.name == e.id)
            .map(|b| b.name.clone());
        let by_member = view
            .members
            .iter()
            .find(|(_, m)| m.id == e.id)
            .map(|(_, m)| name_of(m));
        (by_member.or(by_id).unwrap_or_else(|| e.id.clone()), e.epoch)
    });
    let zk_masters: Vec<String> = view.masters().into_iter().map(name_of).collect();
    let status_master = match active {
        [(s, _)] => Some(s.name.clone()),
        _ => None,
    };
    let ok = matches!((&elected, &status_master), (Some((e, _)), Some(s)) if e == s)
        && zk_masters.len() == 1
        && zk_masters.first() == status_master.as_ref();
    list.check(
        "ZooKeeper agrees",
        ok,
        format!(
            "elected: {}; registered: {}; /status master: {}",
            elected
                .map(|(n, epoch)| format!("{n} (epoch {epoch})"))
                .unwrap_or_else(|| "none".into()),
            if registered.is_empty() {
                "nobody".to_string()
            } else {
                registered.join(", ")
            },
            status_master.unwrap_or_else(|| "none".into())
        ),
    );
}

fn describe_roles(members: &[&Service<'_>], observed: &[Observed]) -> String {
    members
        .iter()
        .zip(observed)
        .map(|(s, o)| {
            let via = if o.via == "/status" {
                ""
            } else {
                " (by STOMP)"
            };
            format!("{} {}{via}", s.name, o.role)
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn answer_text(a: &Answer) -> String {
    match a {
        Answer::Accepted => "CONNECTED (serves clients)".into(),
        Answer::Redirected(Some(m)) => format!("ERROR redirecting to the master {m}"),
        Answer::Redirected(None) => "ERROR: not the master (master unknown)".into(),
        Answer::Refused(why) => format!("refused ({why})"),
    }
}
