//! Load driver for `cargo xtask bench groups`: how fast a consumer group settles and how
//! fast offsets commit, measured with librdkafka; prints one JSON document.
//!
//! Phases:
//! - `cold`: 3 members subscribe to a fresh group at once; time from the last
//!   subscribe to every member holding 2 of the 6 partitions and having consumed from
//!   each of them.
//! - `join`: a third member joins a stable group of 2; time from its subscribe to the
//!   same condition.
//! - `commit`: one member commits synchronously in a loop (latency percentiles), then
//!   several standalone committers in parallel (aggregate commits/s).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use serde_json::{json, Value};

const PARTITIONS: i32 = 6;
const MEMBERS: usize = 3;

struct Args {
    bootstrap: String,
    phases: Vec<String>,
    rounds: usize,
    commits: usize,
    committers: usize,
    commit_secs: u64,
}

fn parse() -> Result<Args> {
    let mut a = Args {
        bootstrap: String::new(),
        phases: vec!["cold".into(), "join".into(), "commit".into()],
        rounds: 3,
        commits: 20_000,
        committers: 4,
        commit_secs: 5,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().with_context(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--bootstrap" => a.bootstrap = value()?,
            "--phases" => a.phases = value()?.split(',').map(str::to_string).collect(),
            "--rounds" => a.rounds = value()?.parse()?,
            "--commits" => a.commits = value()?.parse()?,
            "--committers" => a.committers = value()?.parse()?,
            "--commit-secs" => a.commit_secs = value()?.parse()?,
            other => bail!("unknown flag {other}"),
        }
    }
    if a.bootstrap.is_empty() {
        bail!("--bootstrap is required");
    }
    Ok(a)
}

/// What one member has: its assignment and which assigned partitions delivered since.
#[derive(Default)]
struct MemberState {
    assigned: BTreeSet<i32>,
    consumed: BTreeSet<i32>,
}

struct Ctx {
    state: Arc<Mutex<MemberState>>,
}

impl ClientContext for Ctx {}

impl ConsumerContext for Ctx {
    fn post_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        match rebalance {
            Rebalance::Assign(tpl) => {
                s.assigned = tpl.elements().iter().map(|e| e.partition()).collect();
                s.consumed.clear();
            }
            Rebalance::Revoke(_) => {
                s.assigned.clear();
                s.consumed.clear();
            }
            Rebalance::Error(_) => {}
        }
    }
}

fn config(bootstrap: &str) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", bootstrap)
        .set("socket.timeout.ms", "10000")
        .set("session.timeout.ms", "6000")
        // Existing members learn of a rebalance from their next heartbeat: a short
        // interval measures the broker, not the client's default 3 s timer.
        .set("heartbeat.interval.ms", "100")
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("fetch.wait.max.ms", "50");
    c
}

fn make_topic(bootstrap: &str, topic: &str) -> Result<()> {
    // Auto-creation would use the broker's num.partitions; create explicitly.
    let admin: rdkafka::admin::AdminClient<rdkafka::client::DefaultClientContext> =
        config(bootstrap).create()?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let t = rdkafka::admin::NewTopic::new(
            topic,
            PARTITIONS,
            rdkafka::admin::TopicReplication::Fixed(1),
        );
        let res = admin
            .create_topics([&t], &rdkafka::admin::AdminOptions::new())
            .await?;
        for r in res {
            r.map_err(|(t, e)| anyhow::anyhow!("create {t}: {e}"))?;
        }
        Ok::<_, anyhow::Error>(())
    })?;
    // Messages in every partition, so a member consumes as soon as it is assigned.
    let producer: BaseProducer = config(bootstrap).create()?;
    for i in 0..(PARTITIONS * 2000) {
        let payload = format!("m{i}");
        let rec = BaseRecord::<(), _>::to(topic)
            .partition(i % PARTITIONS)
            .payload(&payload);
        if let Err((e, _)) = producer.send(rec) {
            bail!("produce: {e}");
        }
        producer.poll(Duration::ZERO);
    }
    producer.flush(Duration::from_secs(30))?;
    Ok(())
}

