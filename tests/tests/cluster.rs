//! Several `sluice` nodes sharing one metadata quorum: controller failover, fencing of a
//! dead broker, restarts from the stored metadata, forwarding of admin writes, named
//! listeners across brokers, refusal of a mismatched data dir, and a real client against
//! the whole cluster. Only metadata is checked across failures: data replication between
//! brokers does not exist yet.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::Offset;
use sluice_protocol::api::ApiKey;
use sluice_protocol::codec::Uuid;
use sluice_protocol::error::ErrorCode;
use sluice_protocol::messages::create_partitions_request::CreatePartitionsTopic;
use sluice_protocol::messages::create_topics_response::CreatableTopicResult;
use sluice_protocol::messages::describe_configs_request::DescribeConfigsResource;
use sluice_protocol::messages::{
    CreatePartitionsRequest, CreatePartitionsResponse, CreateTopicsRequest, CreateTopicsResponse,
    DescribeConfigsRequest, DescribeConfigsResponse,
};
use sluice_system_tests::cluster::{free_ports, Cluster, View};
use sluice_system_tests::raw::RawClient;
use sluice_system_tests::{kafka, wait_for, wire};

/// CreateTopics v7 of one topic through `c`, or the I/O error.
fn try_create(
    c: &mut RawClient,
    name: &str,
    partitions: i32,
    rf: i16,
    configs: &[(&str, &str)],
) -> std::io::Result<CreatableTopicResult> {
    let req = CreateTopicsRequest {
        topics: vec![wire::creatable(name, partitions, rf, configs)],
        timeout_ms: 10_000,
        validate_only: false,
    };
    let resp: CreateTopicsResponse = c.try_call(ApiKey::CreateTopics, 7, &req)?;
    Ok(resp.topics.into_iter().next().expect("one topic result"))
}

/// Creates a topic through node `node`, panicking unless that worked; returns its ID.
fn create(
    cluster: &Cluster,
    node: i32,
    name: &str,
    partitions: i32,
    rf: i16,
    configs: &[(&str, &str)],
) -> Uuid {
    let r = try_create(&mut cluster.raw(node), name, partitions, rf, configs)
        .unwrap_or_else(|e| panic!("create {name} through node {node}: {e}"));
    assert_eq!(
        r.error_code, 0,
        "create {name} through node {node}: {:?}",
        r.error_message
    );
    r.topic_id
}

/// Waits until every live node lists topic `name` with `id` (a node checks admin
/// requests against its own view, which may lag the node that made the change).
fn everywhere(c: &Cluster, name: &str, id: Uuid) {
    c.converged(CONVERGE, &format!("topic {name}"), |v| {
        v.topics.get(name).is_some_and(|t| t.id == id)
    });
}

/// Every partition of every topic is led by one of `live`.
fn led_by(view: &View, live: &[i32]) -> bool {
    view.leaders().iter().all(|l| live.contains(l))
}

const FAILOVER: Duration = Duration::from_secs(5);
const CONVERGE: Duration = Duration::from_secs(10);

#[test]
fn kill_9_of_the_controller_leader() {
    let mut c = Cluster::start(3, &[]);
    let first = c.controller_leader();
    let follower = c.ids().into_iter().find(|&i| i != first).unwrap();
    // Forwarded from a node that is not the controller leader.
    let a = create(&c, follower, "a", 6, 3, &[]);
    let all = c.ids();
    c.converged(CONVERGE, "topic a led by the three brokers", |v| {
        v.topics.get("a").is_some_and(|t| t.id == a) && v.brokers.len() == 3 && led_by(v, &all)
    });

    let leader = c.controller_leader();
    c.kill9(leader);
    let (new_leader, took) = c.await_controller_leader(FAILOVER, Some(leader));
    println!("controller leader {leader} killed; node {new_leader} leads after {took:?}");

    let survivor = c.live()[0];
    let b = create(&c, survivor, "b", 3, 2, &[]);
    let live = c.live();
    let start = Instant::now();
    let view = c.converged(CONVERGE, "topics a and b without the dead node", |v| {
        v.topic_names() == ["a", "b"]
            && v.topics["a"].id == a
            && v.topics["b"].id == b
            && !v.brokers.contains_key(&leader)
            && v.brokers.keys().copied().collect::<Vec<_>>() == live
            && led_by(v, &live)
    });
    println!(
        "survivors converged {:?} after the topic b",
        start.elapsed()
    );
    for (name, t) in &view.topics {
        for (i, p) in t.partitions.iter().enumerate() {
            if p.replicas.contains(&leader) {
                assert_eq!(p.offline, [leader], "{name}-{i}: {p:?}");
                assert!(!p.isr.contains(&leader), "{name}-{i}: {p:?}");
            } else {
                assert!(p.offline.is_empty(), "{name}-{i}: {p:?}");
            }
        }
    }

    c.restart(leader);
    let all = c.ids();
    let view = c.converged(CONVERGE, "the restarted node back in the cluster", |v| {
        v.topic_names() == ["a", "b"]
            && v.topics["a"].id == a
            && v.topics["b"].id == b
            && v.brokers.keys().copied().collect::<Vec<_>>() == all
            && led_by(v, &all)
    });
    for t in view.topics.values() {
        assert!(t.partitions.iter().all(|p| p.offline.is_empty()), "{t:?}");
    }
}

