//! Partition leadership across real `sluice` processes: automatic preferred-leader
//! rebalancing (`auto.leader.rebalance.enable`) after a broker comes back, and on-demand
//! elections with ElectLeaders, with DescribeTopicPartitions showing an under-replicated
//! partition while a follower is down; and Metadata no longer naming a leader whose
//! process a survivor's replica fetcher found gone.

use std::time::{Duration, Instant};

use sluice_protocol::api::ApiKey;
use sluice_protocol::error::ErrorCode;
use sluice_protocol::messages::describe_topic_partitions_request::{
    Cursor as RequestCursor, TopicRequest,
};
use sluice_protocol::messages::describe_topic_partitions_response::DescribeTopicPartitionsResponsePartition;
use sluice_protocol::messages::elect_leaders_request::TopicPartitions;
use sluice_protocol::messages::{
    DescribeTopicPartitionsRequest, DescribeTopicPartitionsResponse, ElectLeadersRequest,
    ElectLeadersResponse,
};
use sluice_system_tests::cluster::{Cluster, PartitionView, View};
use sluice_system_tests::{wait_for, wire};

const CONVERGE: Duration = Duration::from_secs(20);
/// Bound on a restarted follower rejoining the ISR and then leading again.
const REJOIN: Duration = Duration::from_secs(45);

/// What the active controller logs when its imbalance check elects preferred leaders.
const IMBALANCE_LOG: &str = "leader imbalance: electing preferred leaders";

/// Each partition's replicas: broker `i` is the preferred leader of partition `i - 1`.
const ASSIGNMENT: &[&[i32]] = &[&[1, 2, 3], &[2, 3, 1], &[3, 1, 2]];

/// Creates `name` through node `node` with an explicit assignment per partition.
fn create_assigned(c: &Cluster, node: i32, name: &str, replicas: &[&[i32]]) {
    wire::must_create_assigned(&mut c.raw(node), name, replicas, &[]);
}

fn partition(view: &View, topic: &str, index: usize) -> Option<PartitionView> {
    view.topics.get(topic)?.partitions.get(index).cloned()
}

/// Every partition of `topic` led by its preferred replica with a full ISR.
fn preferred_and_full(view: &View, topic: &str) -> bool {
    view.topics.get(topic).is_some_and(|t| {
        t.partitions.len() == ASSIGNMENT.len()
            && t.partitions
                .iter()
                .all(|p| p.leader == p.replicas[0] && p.isr.len() == p.replicas.len())
    })
}

/// ElectLeaders at `version` through node `node`: (topic, partition, error code) sorted.
fn elect(
    c: &Cluster,
    node: i32,
    version: i16,
    election_type: i8,
    partitions: Option<&[(&str, i32)]>,
) -> (i16, Vec<(String, i32, i16)>) {
    let req = ElectLeadersRequest {
        election_type,
        topic_partitions: partitions.map(|list| {
            list.iter()
                .map(|(topic, p)| TopicPartitions {
                    topic: topic.to_string(),
                    partitions: vec![*p],
                })
                .collect()
        }),
        timeout_ms: 30_000,
    };
    let resp: ElectLeadersResponse = c.raw(node).call(ApiKey::ElectLeaders, version, &req);
    let mut results: Vec<(String, i32, i16)> = resp
        .replica_election_results
        .iter()
        .flat_map(|t| {
            t.partition_result
                .iter()
                .map(|p| (t.topic.clone(), p.partition_id, p.error_code))
        })
        .collect();
    results.sort();
    (resp.error_code, results)
}

fn describe_partitions(
    c: &Cluster,
    node: i32,
    topics: &[&str],
    limit: i32,
    cursor: Option<(&str, i32)>,
) -> DescribeTopicPartitionsResponse {
    let req = DescribeTopicPartitionsRequest {
        topics: topics
            .iter()
            .map(|t| TopicRequest {
                name: t.to_string(),
            })
            .collect(),
        response_partition_limit: limit,
        cursor: cursor.map(|(t, p)| RequestCursor {
            topic_name: t.into(),
            partition_index: p,
        }),
    };
    c.raw(node).call(ApiKey::DescribeTopicPartitions, 0, &req)
}

