//! `chaos`: the chaos test behind `cargo xtask chaos` (issue 5).
//!
//! Starts a cluster of real `sluice` processes (`sluice_system_tests::cluster`, node
//! flags `--default-replication-factor 3 --min-insync-replicas 2`, plus a short
//! `--replica-lag-time-max-ms` when the binary has that flag), creates a topic of
//! `--partitions` (6) partitions, replication factor 3, `min.insync.replicas=2`, and runs
//! for the whole test:
//!
//! - an idempotent `acks=all` librdkafka producer writing `p{partition}-{seq:010}` to
//!   every partition in turn at `--rate` messages per second, recording each delivery
//!   report (offset and time, or the error);
//! - an independent librdkafka consumer (assigned every partition from the beginning,
//!   no group) recording every (partition, offset, value) it reads;
//! - a poller sending ListOffsets `latest` every `--latest-poll-ms` to each partition's
//!   leader (per the Metadata of a live node, with its leader epoch), recording answers.
//!
//! Meanwhile, `--kills` times: wait `--interval-ms` (with up to 50 % jitter), SIGKILL the
//! controller (Raft) leader (with probability `--controller-percent`) or the leader of a
//! random partition (one the controller leader does not lead, if there is one), wait
//! `--pause-ms`, restart it, and wait (bounded) until it is back
//! in every partition's ISR. Then every node is brought up, the ISRs are awaited, the
//! producer is flushed, the consumer catches up, and a fresh consumer reads every
//! partition from offset 0 to its high watermark. `sluice_system_tests::chaos::check`
//! judges the history; the unavailability window of each kill is the time from the kill
//! until every partition the victim led acknowledged a message sent after the kill.
//!
//! With `--docker-node` (given by `cargo xtask chaos --docker`, which brings the compose
//! cluster of `deploy/docker-compose.yml` up and down) it starts no process: the nodes
//! are containers, kills are `docker kill` and restarts `docker start`
//! (`sluice_system_tests::compose`). Each round is then, with probability
//! `--partition-percent`, a network partition instead of a kill: the chosen node is
//! disconnected from the network the nodes talk to each other on for `--partition-ms`
//! while the clients still reach it, then reconnected, and the ISRs awaited as after a
//! restart. An isolated leader must not acknowledge `acks=all` writes it cannot
//! replicate, and once back it must neither diverge nor lose a write: the checker judges
//! partitions like kills, and reports their unavailability as a class of its own.
//!
//! With `--transactions` the producer is transactional instead: transactions of
//! `--txn-size` messages (round robin over the partitions), of which `--abort-percent`
//! are aborted on purpose; every reader is read_committed, and the checker also proves
//! that no aborted record is read, no committed one is lost, and a transaction whose
//! outcome the producer could not learn is all there or not at all.
//!
//! Prints its seed first, the summary and every violation on stdout, progress on stderr
//! (with every node's log, prefixed `[node-i]`). Exit status: 0 clean, 1 violations,
//! 2 the run could not complete (the cluster did not come up or heal, the final read
//! did not reach the high watermarks).

#![allow(clippy::print_stdout, clippy::print_stderr)] // A CLI tool: reports on stdio.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use rdkafka::client::ClientContext;
use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::message::{DeliveryResult, Message};
use rdkafka::producer::{BaseRecord, Producer, ProducerContext, ThreadedProducer};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{Offset, TopicPartitionList};
use serde_json::{json, Value};
use sluice_protocol::api::ApiKey;
use sluice_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use sluice_protocol::messages::{
    CreateTopicsRequest, CreateTopicsResponse, ListOffsetsRequest, ListOffsetsResponse,
};
use sluice_system_tests::chaos::{
    check, median_max, value, windows, Fault, History, Kill, Latest, Outcome, Read, Rng, Sent,
    TxnOutcome, Window,
};
use sluice_system_tests::cluster::{Cluster, View};
use sluice_system_tests::compose::{ComposeCluster, ComposeNode};
use sluice_system_tests::nodes::{guarded, Nodes};
use sluice_system_tests::raw::{LazyClient as Conn, RawClient};
use sluice_system_tests::wire::creatable;

const USAGE: &str = "\
usage: chaos [--nodes 3] [--kills K] [--seed S] [options]
  --nodes N               cluster size (default 3; at least 3)
  --kills K               SIGKILLs (default 10); against the compose cluster, rounds
                          of which some are network partitions instead
  --seed S                RNG seed (default: from the clock; printed first)
  --interval-ms MS        time before each kill (default 5000, plus 0-50 % jitter)
  --pause-ms MS           time a killed node stays down (default 3000)
  --duration-secs T       minimum length of the run: keep producing (and killing, if
                          kills remain) until T seconds passed (default: none)
  --controller-percent P  chance that a kill targets the controller leader (default 40)
  --partitions N          partitions of the topic (default 6)
  --rate R                messages per second, all partitions together (default 300)
  --latest-poll-ms MS     ListOffsets latest poll period (default 200)
  --heal-timeout-secs T   bound on waiting for a full ISR after a restart (default 30)
  --replica-lag-ms MS     --replica-lag-time-max-ms for the nodes, if sluice has that
                          flag (default 2000)
  --sluice-arg ARG        one more argument for every node (repeatable)
  --transactions          a transactional producer (see --txn-size, --abort-percent)
  --txn-size N            messages per transaction (default 10)
  --abort-percent P       transactions aborted on purpose (default 20)
  --no-idempotence        acks=all without enable.idempotence (max.in.flight 1), to
                          try the harness on a broker without InitProducerId; retries
                          may then duplicate, which the checker reports
  --json PATH             write the figures as JSON
  --docker-node ID=CONTAINER@HOST:PORT
                          a node of the compose cluster (repeatable; `cargo xtask
                          chaos --docker` passes them): no process is started, kills
                          are `docker kill`, restarts `docker start`
  --docker-network NET    the network the containers talk to each other on, which a
                          network partition disconnects a node from (default
                          sluice_internal)
  --partition-percent P   with --docker-node: chance that a round cuts a node off its
                          peers instead of killing it (default 34; a schedule of 4
                          rounds or more has at least 2 partitions)
  --partition-ms MS       how long a node stays cut off (default 6000: longer than the
                          broker session timeout, so the others fence it meanwhile)
environment:
  CHAOS_PRODUCER_DEBUG=CONTEXTS  librdkafka `debug` contexts for the producer (e.g.
                          topic,metadata,broker), logged with the driver's progress";

/// Targets from the issue: worst unavailability per kill.
const TARGET_LEADER_KILL: Duration = Duration::from_secs(2);
const TARGET_CONTROLLER_KILL: Duration = Duration::from_secs(4);
/// Connect/read timeout of the driver's raw requests.
const IO_TIMEOUT: Duration = Duration::from_secs(3);
/// librdkafka's delivery timeout: long enough to ride out failovers.
const MESSAGE_TIMEOUT_MS: u64 = 30_000;
const TOPIC: &str = "chaos";

struct Args {
    nodes: usize,
    kills: usize,
    seed: u64,
    interval: Duration,
    pause: Duration,
    duration: Option<Duration>,
    controller_percent: u64,
    partitions: i32,
    rate: u64,
    latest_poll: Duration,
    heal_timeout: Duration,
    replica_lag_ms: u64,
    sluice_args: Vec<String>,
    idempotence: bool,
    transactions: bool,
    txn_size: usize,
    abort_percent: u64,
    json: Option<PathBuf>,
    /// The compose cluster's nodes (`--docker-node`); empty: start processes.
    docker_nodes: Vec<ComposeNode>,
    docker_network: String,
    partition_percent: u64,
    partition_time: Duration,
}