/// A node's topics as stored: id and every partition's replicas (leaders may move).
fn layout(v: &View) -> BTreeMap<String, (Uuid, Vec<Vec<i32>>)> {
    v.topics
        .iter()
        .map(|(name, t)| {
            let replicas = t.partitions.iter().map(|p| p.replicas.clone()).collect();
            (name.clone(), (t.id, replicas))
        })
        .collect()
}

/// DescribeConfigs v4 of one topic: name -> (value, source).
fn topic_configs(c: &mut RawClient, topic: &str) -> BTreeMap<String, (Option<String>, i8)> {
    let req = DescribeConfigsRequest {
        resources: vec![DescribeConfigsResource {
            resource_type: 2,
            resource_name: topic.into(),
            configuration_keys: None,
        }],
        include_synonyms: false,
        include_documentation: false,
    };
    let resp: DescribeConfigsResponse = c.call(ApiKey::DescribeConfigs, 4, &req);
    let r = &resp.results[0];
    assert_eq!(r.error_code, 0, "describe {topic}: {:?}", r.error_message);
    r.configs
        .iter()
        .map(|e| (e.name.clone(), (e.value.clone(), e.config_source)))
        .collect()
}

#[test]
fn restart_all_nodes_keeps_an_identical_image() {
    // Stopping every node at once, the last one's controlled shutdown cannot complete
    // (no quorum is left to fence it) and waits out its timeout, 10 s by default.
    let mut c = Cluster::start(3, &["--controlled-shutdown-timeout-ms", "2000"]);
    create(
        &c,
        1,
        "configured",
        4,
        3,
        &[("retention.ms", "123456"), ("cleanup.policy", "compact")],
    );
    let grown = create(&c, 2, "grown", 2, 2, &[]);
    everywhere(&c, "grown", grown);
    let req = CreatePartitionsRequest {
        topics: vec![CreatePartitionsTopic {
            name: "grown".into(),
            count: 5,
            assignments: None,
        }],
        timeout_ms: 10_000,
        validate_only: false,
    };
    let resp: CreatePartitionsResponse = c.raw(3).call(ApiKey::CreatePartitions, 3, &req);
    assert_eq!(resp.results[0].error_code, 0, "{:?}", resp.results[0]);
    create(&c, 3, "single", 1, 1, &[]);
    let deleted = create(&c, 1, "deleted", 3, 3, &[]);
    everywhere(&c, "deleted", deleted);
    assert_eq!(wire::delete_topic(&mut c.raw(2), "deleted"), 0);

    let before = c.converged(CONVERGE, "the topics", |v| {
        v.topic_names() == ["configured", "grown", "single"]
            && v.topics["grown"].partitions.len() == 5
            && v.brokers.len() == 3
    });
    let configs: Vec<_> = c
        .ids()
        .into_iter()
        .map(|id| topic_configs(&mut c.raw(id), "configured"))
        .collect();
    assert!(configs.iter().all(|x| *x == configs[0]), "{configs:#?}");
    assert_eq!(configs[0]["retention.ms"].0.as_deref(), Some("123456"));
    assert_eq!(configs[0]["cleanup.policy"].0.as_deref(), Some("compact"));

    let took = c.stop_all();
    println!("all three nodes stopped in {took:?}");
    let start = Instant::now();
    c.start_all();
    println!(
        "all three nodes listening again after {:?}",
        start.elapsed()
    );

    let after = c.converged(CONVERGE, "the same topics after the restart", |v| {
        v.brokers.len() == 3 && layout(v) == layout(&before)
    });
    assert_eq!(layout(&after), layout(&before));
    for id in c.ids() {
        assert_eq!(
            topic_configs(&mut c.raw(id), "configured"),
            configs[0],
            "node {id}"
        );
        assert_eq!(wire::partition_count(&mut c.raw(id), "deleted"), None);
    }
}

