//! Consumer groups with the real librdkafka client: partitions split between members,
//! a member killed without leaving, committed offsets across a broker restart,
//! cooperative-sticky rebalancing, static membership, members with different assignor
//! lists; and bad group requests over the raw client (error codes, a JoinGroup flood).
//!
//! Every broker here runs with a zero initial rebalance delay and allows the short
//! session timeouts the members use (3 s, heartbeats every 300 ms), so each rebalance
//! takes well under a second and a lost member is noticed within a few seconds.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::{BufRead, BufReader};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Offset, TopicPartitionList};
use sluice_protocol::api::ApiKey;
use sluice_protocol::error::ErrorCode;
use sluice_protocol::messages::JoinGroupResponse;
use sluice_system_tests::kafka::{
    consumer, create_topic, group_config, produce_to, producer, stored_group, GroupMember,
};
use sluice_system_tests::raw::RawClient;
use sluice_system_tests::{wait_for, wire, Sluice};

/// The session timeout of `kafka::group_config`.
const SESSION_TIMEOUT: Duration = Duration::from_secs(3);

/// Broker flags for quick rebalances, with `offsets` partitions of `__consumer_offsets`.
fn group_flags(offsets: &'static str) -> [&'static str; 6] {
    [
        "--group-initial-rebalance-delay-ms",
        "0",
        "--group-min-session-timeout-ms",
        "1000",
        "--offsets-topic-num-partitions",
        offsets,
    ]
}

/// `count` messages spread round-robin over `partitions`, values `{tag}-{i}`.
fn spread(tag: &str, partitions: i32, count: usize) -> Vec<(i32, Vec<u8>)> {
    (0..count)
        .map(|i| (i as i32 % partitions, format!("{tag}-{i}").into_bytes()))
        .collect()
}

/// How often each `(partition, offset)` was consumed, over all `records`.
fn counts<'a>(
    records: impl IntoIterator<Item = &'a (i32, i64, Vec<u8>)>,
) -> BTreeMap<(i32, i64), usize> {
    let mut c = BTreeMap::new();
    for (p, o, _) in records {
        *c.entry((*p, *o)).or_default() += 1;
    }
    c
}

/// True once every member holds `each` partitions and together they hold `0..total`.
fn balanced(assignments: &[Vec<i32>], each: usize, total: i32) -> bool {
    let union: BTreeSet<i32> = assignments.iter().flatten().copied().collect();
    assignments.iter().all(|a| a.len() == each) && union == (0..total).collect()
}