impl Args {
    fn docker(&self) -> bool {
        !self.docker_nodes.is_empty()
    }
}

fn parse() -> Result<Args> {
    let mut a = Args {
        nodes: 3,
        kills: 10,
        seed: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64),
        interval: Duration::from_millis(5000),
        pause: Duration::from_millis(3000),
        duration: None,
        controller_percent: 40,
        partitions: 6,
        rate: 300,
        latest_poll: Duration::from_millis(200),
        heal_timeout: Duration::from_secs(30),
        replica_lag_ms: 2000,
        sluice_args: Vec::new(),
        idempotence: true,
        transactions: false,
        txn_size: 10,
        abort_percent: 20,
        json: None,
        docker_nodes: Vec::new(),
        docker_network: "sluice_internal".into(),
        partition_percent: 0,
        partition_time: Duration::from_millis(6000),
    };
    let mut nodes_given = false;
    let mut partition_percent = None;
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || {
            it.next()
                .with_context(|| format!("{flag} needs a value\n{USAGE}"))
        };
        let ms = |v: String| -> Result<Duration> {
            Ok(Duration::from_millis(v.parse().context("milliseconds")?))
        };
        match flag.as_str() {
            "--nodes" => {
                a.nodes = value()?.parse().context("--nodes")?;
                nodes_given = true;
            }
            "--kills" => a.kills = value()?.parse().context("--kills")?,
            "--seed" => a.seed = value()?.parse().context("--seed")?,
            "--interval-ms" => a.interval = ms(value()?)?,
            "--pause-ms" => a.pause = ms(value()?)?,
            "--duration-secs" => {
                a.duration = Some(Duration::from_secs(
                    value()?.parse().context("--duration-secs")?,
                ))
            }
            "--controller-percent" => {
                a.controller_percent = value()?.parse().context("--controller-percent")?
            }
            "--partitions" => a.partitions = value()?.parse().context("--partitions")?,
            "--rate" => a.rate = value()?.parse().context("--rate")?,
            "--latest-poll-ms" => a.latest_poll = ms(value()?)?,
            "--heal-timeout-secs" => {
                a.heal_timeout =
                    Duration::from_secs(value()?.parse().context("--heal-timeout-secs")?)
            }
            "--replica-lag-ms" => {
                a.replica_lag_ms = value()?.parse().context("--replica-lag-ms")?
            }
            "--sluice-arg" => a.sluice_args.push(value()?),
            "--no-idempotence" => a.idempotence = false,
            "--transactions" => a.transactions = true,
            "--txn-size" => a.txn_size = value()?.parse().context("--txn-size")?,
            "--abort-percent" => a.abort_percent = value()?.parse().context("--abort-percent")?,
            "--json" => a.json = Some(PathBuf::from(value()?)),
            "--docker-node" => a.docker_nodes.push(ComposeNode::parse(&value()?)?),
            "--docker-network" => a.docker_network = value()?,
            "--partition-percent" => {
                partition_percent = Some(value()?.parse().context("--partition-percent")?)
            }
            "--partition-ms" => a.partition_time = ms(value()?)?,
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other => bail!("unknown argument {other}\n{USAGE}"),
        }
    }
    if a.docker() {
        if nodes_given && a.nodes != a.docker_nodes.len() {
            bail!(
                "--nodes {} but {} --docker-node",
                a.nodes,
                a.docker_nodes.len()
            );
        }
        if !a.sluice_args.is_empty() {
            bail!("--sluice-arg does not apply to the compose cluster (its settings come from the compose file)");
        }
        a.nodes = a.docker_nodes.len();
        a.partition_percent = partition_percent.unwrap_or(34);
    } else if partition_percent.is_some_and(|p| p > 0) {
        bail!("--partition-percent needs the compose cluster (--docker-node): local processes cannot be cut off from each other");
    }
    if a.partition_percent > 100 {
        bail!("--partition-percent must be at most 100");
    }
    if a.nodes < 3 {
        bail!("--nodes must be at least 3 (replication factor 3)");
    }
    if a.partitions < 1 || a.rate == 0 || a.controller_percent > 100 {
        bail!("--partitions and --rate must be positive, --controller-percent at most 100");
    }
    if a.txn_size == 0 || a.abort_percent > 100 {
        bail!("--txn-size must be positive, --abort-percent at most 100");
    }
    Ok(a)
}

fn unix_ms() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis())
}

fn progress(msg: &str) {
    eprintln!("chaos: [unix_ms {}] {msg}", unix_ms());
}

fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e4).round() / 10.0
}

// ---------------------------------------------------------------------------------
// Raw requests

/// The first live node's view (nodes in the given order), if any answers.
fn any_view(cluster: &dyn Nodes) -> Option<View> {
    cluster
        .live()
        .into_iter()
        .find_map(|id| cluster.view(id).ok())
}