/// A member consuming on its own thread until `stop`.
fn spawn_member(
    bootstrap: String,
    group: String,
    topic: String,
    start: Arc<Barrier>,
    stop: Arc<AtomicBool>,
    subscribed: Arc<Mutex<Option<Instant>>>,
) -> (Arc<Mutex<MemberState>>, thread::JoinHandle<Result<()>>) {
    let state = Arc::new(Mutex::new(MemberState::default()));
    let s = state.clone();
    let handle = thread::spawn(move || -> Result<()> {
        let consumer: BaseConsumer<Ctx> = config(&bootstrap)
            .set("group.id", &group)
            .create_with_context(Ctx { state: s.clone() })?;
        start.wait();
        consumer.subscribe(&[&topic])?;
        {
            let mut t = subscribed.lock().unwrap_or_else(|e| e.into_inner());
            let now = Instant::now();
            if t.is_none_or(|prev| now > prev) {
                *t = Some(now);
            }
        }
        while !stop.load(Ordering::Relaxed) {
            if let Some(Ok(m)) = consumer.poll(Duration::from_millis(20)) {
                let mut st = s.lock().unwrap_or_else(|e| e.into_inner());
                if st.assigned.contains(&m.partition()) {
                    st.consumed.insert(m.partition());
                }
            }
        }
        consumer.unsubscribe();
        Ok(())
    });
    (state, handle)
}

/// Every member holds 2 partitions (6 in all, none twice) and has consumed from each.
fn settled(states: &[Arc<Mutex<MemberState>>]) -> bool {
    let mut all = BTreeSet::new();
    for s in states {
        let s = s.lock().unwrap_or_else(|e| e.into_inner());
        if s.assigned.len() != PARTITIONS as usize / MEMBERS || s.consumed != s.assigned {
            return false;
        }
        all.extend(s.assigned.iter().copied());
    }
    all.len() == PARTITIONS as usize
}

fn wait_settled(states: &[Arc<Mutex<MemberState>>], deadline: Duration) -> Result<Instant> {
    let until = Instant::now() + deadline;
    while Instant::now() < until {
        if settled(states) {
            return Ok(Instant::now());
        }
        thread::sleep(Duration::from_millis(1));
    }
    bail!("group did not settle within {deadline:?}")
}