fn described(
    r: &DescribeTopicPartitionsResponse,
    topic: &str,
    index: i32,
) -> Option<DescribeTopicPartitionsResponsePartition> {
    r.topics
        .iter()
        .find(|t| t.name.as_deref() == Some(topic))?
        .partitions
        .iter()
        .find(|p| p.partition_index == index)
        .cloned()
}

fn code(e: ErrorCode) -> i16 {
    e.code()
}

/// Node 1 crashes and comes back: once the leader's replication has put it back in the
/// ISR of the partition it prefers, the active controller's periodic imbalance check
/// makes it leader again.
#[test]
fn a_restarted_broker_leads_its_preferred_partition_again() {
    let mut c = Cluster::start(3, &["--leader-imbalance-check-interval-ms", "1000"]);
    create_assigned(&c, 2, "rebalance", ASSIGNMENT);
    c.converged(CONVERGE, "preferred leaders with full ISRs", |v| {
        preferred_and_full(v, "rebalance")
    });

    c.kill9(1);
    let view = c.converged(CONVERGE, "partition 0 led by another broker", |v| {
        partition(v, "rebalance", 0).is_some_and(|p| p.leader != 1 && p.leader > 0)
    });
    let p0 = partition(&view, "rebalance", 0).expect("partition 0");
    assert_eq!(p0.leader, 2, "next in replica order: {p0:?}");
    assert!(!p0.isr.contains(&1), "{p0:?}");

    let start = Instant::now();
    c.restart(1);
    c.converged(REJOIN, "node 1 back in the ISR of partition 0", |v| {
        partition(v, "rebalance", 0).is_some_and(|p| p.isr.contains(&1))
    });
    let rejoined = start.elapsed();
    let view = c.converged(REJOIN, "node 1 leading partition 0 again", |v| {
        partition(v, "rebalance", 0).is_some_and(|p| p.leader == 1)
    });
    println!(
        "node 1 rejoined the ISR {rejoined:?} after its restart began and led again after {:?}",
        start.elapsed()
    );
    let p0 = partition(&view, "rebalance", 0).expect("partition 0");
    assert!(p0.leader_epoch >= 2, "led by 1, then 2, then 1: {p0:?}");
    assert!(
        c.ids().iter().any(|&id| c.log(id).contains(IMBALANCE_LOG)),
        "the move back came from the controller's imbalance check"
    );
    c.converged(
        CONVERGE,
        "every partition led by its preferred replica",
        |v| preferred_and_full(v, "rebalance"),
    );
}