fn create_topic(cluster: &dyn Nodes, partitions: i32) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let leader = cluster
            .await_controller_leader(Duration::from_secs(20), None)
            .context("controller leader")?
            .0;
        let req = CreateTopicsRequest {
            topics: vec![creatable(
                TOPIC,
                partitions,
                3,
                &[("min.insync.replicas", "2")],
            )],
            timeout_ms: 30_000,
            validate_only: false,
        };
        let r: Result<CreateTopicsResponse> =
            RawClient::try_connect(&cluster.addr(leader), Duration::from_secs(35))
                .and_then(|mut c| c.try_call(ApiKey::CreateTopics, 7, &req))
                .map_err(Into::into);
        match r {
            Ok(resp) => {
                let t = resp.topics.first().context("no topic result")?;
                // 36: TOPIC_ALREADY_EXISTS (a retry after a lost answer).
                if t.error_code == 0 || t.error_code == 36 {
                    return Ok(());
                }
                progress(&format!(
                    "CreateTopics: error {} {:?}",
                    t.error_code, t.error_message
                ));
            }
            Err(e) => progress(&format!("CreateTopics: {e:#}")),
        }
        if Instant::now() > deadline {
            bail!("could not create topic {TOPIC} within 60 s");
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// Whether `v` shows every partition of the topic led, with every node of `nodes` in
/// its ISR.
fn full_isr(v: &View, partitions: i32, nodes: &[i32]) -> bool {
    v.topics.get(TOPIC).is_some_and(|t| {
        t.error_code == 0
            && t.partitions.len() == partitions as usize
            && t.partitions
                .iter()
                .all(|p| p.leader >= 0 && nodes.iter().all(|n| p.isr.contains(n)))
    })
}

/// Each partition's leader and ISR as `v` shows them, for progress lines.
fn leaders_and_isrs(v: &View) -> String {
    v.topics.get(TOPIC).map_or_else(
        || format!("no topic {TOPIC}"),
        |t| {
            t.partitions
                .iter()
                .enumerate()
                .map(|(i, p)| format!("p{i}: leader {} isr {:?}", p.leader, p.isr))
                .collect::<Vec<_>>()
                .join("; ")
        },
    )
}

/// Polls every live node's view until all of them show a full ISR or `timeout` passes.
fn await_full_isr(cluster: &dyn Nodes, partitions: i32, timeout: Duration) -> Result<Duration> {
    let start = Instant::now();
    let nodes = cluster.ids();
    let mut last = String::new();
    loop {
        let live = cluster.live();
        let views: Vec<_> = live.iter().map(|&id| (id, cluster.view(id))).collect();
        if views
            .iter()
            .all(|(_, v)| v.as_ref().is_ok_and(|v| full_isr(v, partitions, &nodes)))
        {
            return Ok(start.elapsed());
        }
        if let Some(v) = views
            .iter()
            .find_map(|(_, v)| v.as_ref().ok())
            .filter(|v| v.topics.contains_key(TOPIC))
        {
            last = leaders_and_isrs(v);
        }
        if start.elapsed() > timeout {
            bail!("no full ISR within {timeout:?} (last seen: {last})");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

// ---------------------------------------------------------------------------------
// librdkafka clients

fn log_librdkafka(who: &str, level: RDKafkaLogLevel, fac: &str, message: &str) {
    if (level as i32) <= (RDKafkaLogLevel::Warning as i32)
        || std::env::var_os("CHAOS_PRODUCER_DEBUG").is_some()
    {
        progress(&format!("{who} librdkafka {level:?} {fac}: {message}"));
    }
}

/// The producer's context: records every delivery report into `sent`.
struct Recorder {
    start: Instant,
    sent: Arc<Mutex<Vec<Sent>>>,
    partition_mismatch: AtomicU64,
}

impl ClientContext for Recorder {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        log_librdkafka("producer", level, fac, message);
    }
    fn error(&self, error: KafkaError, reason: &str) {
        progress(&format!("producer error: {error}: {reason}"));
    }
}

impl ProducerContext for Recorder {
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, idx: usize) {
        let at = self.start.elapsed();
        let Ok(mut sent) = self.sent.lock() else {
            return;
        };
        let Some(s) = sent.get_mut(idx) else { return };
        match result {
            Ok(m) => {
                if m.partition() != s.partition {
                    self.partition_mismatch.fetch_add(1, Ordering::Relaxed);
                }
                s.outcome = Outcome::Acked {
                    offset: m.offset(),
                    at,
                };
            }
            Err((e, _)) => {
                s.outcome = Outcome::Failed {
                    error: e.to_string(),
                }
            }
        }
    }
}

struct Quiet(&'static str);

impl ClientContext for Quiet {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        log_librdkafka(self.0, level, fac, message);
    }
    fn error(&self, error: KafkaError, reason: &str) {
        progress(&format!("{} error: {error}: {reason}", self.0));
    }
}

impl ConsumerContext for Quiet {}

/// The transactional id of `--transactions` (one producer instance at a time).
const TXN_ID: &str = "chaos-txn";
/// Bound on each transaction call (init, commit, abort): it rides out failovers.
const TXN_CALL_TIMEOUT: Duration = Duration::from_secs(60);

fn producer(
    bootstrap: &str,
    idempotence: bool,
    transactional: bool,
    ctx: Recorder,
) -> Result<ThreadedProducer<Recorder>> {
    let mut c = ClientConfig::new();
    if transactional {
        c.set("transactional.id", TXN_ID)
            .set("transaction.timeout.ms", "60000");
    }
    c.set("bootstrap.servers", bootstrap)
        .set("acks", "all")
        .set("enable.idempotence", idempotence.to_string())
        .set("message.timeout.ms", MESSAGE_TIMEOUT_MS.to_string())
        .set("linger.ms", "5")
        .set("retry.backoff.ms", "50")
        .set("retry.backoff.max.ms", "250")
        .set("topic.metadata.refresh.fast.interval.ms", "50")
        .set("socket.timeout.ms", "10000");
    if let Ok(contexts) = std::env::var("CHAOS_PRODUCER_DEBUG") {
        c.set("debug", contexts)
            .set_log_level(RDKafkaLogLevel::Debug);
    }
    if !idempotence {
        // Keep per-partition order across retries without the idempotent producer.
        c.set("max.in.flight.requests.per.connection", "1");
    }
    let p: ThreadedProducer<Recorder> = c.create_with_context(ctx).context("producer")?;
    if transactional {
        // Fences a previous instance (aborting or finishing its transaction).
        p.init_transactions(TXN_CALL_TIMEOUT)
            .context("init_transactions")?;
    }
    Ok(p)
}

fn consumer(bootstrap: &str, who: &'static str) -> Result<BaseConsumer<Quiet>> {
    let mut c = ClientConfig::new();
    // isolation.level is librdkafka's default, read_committed: with --transactions it
    // is what the checker relies on, and without transactions it changes nothing.
    c.set("bootstrap.servers", bootstrap)
        .set("isolation.level", "read_committed")
        .set("group.id", "chaos-unused")
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "false")
        .set("auto.offset.reset", "earliest")
        .set("fetch.wait.max.ms", "100")
        .set("topic.metadata.refresh.fast.interval.ms", "50")
        .set("socket.timeout.ms", "10000");
    c.create_with_context(Quiet(who)).context("consumer")
}

fn assign_all(c: &BaseConsumer<Quiet>, partitions: i32) -> Result<()> {
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition_offset(TOPIC, p, Offset::Beginning)?;
    }
    c.assign(&tpl).context("assign")
}

/// Shared state of the background threads.
struct Shared {
    start: Instant,
    stop_producer: AtomicBool,
    stop_observers: AtomicBool,
    sent: Arc<Mutex<Vec<Sent>>>,
    reads: Mutex<Vec<Read>>,
    latest: Mutex<Vec<Latest>>,
    producer_restarts: AtomicU64,
    partition_mismatch: AtomicU64,
    consumer_errors: AtomicU64,
    /// The run consumer's position (the next offset it reads), per partition.
    consumed_end: Mutex<BTreeMap<i32, i64>>,
    /// How each transaction ended (`--transactions`).
    txns: Mutex<BTreeMap<u64, TxnOutcome>>,
    /// Set when the run cannot go on (the producer cannot work at all).
    abort: Mutex<Option<String>>,
}

impl Shared {
    fn aborted(&self) -> Option<String> {
        self.abort.lock().ok().and_then(|a| a.clone())
    }
}

/// Hands one message (the next of `partition`) to the producer, recording it in
/// `shared.sent`; a full local queue is waited out (bounded).
fn enqueue(
    shared: &Shared,
    p: &ThreadedProducer<Recorder>,
    partition: i32,
    seq: u64,
    txn: Option<u64>,
) -> Result<()> {
    let v = value(partition, seq);
    let idx = {
        let mut sent = shared
            .sent
            .lock()
            .map_err(|_| anyhow::anyhow!("poisoned"))?;
        sent.push(Sent {
            partition,
            seq,
            at: shared.start.elapsed(),
            outcome: Outcome::Pending,
            txn,
        });
        sent.len() - 1
    };
    let mut tries = 0;
    loop {
        let rec = BaseRecord::<(), str, usize>::with_opaque_to(TOPIC, idx)
            .partition(partition)
            .payload(v.as_str());
        match p.send(rec) {
            Ok(()) => return Ok(()),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _))
                if tries < 1000 =>
            {
                tries += 1;
                std::thread::sleep(Duration::from_millis(10));
            }
            Err((e, _)) => {
                if let Ok(mut sent) = shared.sent.lock() {
                    sent[idx].outcome = Outcome::Failed {
                        error: format!("enqueue: {e}"),
                    };
                }
                return Ok(());
            }
        }
    }
}

/// Sleeps until the next send is due at `rate` (without bursting after a stall).
struct Pacer {
    period: Duration,
    next: Instant,
}

impl Pacer {
    fn new(rate: u64) -> Self {
        Self {
            period: Duration::from_nanos(1_000_000_000 / rate),
            next: Instant::now(),
        }
    }

    fn wait(&mut self) {
        self.next += self.period;
        let now = Instant::now();
        if self.next > now {
            std::thread::sleep(self.next - now);
        } else if now - self.next > Duration::from_secs(1) {
            self.next = now; // do not burst after a stall
        }
    }
}