fn rebalance_round(bootstrap: &str, round: usize, join: bool) -> Result<f64> {
    let topic = format!(
        "group-bench-{}-{round}-{}",
        if join { "join" } else { "cold" },
        std::process::id()
    );
    make_topic(bootstrap, &topic)?;
    let group = format!("{topic}-g");
    let stop = Arc::new(AtomicBool::new(false));
    let subscribed = Arc::new(Mutex::new(None));
    let mut states = Vec::new();
    let mut handles = Vec::new();
    let first = if join { MEMBERS - 1 } else { MEMBERS };
    let barrier = Arc::new(Barrier::new(first + 1));
    for _ in 0..first {
        let (s, h) = spawn_member(
            bootstrap.into(),
            group.clone(),
            topic.clone(),
            barrier.clone(),
            stop.clone(),
            subscribed.clone(),
        );
        states.push(s);
        handles.push(h);
    }
    barrier.wait();
    if join {
        // Two members settle on 3 partitions each first.
        let until = Instant::now() + Duration::from_secs(60);
        loop {
            let ok = states.iter().all(|s| {
                let s = s.lock().unwrap_or_else(|e| e.into_inner());
                s.assigned.len() == 3 && s.consumed == s.assigned
            });
            if ok {
                break;
            }
            if Instant::now() > until {
                bail!("the first two members did not settle");
            }
            thread::sleep(Duration::from_millis(5));
        }
        let late = Arc::new(Barrier::new(2));
        let (s, h) = spawn_member(
            bootstrap.into(),
            group.clone(),
            topic.clone(),
            late.clone(),
            stop.clone(),
            subscribed.clone(),
        );
        states.push(s);
        handles.push(h);
        late.wait();
    }
    let done = wait_settled(&states, Duration::from_secs(60));
    stop.store(true, Ordering::Relaxed);
    for h in handles {
        h.join()
            .map_err(|_| anyhow::anyhow!("member thread panicked"))??;
    }
    let done = done?;
    let start = subscribed
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .context("nobody subscribed")?;
    Ok(done.saturating_duration_since(start).as_secs_f64() * 1000.0)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

fn commit_phase(a: &Args) -> Result<Value> {
    let topic = format!("group-bench-commit-{}", std::process::id());
    make_topic(&a.bootstrap, &topic)?;
    // A real member (generation checked on every commit), committing one partition.
    let group = format!("{topic}-member");
    let state = Arc::new(Mutex::new(MemberState::default()));
    let consumer: BaseConsumer<Ctx> = config(&a.bootstrap)
        .set("group.id", &group)
        .create_with_context(Ctx {
            state: state.clone(),
        })?;
    consumer.subscribe(&[&topic])?;
    let until = Instant::now() + Duration::from_secs(60);
    while state
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .assigned
        .len()
        != PARTITIONS as usize
    {
        consumer.poll(Duration::from_millis(20));
        if Instant::now() > until {
            bail!("commit member got no assignment");
        }
    }
    let mut lat = Vec::with_capacity(a.commits);
    let started = Instant::now();
    for i in 0..a.commits {
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(
            &topic,
            (i % PARTITIONS as usize) as i32,
            Offset::Offset(i as i64 + 1),
        )?;
        let t = Instant::now();
        consumer.commit(&tpl, CommitMode::Sync)?;
        lat.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    let total = started.elapsed().as_secs_f64();
    lat.sort_by(f64::total_cmp);
    let single = json!({
        "commits": a.commits,
        "commits_per_s": a.commits as f64 / total,
        "p50_ms": percentile(&lat, 0.50),
        "p99_ms": percentile(&lat, 0.99),
        "max_ms": lat.last().copied().unwrap_or(0.0),
    });
    drop(consumer);

    // Standalone committers (assign(), generation -1) in parallel, one group each.
    let stop = Arc::new(AtomicBool::new(false));
    let counts = Arc::new(Mutex::new(Vec::new()));
    let mut handles = Vec::new();
    for k in 0..a.committers {
        let (bootstrap, topic, stop, counts) = (
            a.bootstrap.clone(),
            topic.clone(),
            stop.clone(),
            counts.clone(),
        );
        handles.push(thread::spawn(move || -> Result<()> {
            let c: BaseConsumer = config(&bootstrap)
                .set("group.id", format!("{topic}-standalone-{k}"))
                .create()?;
            let mut n = 0u64;
            let mut lat = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let mut tpl = TopicPartitionList::new();
                tpl.add_partition_offset(
                    &topic,
                    (k % PARTITIONS as usize) as i32,
                    Offset::Offset(n as i64 + 1),
                )?;
                let t = Instant::now();
                c.commit(&tpl, CommitMode::Sync)?;
                lat.push(t.elapsed().as_secs_f64() * 1000.0);
                n += 1;
            }
            counts
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push((n, lat));
            Ok(())
        }));
    }
    let started = Instant::now();
    thread::sleep(Duration::from_secs(a.commit_secs));
    stop.store(true, Ordering::Relaxed);
    for h in handles {
        h.join()
            .map_err(|_| anyhow::anyhow!("committer panicked"))??;
    }
    let secs = started.elapsed().as_secs_f64();
    let results = counts.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let total: u64 = results.iter().map(|(n, _)| n).sum();
    let mut all: Vec<f64> = results.into_iter().flat_map(|(_, l)| l).collect();
    all.sort_by(f64::total_cmp);
    Ok(json!({
        "single_member": single,
        "parallel": {
            "committers": a.committers,
            "seconds": secs,
            "commits": total,
            "commits_per_s": total as f64 / secs,
            "p50_ms": percentile(&all, 0.50),
            "p99_ms": percentile(&all, 0.99),
        },
    }))
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

fn main() -> Result<()> {
    let a = parse()?;
    let mut out = BTreeMap::new();
    for phase in &a.phases {
        let v = match phase.as_str() {
            "cold" | "join" => {
                let mut runs = Vec::new();
                for round in 0..a.rounds {
                    runs.push(rebalance_round(&a.bootstrap, round, phase == "join")?);
                }
                let all = runs.clone();
                json!({ "runs_ms": all, "median_ms": median(&mut runs) })
            }
            "commit" => commit_phase(&a)?,
            other => bail!("unknown phase {other}"),
        };
        out.insert(phase.clone(), v);
    }
    let (_, version) = rdkafka::util::get_rdkafka_version();
    let doc = json!({
        "librdkafka_version": version,
        "members": MEMBERS,
        "partitions": PARTITIONS,
        "client_settings": { "session.timeout.ms": 6000, "heartbeat.interval.ms": 100, "enable.auto.commit": false },
        "phases": out,
    });
    serde_json::to_writer_pretty(std::io::stdout().lock(), &doc)?;
    Ok(())
}