/// With automatic rebalancing off, leadership stays where failover put it until
/// ElectLeaders asks; each partition gets Kafka's error code for its case.
/// DescribeTopicPartitions shows the under-replicated partition while a follower is down.
#[test]
fn elect_leaders_and_describe_topic_partitions() {
    let mut c = Cluster::start(3, &["--auto-leader-rebalance-enable", "false"]);
    create_assigned(&c, 1, "elect", ASSIGNMENT);
    create_assigned(&c, 1, "solo", &[&[3]]);
    c.converged(CONVERGE, "preferred leaders with full ISRs", |v| {
        preferred_and_full(v, "elect") && partition(v, "solo", 0).is_some_and(|p| p.leader == 3)
    });

    // Nothing to elect while every partition is led by its preferred replica.
    for version in 0..=2 {
        let (top, results) = elect(
            &c,
            2,
            version,
            0,
            Some(&[("elect", 1), ("elect", 7), ("nope", 0)]),
        );
        assert_eq!(top, 0, "v{version}");
        assert_eq!(
            results,
            [
                ("elect".into(), 1, code(ErrorCode::ElectionNotNeeded)),
                ("elect".into(), 7, code(ErrorCode::UnknownTopicOrPartition)),
                ("nope".into(), 0, code(ErrorCode::UnknownTopicOrPartition)),
            ],
            "v{version}"
        );
    }
    // All partitions: those needing no election are left out.
    assert_eq!(elect(&c, 3, 2, 0, None), (0, Vec::new()));

    // Node 1 crashes: partition 0 moves to 2 and is under-replicated.
    c.kill9(1);
    c.converged(CONVERGE, "partition 0 led by node 2", |v| {
        partition(v, "elect", 0).is_some_and(|p| p.leader == 2 && !p.isr.contains(&1))
    });
    let r = describe_partitions(&c, 2, &["elect"], 2000, None);
    assert_eq!(r.topics.len(), 1, "{r:?}");
    assert_eq!(r.topics[0].error_code, 0, "{r:?}");
    let p0 = described(&r, "elect", 0).expect("elect-0 described");
    assert_eq!(p0.leader_id, 2, "{p0:?}");
    assert_eq!(p0.replica_nodes, [1, 2, 3], "{p0:?}");
    assert_eq!(p0.isr_nodes, [2, 3], "under-replicated: {p0:?}");
    assert_eq!(p0.offline_replicas, [1], "{p0:?}");
    assert!(p0.leader_epoch >= 1, "{p0:?}");
    assert_eq!(p0.eligible_leader_replicas, Some(Vec::new()), "{p0:?}");
    for index in 0..3 {
        let p = described(&r, "elect", index).expect("every partition described");
        assert!(p.isr_nodes.len() < p.replica_nodes.len(), "{p:?}");
    }
    assert!(r.next_cursor.is_none(), "{r:?}");

    // Pagination: two partitions a page, topics in name order.
    let first = describe_partitions(&c, 3, &[], 2, None);
    let names: Vec<(Option<String>, usize)> = first
        .topics
        .iter()
        .map(|t| (t.name.clone(), t.partitions.len()))
        .collect();
    assert_eq!(names, [(Some("elect".into()), 2)], "{first:?}");
    let cursor = first.next_cursor.clone().expect("a next cursor");
    assert_eq!(
        (cursor.topic_name.as_str(), cursor.partition_index),
        ("elect", 2)
    );
    let second = describe_partitions(&c, 3, &[], 2, Some(("elect", 2)));
    let names: Vec<(Option<String>, Vec<i32>)> = second
        .topics
        .iter()
        .map(|t| {
            (
                t.name.clone(),
                t.partitions.iter().map(|p| p.partition_index).collect(),
            )
        })
        .collect();
    assert_eq!(
        names,
        [
            (Some("elect".into()), vec![2]),
            (Some("solo".into()), vec![0])
        ],
        "{second:?}"
    );
    assert!(second.next_cursor.is_none(), "{second:?}");

    // The preferred replica is down; an unclean election is not needed (led).
    let (_, results) = elect(&c, 2, 2, 0, Some(&[("elect", 0)]));
    assert_eq!(
        results,
        [(
            "elect".into(),
            0,
            code(ErrorCode::PreferredLeaderNotAvailable)
        )]
    );
    let (_, results) = elect(&c, 3, 1, 1, Some(&[("elect", 0)]));
    assert_eq!(
        results,
        [("elect".into(), 0, code(ErrorCode::ElectionNotNeeded))]
    );

    // Back and in sync, node 1 stays a follower until asked (no automatic rebalance).
    c.restart(1);
    c.converged(REJOIN, "node 1 back in the ISR of partition 0", |v| {
        partition(v, "elect", 0).is_some_and(|p| p.isr.contains(&1))
    });
    std::thread::sleep(Duration::from_millis(1500));
    let view = c.view(2).expect("metadata from node 2");
    assert_eq!(
        partition(&view, "elect", 0).map(|p| p.leader),
        Some(2),
        "{view:?}"
    );
    // All partitions: only the one that needed an election is answered, elected.
    let (top, results) = elect(&c, 3, 2, 0, None);
    assert_eq!(top, 0);
    assert_eq!(results, [("elect".into(), 0, code(ErrorCode::None))]);
    c.converged(CONVERGE, "node 1 leading partition 0 again", |v| {
        partition(v, "elect", 0).is_some_and(|p| p.leader == 1)
    });
    let (_, results) = elect(&c, 1, 0, 0, Some(&[("elect", 0)]));
    assert_eq!(
        results,
        [("elect".into(), 0, code(ErrorCode::ElectionNotNeeded))]
    );

    // A partition whose only replica is down has no leader: no election can help.
    c.kill9(3);
    // Offline (fenced in the image), not only hidden by the survivors' fetchers.
    c.converged(CONVERGE, "solo-0 without a leader, node 3 fenced", |v| {
        partition(v, "solo", 0).is_some_and(|p| p.leader == -1 && p.offline.contains(&3))
    });
    let (_, results) = elect(&c, 1, 2, 1, Some(&[("solo", 0), ("elect", 1)]));
    assert_eq!(
        results,
        [
            ("elect".into(), 1, code(ErrorCode::ElectionNotNeeded)),
            (
                "solo".into(),
                0,
                code(ErrorCode::EligibleLeadersNotAvailable)
            ),
        ]
    );
    let (_, results) = elect(&c, 2, 2, 0, Some(&[("solo", 0)]));
    assert_eq!(
        results,
        [(
            "solo".into(),
            0,
            code(ErrorCode::PreferredLeaderNotAvailable)
        )]
    );
    let r = describe_partitions(&c, 1, &["solo"], 10, None);
    assert!(
        c.ids().iter().all(|&id| !c.log(id).contains(IMBALANCE_LOG)),
        "no automatic rebalance when it is disabled"
    );
    let p = described(&r, "solo", 0).expect("solo-0 described");
    assert_eq!(p.leader_id, -1, "{p:?}");
    assert_eq!(p.error_code, code(ErrorCode::LeaderNotAvailable), "{p:?}");
    assert_eq!(p.offline_replicas, [3], "{p:?}");
}