fn make_producer(
    shared: &Shared,
    bootstrap: &str,
    idempotence: bool,
    transactional: bool,
) -> Result<ThreadedProducer<Recorder>> {
    producer(
        bootstrap,
        idempotence,
        transactional,
        Recorder {
            start: shared.start,
            sent: shared.sent.clone(),
            partition_mismatch: AtomicU64::new(0),
        },
    )
}

/// Flushes a producer being retired and keeps its delivery-partition mismatch count.
fn retire(shared: &Shared, p: &ThreadedProducer<Recorder>) {
    let _ = p.flush(Duration::from_secs(5));
    shared.partition_mismatch.fetch_add(
        p.context().partition_mismatch.load(Ordering::Relaxed),
        Ordering::Relaxed,
    );
}

/// The producer loop: round robin over partitions at `rate`, until stopped; then a
/// bounded flush. A producer that hit a fatal error is replaced (its outstanding
/// messages are reported failed).
fn produce(
    shared: &Shared,
    bootstrap: &str,
    partitions: i32,
    rate: u64,
    idempotence: bool,
) -> Result<()> {
    let mut p = make_producer(shared, bootstrap, idempotence, false)?;
    let mut seq = vec![0u64; partitions as usize];
    let mut pacer = Pacer::new(rate);
    let mut n: u64 = 0;
    let mut last_fatal_check = Instant::now();
    while !shared.stop_producer.load(Ordering::Relaxed) {
        if last_fatal_check.elapsed() > Duration::from_millis(500) {
            last_fatal_check = Instant::now();
            if let Some((code, reason)) = p.client().fatal_error() {
                if code == RDKafkaErrorCode::UnsupportedFeature {
                    // The cluster cannot serve this producer at all (no InitProducerId):
                    // a new one would fail the same way.
                    let msg = format!("producer fatal error {code:?}: {reason}");
                    progress(&format!("{msg}; aborting the run"));
                    if let Ok(mut a) = shared.abort.lock() {
                        a.get_or_insert(msg);
                    }
                    break;
                }
                progress(&format!(
                    "producer fatal error {code:?}: {reason}; starting a new producer"
                ));
                retire(shared, &p);
                p = make_producer(shared, bootstrap, idempotence, false)?;
                shared.producer_restarts.fetch_add(1, Ordering::Relaxed);
            }
        }
        let partition = (n % partitions as u64) as i32;
        enqueue(shared, &p, partition, seq[partition as usize], None)?;
        seq[partition as usize] += 1;
        n += 1;
        pacer.wait();
    }
    progress("producer: flushing");
    if let Err(e) = p.flush(Duration::from_millis(MESSAGE_TIMEOUT_MS + 5000)) {
        progress(&format!("producer: flush: {e}"));
    }
    retire(shared, &p);
    Ok(())
}

/// The transactional producer loop (`--transactions`): transactions of `size` messages
/// round robin over the partitions at `rate`, committed, or aborted on purpose with
/// probability `abort_percent`, until stopped. A transaction whose commit or abort
/// failed for good has an unknown outcome; the producer is then replaced (the new
/// instance fences the old one, which settles that transaction one way or the other).
fn produce_transactions(shared: &Shared, bootstrap: &str, args: &Args) -> Result<()> {
    let mut p = make_producer(shared, bootstrap, true, true)?;
    let mut rng = Rng::new(args.seed ^ 0x7478_6e73);
    let mut seq = vec![0u64; args.partitions as usize];
    let mut pacer = Pacer::new(args.rate);
    let (mut n, mut txn) = (0u64, 0u64);
    while !shared.stop_producer.load(Ordering::Relaxed) {
        txn += 1;
        let outcome = match p.begin_transaction() {
            Err(e) => Err(format!("begin: {e}")),
            Ok(()) => {
                for _ in 0..args.txn_size {
                    let partition = (n % args.partitions as u64) as i32;
                    enqueue(shared, &p, partition, seq[partition as usize], Some(txn))?;
                    seq[partition as usize] += 1;
                    n += 1;
                    pacer.wait();
                }
                if rng.below(100) < args.abort_percent {
                    finish(&p, false)
                } else {
                    finish(&p, true)
                }
            }
        };
        let outcome = outcome.unwrap_or_else(|why| {
            progress(&format!(
                "transaction {txn}: outcome unknown ({why}); starting a new producer"
            ));
            TxnOutcome::Unknown
        });
        if let Ok(mut t) = shared.txns.lock() {
            t.insert(txn, outcome);
        }
        if outcome == TxnOutcome::Unknown {
            retire(shared, &p);
            // Until a new instance is initialised (the coordinator may be failing over).
            p = loop {
                match make_producer(shared, bootstrap, true, true) {
                    Ok(p) => break p,
                    Err(e) if !shared.stop_producer.load(Ordering::Relaxed) => {
                        progress(&format!("producer: {e:#}; retrying"));
                        std::thread::sleep(Duration::from_millis(500));
                    }
                    Err(e) => return Err(e),
                }
            };
            shared.producer_restarts.fetch_add(1, Ordering::Relaxed);
        }
    }
    retire(shared, &p);
    Ok(())
}

/// Commits (or aborts) the open transaction, retrying what librdkafka says is
/// retriable and aborting what it says must be aborted; `Err` when the outcome is
/// unknown.
fn finish(p: &ThreadedProducer<Recorder>, commit: bool) -> std::result::Result<TxnOutcome, String> {
    let mut commit = commit;
    for _ in 0..5 {
        let result = if commit {
            p.commit_transaction(TXN_CALL_TIMEOUT)
        } else {
            p.abort_transaction(TXN_CALL_TIMEOUT)
        };
        match result {
            Ok(()) if commit => return Ok(TxnOutcome::Committed),
            Ok(()) => return Ok(TxnOutcome::Aborted),
            Err(KafkaError::Transaction(e)) if e.is_retriable() => {
                progress(&format!("transaction: {e}; retrying"));
            }
            Err(KafkaError::Transaction(e)) if e.txn_requires_abort() && commit => {
                progress(&format!("transaction: {e}; aborting it"));
                commit = false;
            }
            Err(e) => return Err(e.to_string()),
        }
    }
    Err("still failing after 5 attempts".into())
}

/// Next offset per partition of a consumer's position list (unset ones omitted).
fn positions(tpl: &TopicPartitionList) -> BTreeMap<i32, i64> {
    tpl.elements()
        .iter()
        .filter_map(|e| match e.offset() {
            Offset::Offset(o) => Some((e.partition(), o)),
            _ => None,
        })
        .collect()
}

/// The independent consumer, until stopped.
fn consume(shared: &Shared, bootstrap: &str, partitions: i32) -> Result<()> {
    let c = consumer(bootstrap, "consumer")?;
    assign_all(&c, partitions)?;
    while !shared.stop_observers.load(Ordering::Relaxed) {
        // The position, not the last record: read_committed skips aborted records and
        // transaction markers, which are never returned.
        if let (Ok(pos), Ok(mut end)) = (c.position(), shared.consumed_end.lock()) {
            *end = positions(&pos);
        }
        match c.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => {
                let read = Read {
                    partition: m.partition(),
                    offset: m.offset(),
                    value: m.payload().unwrap_or_default().to_vec(),
                };
                if let Ok(mut r) = shared.reads.lock() {
                    r.push(read);
                }
            }
            Some(Err(e)) if shared.consumer_errors.fetch_add(1, Ordering::Relaxed) < 20 => {
                progress(&format!("consumer: {e}"));
            }
            Some(Err(_)) | None => {}
        }
    }
    Ok(())
}