/// The group's committed offsets of `topic` partitions `0..partitions` (OffsetFetch,
/// without joining); -1 where nothing is committed.
fn committed(addr: &str, group: &str, topic: &str, partitions: i32) -> Vec<i64> {
    let c: BaseConsumer = group_config(addr, group, &[]).create().expect("consumer");
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition(topic, p);
    }
    let got = c
        .committed_offsets(tpl, Duration::from_secs(10))
        .expect("committed offsets");
    let mut out = vec![-1; partitions as usize];
    for e in got.elements() {
        if let Offset::Offset(o) = e.offset() {
            out[e.partition() as usize] = o;
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn three_members_split_six_partitions_and_consume_each_message_once() {
    let node = Sluice::start(&group_flags("4"));
    create_topic(&node.addr, "split", 6, &[]).await;
    let members: Vec<GroupMember> = (0..3)
        .map(|i| {
            GroupMember::start(
                &node.addr,
                "split-group",
                "split",
                &[("client.id", &format!("split-{i}"))],
            )
        })
        .collect();
    wait_for(
        Duration::from_secs(20),
        "three members with two partitions each",
        || {
            balanced(
                &members.iter().map(|m| m.assignment()).collect::<Vec<_>>(),
                2,
                6,
            )
        },
    );
    let assigned: Vec<Vec<i32>> = members.iter().map(|m| m.assignment()).collect();

    const N: usize = 3000;
    let p = producer(&node.addr, &[]);
    let placed = produce_to(&p, "split", &spread("split", 6, N)).await;
    let total = || {
        members
            .iter()
            .map(|m| m.log.records.lock().unwrap().len())
            .sum::<usize>()
    };
    wait_for(Duration::from_secs(20), "every message consumed", || {
        total() >= N
    });

    // Each member read only its own two partitions, and the group did not rebalance.
    for (m, a) in members.iter().zip(&assigned) {
        assert_eq!(&m.assignment(), a, "assignment unchanged while consuming");
        let read: BTreeSet<i32> = m.log.records().iter().map(|r| r.0).collect();
        assert!(
            read.iter().all(|p| a.contains(p)),
            "member with {a:?} read {read:?}"
        );
        assert_eq!(m.log.commit_failures.load(Ordering::Relaxed), 0);
    }
    // Exactly once: every produced (partition, offset) consumed one time, nothing else.
    let all: Vec<_> = members.iter().flat_map(|m| m.log.records()).collect();
    let seen = counts(&all);
    let want: BTreeSet<(i32, i64)> = placed.iter().copied().collect();
    assert_eq!(seen.keys().copied().collect::<BTreeSet<_>>(), want);
    assert!(
        seen.values().all(|&n| n == 1),
        "a message was consumed twice"
    );
    assert_eq!(all.len(), N);
    // What was committed is the end of every partition.
    assert_eq!(
        committed(&node.addr, "split-group", "split", 6),
        vec![(N / 6) as i64; 6]
    );
    for m in members {
        m.close();
    }
}

/// A `group-member` process and what it printed.
struct MemberProcess {
    child: Child,
    stdin: Option<ChildStdin>,
    /// `record P O` lines as (partition, offset), in order.
    records: Arc<Mutex<Vec<(i32, i64)>>>,
    /// The partitions of its latest `assignment` line.
    assignment: Arc<Mutex<Vec<i32>>>,
    /// Parses its stdout until end of file.
    reader: Option<std::thread::JoinHandle<()>>,
}

impl MemberProcess {
    fn spawn(addr: &str, group: &str, topic: &str, delay_ms: u64) -> MemberProcess {
        let mut child = Command::new(env!("CARGO_BIN_EXE_group-member"))
            .args([addr, group, topic, "--delay-ms", &delay_ms.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn group-member");
        let stdout = child.stdout.take().expect("stdout");
        let records: Arc<Mutex<Vec<(i32, i64)>>> = Arc::default();
        let assignment: Arc<Mutex<Vec<i32>>> = Arc::default();
        let (r, a) = (records.clone(), assignment.clone());
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let mut words = line.split_whitespace();
                match words.next() {
                    Some("record") => {
                        let p = words
                            .next()
                            .and_then(|w| w.parse().ok())
                            .expect("partition");
                        let o = words.next().and_then(|w| w.parse().ok()).expect("offset");
                        r.lock().unwrap().push((p, o));
                    }
                    Some("assignment") => {
                        *a.lock().unwrap() = words
                            .next()
                            .map(|list| list.split(',').map(|p| p.parse().unwrap()).collect())
                            .unwrap_or_default();
                    }
                    _ => panic!("unexpected line from group-member: {line}"),
                }
            }
        });
        MemberProcess {
            stdin: child.stdin.take(),
            child,
            records,
            assignment,
            reader: Some(reader),
        }
    }

    /// SIGKILL, then waits until everything it printed has been read.
    fn kill9(&mut self) {
        self.child.kill().expect("SIGKILL");
        self.child.wait().expect("reap");
        if let Some(r) = self.reader.take() {
            r.join().expect("output reader");
        }
    }

    fn assignment(&self) -> Vec<i32> {
        self.assignment.lock().unwrap().clone()
    }

    fn records(&self) -> Vec<(i32, i64)> {
        self.records.lock().unwrap().clone()
    }

    /// Closes its stdin, which makes it close its consumer (leaving the group).
    fn close(&mut self) {
        self.stdin.take();
        let deadline = Instant::now() + Duration::from_secs(20);
        while self.child.try_wait().expect("wait").is_none() {
            assert!(Instant::now() < deadline, "group-member did not exit");
            std::thread::sleep(Duration::from_millis(20));
        }
        if let Some(r) = self.reader.take() {
            r.join().expect("output reader");
        }
    }
}

impl Drop for MemberProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn killed_member_loses_its_partitions_and_the_group_resumes_from_commits() {
    let node = Sluice::start(&group_flags("4"));
    create_topic(&node.addr, "work", 6, &[]).await;
    // A few ms between printing a record and committing it, so the kill is likely to
    // fall between the two on some partition.
    let mut members: Vec<MemberProcess> = (0..3)
        .map(|_| MemberProcess::spawn(&node.addr, "work-group", "work", 5))
        .collect();
    wait_for(
        Duration::from_secs(20),
        "three members with two partitions each",
        || {
            balanced(
                &members.iter().map(|m| m.assignment()).collect::<Vec<_>>(),
                2,
                6,
            )
        },
    );

    let p = producer(&node.addr, &[]);
    let mut placed = produce_to(&p, "work", &spread("before", 6, 600)).await;
    let victim_partitions = members[0].assignment();
    wait_for(Duration::from_secs(20), "the victim to be busy", || {
        members[0].records().len() >= 40
    });
    let killed_at = Instant::now();
    members[0].kill9();
    let victim = members[0].records();
    placed.extend(produce_to(&p, "work", &spread("after", 6, 600)).await);

    // The survivors take the victim's partitions once its session lapses.
    wait_for(
        Duration::from_secs(20),
        "the survivors to hold all six partitions",
        || balanced(&[members[1].assignment(), members[2].assignment()], 3, 6),
    );
    let moved = killed_at.elapsed();
    assert!(
        moved < SESSION_TIMEOUT + Duration::from_secs(5),
        "partitions moved {moved:?} after the kill; session timeout is {SESSION_TIMEOUT:?}"
    );
    let want: BTreeSet<(i32, i64)> = placed.iter().copied().collect();
    let all = || {
        members
            .iter()
            .flat_map(|m| m.records())
            .collect::<Vec<(i32, i64)>>()
    };
    wait_for(Duration::from_secs(20), "every message consumed", || {
        let seen: BTreeSet<(i32, i64)> = all().into_iter().collect();
        want.is_subset(&seen)
    });
    for m in &mut members[1..] {
        m.close();
    }

    // Nothing lost, nothing extra.
    let mut seen: BTreeMap<(i32, i64), usize> = BTreeMap::new();
    for r in members.iter().flat_map(|m| m.records()) {
        *seen.entry(r).or_default() += 1;
    }
    assert_eq!(seen.keys().copied().collect::<BTreeSet<_>>(), want);
    // Duplicates: only the victim's last printed (so possibly uncommitted) record of
    // each of its partitions, read once more by the new owner.
    let mut victim_last: HashMap<i32, i64> = HashMap::new();
    for &(p, o) in &victim {
        victim_last.insert(p, o);
    }
    let dups: Vec<(i32, i64)> = seen
        .iter()
        .filter(|(_, &n)| n > 1)
        .map(|(&k, _)| k)
        .collect();
    for &(p, o) in &dups {
        assert_eq!(seen[&(p, o)], 2, "{p}@{o} consumed more than twice");
        assert!(
            victim_partitions.contains(&p),
            "duplicate {p}@{o} outside the victim's partitions {victim_partitions:?}"
        );
        assert_eq!(
            victim_last.get(&p),
            Some(&o),
            "duplicate {p}@{o} is not the victim's last record there"
        );
    }
    // The new owners resumed exactly at the victim's committed offset: its last record
    // (if the kill beat the commit) or the one after.
    for &p in &victim_partitions {
        let first_after = members[1..]
            .iter()
            .flat_map(|m| m.records())
            .filter(|r| r.0 == p)
            .map(|r| r.1)
            .min()
            .expect("the victim's partition was consumed after the kill");
        let last = victim_last.get(&p).copied().unwrap_or(-1);
        assert!(
            first_after == last || first_after == last + 1,
            "partition {p}: victim printed up to {last}, new owner started at {first_after}"
        );
    }
    eprintln!(
        "victim read {} records on {victim_partitions:?}; partitions moved after {moved:?}; \
         {} duplicate(s): {dups:?}",
        victim.len(),
        dups.len()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn committed_offsets_survive_a_broker_restart() {
    let mut node = Sluice::start(&group_flags("4"));
    create_topic(&node.addr, "durable", 3, &[]).await;
    let p = producer(&node.addr, &[]);
    produce_to(&p, "durable", &spread("first", 3, 30)).await;
    drop(p);
    let m = GroupMember::start(&node.addr, "durable-group", "durable", &[]);
    wait_for(Duration::from_secs(20), "the first 30 messages", || {
        m.log.records.lock().unwrap().len() >= 30
    });
    m.close();
    let before = committed(&node.addr, "durable-group", "durable", 3);
    assert_eq!(before, vec![10, 10, 10]);

    node.stop();
    node.restart();
    assert_eq!(
        committed(&node.addr, "durable-group", "durable", 3),
        before,
        "committed offsets after the restart"
    );
    let p = producer(&node.addr, &[]);
    let placed = produce_to(&p, "durable", &spread("second", 3, 15)).await;
    let m = GroupMember::start(&node.addr, "durable-group", "durable", &[]);
    wait_for(Duration::from_secs(20), "the 15 new messages", || {
        m.log.records.lock().unwrap().len() >= 15
    });
    let log = m.log.clone();
    m.close();
    // Only what came after the committed offsets (a partition read from an earlier
    // offset would have delivered those records first), each once.
    let got = log.records();
    let got_keys: BTreeSet<(i32, i64)> = got.iter().map(|r| (r.0, r.1)).collect();
    assert_eq!(got_keys, placed.iter().copied().collect());
    assert_eq!(got.len(), 15, "nothing before the committed offsets");
    assert!(got.iter().all(|r| r.1 >= 10 && r.2.starts_with(b"second")));
    assert_eq!(
        committed(&node.addr, "durable-group", "durable", 3),
        vec![15, 15, 15]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn cooperative_sticky_revokes_only_the_partitions_that_move() {
    let node = Sluice::start(&group_flags("4"));
    create_topic(&node.addr, "coop", 6, &[]).await;
    let coop = ("partition.assignment.strategy", "cooperative-sticky");
    let a = GroupMember::start(
        &node.addr,
        "coop-group",
        "coop",
        &[coop, ("client.id", "a")],
    );
    wait_for(
        Duration::from_secs(20),
        "A to hold all six partitions",
        || a.assignment().len() == 6,
    );
    let p = producer(&node.addr, &[]);
    let mut placed = produce_to(&p, "coop", &spread("alone", 6, 60)).await;
    wait_for(Duration::from_secs(20), "A to consume the first 60", || {
        a.log.records.lock().unwrap().len() >= 60
    });

    let b = GroupMember::start(
        &node.addr,
        "coop-group",
        "coop",
        &[coop, ("client.id", "b")],
    );
    // Produced while B joins.
    let during = produce_to(&p, "coop", &spread("joining", 6, 60)).await;
    wait_for(
        Duration::from_secs(20),
        "A and B with three partitions each",
        || balanced(&[a.assignment(), b.assignment()], 3, 6),
    );
    let after = produce_to(&p, "coop", &spread("shared", 6, 60)).await;
    placed.extend(&during);
    placed.extend(&after);
    let want: BTreeSet<(i32, i64)> = placed.iter().copied().collect();
    let everything = || {
        let mut r = a.log.records();
        r.extend(b.log.records());
        r
    };
    wait_for(Duration::from_secs(20), "every message consumed", || {
        counts(&everything()).len() >= want.len()
    });

    let (kept, moved) = (a.assignment(), b.assignment());
    // A gave up exactly what B got, incrementally, and never everything.
    let revoked: Vec<Vec<i32>> = a
        .log
        .changes(true)
        .into_iter()
        .filter(|r| !r.is_empty())
        .collect();
    assert_eq!(
        revoked,
        vec![moved.clone()],
        "A's revocations: {:?}",
        a.log.events()
    );
    let assigned: Vec<Vec<i32>> = a
        .log
        .changes(false)
        .into_iter()
        .filter(|r| !r.is_empty())
        .collect();
    assert_eq!(
        assigned,
        vec![(0..6).collect::<Vec<_>>()],
        "A's assignments: {:?}",
        a.log.events()
    );
    // A kept consuming its partitions through B's join.
    let a_read: BTreeSet<(i32, i64)> = a.log.records().iter().map(|r| (r.0, r.1)).collect();
    for &(part, off) in during.iter().chain(&after) {
        if kept.contains(&part) {
            assert!(a_read.contains(&(part, off)), "A did not read {part}@{off}");
        }
    }
    // B took over from A's commits: every message once.
    let seen = counts(&everything());
    assert_eq!(seen.keys().copied().collect::<BTreeSet<_>>(), want);
    assert!(
        seen.values().all(|&n| n == 1),
        "duplicates: {:?}",
        seen.iter().filter(|(_, &n)| n > 1).collect::<Vec<_>>()
    );
    assert!(b.log.records().iter().all(|r| moved.contains(&r.0)));
    a.close();
    b.close();
}

#[tokio::test(flavor = "multi_thread")]
async fn static_member_restarted_within_its_session_keeps_its_partitions() {
    // One offsets partition, so the group's records are in partition 0.
    let node = Sluice::start(&group_flags("1"));
    create_topic(&node.addr, "static", 4, &[]).await;
    let member = |id: &'static str| {
        GroupMember::start(
            &node.addr,
            "static-group",
            "static",
            &[("group.instance.id", id), ("client.id", id)],
        )
    };
    let a = member("a");
    let b = member("b");
    wait_for(
        Duration::from_secs(20),
        "A and B with two partitions each",
        || balanced(&[a.assignment(), b.assignment()], 2, 4),
    );
    let p = producer(&node.addr, &[]);
    produce_to(&p, "static", &spread("one", 4, 40)).await;
    wait_for(Duration::from_secs(20), "the first 40 messages", || {
        a.log.records().len() + b.log.records().len() >= 40
    });
    let a_partitions = a.assignment();
    let b_events = b.log.events();
    let before = stored_group(&node.addr, "static-group", 0).expect("group record");
    let id_of = |g: &sluice_protocol::messages::GroupMetadataValue, instance: &str| {
        g.members
            .iter()
            .find(|m| m.group_instance_id.as_deref() == Some(instance))
            .map(|m| m.member_id.clone())
            .expect("instance in the group record")
    };

    // A static member sends no LeaveGroup: the group keeps its place until the
    // session times out, and a new process with the same instance id takes it over.
    a.close();
    let closed_at = Instant::now();
    let a2 = member("a");
    wait_for(SESSION_TIMEOUT, "the new A to get A's partitions", || {
        a2.assignment() == a_partitions
    });
    let two = produce_to(&p, "static", &spread("two", 4, 40)).await;
    wait_for(
        Duration::from_secs(20),
        "the new A and B to consume the next 40",
        || {
            let read: BTreeSet<(i32, i64)> = a2
                .log
                .records()
                .iter()
                .chain(&b.log.records())
                .map(|r| (r.0, r.1))
                .collect();
            two.iter().all(|k| read.contains(k))
        },
    );
    // B sees no rebalance, up to one session timeout after A went (when the old
    // member would have expired) and a little beyond.
    let window = SESSION_TIMEOUT + Duration::from_secs(1);
    while closed_at.elapsed() < window {
        assert_eq!(b.log.events(), b_events, "B saw a rebalance");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(b.log.events(), b_events, "B saw a rebalance");
    assert_eq!(a2.assignment(), a_partitions);
    assert!(
        a2.log.changes(true).iter().all(Vec::is_empty),
        "the new A revoked nothing: {:?}",
        a2.log.events()
    );
    assert!(a2.log.records().iter().all(|r| a_partitions.contains(&r.0)));

    // Same generation; only A's member id changed.
    let after = stored_group(&node.addr, "static-group", 0).expect("group record");
    assert_eq!(after.generation, before.generation, "generation");
    assert_ne!(
        id_of(&after, "a"),
        id_of(&before, "a"),
        "A has a new member id"
    );
    assert_eq!(id_of(&after, "b"), id_of(&before, "b"));
    let groups = consumer(&node.addr, &[])
        .fetch_group_list(Some("static-group"), Duration::from_secs(10))
        .expect("group list");
    let g = &groups.groups()[0];
    assert_eq!((g.state(), g.members().len()), ("Stable", 2));
    a2.close();
    b.close();
}

#[tokio::test(flavor = "multi_thread")]
async fn members_with_different_assignor_lists_agree_on_the_common_one() {
    let node = Sluice::start(&group_flags("4"));
    create_topic(&node.addr, "mixed", 4, &[]).await;
    let a = GroupMember::start(
        &node.addr,
        "mixed-group",
        "mixed",
        &[
            ("partition.assignment.strategy", "range,roundrobin"),
            ("client.id", "mixed-a"),
        ],
    );
    wait_for(Duration::from_secs(20), "A alone", || {
        a.assignment().len() == 4
    });
    let b = GroupMember::start(
        &node.addr,
        "mixed-group",
        "mixed",
        &[
            ("partition.assignment.strategy", "roundrobin"),
            ("client.id", "mixed-b"),
        ],
    );
    wait_for(
        Duration::from_secs(20),
        "A and B with two partitions each",
        || balanced(&[a.assignment(), b.assignment()], 2, 4),
    );
    let lister = consumer(&node.addr, &[]);
    let mut described = None;
    wait_for(Duration::from_secs(10), "the group to be Stable", || {
        let list = lister
            .fetch_group_list(Some("mixed-group"), Duration::from_secs(10))
            .expect("group list");
        let Some(g) = list.groups().first() else {
            return false;
        };
        let mut members: Vec<(String, String)> = g
            .members()
            .iter()
            .map(|m| (m.client_id().to_string(), m.client_host().to_string()))
            .collect();
        members.sort();
        described = Some((
            g.state().to_string(),
            g.protocol_type().to_string(),
            g.protocol().to_string(),
            members,
        ));
        g.state() == "Stable"
    });
    let (state, protocol_type, protocol, members) = described.unwrap();
    assert_eq!(
        (state.as_str(), protocol_type.as_str(), protocol.as_str()),
        ("Stable", "consumer", "roundrobin")
    );
    let ids: Vec<&str> = members.iter().map(|m| m.0.as_str()).collect();
    assert_eq!(ids, ["mixed-a", "mixed-b"]);
    for (id, host) in &members {
        assert!(host.contains("127.0.0.1"), "{id} host {host:?}");
    }
    // Round-robin over one topic: A gets 0 and 2 or 1 and 3.
    let a_parts = a.assignment();
    assert!(
        a_parts == [0, 2] || a_parts == [1, 3],
        "round-robin assignment, got {a_parts:?}"
    );
    a.close();
    b.close();
}

/// A raw member that joined `group` alone, with `topic` created (2 partitions).
fn raw_member(addr: &str, group: &str, topic: &str) -> (RawClient, String, i32) {
    let mut c = RawClient::connect(addr);
    wire::must_create(&mut c, topic, 2);
    assert_eq!(wire::find_coordinator(&mut c, group), 0);
    let (member, generation) = wire::join_alone(&mut c, group, topic);
    (c, member, generation)
}

#[test]
fn bad_group_requests_get_their_kafka_error_codes() {
    let node = Sluice::start(&group_flags("4"));
    let (mut c, member, generation) = raw_member(&node.addr, "bad", "t");
    let commit = |c: &mut RawClient, generation: i32, topic: &str, p: i32, o: i64, md: &str| {
        wire::offset_commit(c, "bad", generation, &member, topic, p, o, Some(md))
    };
    let code = |e: ErrorCode| e.code();
    assert_eq!(commit(&mut c, generation, "t", 0, 5, "ok"), 0);
    assert_eq!(
        commit(&mut c, generation, "never-created", 0, 1, ""),
        code(ErrorCode::UnknownTopicOrPartition)
    );
    assert_eq!(
        commit(&mut c, generation, "t", 2, 1, ""),
        code(ErrorCode::UnknownTopicOrPartition),
        "partition 2 of a two-partition topic"
    );
    for stale in [generation - 1, generation + 1] {
        assert_eq!(
            commit(&mut c, stale, "t", 0, 1, ""),
            code(ErrorCode::IllegalGeneration),
            "generation {stale} (current {generation})"
        );
    }
    assert_eq!(
        commit(&mut c, generation, "t", 0, 1, &"m".repeat(4097)),
        code(ErrorCode::OffsetMetadataTooLarge)
    );
    assert_eq!(
        commit(&mut c, generation, "t", 1, 7, &"m".repeat(4096)),
        0,
        "metadata of exactly offset.metadata.max.bytes"
    );
    assert_eq!(
        wire::heartbeat(&mut c, "never-joined", 1, "someone"),
        code(ErrorCode::UnknownMemberId)
    );
    assert_eq!(wire::heartbeat(&mut c, "bad", generation, &member), 0);
    let mut no_type = wire::join_request("other", "", "t");
    no_type.protocol_type = String::new();
    assert_eq!(
        wire::join_group(&mut c, &no_type).error_code,
        code(ErrorCode::InconsistentGroupProtocol)
    );
    // The refused commits changed nothing.
    let c: BaseConsumer = group_config(&node.addr, "bad", &[])
        .create()
        .expect("consumer");
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition("t", 0);
    tpl.add_partition("t", 1);
    let got = c
        .committed_offsets(tpl, Duration::from_secs(10))
        .expect("committed");
    let got: Vec<(i32, Offset, usize)> = got
        .elements()
        .iter()
        .map(|e| (e.partition(), e.offset(), e.metadata().len()))
        .collect();
    assert_eq!(
        got,
        vec![(0, Offset::Offset(5), 2), (1, Offset::Offset(7), 4096)]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn join_group_flood_is_bounded_and_other_groups_keep_working() {
    const FLOOD: usize = 5000;
    const MAX_PENDING: usize = 1000;
    const PENDING_SESSION_MS: i32 = 5_000;
    let node = Sluice::start(&group_flags("4"));
    create_topic(&node.addr, "calm", 2, &[]).await;
    let mut node = node;
    let mut flooder = RawClient::connect(&node.addr);
    assert_eq!(wire::find_coordinator(&mut flooder, "flooded"), 0);

    // An rdkafka group forms and consumes while one client floods another group with
    // JoinGroups that never come back with their member ids.
    let calm = GroupMember::start(&node.addr, "calm-group", "calm", &[]);
    let flood = std::thread::spawn(move || {
        let mut req = wire::join_request("flooded", "", "calm");
        req.session_timeout_ms = PENDING_SESSION_MS;
        let started = Instant::now();
        let mut codes = Vec::with_capacity(FLOOD);
        // Pipelined, 100 requests at a time.
        for _ in 0..FLOOD / 100 {
            let sent: Vec<i32> = (0..100)
                .map(|_| flooder.send(ApiKey::JoinGroup, 5, &req))
                .collect();
            for corr in sent {
                let r: JoinGroupResponse = flooder.recv(ApiKey::JoinGroup, 5, corr);
                codes.push(r.error_code);
            }
        }
        (codes, started.elapsed())
    });
    let p = producer(&node.addr, &[]);
    let placed = produce_to(&p, "calm", &spread("calm", 2, 100)).await;
    let (codes, took) = flood.join().expect("flood thread");
    let pending_session = Duration::from_millis(PENDING_SESSION_MS as u64);
    assert!(
        took < pending_session,
        "the flood took {took:?}, longer than the pending members' session"
    );
    let required = codes
        .iter()
        .take_while(|&&c| c == ErrorCode::MemberIdRequired.code())
        .count();
    assert_eq!(required, MAX_PENDING, "MEMBER_ID_REQUIRED up to the bound");
    assert!(
        codes[MAX_PENDING..]
            .iter()
            .all(|&c| c == ErrorCode::CoordinatorNotAvailable.code()),
        "COORDINATOR_NOT_AVAILABLE beyond the bound"
    );

    wait_for(Duration::from_secs(20), "the calm group to consume", || {
        calm.log.records.lock().unwrap().len() >= placed.len()
    });
    let seen = counts(&calm.log.records());
    assert_eq!(
        seen.keys().copied().collect::<BTreeSet<_>>(),
        placed.iter().copied().collect::<BTreeSet<_>>()
    );
    assert!(seen.values().all(|&n| n == 1));
    assert_eq!(calm.assignment(), vec![0, 1]);
    calm.close();
    // Still serving.
    let mut fresh = RawClient::connect(&node.addr);
    assert_eq!(wire::api_versions(&mut fresh).error_code, 0);
    assert!(
        node.child.as_mut().unwrap().try_wait().unwrap().is_none(),
        "sluice still running"
    );
    // The pending members lapse after their session; then the group takes new
    // members again.
    wait_for(
        pending_session + Duration::from_secs(5),
        "the flooded group to accept members again",
        || {
            let r = wire::join_group(&mut fresh, &wire::join_request("flooded", "", "calm"));
            r.error_code == ErrorCode::MemberIdRequired.code()
        },
    );
}