/// A survivor whose replica fetchers find a leader's process gone (connections closed,
/// then refused) answers LEADER_NOT_AVAILABLE for its partitions at once, before any
/// controller has moved them, and names it again after the bound if none does. Two of
/// three nodes die here, so the quorum is lost and nothing is ever fenced: what the
/// survivor answers comes from its fetchers' evidence alone.
#[test]
fn a_survivor_stops_naming_leaders_its_fetchers_found_gone() {
    let mut c = Cluster::start(3, &[]);
    create_assigned(&c, 1, "gone", ASSIGNMENT);
    c.converged(CONVERGE, "preferred leaders with full ISRs", |v| {
        preferred_and_full(v, "gone")
    });
    let controller = c.controller_leader();
    let survivor = c.ids().into_iter().find(|&id| id != controller).unwrap();
    let dead: Vec<i32> = c.ids().into_iter().filter(|&id| id != survivor).collect();
    let leaders_seen = |c: &Cluster| -> Vec<i32> {
        c.view(survivor)
            .ok()
            .and_then(|v| v.topics.get("gone").map(|t| t.partitions.clone()))
            .map(|ps| ps.iter().map(|p| p.leader).collect())
            .unwrap_or_default()
    };
    let preferred: Vec<i32> = ASSIGNMENT.iter().map(|r| r[0]).collect();
    assert_eq!(leaders_seen(&c), preferred);

    let killed = Instant::now();
    for &id in &dead {
        c.kill9(id);
    }
    let hidden: Vec<i32> = preferred
        .iter()
        .map(|&l| if l == survivor { l } else { -1 })
        .collect();
    wait_for(
        Duration::from_secs(2),
        "the survivor to stop naming the dead leaders",
        || leaders_seen(&c) == hidden,
    );
    let hidden_after = killed.elapsed();
    let m = c.metadata(survivor);
    let topic = m.topics.iter().find(|t| t.name.as_deref() == Some("gone"));
    for p in &topic.expect("topic gone").partitions {
        let expected = if p.leader_id < 0 {
            ErrorCode::LeaderNotAvailable
        } else {
            ErrorCode::None
        };
        assert_eq!(p.error_code, code(expected), "{p:?}");
        assert_eq!(p.leader_epoch, 0, "the epoch stays the image's: {p:?}");
    }

    // No controller moves them; after the bound (3 s from the loss) the survivor
    // answers from its image again, as Kafka would.
    wait_for(
        Duration::from_secs(10),
        "the survivor to name the image's leaders again",
        || leaders_seen(&c) == preferred,
    );
    let named_again = killed.elapsed();
    println!("leaders hidden after {hidden_after:?}, named again after {named_again:?}");
    assert!(
        named_again >= Duration::from_secs(3),
        "hidden for the whole bound: {named_again:?}"
    );
}