/// ListOffsets latest of every partition, sent to its leader (with its leader epoch) as
/// the first answering node's Metadata names it, every `period`, until stopped.
fn poll_latest(shared: &Shared, addrs: &BTreeMap<i32, String>, partitions: i32, period: Duration) {
    let mut conns: BTreeMap<i32, Conn> = addrs
        .iter()
        .map(|(&id, a)| (id, Conn::new(a, IO_TIMEOUT)))
        .collect();
    let mut meta: BTreeMap<i32, Conn> = addrs
        .iter()
        .map(|(&id, a)| (id, Conn::new(a, IO_TIMEOUT)))
        .collect();
    let mut next = Instant::now();
    while !shared.stop_observers.load(Ordering::Relaxed) {
        let view = meta.values_mut().find_map(|c| c.view().ok());
        if let Some(t) = view.as_ref().and_then(|v| v.topics.get(TOPIC)) {
            // leader -> [(partition, epoch)]
            let mut by_leader: BTreeMap<i32, Vec<(i32, i32)>> = BTreeMap::new();
            for (i, p) in t.partitions.iter().enumerate().take(partitions as usize) {
                if p.leader >= 0 {
                    by_leader
                        .entry(p.leader)
                        .or_default()
                        .push((i as i32, p.leader_epoch));
                }
            }
            for (leader, parts) in by_leader {
                let Some(conn) = conns.get_mut(&leader) else {
                    continue;
                };
                let req = ListOffsetsRequest {
                    replica_id: -1,
                    isolation_level: 0,
                    topics: vec![ListOffsetsTopic {
                        name: TOPIC.into(),
                        partitions: parts
                            .iter()
                            .map(|&(p, epoch)| ListOffsetsPartition {
                                partition_index: p,
                                current_leader_epoch: epoch,
                                timestamp: -1,
                                max_num_offsets: 1,
                            })
                            .collect(),
                    }],
                    timeout_ms: 0,
                };
                if let Ok(resp) = conn.call::<_, ListOffsetsResponse>(ApiKey::ListOffsets, 7, &req)
                {
                    let at = shared.start.elapsed();
                    let mut latest = shared.latest.lock().unwrap_or_else(|e| e.into_inner());
                    for t in resp.topics {
                        for p in t.partitions {
                            if p.error_code == 0 && p.offset >= 0 {
                                latest.push(Latest {
                                    at,
                                    partition: p.partition_index,
                                    node: leader,
                                    offset: p.offset,
                                });
                            }
                        }
                    }
                }
            }
        }
        next += period;
        let now = Instant::now();
        if next > now {
            std::thread::sleep(next - now);
        } else {
            next = now;
        }
    }
}

/// Reads every partition from offset 0 up to its high watermark with a fresh consumer.
/// Returns the records and the high watermarks; errors if the watermarks cannot be
/// learnt or the read does not reach them within `timeout`.
#[allow(clippy::type_complexity)]
fn final_read(
    bootstrap: &str,
    partitions: i32,
    timeout: Duration,
) -> Result<(BTreeMap<i32, Vec<(i64, Vec<u8>)>>, BTreeMap<i32, i64>)> {
    let c = consumer(bootstrap, "checker")?;
    let start = Instant::now();
    let mut high = BTreeMap::new();
    for p in 0..partitions {
        loop {
            match c.fetch_watermarks(TOPIC, p, Duration::from_secs(5)) {
                Ok((_, h)) => {
                    high.insert(p, h);
                    break;
                }
                Err(e) if start.elapsed() < timeout => {
                    progress(&format!("checker: watermarks of partition {p}: {e}"));
                    std::thread::sleep(Duration::from_millis(200));
                }
                Err(e) => bail!("watermarks of partition {p}: {e}"),
            }
        }
    }
    assign_all(&c, partitions)?;
    let mut log: BTreeMap<i32, BTreeMap<i64, Vec<u8>>> = BTreeMap::new();
    let mut next: BTreeMap<i32, i64> = (0..partitions).map(|p| (p, 0)).collect();
    // Done once the position passes the high watermark (read_committed skips aborted
    // records and markers, so the last record returned may lie below it).
    let done = |next: &BTreeMap<i32, i64>| next.iter().all(|(p, n)| *n >= high[p]);
    let mut conflicts = Vec::new();
    while !done(&next) {
        if let Ok(pos) = c.position() {
            for (p, o) in positions(&pos) {
                let n = next.entry(p).or_insert(0);
                *n = (*n).max(o);
            }
        }
        if done(&next) {
            break;
        }
        if start.elapsed() > timeout {
            bail!("the final read did not reach the high watermarks {high:?} within {timeout:?} (reached {next:?})");
        }
        match c.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => {
                let (p, o) = (m.partition(), m.offset());
                let v = m.payload().unwrap_or_default().to_vec();
                let entry = log.entry(p).or_default();
                if let Some(old) = entry.get(&o) {
                    if *old != v {
                        conflicts.push((p, o));
                    }
                } else {
                    entry.insert(o, v);
                }
                let n = next.entry(p).or_insert(0);
                *n = (*n).max(o + 1);
            }
            Some(Err(e)) => progress(&format!("checker: {e}")),
            None => {}
        }
    }
    if !conflicts.is_empty() {
        // A refetch of the same offset returned another value within the final read.
        bail!("the final read saw different values at the same offsets: {conflicts:?}");
    }
    let log = (0..partitions)
        .map(|p| {
            let recs = log
                .remove(&p)
                .unwrap_or_default()
                .into_iter()
                .filter(|(o, _)| *o < high[&p])
                .collect();
            (p, recs)
        })
        .collect();
    Ok((log, high))
}

// ---------------------------------------------------------------------------------
// The run

fn sluice_has_flag(flag: &str) -> bool {
    std::process::Command::new(sluice_system_tests::sluice_bin())
        .arg("--help")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).contains(flag))
        .unwrap_or(false)
}

/// What the kill phase produced besides the shared history.
#[derive(Default)]
struct Chaos {
    kills: Vec<Kill>,
    /// Harness trouble that does not stop the run (a slow heal), reported.
    notes: Vec<String>,
}