#[test]
fn a_fenced_broker_loses_its_leaderships() {
    let mut c = Cluster::start(3, &[]);
    let leader = c.controller_leader();
    let victim = c.ids().into_iter().find(|&i| i != leader).unwrap();
    let id = create(&c, leader, "f", 6, 3, &[]);
    let all = c.ids();
    c.converged(CONVERGE, "f led by every broker", |v| {
        v.topics.get("f").is_some_and(|t| t.id == id)
            && v.brokers.len() == 3
            && all.iter().all(|b| v.leaders().contains(b))
    });

    c.kill9(victim);
    let start = Instant::now();
    let live = c.live();
    c.converged(Duration::from_secs(2), "the dead broker fenced", |v| {
        !v.brokers.contains_key(&victim) && led_by(v, &live)
    });
    let took = start.elapsed();
    println!("broker {victim} fenced, its leaderships moved, within {took:?} (target < 1 s)");

    c.restart(victim);
    let all = c.ids();
    let view = c.converged(CONVERGE, "the restarted broker unfenced", |v| {
        v.brokers.keys().copied().collect::<Vec<_>>() == all
    });
    assert!(led_by(&view, &all), "{view:?}");
    assert!(
        view.topics["f"]
            .partitions
            .iter()
            .all(|p| p.offline.is_empty()),
        "{view:?}"
    );
}

/// A broker paused (SIGSTOP) for half the session timeout keeps its session: its
/// heartbeat stream stays open, so only the session timeout (3 s in the harness) can
/// fence it. Paused for longer than that it is fenced, and once resumed it heartbeats
/// and is unfenced again.
#[test]
fn a_paused_broker_is_fenced_only_after_its_session_timeout() {
    let c = Cluster::start(3, &[]);
    let leader = c.controller_leader();
    let victim = c.ids().into_iter().find(|&i| i != leader).unwrap();
    let id = create(&c, leader, "p", 6, 3, &[]);
    let all = c.ids();
    c.converged(CONVERGE, "p led by every broker", |v| {
        v.topics.get("p").is_some_and(|t| t.id == id) && v.brokers.len() == 3
    });
    let listed_everywhere = |c: &Cluster, victim: i32| {
        all.iter()
            .filter(|&&i| i != victim)
            .all(|&i| c.view(i).is_ok_and(|v| v.brokers.contains_key(&victim)))
    };

    // Half the session: never fenced, on any survivor, at any sample.
    c.signal(victim, "STOP");
    let paused = Instant::now();
    let mut samples = 0;
    while paused.elapsed() < Duration::from_millis(1500) {
        assert!(
            listed_everywhere(&c, victim),
            "broker {victim} fenced after {:?} of a pause (session 3 s)",
            paused.elapsed()
        );
        samples += 1;
        std::thread::sleep(Duration::from_millis(20));
    }
    c.signal(victim, "CONT");
    assert!(samples > 20, "{samples} samples");
    // Give the resumed broker a heartbeat to renew its session before the next pause.
    c.converged(CONVERGE, "the paused broker still listed", |v| {
        v.brokers.contains_key(&victim)
    });
    std::thread::sleep(Duration::from_millis(500));
    // Back from a pause longer than an election timeout, the node campaigns at once with
    // a higher term, and may become the controller (openraft 0.9 has no pre-vote): that
    // fences nobody (the previous controller's broker moves to the new one within the
    // loss grace), as every broker is still listed everywhere.
    c.converged(CONVERGE, "every broker listed after the pause", |v| {
        v.brokers.keys().copied().collect::<Vec<_>>() == all
    });
    // Pause a node that is not the controller now: a paused controller is, for the
    // others, a dead one, and is fenced after the loss grace like a crashed one.
    let (leader, _) = c.await_controller_leader(CONVERGE, None);
    let victim = all.iter().copied().find(|&i| i != leader).unwrap();
    let others: Vec<i32> = all.iter().copied().filter(|&i| i != victim).collect();

    // Longer than the session: fenced (by the session timeout, the stream being open).
    c.signal(victim, "STOP");
    let paused = Instant::now();
    wait_for(Duration::from_secs(6), "the paused broker fenced", || {
        others
            .iter()
            .all(|&i| c.view(i).is_ok_and(|v| !v.brokers.contains_key(&victim)))
    });
    let fenced_after = paused.elapsed();
    assert!(
        fenced_after >= Duration::from_millis(2500),
        "fenced after {fenced_after:?}, before the 3 s session could lapse"
    );
    c.signal(victim, "CONT");
    c.converged(CONVERGE, "the resumed broker unfenced", |v| {
        v.brokers.keys().copied().collect::<Vec<_>>() == all
    });
}

