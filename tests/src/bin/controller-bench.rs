//! Driver for `cargo xtask bench controller`: how fast the metadata quorum of a 3-node
//! cluster (real `sluice` processes on 127.0.0.1, `sluice_system_tests::cluster`) gets
//! over a crash, and how long an admin write takes. Prints one JSON document on stdout;
//! progress (and every node's log, prefixed `[node-i]`) goes to stderr.
//!
//! Each round creates a fresh topic `round-<k>` (12 partitions, replication factor 3),
//! waits until every node serves it, kills one node with SIGKILL and polls every
//! survivor's Metadata (one thread per survivor, one request every `--poll-ms`) until
//! it shows the victim fenced (absent from the brokers list) and every partition led by
//! a live broker. The sample is the time from just before the kill to the moment the
//! last survivor shows that. The victim is then restarted and the round ends once every
//! node lists it again. Rounds alternate the victim:
//!
//! - `kill_broker`: a node that is not the controller leader and leads at least one
//!   partition of the round's topic;
//! - `kill_controller`: the controller leader (DescribeQuorum's `leader_id`).
//!
//! Admin writes: every round times two CreateTopics round trips on an open connection
//! (request written -> response with error 0; the broker answers once the topic is
//! committed and applied on that node): the round's topic and a probe topic of the
//! same shape (deleted again before the kill), one sent to the controller leader and
//! one to another node (which forwards it), alternating which goes first.
//!
//! The harness starts nodes with short broker timeouts; before the first round the
//! driver kills every node and starts them again with the product defaults
//! (`--broker-session-timeout-ms 9000 --broker-heartbeat-interval-ms 500
//! --broker-heartbeat-loss-grace-ms 200`, overridable), recorded in the output.

#![allow(clippy::print_stdout, clippy::print_stderr)] // A CLI tool: reports on stdio.

use std::collections::BTreeMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};
use sluice_protocol::api::ApiKey;
use sluice_protocol::codec::Uuid;
use sluice_protocol::messages::{
    delete_topics_request, describe_quorum_request, CreateTopicsRequest, CreateTopicsResponse,
    DeleteTopicsRequest, DeleteTopicsResponse, DescribeQuorumRequest, DescribeQuorumResponse,
};
use sluice_system_tests::cluster::{Cluster, View};
use sluice_system_tests::raw::{LazyClient as Conn, RawClient};
use sluice_system_tests::wire::creatable;

const NODES: usize = 3;
const PARTITIONS: i32 = 12;
const REPLICATION: i16 = 3;
/// Bound of the failover wait: well past Kafka's 9 s session timeout, so a broken
/// stream-loss path still shows as a (slow) sample rather than a failure.
const FAILOVER_TIMEOUT: Duration = Duration::from_secs(30);
/// Bound of every other wait (convergence, a restart, an agreed controller leader).
const SETTLE_TIMEOUT: Duration = Duration::from_secs(45);
/// Connect and read timeout of the driver's requests.
const IO_TIMEOUT: Duration = Duration::from_secs(5);
/// Read timeout of a CreateTopics/DeleteTopics call (the broker's own bound is 30 s).
const ADMIN_TIMEOUT: Duration = Duration::from_secs(35);

struct Args {
    runs: usize,
    poll: Duration,
    session_timeout_ms: String,
    heartbeat_interval_ms: String,
    loss_grace_ms: String,
}

fn parse() -> Result<Args> {
    let mut a = Args {
        runs: 20,
        poll: Duration::from_millis(10),
        session_timeout_ms: "9000".into(),
        heartbeat_interval_ms: "500".into(),
        loss_grace_ms: "200".into(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().with_context(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--runs" => a.runs = value()?.parse().context("--runs")?,
            "--quick" => a.runs = 3,
            "--poll-ms" => a.poll = Duration::from_millis(value()?.parse().context("--poll-ms")?),
            "--broker-session-timeout-ms" => a.session_timeout_ms = value()?,
            "--broker-heartbeat-interval-ms" => a.heartbeat_interval_ms = value()?,
            "--broker-heartbeat-loss-grace-ms" => a.loss_grace_ms = value()?,
            other => bail!(
                "unknown flag {other} (usage: controller-bench [--runs N] [--quick] [--poll-ms MS] \
                 [--broker-session-timeout-ms MS] [--broker-heartbeat-interval-ms MS] \
                 [--broker-heartbeat-loss-grace-ms MS])"
            ),
        }
    }
    if a.runs == 0 {
        bail!("--runs must be at least 1");
    }
    Ok(a)
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e6).round() / 1e3
}