/// Picks, kills, pauses, restarts and heals, `args.kills` times (and keeps going until
/// `--duration-secs`); against the compose cluster some rounds cut the node off its
/// peers instead (see [`reconnect_after`]). A failure to restart (or reconnect) a node is an
/// error (the run cannot go on).
fn kill_loop(cluster: &mut dyn Nodes, args: &Args, shared: &Shared, out: &mut Chaos) -> Result<()> {
    let mut rng = Rng::new(args.seed);
    let duration = args.duration.unwrap_or_default();
    let mut k = 0;
    let sleep = |d: Duration| -> Result<()> {
        let until = Instant::now() + d;
        while Instant::now() < until {
            if let Some(why) = shared.aborted() {
                bail!("aborted: {why}");
            }
            std::thread::sleep(
                Duration::from_millis(50).min(until.saturating_duration_since(Instant::now())),
            );
        }
        Ok(())
    };
    let partitioning = cluster.can_partition() && args.partition_percent > 0;
    // Partitions forced if the draws give too few: two in a schedule of four rounds or
    // more, one in two or three.
    let min_partitions = if partitioning {
        2.min(args.kills / 2)
    } else {
        0
    };
    while k < args.kills {
        let jitter = Duration::from_millis(rng.below(args.interval.as_millis() as u64 / 2 + 1));
        sleep(args.interval + jitter)?;
        let ctrl = cluster
            .await_controller_leader(Duration::from_secs(15), None)
            .context("controller leader")?
            .0;
        let view = any_view(cluster).context("no node answers Metadata")?;
        let leaders: Vec<i32> = view
            .topics
            .get(TOPIC)
            .map(|t| t.partitions.iter().map(|p| p.leader).collect())
            .unwrap_or_default();
        // The last kill hits the controller leader if none did yet (and any may), so
        // every schedule of two or more kills covers both classes.
        let no_controller_yet = out
            .kills
            .iter()
            .all(|k| !(k.controller && k.fault == Fault::Kill));
        let last = k + 1 == args.kills && args.kills >= 2;
        let must_kill_controller = last && no_controller_yet && args.controller_percent > 0;
        // The draw only happens where partitions can, so a seed replays the process
        // variant's schedule unchanged. Forced partitions stop short of the last round,
        // which may have to be the controller kill.
        let partition = partitioning && {
            let drawn = rng.below(100) < args.partition_percent;
            let done = out
                .kills
                .iter()
                .filter(|k| k.fault == Fault::Partition)
                .count();
            let rounds_left = (args.kills - 1).saturating_sub(k);
            let forced = done < min_partitions && min_partitions - done >= rounds_left;
            (drawn || forced) && !must_kill_controller
        };
        let want_controller = rng.below(100) < args.controller_percent || must_kill_controller;
        // A partition-leader kill picks a random partition among those the controller
        // leader does not lead (so both classes get samples), any if it leads all.
        let others: Vec<i32> = leaders
            .iter()
            .copied()
            .filter(|&l| l >= 0 && l != ctrl && cluster.is_live(l))
            .collect();
        let victim = if want_controller {
            ctrl
        } else if !others.is_empty() {
            others[rng.below(others.len() as u64) as usize]
        } else {
            let p = rng.below(args.partitions as u64) as usize;
            match leaders.get(p) {
                Some(&l) if l >= 0 && cluster.is_live(l) => l,
                _ => ctrl,
            }
        };
        let led: Vec<i32> = leaders
            .iter()
            .enumerate()
            .filter(|(_, &l)| l == victim)
            .map(|(p, _)| p as i32)
            .collect();
        let mut kill = Kill {
            at: Duration::ZERO, // set once the fault is in effect
            node: victim,
            controller: victim == ctrl,
            led,
            fault: if partition {
                Fault::Partition
            } else {
                Fault::Kill
            },
        };
        let role = if kill.controller {
            "the controller leader"
        } else {
            "a partition leader"
        };
        let (what, action) = if partition {
            (
                "partition",
                format!("cutting node {victim} off from its peers"),
            )
        } else {
            ("kill", format!("SIGKILL node {victim}"))
        };
        progress(&format!(
            "{what} {}/{}: {action} ({role}; leads partitions {:?})",
            k + 1,
            args.kills,
            kill.led
        ));
        if partition {
            cluster.isolate(victim)?;
        } else {
            cluster.kill9(victim)?;
        }
        // Taken once the fault is in effect (docker takes a while to kill or
        // disconnect): what the node acknowledged before then does not measure it.
        kill.at = shared.start.elapsed();
        out.kills.push(kill);
        if partition {
            reconnect_after(cluster, victim, args.partition_time, out)?;
        } else {
            std::thread::sleep(args.pause);
            let t = Instant::now();
            cluster.restart(victim)?;
            progress(&format!(
                "node {victim} restarted (listening after {:.0} ms)",
                ms(t.elapsed())
            ));
        }
        match await_full_isr(cluster, args.partitions, args.heal_timeout) {
            Ok(took) => progress(&format!("full ISR again after {:.0} ms", ms(took))),
            Err(e) => {
                progress(&format!("after {what} {}: {e:#}", k + 1));
                out.notes.push(format!("after {what} {}: {e:#}", k + 1));
            }
        }
        k += 1;
    }
    sleep(duration.saturating_sub(shared.start.elapsed()))
}

/// Leaves node `victim`, just cut off from its peers, so for `time`, then reconnects
/// it. Just before reconnecting, logs what it and the others serve (the evidence if the
/// checker later finds that the isolated node acknowledged what it could not
/// replicate), and notes it if clients could not reach it: the partition is meant to
/// leave its external listener reachable.
fn reconnect_after(
    cluster: &mut dyn Nodes,
    victim: i32,
    time: Duration,
    out: &mut Chaos,
) -> Result<()> {
    std::thread::sleep(time);
    for id in cluster.live() {
        let seen = cluster
            .view(id)
            .map_or_else(|e| format!("no answer ({e})"), |v| leaders_and_isrs(&v));
        let who = if id == victim { " (cut off)" } else { "" };
        progress(&format!("while cut off: node {id}{who} serves {seen}"));
    }
    if let Err(e) = cluster.view(victim) {
        out.notes.push(format!(
            "clients could not reach node {victim} while it was cut off: {e}"
        ));
    }
    let t = Instant::now();
    cluster.reconnect(victim)?;
    progress(&format!(
        "node {victim} reconnected after {:.0} ms cut off (reconnect took {:.0} ms)",
        ms(time),
        ms(t.elapsed())
    ));
    Ok(())
}

fn window_json(w: &Window) -> Value {
    json!({
        "at_ms": ms(w.kill.at),
        "node": w.kill.node,
        "controller_leader": w.kill.controller,
        "led_partitions": w.kill.led,
        "window_ms": w.window.map(ms),
        "per_partition_ms": w.per_partition.iter()
            .map(|(p, d)| (p.to_string(), json!(d.map(ms))))
            .collect::<serde_json::Map<_, _>>(),
    })
}

/// Median/max of the faults of one class, counted under `noun`, and whether the max
/// meets `target` (`null` for a class without one).
fn class_summary(ws: &[&Window], noun: &str, target: Option<Duration>) -> Value {
    let measured: Vec<Duration> = ws.iter().filter_map(|w| w.window).collect();
    let no_partitions = ws.iter().filter(|w| w.kill.led.is_empty()).count();
    let unrecovered = ws
        .iter()
        .filter(|w| !w.kill.led.is_empty() && w.window.is_none())
        .count();
    let mm = median_max(&measured);
    json!({
        noun: ws.len(),
        "measured": measured.len(),
        "led_no_partition": no_partitions,
        "never_acked_again": unrecovered,
        "median_ms": mm.map(|(m, _)| ms(m)),
        "max_ms": mm.map(|(_, x)| ms(x)),
        "target_max_ms": target.map(ms),
        "target_met": target.map(|t| mm.is_some_and(|(_, x)| x <= t) && unrecovered == 0),
    })
}

fn main() {
    let args = match parse() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("chaos: {e:#}");
            std::process::exit(2);
        }
    };
    println!("chaos: seed {}", args.seed);
    if !args.idempotence {
        println!("chaos: WARNING: --no-idempotence: the producer is not idempotent");
    }
    // The binary sits in target/<profile>/ beside `sluice`; the harness looks one
    // directory higher (it is made for test executables in deps/).
    if std::env::var_os("SLUICE_BIN").is_none() {
        if let Some(dir) = std::env::current_exe()
            .ok()
            .and_then(|e| e.parent().map(|d| d.to_path_buf()))
        {
            std::env::set_var("SLUICE_BIN", dir.join("sluice"));
        }
    }
    let code = match run(&args) {
        Ok(code) => code,
        Err(e) => {
            println!("chaos: RUN FAILED: {e:#}");
            println!("chaos: seed {}", args.seed);
            2
        }
    };
    std::process::exit(code);
}