/// What the creating thread saw for one topic.
#[derive(Debug)]
struct Created {
    /// The ID in the successful answer; `None` when the answer that ended the retries
    /// was TOPIC_ALREADY_EXISTS (an earlier attempt was committed but not answered).
    id: Option<Uuid>,
    attempts: usize,
}

/// Creates `t-0`..`t-{n-1}` one at a time, each through the next of `addrs` in turn (so
/// most requests are forwarded, some to a dead leader), moving on to the next address
/// after an error or no answer, until each is created.
fn create_through_failover(addrs: &[String], n: usize, progress: &AtomicUsize) -> Vec<Created> {
    let deadline = Instant::now() + Duration::from_secs(40);
    let mut next = 0;
    (0..n)
        .map(|i| {
            let name = format!("t-{i}");
            let mut attempts = 0;
            loop {
                assert!(Instant::now() < deadline, "{name} still not created");
                attempts += 1;
                let addr = &addrs[next];
                next = (next + 1) % addrs.len();
                let answer = RawClient::try_connect(addr, Duration::from_secs(3))
                    .and_then(|mut c| try_create(&mut c, &name, 1, 1, &[]));
                match answer {
                    Ok(r) if r.error_code == 0 => {
                        progress.fetch_add(1, Ordering::SeqCst);
                        return Created {
                            id: Some(r.topic_id),
                            attempts,
                        };
                    }
                    Ok(r)
                        if r.error_code == ErrorCode::TopicAlreadyExists.code() && attempts > 1 =>
                    {
                        progress.fetch_add(1, Ordering::SeqCst);
                        return Created { id: None, attempts };
                    }
                    Ok(r) => {
                        assert_ne!(
                            r.error_code,
                            ErrorCode::TopicAlreadyExists.code(),
                            "{name} existed before it was first created"
                        );
                        println!(
                            "create {name} through {addr}: error {} {:?}; retrying",
                            r.error_code, r.error_message
                        );
                    }
                    // The dead node refuses every connection: not worth a line each.
                    Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {}
                    Err(e) => println!("create {name} through {addr}: {e}; retrying"),
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        })
        .collect()
}

#[test]
fn topics_created_during_a_failover_are_neither_lost_nor_duplicated() {
    const N: usize = 60;
    let mut c = Cluster::start(3, &[]);
    let addrs: Vec<String> = c.ids().iter().map(|&id| c.addr(id).to_string()).collect();
    let progress = Arc::new(AtomicUsize::new(0));
    let creator = {
        let progress = progress.clone();
        std::thread::spawn(move || create_through_failover(&addrs, N, &progress))
    };
    wait_for(Duration::from_secs(20), "the first topics", || {
        progress.load(Ordering::SeqCst) >= 10
    });
    let leader = c.controller_leader();
    let at = progress.load(Ordering::SeqCst);
    c.kill9(leader);
    println!("killed the controller leader {leader} after {at} topics");
    let created = creator.join().expect("creating thread");
    assert!(
        progress.load(Ordering::SeqCst) > at,
        "no topic was created after the kill"
    );
    let retried: Vec<_> = created
        .iter()
        .enumerate()
        .filter(|(_, c)| c.attempts > 1)
        .collect();
    println!("retried creations: {retried:?}");

    let want: Vec<String> = (0..N).map(|i| format!("t-{i}")).collect();
    let mut want_sorted = want.clone();
    want_sorted.sort();
    let view = c.converged(CONVERGE, "every t-i", |v| v.topic_names() == want_sorted);
    for (name, got) in want.iter().zip(&created) {
        if let Some(id) = got.id {
            assert_eq!(view.topics[name].id, id, "{name}");
        }
    }
    // Each name exactly once in each node's raw answer.
    for id in c.live() {
        let m = c.metadata(id);
        let names: Vec<_> = m.topics.iter().filter_map(|t| t.name.clone()).collect();
        let unique: BTreeSet<_> = names.iter().collect();
        assert_eq!(names.len(), unique.len(), "node {id} lists a name twice");
        let ids: BTreeSet<_> = m.topics.iter().map(|t| t.topic_id).collect();
        assert_eq!(ids.len(), N, "node {id}: one ID per topic");
    }
}

#[test]
fn metadata_through_each_named_listener_returns_that_listeners_endpoints() {
    let ports = free_ports(6);
    let internal = |id: i32| ports[2 * (id as usize - 1)];
    let external = |id: i32| ports[2 * (id as usize - 1) + 1];
    let c = Cluster::start_with(3, &[], |id| {
        let (i, e) = (internal(id), external(id));
        vec![
            "--listeners".into(),
            format!("INTERNAL://127.0.0.1:{i},EXTERNAL://127.0.0.1:{e}"),
            "--advertised-listeners".into(),
            format!("INTERNAL://127.0.0.1:{i},EXTERNAL://localhost:{e}"),
            "--inter-broker-listener".into(),
            "INTERNAL".into(),
        ]
    });
    let ids = c.ids();
    let expect = |host: &str, port: &dyn Fn(i32) -> u16| -> BTreeMap<i32, (String, i32)> {
        ids.iter()
            .map(|&id| (id, (host.to_string(), i32::from(port(id)))))
            .collect()
    };
    let want_internal = expect("127.0.0.1", &internal);
    let want_external = expect("localhost", &external);
    for &id in &ids {
        assert_eq!(c.addr(id), format!("127.0.0.1:{}", internal(id)));
        for (port, want) in [
            (internal(id), &want_internal),
            (external(id), &want_external),
        ] {
            let addr = format!("127.0.0.1:{port}");
            let mut brokers = BTreeMap::new();
            let seen = wait_for(CONVERGE, "every broker in Metadata", || {
                let m = wire::metadata(&mut RawClient::connect(&addr), 12, None, false);
                brokers = View::of(&m).brokers;
                brokers.len() == ids.len()
            });
            assert_eq!(&brokers, want, "Metadata through {addr} (after {seen:?})");
        }
    }
}

#[test]
fn a_voter_list_that_disagrees_with_the_stored_one_is_refused() {
    let refusal = Duration::from_secs(10);
    // The cluster id is pinned: derived from --voters, it would change with them, and
    // the node would refuse the data dir as another cluster's before comparing voters.
    let mut c = Cluster::start(1, &["--cluster-id", "cluster-v"]);
    c.stop(1);
    let other = free_ports(1)[0];
    let voters = format!("{},2@127.0.0.1:{other}", c.voters);
    c.set_arg(1, "--voters", &voters);
    let (status, out) = c.start_expecting_exit(1, refusal);
    assert!(!status.success(), "started with voters {voters}");
    assert!(out.contains("disagree"), "{out}");

    let mut c = Cluster::start(1, &["--cluster-id", "cluster-a"]);
    c.stop(1);
    c.set_arg(1, "--cluster-id", "cluster-b");
    let (status, out) = c.start_expecting_exit(1, refusal);
    assert!(!status.success(), "started as another cluster");
    assert!(out.contains("belongs to cluster"), "{out}");
}

#[tokio::test(flavor = "multi_thread")]
async fn rdkafka_producer_and_consumer_work_against_the_cluster() {
    const N: usize = 1000;
    let c = Cluster::start(3, &[]);
    let id = create(&c, 1, "g", 3, 3, &[]);
    let view = c.converged(CONVERGE, "g with a leader per partition", |v| {
        v.topics.get("g").is_some_and(|t| t.id == id) && led_by(v, &[1, 2, 3])
    });
    let leaders: BTreeSet<i32> = view.leaders().into_iter().collect();
    assert!(leaders.len() >= 2, "partitions led by one node: {view:?}");

    let bootstrap = c.bootstrap();
    let producer = kafka::producer(&bootstrap, &[("acks", "all")]);
    let msgs: Vec<(i32, Vec<u8>)> = (0..N)
        .map(|i| ((i % 3) as i32, format!("m-{i}").into_bytes()))
        .collect();
    let landed = kafka::produce_to(&producer, "g", &msgs).await;
    assert!(landed.iter().zip(&msgs).all(|((p, _), (q, _))| p == q));

    let consumer = kafka::consumer(&bootstrap, &[]);
    let from: Vec<_> = (0..3).map(|p| (p, Offset::Beginning)).collect();
    let got = kafka::consume(&consumer, "g", &from, N, Duration::from_secs(30));
    assert_eq!(got.len(), N, "consumed {} of {N}", got.len());
    let mut by_partition: BTreeMap<i32, Vec<String>> = BTreeMap::new();
    for m in &got {
        let v = String::from_utf8(m.value.clone().unwrap()).unwrap();
        by_partition.entry(m.partition).or_default().push(v);
    }
    for (p, values) in &by_partition {
        let want: Vec<String> = (0..N)
            .filter(|i| (i % 3) as i32 == *p)
            .map(|i| format!("m-{i}"))
            .collect();
        assert_eq!(values, &want, "partition {p}");
    }
    assert_eq!(by_partition.len(), 3);
}

#[test]
fn a_node_restarted_after_its_peers_snapshotted_catches_up() {
    const N: usize = 60;
    let mut c = Cluster::start(3, &["--metadata-snapshot-max-log-entries", "20"]);
    let leader = c.controller_leader();
    let lagging = c.ids().into_iter().find(|&i| i != leader).unwrap();
    c.kill9(lagging);
    let survivor = c.live()[0];
    let names: Vec<String> = (0..N).map(|i| format!("s-{i:02}")).collect();
    let ids: Vec<Uuid> = names
        .iter()
        .map(|name| create(&c, survivor, name, 1, 1, &[]))
        .collect();
    let installed_before = c.log(lagging).count("installed a metadata snapshot");

    let start = Instant::now();
    c.restart(lagging);
    wait_for(CONVERGE, "the restarted node to list every topic", || {
        c.view(lagging).is_ok_and(|v| {
            v.topic_names() == names && v.topics.values().map(|t| t.id).eq(ids.iter().copied())
        })
    });
    println!(
        "node {lagging} listed all {N} topics {:?} after its restart",
        start.elapsed()
    );
    assert!(
        c.log(lagging).count("installed a metadata snapshot") > installed_before,
        "node {lagging} caught up without installing a snapshot"
    );
}

/// A node not named in `--voters` joins as a learner and a broker only: DescribeQuorum
/// lists it among the observers (with the leader's log end), the quorum keeps three
/// voters, and it registers as a broker that placement uses and Metadata lists.
#[test]
fn a_node_outside_the_voters_joins_as_a_learner_and_a_broker() {
    use sluice_protocol::messages::{
        describe_quorum_request, DescribeQuorumRequest, DescribeQuorumResponse,
    };
    use sluice_system_tests::Sluice;

    let c = Cluster::start(3, &[]);
    let leader = c.controller_leader();
    let rpc = format!("127.0.0.1:{}", free_ports(1)[0]);
    let learner = Sluice::start(&[
        "--node-id",
        "4",
        "--rpc-listen",
        &rpc,
        "--voters",
        &c.voters,
    ]);
    let all = vec![1, 2, 3, 4];
    c.converged(CONVERGE, "the learner registered as a broker", |v| {
        v.brokers.keys().copied().collect::<Vec<_>>() == all
    });
    // Placement spreads a 4-partition topic over all four brokers.
    let id = create(&c, leader, "l", 4, 1, &[]);
    let view = c.converged(CONVERGE, "l placed", |v| {
        v.topics.get("l").is_some_and(|t| t.id == id)
    });
    let mut leaders = view.leaders();
    leaders.sort_unstable();
    leaders.dedup();
    assert_eq!(leaders, all, "{view:?}");

    let req = DescribeQuorumRequest {
        topics: vec![describe_quorum_request::TopicData {
            topic_name: "__cluster_metadata".into(),
            partitions: vec![describe_quorum_request::PartitionData { partition_index: 0 }],
        }],
    };
    wait_for(
        CONVERGE,
        "the leader to report the learner caught up",
        || {
            let r: DescribeQuorumResponse = c.raw(leader).call(ApiKey::DescribeQuorum, 2, &req);
            let p = &r.topics[0].partitions[0];
            let voters: Vec<i32> = p.current_voters.iter().map(|v| v.replica_id).collect();
            let observer = p.observers.iter().find(|o| o.replica_id == 4);
            voters == [1, 2, 3] && observer.is_some_and(|o| o.log_end_offset == p.high_watermark)
        },
    );
    // The learner answers Metadata from its own copy of the log.
    let mut raw = RawClient::connect(&learner.addr);
    let m = wire::metadata(&mut raw, 12, Some(&["l"]), false);
    assert_eq!(m.topics[0].topic_id, id);
    assert_eq!(m.brokers.len(), 4);
}