fn progress(msg: &str) {
    eprintln!("controller-bench: [unix_ms {}] {msg}", unix_ms());
}

// ---------------------------------------------------------------------------------
// Requests on one connection, reconnecting after an error

fn quorum_request() -> DescribeQuorumRequest {
    DescribeQuorumRequest {
        topics: vec![describe_quorum_request::TopicData {
            topic_name: "__cluster_metadata".into(),
            partitions: vec![describe_quorum_request::PartitionData { partition_index: 0 }],
        }],
    }
}

/// The controller leader node `conn` names, if it answers without error.
fn quorum_leader(conn: &mut Conn) -> Option<(i32, i32)> {
    let r: DescribeQuorumResponse = conn
        .call(ApiKey::DescribeQuorum, 1, &quorum_request())
        .ok()?;
    let p = r.topics.first()?.partitions.first()?;
    (r.error_code == 0 && p.error_code == 0).then_some((p.leader_id, p.leader_epoch))
}

/// CreateTopics v7 of `name` (12 partitions, replication factor 3) to `addr`, timed from
/// the request's write to its response on an already open connection.
fn timed_create(addr: &str, name: &str) -> Result<Duration> {
    let mut c = RawClient::try_connect(addr, ADMIN_TIMEOUT).context("connect")?;
    let req = CreateTopicsRequest {
        topics: vec![creatable(name, PARTITIONS, REPLICATION, &[])],
        timeout_ms: 30_000,
        validate_only: false,
    };
    let start = Instant::now();
    let resp: CreateTopicsResponse = c.try_call(ApiKey::CreateTopics, 7, &req)?;
    let took = start.elapsed();
    let t = resp.topics.first().context("no topic result")?;
    if t.error_code != 0 {
        bail!(
            "CreateTopics {name}: error {} {:?}",
            t.error_code,
            t.error_message
        );
    }
    Ok(took)
}

fn delete(addr: &str, name: &str) -> Result<()> {
    let mut c = RawClient::try_connect(addr, ADMIN_TIMEOUT).context("connect")?;
    let req = DeleteTopicsRequest {
        topics: vec![delete_topics_request::DeleteTopicState {
            name: Some(name.into()),
            topic_id: Uuid::ZERO,
        }],
        topic_names: Vec::new(),
        timeout_ms: 30_000,
    };
    let resp: DeleteTopicsResponse = c.try_call(ApiKey::DeleteTopics, 6, &req)?;
    let code = resp.responses.first().map_or(-1, |r| r.error_code);
    if code != 0 {
        bail!("DeleteTopics {name}: error {code}");
    }
    Ok(())
}

// ---------------------------------------------------------------------------------
// Waits