/// The cluster of the run: the compose cluster's containers (`--docker-node`), else
/// freshly started processes; and the flags those processes got.
fn start_cluster(args: &Args) -> Result<(Box<dyn Nodes>, Vec<String>)> {
    if args.docker() {
        let cluster = ComposeCluster::new(args.docker_nodes.clone(), &args.docker_network)?;
        progress(&format!(
            "the compose cluster: {}; partitions disconnect from {}",
            cluster
                .nodes()
                .iter()
                .map(|n| format!("node {} = container {} at {}", n.id, n.container, n.addr))
                .collect::<Vec<_>>()
                .join(", "),
            cluster.network()
        ));
        return Ok((Box::new(cluster), Vec::new()));
    }
    let mut node_args: Vec<String> = [
        "--default-replication-factor",
        "3",
        "--min-insync-replicas",
        "2",
    ]
    .map(String::from)
    .to_vec();
    if sluice_has_flag("--replica-lag-time-max-ms") {
        node_args.extend([
            "--replica-lag-time-max-ms".into(),
            args.replica_lag_ms.to_string(),
        ]);
    } else {
        progress("sluice has no --replica-lag-time-max-ms flag; not passing one");
    }
    node_args.extend(args.sluice_args.iter().cloned());
    progress(&format!("starting {} nodes with {node_args:?}", args.nodes));
    let extra: Vec<&str> = node_args.iter().map(String::as_str).collect();
    let cluster = guarded("starting the cluster", || {
        Cluster::start_with(args.nodes, &extra, |_| Vec::new())
    })?;
    Ok((Box::new(cluster), node_args))
}

fn run(args: &Args) -> Result<i32> {
    let (mut cluster, node_args) = start_cluster(args)?;
    create_topic(&*cluster, args.partitions)?;
    await_full_isr(&*cluster, args.partitions, Duration::from_secs(60)).context("the new topic")?;
    progress(&format!(
        "topic {TOPIC}: {} partitions, replication factor 3, min.insync.replicas 2",
        args.partitions
    ));
    let bootstrap = cluster.bootstrap();
    let addrs: BTreeMap<i32, String> = cluster
        .ids()
        .into_iter()
        .map(|id| (id, cluster.addr(id)))
        .collect();

    let shared = Shared {
        start: Instant::now(),
        stop_producer: AtomicBool::new(false),
        stop_observers: AtomicBool::new(false),
        sent: Arc::new(Mutex::new(Vec::new())),
        reads: Mutex::new(Vec::new()),
        latest: Mutex::new(Vec::new()),
        producer_restarts: AtomicU64::new(0),
        partition_mismatch: AtomicU64::new(0),
        consumer_errors: AtomicU64::new(0),
        consumed_end: Mutex::new(BTreeMap::new()),
        txns: Mutex::new(BTreeMap::new()),
        abort: Mutex::new(None),
    };
    let mut chaos = Chaos::default();
    let (kill_result, heal, final_result) = std::thread::scope(|s| {
        let producer = s.spawn(|| {
            if args.transactions {
                produce_transactions(&shared, &bootstrap, args)
            } else {
                produce(
                    &shared,
                    &bootstrap,
                    args.partitions,
                    args.rate,
                    args.idempotence,
                )
            }
        });
        let consumer = s.spawn(|| consume(&shared, &bootstrap, args.partitions));
        let poller = s.spawn(|| poll_latest(&shared, &addrs, args.partitions, args.latest_poll));
        let stop_all = |shared: &Shared| {
            shared.stop_producer.store(true, Ordering::Relaxed);
            shared.stop_observers.store(true, Ordering::Relaxed);
        };

        // No panic may leave this scope before the threads are told to stop (the
        // scope would wait for them forever): the harness's panics become errors.
        let kill_result = guarded("kill phase", || {
            kill_loop(&mut *cluster, args, &shared, &mut chaos)
        })
        .and_then(|r| r);
        if let Err(e) = &kill_result {
            progress(&format!("kill phase failed: {e:#}"));
        }
        // Heal: every node up and connected, full ISRs.
        let heal = guarded("heal", || -> Result<()> {
            for id in cluster.ids() {
                if !cluster.is_live(id) {
                    cluster.restart(id)?;
                }
            }
            for id in cluster.isolated() {
                cluster.reconnect(id)?;
            }
            let took = await_full_isr(&*cluster, args.partitions, Duration::from_secs(60))?;
            progress(&format!("healed: full ISR after {:.0} ms", ms(took)));
            Ok(())
        })
        .and_then(|r| r);
        // A few more seconds of traffic on the healed cluster, then stop producing.
        std::thread::sleep(Duration::from_secs(2));
        shared.stop_producer.store(true, Ordering::Relaxed);
        let produced = producer.join();
        progress("producer stopped");
        // Final read, then let the run consumer catch up to the same watermarks.
        let final_result = final_read(&bootstrap, args.partitions, Duration::from_secs(60));
        if let Ok((_, high)) = &final_result {
            let deadline = Instant::now() + Duration::from_secs(20);
            while Instant::now() < deadline {
                let end = shared
                    .consumed_end
                    .lock()
                    .map(|e| e.clone())
                    .unwrap_or_default();
                if high
                    .iter()
                    .all(|(p, h)| *h == 0 || end.get(p).is_some_and(|e| e >= h))
                {
                    break;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        stop_all(&shared);
        let _ = consumer.join();
        let _ = poller.join();
        let kill_result = match produced {
            Ok(Ok(())) => kill_result,
            Ok(Err(e)) => kill_result.and(Err(e.context("producer"))),
            Err(_) => kill_result.and(Err(anyhow::anyhow!("producer thread panicked"))),
        };
        (kill_result, heal, final_result)
    });
    // SIGKILLs every process; the compose cluster's containers are the xtask's to stop.
    drop(cluster);

    let sent = shared.sent.lock().map(|s| s.clone()).unwrap_or_default();
    let reads = shared.reads.lock().map(|r| r.clone()).unwrap_or_default();
    let mut latest = shared.latest.lock().map(|l| l.clone()).unwrap_or_default();
    let mut failures: Vec<String> = Vec::new();
    if let Err(e) = &kill_result {
        failures.push(format!("kill phase: {e:#}"));
    }
    if let Err(e) = &heal {
        failures.push(format!("heal: {e:#}"));
    }
    let (final_log, high) = match final_result {
        Ok(x) => x,
        Err(e) => {
            failures.push(format!("final read: {e:#}"));
            (BTreeMap::new(), BTreeMap::new())
        }
    };
    // The final high watermarks count as the last `latest` observations.
    let end = shared.start.elapsed();
    for (&p, &h) in &high {
        latest.push(Latest {
            at: end,
            partition: p,
            node: -1,
            offset: h,
        });
    }
    let txns = shared.txns.lock().map(|t| t.clone()).unwrap_or_default();
    let history = History {
        partitions: args.partitions,
        sent,
        reads,
        final_log,
        latest,
        txns,
    };
    // Without the final log the loss and phantom checks mean nothing: skip them.
    let report = if failures.iter().any(|f| f.starts_with("final read")) {
        None
    } else {
        Some(check(&history))
    };
    let ws = windows(&chaos.kills, &history.sent);
    let of = |fault: Fault, controller: Option<bool>| -> Vec<&Window> {
        ws.iter()
            .filter(|w| w.kill.fault == fault && controller.is_none_or(|c| w.kill.controller == c))
            .collect()
    };
    let leader_kills = of(Fault::Kill, Some(false));
    let ctrl_kills = of(Fault::Kill, Some(true));
    let partitions = of(Fault::Partition, None);
    let leader_summary = class_summary(&leader_kills, "kills", Some(TARGET_LEADER_KILL));
    let ctrl_summary = class_summary(&ctrl_kills, "kills", Some(TARGET_CONTROLLER_KILL));
    // The issue sets no target for partitions: the window is reported only.
    let partition_summary = class_summary(&partitions, "partitions", None);

    // Report.
    if let Some(r) = &report {
        for v in r.violations.iter().take(200) {
            println!("chaos: {v}");
        }
        if r.violations.len() > 200 {
            println!(
                "chaos: ... and {} more violations",
                r.violations.len() - 200
            );
        }
    }
    for w in &ws {
        println!(
            "chaos: {} at {:.1} s of node {} ({}), led {:?}: unavailable {}",
            match w.kill.fault {
                Fault::Kill => "kill",
                Fault::Partition => "network partition",
            },
            w.kill.at.as_secs_f64(),
            w.kill.node,
            if w.kill.controller {
                "controller leader"
            } else {
                "partition leader"
            },
            w.kill.led,
            match w.window {
                Some(d) => format!("{:.0} ms", ms(d)),
                None if w.kill.led.is_empty() => "n/a (led no partition)".into(),
                None => "until the end (no later ack)".into(),
            }
        );
    }
    let fmt_class = |name: &str, noun: &str, v: &Value| {
        format!(
            "chaos: {name}: {} {noun}, median {} ms, max {} ms ({})",
            v[noun],
            v["median_ms"],
            v["max_ms"],
            match v["target_met"].as_bool() {
                None => "no target".to_string(),
                Some(met) => format!(
                    "target max {} ms: {}",
                    v["target_max_ms"],
                    if met {
                        "met"
                    } else if v[noun].as_u64() == Some(0) {
                        "no sample"
                    } else {
                        "MISSED"
                    }
                ),
            }
        )
    };
    println!(
        "{}",
        fmt_class("partition-leader kills", "kills", &leader_summary)
    );
    println!(
        "{}",
        fmt_class("controller-leader kills", "kills", &ctrl_summary)
    );
    if args.docker() {
        println!(
            "{}",
            fmt_class("network partitions", "partitions", &partition_summary)
        );
    }
    if let Some(r) = &report {
        println!(
            "chaos: sent {}, acked {}, failed {}, pending {}, unacked present {}, final records {}, consumer reads {}, latest observations {}",
            r.sent, r.acked, r.failed, r.pending, r.unacked_present, r.final_records, r.consumer_reads, r.latest_observations
        );
        println!(
            "chaos: lost {}, duplicated {}, ack-offset mismatches {}, out-of-order {}, phantom {}, divergent reads {}, latest decreases {}",
            r.count("lost"),
            r.count("duplicated"),
            r.count("ack_offset_mismatch"),
            r.count("out_of_order"),
            r.count("phantom"),
            r.count("divergent"),
            r.count("latest_decreased")
        );
    }
    if let Some(r) = report.as_ref().filter(|_| args.transactions) {
        println!(
            "chaos: transactions committed {}, aborted {}, outcome unknown {}; aborted records read {}, partial transactions {}",
            r.txns_committed,
            r.txns_aborted,
            r.txns_unknown,
            r.count("aborted_visible"),
            r.count("partial_transaction")
        );
    }
    println!(
        "chaos: producer restarts (fatal errors) {}, delivery partition mismatches {}, consumer errors {}",
        shared.producer_restarts.load(Ordering::Relaxed),
        shared.partition_mismatch.load(Ordering::Relaxed),
        shared.consumer_errors.load(Ordering::Relaxed)
    );
    for n in &chaos.notes {
        println!("chaos: note: {n}");
    }
    for f in &failures {
        println!("chaos: RUN FAILURE: {f}");
    }
    let violations = report.as_ref().map_or(0, |r| r.violations.len());
    let code = if violations > 0 {
        1
    } else if !failures.is_empty() {
        2
    } else {
        0
    };
    println!(
        "chaos: {} (seed {})",
        match code {
            0 => "PASS: no violations".to_string(),
            1 => format!("FAIL: {violations} violations"),
            _ => "INCOMPLETE: the run could not finish".to_string(),
        },
        args.seed
    );

    if let Some(path) = &args.json {
        let mut doc = json!({
            "seed": args.seed,
            "nodes": args.nodes,
            "kills_requested": args.kills,
            "partitions": args.partitions,
            "rate": args.rate,
            "interval_ms": args.interval.as_millis() as u64,
            "pause_ms": args.pause.as_millis() as u64,
            "duration_secs": args.duration.map(|d| d.as_secs()),
            "controller_percent": args.controller_percent,
            "idempotence": args.idempotence,
            "transactions": args.transactions.then(|| json!({
                "txn_size": args.txn_size,
                "abort_percent": args.abort_percent,
            })),
            "node_args": node_args,
            "run_seconds": (end.as_secs_f64() * 10.0).round() / 10.0,
            "counts": report.as_ref().map(|r| json!({
                "sent": r.sent, "acked": r.acked, "failed": r.failed, "pending": r.pending,
                "unacked_present": r.unacked_present, "final_records": r.final_records,
                "consumer_reads": r.consumer_reads, "latest_observations": r.latest_observations,
                "lost": r.count("lost"), "duplicated": r.count("duplicated"),
                "ack_offset_mismatch": r.count("ack_offset_mismatch"),
                "out_of_order": r.count("out_of_order"), "phantom": r.count("phantom"),
                "divergent": r.count("divergent"), "latest_decreased": r.count("latest_decreased"),
                "txns_committed": r.txns_committed, "txns_aborted": r.txns_aborted,
                "txns_unknown": r.txns_unknown, "aborted_visible": r.count("aborted_visible"),
                "partial_transaction": r.count("partial_transaction"),
            })),
            "violations": report.as_ref().map(|r| r.violations.iter().take(1000).map(|v| v.to_string()).collect::<Vec<_>>()),
            "high_watermarks": high.iter().map(|(p, h)| (p.to_string(), json!(h))).collect::<serde_json::Map<_, _>>(),
            "kills": ws.iter().filter(|w| w.kill.fault == Fault::Kill).map(window_json).collect::<Vec<_>>(),
            "unavailability": {
                "partition_leader_kills": leader_summary,
                "controller_leader_kills": ctrl_summary,
            },
            "producer_restarts": shared.producer_restarts.load(Ordering::Relaxed),
            "consumer_errors": shared.consumer_errors.load(Ordering::Relaxed),
            "notes": chaos.notes,
            "failures": failures,
            "exit_code": code,
        });
        // Only the docker variant has these, so the process variant's figures keep
        // their shape.
        if let (true, Some(doc)) = (args.docker(), doc.as_object_mut()) {
            doc.insert(
                "cluster".into(),
                json!({
                    "kind": "docker-compose",
                    "network": args.docker_network,
                    "nodes": args.docker_nodes.iter().map(|n| json!({
                        "id": n.id, "container": n.container, "addr": n.addr,
                    })).collect::<Vec<_>>(),
                }),
            );
            doc.insert("partition_percent".into(), json!(args.partition_percent));
            doc.insert(
                "partition_ms".into(),
                json!(args.partition_time.as_millis() as u64),
            );
            doc.insert(
                "network_partitions".into(),
                json!(partitions
                    .iter()
                    .map(|w| window_json(w))
                    .collect::<Vec<_>>()),
            );
            doc["unavailability"]["network_partitions"] = partition_summary;
        }
        if let Some(dir) = path.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        std::fs::write(path, serde_json::to_string_pretty(&doc)?)
            .with_context(|| format!("writing {}", path.display()))?;
        println!("chaos: figures in {}", path.display());
    }
    Ok(code)
}