/// Polls `f` every 20 ms until it returns `Some`, up to `timeout`.
fn poll_until<T>(timeout: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> Result<T> {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return Ok(v);
        }
        if start.elapsed() > timeout {
            bail!("timed out after {timeout:?} waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The controller leader every live node names (same leader and term), itself live.
fn agreed_leader(c: &Cluster) -> Result<i32> {
    poll_until(SETTLE_TIMEOUT, "an agreed controller leader", || {
        let live = c.live();
        let seen: Option<Vec<_>> = live.iter().map(|&id| c.quorum(id)).collect();
        let seen = seen?;
        let first = seen.first()?;
        let agreed = seen
            .iter()
            .all(|q| (q.leader, q.epoch) == (first.leader, first.epoch));
        (agreed && live.contains(&first.leader)).then_some(first.leader)
    })
}

/// Waits until every live node serves the same view and it satisfies `ok`.
fn converged(c: &Cluster, what: &str, ok: impl Fn(&View) -> bool) -> Result<View> {
    let mut last = String::new();
    poll_until(SETTLE_TIMEOUT, what, || {
        let views: Vec<std::io::Result<View>> = c.live().iter().map(|&id| c.view(id)).collect();
        let first = views.first()?.as_ref().ok()?;
        let same = views.iter().all(|v| v.as_ref().is_ok_and(|v| v == first));
        last = format!("{views:?}");
        (same && ok(first)).then(|| first.clone())
    })
    .with_context(|| format!("the nodes served: {last}"))
}

/// Every live broker listed, `topic` present with all partitions led by listed brokers.
fn healthy(v: &View, nodes: &[i32], topic: &str) -> bool {
    nodes.iter().all(|id| v.brokers.contains_key(id))
        && v.topics.get(topic).is_some_and(|t| {
            t.error_code == 0
                && t.partitions.len() == PARTITIONS as usize
                && t.partitions
                    .iter()
                    .all(|p| v.brokers.contains_key(&p.leader))
        })
}

/// The failover condition on one survivor: the victim fenced (not listed) and every
/// partition of every topic led by a listed broker; `topic` must be there.
fn failed_over(v: &View, victim: i32, topic: &str) -> bool {
    !v.brokers.contains_key(&victim)
        && v.topics.contains_key(topic)
        && v.topics.values().all(|t| {
            t.partitions
                .iter()
                .all(|p| p.leader != victim && v.brokers.contains_key(&p.leader))
        })
}

// ---------------------------------------------------------------------------------
// One failover

/// What one survivor's poller saw, times from t0.
#[derive(Default)]
struct SurvivorSeen {
    fenced: Option<Duration>,
    leaders: Option<Duration>,
    done: Option<Duration>,
    new_controller: Option<(Duration, i32)>,
    polls: u64,
    errors: u64,
    max_gap: Duration,
}

fn watch_survivor(
    addr: &str,
    victim: i32,
    topic: &str,
    watch_quorum: bool,
    t0: Instant,
    poll: Duration,
) -> SurvivorSeen {
    let mut conn = Conn::new(addr, IO_TIMEOUT);
    let mut quorum_conn = Conn::new(addr, IO_TIMEOUT);
    let mut seen = SurvivorSeen::default();
    let mut last_poll: Option<Instant> = None;
    let mut next = t0;
    while t0.elapsed() < FAILOVER_TIMEOUT {
        let now = Instant::now();
        if let Some(l) = last_poll {
            seen.max_gap = seen.max_gap.max(now - l);
        }
        last_poll = Some(now);
        if watch_quorum && seen.new_controller.is_none() {
            if let Some((leader, _)) = quorum_leader(&mut quorum_conn) {
                if leader >= 0 && leader != victim {
                    seen.new_controller = Some((t0.elapsed(), leader));
                }
            }
        }
        match conn.view() {
            Ok(v) => {
                seen.polls += 1;
                let at = t0.elapsed();
                if seen.fenced.is_none() && !v.brokers.contains_key(&victim) {
                    seen.fenced = Some(at);
                }
                let led = v.topics.contains_key(topic)
                    && v.topics.values().all(|t| {
                        t.partitions
                            .iter()
                            .all(|p| p.leader != victim && p.leader >= 0)
                    });
                if seen.leaders.is_none() && led {
                    seen.leaders = Some(at);
                }
                if failed_over(&v, victim, topic) {
                    seen.done = Some(at);
                    if !watch_quorum || seen.new_controller.is_some() {
                        break;
                    }
                }
            }
            Err(_) => seen.errors += 1,
        }
        next += poll;
        let now = Instant::now();
        if next > now {
            std::thread::sleep(next - now);
        } else {
            next = now;
        }
    }
    seen
}

struct Bench {
    cluster: Cluster,
    args: Args,
    kill_broker: Vec<Value>,
    kill_controller: Vec<Value>,
    create_leader: Vec<Value>,
    create_forwarded: Vec<Value>,
    failures: Vec<Value>,
    max_poll_gap: Duration,
    /// Whether the current round recorded its failover (a sample or a failure).
    failover_recorded: bool,
}

impl Bench {
    fn fail(&mut self, round: usize, scenario: &str, reason: String) {
        progress(&format!("round {round} ({scenario}) FAILED: {reason}"));
        self.failures
            .push(json!({ "round": round, "scenario": scenario, "reason": reason }));
    }

    /// One CreateTopics sample of `name` sent to `target`.
    fn create(&mut self, round: usize, name: &str, target: i32, leader: i32) -> Result<()> {
        let kind = if target == leader {
            "leader"
        } else {
            "forwarded"
        };
        let scenario = format!("create_topics_{kind}");
        match timed_create(self.cluster.addr(target), name) {
            Ok(took) => {
                progress(&format!(
                    "round {round}: CreateTopics {name} to node {target} ({kind}): {:.1} ms",
                    ms(took)
                ));
                let sample = json!({
                    "round": round, "topic": name, "node": target,
                    "controller_leader": leader, "ms": ms(took),
                });
                if target == leader {
                    self.create_leader.push(sample);
                } else {
                    self.create_forwarded.push(sample);
                }
                Ok(())
            }
            Err(e) => {
                self.fail(round, &scenario, format!("{e:#}"));
                Err(e)
            }
        }
    }

    fn round(&mut self, round: usize) -> Result<()> {
        let kill_leader = round % 2 == 1;
        let scenario = if kill_leader {
            "kill_controller"
        } else {
            "kill_broker"
        };
        let ids = self.cluster.ids();
        let leader = agreed_leader(&self.cluster)?;
        let others: Vec<i32> = ids.iter().copied().filter(|&i| i != leader).collect();
        let other = others[(round / 2) % others.len()];
        let topic = format!("round-{round}");
        let probe = format!("probe-{round}");
        // Alternate which of the two creates goes to the leader.
        let (t_topic, t_probe) = if (round / 2).is_multiple_of(2) {
            (leader, other)
        } else {
            (other, leader)
        };
        self.create(round, &topic, t_topic, leader)
            .context("creating the round's topic")?;
        if self.create(round, &probe, t_probe, leader).is_ok() {
            let probe_ok = converged(&self.cluster, "the probe topic", |v| {
                healthy(v, &ids, &probe)
            })
            .and_then(|_| delete(self.cluster.addr(leader), &probe))
            .and_then(|()| {
                converged(&self.cluster, "the probe topic deleted", |v| {
                    !v.topics.contains_key(&probe)
                })
            });
            if let Err(e) = probe_ok {
                self.fail(round, "probe_topic", format!("{e:#}"));
            }
        }
        let view = converged(&self.cluster, "the round's topic", |v| {
            healthy(v, &ids, &topic)
        })?;

        // The victim.
        let leader = agreed_leader(&self.cluster)?;
        let led = |id: i32| {
            view.topics[&topic]
                .partitions
                .iter()
                .filter(|p| p.leader == id)
                .count()
        };
        let victim = if kill_leader {
            leader
        } else {
            let candidates: Vec<i32> = ids
                .iter()
                .copied()
                .filter(|&i| i != leader && led(i) > 0)
                .collect();
            if candidates.is_empty() {
                bail!("no non-leader node leads a partition of {topic}");
            }
            candidates[(round / 2) % candidates.len()]
        };
        let survivors: Vec<(i32, String)> = ids
            .iter()
            .filter(|&&i| i != victim)
            .map(|&i| (i, self.cluster.addr(i).to_string()))
            .collect();
        progress(&format!(
            "round {round} ({scenario}): controller leader {leader}, killing node {victim} \
             (leads {} of {PARTITIONS} partitions)",
            led(victim)
        ));

        let poll = self.args.poll;
        self.failover_recorded = true;
        let t0_unix = unix_ms();
        let t0 = Instant::now();
        self.cluster.kill9(victim);
        let killed_after = t0.elapsed();
        let seen: Vec<(i32, SurvivorSeen)> = std::thread::scope(|s| {
            let handles: Vec<_> = survivors
                .iter()
                .map(|(id, addr)| {
                    let topic = topic.as_str();
                    let h =
                        s.spawn(move || watch_survivor(addr, victim, topic, kill_leader, t0, poll));
                    (*id, h)
                })
                .collect();
            handles
                .into_iter()
                .map(|(id, h)| (id, h.join().unwrap_or_default()))
                .collect()
        });
        for (_, s) in &seen {
            self.max_poll_gap = self.max_poll_gap.max(s.max_gap);
        }
        let per_survivor: BTreeMap<String, Value> = seen
            .iter()
            .map(|(id, s)| {
                (
                    id.to_string(),
                    json!({
                        "done_ms": s.done.map(ms),
                        "fenced_ms": s.fenced.map(ms),
                        "leaders_moved_ms": s.leaders.map(ms),
                        "new_controller_ms": s.new_controller.map(|(d, _)| ms(d)),
                        "new_controller": s.new_controller.map(|(_, l)| l),
                        "polls": s.polls,
                        "poll_errors": s.errors,
                        "max_poll_gap_ms": ms(s.max_gap),
                    }),
                )
            })
            .collect();
        let done: Option<Vec<Duration>> = seen.iter().map(|(_, s)| s.done).collect();
        let outcome = match done {
            Some(d) => {
                let last = d.iter().copied().max().unwrap_or_default();
                let first = d.iter().copied().min().unwrap_or_default();
                progress(&format!(
                    "round {round} ({scenario}): failed over on every survivor after {:.1} ms \
                     (first survivor {:.1} ms)",
                    ms(last),
                    ms(first)
                ));
                let sample = json!({
                    "round": round, "victim": victim, "controller_leader_before": leader,
                    "ms": ms(last), "first_survivor_ms": ms(first),
                    "t0_unix_ms": t0_unix, "kill_returned_ms": ms(killed_after),
                    "survivors": per_survivor,
                });
                if kill_leader {
                    self.kill_controller.push(sample);
                } else {
                    self.kill_broker.push(sample);
                }
                Ok(())
            }
            None => Err(anyhow::anyhow!(
                "not failed over on every survivor within {FAILOVER_TIMEOUT:?} \
                 (t0 unix ms {t0_unix}): {}",
                Value::from(per_survivor.into_iter().collect::<serde_json::Map<_, _>>())
            )),
        };
        if let Err(e) = outcome {
            self.fail(round, scenario, format!("{e:#}"));
        }

        // Bring the victim back; the round ends once every node lists it again.
        let restarted = catch_unwind(AssertUnwindSafe(|| self.cluster.restart(victim)));
        if restarted.is_err() {
            bail!("restarting node {victim} failed");
        }
        converged(&self.cluster, "the victim listed again", |v| {
            ids.iter().all(|id| v.brokers.contains_key(id))
        })?;
        progress(&format!("round {round}: node {victim} is back"));
        let leader = agreed_leader(&self.cluster)?;
        delete(self.cluster.addr(leader), &topic)?;
        converged(&self.cluster, "the round's topic deleted", |v| {
            !v.topics.contains_key(&topic)
        })?;
        Ok(())
    }
}

fn stats(samples: &[Value], failures: usize, target_max_ms: Option<f64>) -> Value {
    let mut v: Vec<f64> = samples.iter().filter_map(|s| s["ms"].as_f64()).collect();
    v.sort_by(f64::total_cmp);
    let rank = |q: f64| {
        (!v.is_empty()).then(|| v[((q * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1])
    };
    let median = if v.is_empty() {
        None
    } else if v.len() % 2 == 1 {
        Some(v[v.len() / 2])
    } else {
        Some((v[v.len() / 2 - 1] + v[v.len() / 2]) / 2.0)
    };
    let max = v.last().copied();
    json!({
        "count": v.len(),
        "failures": failures,
        "median_ms": median,
        "p90_ms": rank(0.9),
        "max_ms": max,
        "min_ms": v.first().copied(),
        "mean_ms": (!v.is_empty()).then(|| (v.iter().sum::<f64>() / v.len() as f64 * 1e3).round() / 1e3),
        "target_max_ms": target_max_ms,
        "meets_target": target_max_ms.and_then(|t| max.map(|m| m <= t)),
        "samples_ms": samples.iter().map(|s| s["ms"].clone()).collect::<Vec<_>>(),
        "details": samples,
    })
}

fn main() -> Result<()> {
    let args = parse()?;
    let started = Instant::now();
    progress(&format!(
        "starting {NODES} nodes ({} runs of each failover scenario)",
        args.runs
    ));
    let mut cluster = Cluster::start(NODES, &[]);
    // The harness passes short broker timeouts; run with the product defaults (or
    // what was asked) instead: kill every node and start them all again with those.
    let timing = [
        (
            "--broker-session-timeout-ms",
            args.session_timeout_ms.clone(),
        ),
        (
            "--broker-heartbeat-interval-ms",
            args.heartbeat_interval_ms.clone(),
        ),
        (
            "--broker-heartbeat-loss-grace-ms",
            args.loss_grace_ms.clone(),
        ),
    ];
    for id in cluster.ids() {
        cluster.kill9(id);
        for (flag, value) in &timing {
            cluster.set_arg(id, flag, value);
        }
    }
    cluster.start_all();
    let ids = cluster.ids();
    converged(&cluster, "every broker listed", |v| {
        ids.iter().all(|id| v.brokers.contains_key(id))
    })?;
    progress(&format!(
        "cluster up with {}",
        timing
            .iter()
            .map(|(f, v)| format!("{f} {v}"))
            .collect::<Vec<_>>()
            .join(" ")
    ));

    let mut bench = Bench {
        cluster,
        args,
        kill_broker: Vec::new(),
        kill_controller: Vec::new(),
        create_leader: Vec::new(),
        create_forwarded: Vec::new(),
        failures: Vec::new(),
        max_poll_gap: Duration::ZERO,
        failover_recorded: false,
    };
    let rounds = 2 * bench.args.runs;
    for round in 0..rounds {
        bench.failover_recorded = false;
        if let Err(e) = bench.round(round) {
            let scenario = if round % 2 == 1 {
                "kill_controller"
            } else {
                "kill_broker"
            };
            // A round that failed before its kill counts against its scenario; one
            // that failed while restarting or cleaning up is listed apart.
            let scenario = if bench.failover_recorded {
                format!("{scenario}_cleanup")
            } else {
                scenario.to_string()
            };
            bench.fail(round, &scenario, format!("{e:#}"));
            // Make sure every node runs again before the next round.
            let restarted = catch_unwind(AssertUnwindSafe(|| bench.cluster.start_all()));
            if restarted.is_err() {
                progress("restarting the cluster after a failed round failed; stopping");
                break;
            }
        }
    }

    let count = |name: &str| {
        bench
            .failures
            .iter()
            .filter(|f| f["scenario"] == name)
            .count()
    };
    let doc = json!({
        "nodes": NODES,
        "address": "127.0.0.1",
        "topic_partitions": PARTITIONS,
        "replication_factor": REPLICATION,
        "runs_per_failover_scenario": bench.args.runs,
        "rounds": rounds,
        "flags": timing.iter().map(|(f, v)| (f.to_string(), Value::from(v.as_str()))).collect::<serde_json::Map<_, _>>(),
        "flags_note": "the harness starts nodes with short broker timeouts; the driver kills every node and restarts it with these flags before the first round. Raft timing is the product default (election timeout 300-600 ms, heartbeat 60 ms).",
        "poll_interval_ms": ms(bench.args.poll),
        "max_poll_gap_ms": ms(bench.max_poll_gap),
        "poll_note": "each survivor is polled by its own thread on one connection; a sample is late by at most one poll gap plus one Metadata round trip",
        "scenarios": {
            "kill_broker": stats(&bench.kill_broker, count("kill_broker"), Some(1000.0)),
            "kill_controller": stats(&bench.kill_controller, count("kill_controller"), Some(3000.0)),
            "create_topics_leader": stats(&bench.create_leader, count("create_topics_leader"), None),
            "create_topics_forwarded": stats(&bench.create_forwarded, count("create_topics_forwarded"), None),
        },
        "failures": bench.failures,
        "total_failures": bench.failures.len(),
        "driver_seconds": (started.elapsed().as_secs_f64() * 10.0).round() / 10.0,
    });
    println!("{}", serde_json::to_string_pretty(&doc)?);
    Ok(())
}
