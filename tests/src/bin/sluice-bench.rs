//! `sluice-bench`: the load driver behind `cargo xtask bench`.
//!
//! It talks to an already running server (the `sluice` broker or the `null-sink`)
//! through librdkafka (the `rdkafka` crate) and runs the requested phases:
//!
//! - `produce-acks1` / `produce-acksall`: N messages of S bytes to a fresh
//!   one-partition topic as fast as one producer goes (linger.ms=5), timed from the
//!   first send to the last delivery report, with the per-message produce latency
//!   (enqueue -> delivery report);
//! - `consume`: everything the acks=1 phase wrote, read back from the beginning with
//!   an assigned (group-less) consumer;
//! - `latency`: a steady rate (default 2,000 msgs/s for 10 s after 1 s of warm-up,
//!   linger.ms=0, acks=1 or `--latency-acks`) with a consumer tailing the same topic: produce latency
//!   and end-to-end latency (send -> consumer poll), taken from a send time carried
//!   in the payload (one process, one monotonic clock).
//!
//! Around every phase it reads the server's CPU time from `/proc/<pid>/stat`
//! (utime + stime; summed over every `--pid` when the server is a cluster of nodes) and
//! reports CPU seconds per GB of payload moved (1 GB = 1e9 bytes
//! of message values; keys are empty, record overhead not counted).
//!
//! The result is one JSON document written to `--json`; `cargo xtask bench` merges it
//! with the machine's limits and prints the table. Progress goes to stderr.

#![allow(clippy::print_stdout, clippy::print_stderr)] // A CLI tool: reports on stdio.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::{ClientContext, DefaultClientContext};
use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::message::{DeliveryResult, Message};
use rdkafka::producer::{BaseRecord, Producer, ProducerContext, ThreadedProducer};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{Offset, TopicPartitionList};
use serde_json::{json, Value};

const USAGE: &str = "\
usage: sluice-bench --bootstrap HOST:PORT --json FILE [options]
  --pid PID[,PID...]    server process(es) whose CPU time is measured (/proc/PID/stat),
                        summed over all of them (the nodes of a cluster)
  --messages N          messages per throughput phase (default 1000000)
  --size S              message value size in bytes (default 1024)
  --phases LIST         comma-separated: produce-acks1,produce-acksall,consume,
                        consume-1mib,latency (default: all but consume-1mib)
  --no-create           do not create topics through the admin API (null sink)
  --replication-factor R  replication factor of the topics created (default 1)
  --consumer-set K=V    override one consume-phase consumer setting (repeatable)
  --consume-topic T     consume phase reads topic T (default: this run's acks=1 topic),
                        e.g. to profile repeated reads of one topic
  --repeat K            run each throughput phase K times, report the median (default 1)
  --latency-rate R      messages per second in the latency phase (default 2000)
  --latency-secs T      measured seconds in the latency phase (default 10)
  --latency-acks A      acks of the latency phase's producer: 1 or all (default 1)";

/// Producer settings shared by both throughput phases (and by the null-sink ceiling,
/// which runs the same `produce-acks1` phase). `acks` is added per phase.
const PRODUCER_SETTINGS: &[(&str, &str)] = &[
    ("linger.ms", "5"),
    ("batch.size", "1000000"),
    ("batch.num.messages", "10000"),
    // The queue only has to cover the batches in flight; a bigger one adds nothing
    // to throughput and only lengthens the time a message waits in it.
    ("queue.buffering.max.messages", "1000000"),
    ("queue.buffering.max.kbytes", "65536"),
    ("compression.type", "none"),
    ("enable.idempotence", "false"),
    ("message.timeout.ms", "120000"),
];

/// Consumer settings of the consume phase: fetches as large as the broker allows.
const CONSUMER_SETTINGS: &[(&str, &str)] = &[
    // librdkafka's assign() wants a group id even though no group is joined and
    // nothing is committed.
    ("group.id", "sluice-bench-unused"),
    ("enable.auto.commit", "false"),
    ("enable.partition.eof", "false"),
    ("fetch.max.bytes", "52428800"),
    ("max.partition.fetch.bytes", "52428800"),
    ("queued.max.messages.kbytes", "262144"),
    ("fetch.wait.max.ms", "100"),
];

/// Latency phase: no batching delay; the consumer keeps librdkafka's default
/// fetch.wait.max.ms (500), so a broker that does not wake parked fetches on append
/// shows up as end-to-end latency in the hundreds of milliseconds.
/// `acks` is added from `--latency-acks`.
const LATENCY_PRODUCER_SETTINGS: &[(&str, &str)] = &[
    ("linger.ms", "0"),
    ("compression.type", "none"),
    ("enable.idempotence", "false"),
    ("message.timeout.ms", "30000"),
];
const LATENCY_CONSUMER_SETTINGS: &[(&str, &str)] = &[
    ("group.id", "sluice-bench-unused"),
    ("enable.auto.commit", "false"),
    ("enable.partition.eof", "false"),
    ("fetch.wait.max.ms", "500"),
    ("fetch.min.bytes", "1"),
];

struct Args {
    bootstrap: String,
    pids: Vec<u32>,
    messages: u64,
    size: usize,
    phases: Vec<String>,
    create: bool,
    replication_factor: i32,
    latency_acks: String,
    latency_rate: u64,
    latency_secs: u64,
    json: PathBuf,
    consume_topic: Option<String>,
    consumer_overrides: Vec<(String, String)>,
    repeat: u32,
}

fn parse_args() -> Result<Args> {
    let mut a = Args {
        bootstrap: String::new(),
        pids: Vec::new(),
        messages: 1_000_000,
        size: 1024,
        phases: vec![
            "produce-acks1".into(),
            "produce-acksall".into(),
            "consume".into(),
            "latency".into(),
        ],
        create: true,
        replication_factor: 1,
        latency_acks: "1".into(),
        latency_rate: 2000,
        latency_secs: 10,
        json: PathBuf::new(),
        consume_topic: None,
        consumer_overrides: Vec::new(),
        repeat: 1,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || {
            it.next()
                .with_context(|| format!("{flag} needs a value\n{USAGE}"))
        };
        match flag.as_str() {
            "--bootstrap" => a.bootstrap = value()?,
            "--pid" => {
                for p in value()?.split(',') {
                    a.pids.push(p.parse().context("--pid")?);
                }
            }
            "--messages" => a.messages = value()?.parse().context("--messages")?,
            "--size" => a.size = value()?.parse().context("--size")?,
            "--phases" => a.phases = value()?.split(',').map(str::to_string).collect(),
            "--no-create" => a.create = false,
            "--replication-factor" => {
                a.replication_factor = value()?.parse().context("--replication-factor")?;
            }
            "--latency-acks" => a.latency_acks = value()?,
            "--latency-rate" => a.latency_rate = value()?.parse().context("--latency-rate")?,
            "--latency-secs" => a.latency_secs = value()?.parse().context("--latency-secs")?,
            "--json" => a.json = PathBuf::from(value()?),
            "--consume-topic" => a.consume_topic = Some(value()?),
            "--repeat" => a.repeat = value()?.parse().context("--repeat")?,
            "--consumer-set" => {
                let kv = value()?;
                let (k, v) = kv
                    .split_once('=')
                    .context("--consumer-set wants KEY=VALUE")?;
                a.consumer_overrides.push((k.to_string(), v.to_string()));
            }
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other => bail!("unknown argument {other}\n{USAGE}"),
        }
    }
    if a.bootstrap.is_empty() || a.json.as_os_str().is_empty() {
        bail!("--bootstrap and --json are required\n{USAGE}");
    }
    if a.size < 9 {
        bail!("--size must be at least 9 (the latency phase carries a timestamp and a flag)");
    }
    if a.latency_acks != "1" && a.latency_acks != "all" {
        bail!("--latency-acks must be 1 or all");
    }
    if a.messages == 0 || a.latency_rate == 0 || a.repeat == 0 || a.replication_factor < 1 {
        bail!("--messages, --latency-rate, --repeat and --replication-factor must be positive");
    }
    Ok(a)
}

fn main() -> Result<()> {
    let args = parse_args()?;
    let clk_tck = clock_ticks();
    let run_id = std::process::id();
    let mut phases = Vec::new();
    // Every repetition of a produce phase writes its own fresh topic; the consume
    // phases read the first acks=1 topic.
    let acks1_topic = |i: u32| format!("bench-acks1-{run_id}-{i}");
    let consume_topic = args.consume_topic.clone().unwrap_or_else(|| acks1_topic(0));
    for phase in &args.phases {
        // One throughput phase takes about two seconds on this kind of machine, so
        // a single run is at the mercy of whatever else the two cores do; the
        // median of a few is the figure reported. The steady-rate phase runs once:
        // its percentiles already come from 20,000 samples.
        let repeat = if phase == "latency" { 1 } else { args.repeat };
        let mut runs = Vec::new();
        for i in 0..repeat {
            eprintln!("sluice-bench: phase {phase} (run {} of {repeat})", i + 1);
            let result = match phase.as_str() {
                "produce-acks1" => produce_phase(&args, clk_tck, &acks1_topic(i), "1")?,
                "produce-acksall" => produce_phase(
                    &args,
                    clk_tck,
                    &format!("bench-acksall-{run_id}-{i}"),
                    "all",
                )?,
                "consume" => consume_phase(&args, clk_tck, &consume_topic, None)?,
                // The same read with librdkafka's default partition fetch size, so a
                // broker that is slow only on large fetch responses shows as a gap
                // between the two rows.
                "consume-1mib" => consume_phase(
                    &args,
                    clk_tck,
                    &consume_topic,
                    Some(("max.partition.fetch.bytes", "1048576")),
                )?,
                "latency" => latency_phase(&args, clk_tck, &format!("bench-latency-{run_id}"))?,
                other => bail!("unknown phase {other}"),
            };
            eprintln!("sluice-bench: {result}");
            runs.push(result);
        }
        phases.push(median_run(runs));
    }
    let doc = json!({
        "bootstrap": args.bootstrap,
        "messages": args.messages,
        "size": args.size,
        "clk_tck": clk_tck,
        "gb": "1e9 bytes of message payload (values only; keys empty)",
        "librdkafka_version": rdkafka::util::get_rdkafka_version().1,
        "producer_settings": settings_json(PRODUCER_SETTINGS),
        "consumer_settings": Value::Object(
            consumer_settings(&args).into_iter().map(|(k, v)| (k, Value::from(v))).collect()
        ),
        "replication_factor": args.replication_factor,
        "server_pids": args.pids,
        "latency_producer_settings": settings_json(&latency_producer_settings(&args)),
        "latency_consumer_settings": settings_json(LATENCY_CONSUMER_SETTINGS),
        "phases": phases,
    });
    let text = serde_json::to_string_pretty(&doc)?;
    std::fs::write(&args.json, text).with_context(|| format!("writing {}", args.json.display()))?;
    Ok(())
}

/// The latency phase's producer settings with its `acks`.
fn latency_producer_settings(args: &Args) -> Vec<(&'static str, &str)> {
    let mut settings = LATENCY_PRODUCER_SETTINGS.to_vec();
    settings.push(("acks", args.latency_acks.as_str()));
    settings
}

/// The consume phase's settings with the `--consumer-set` overrides applied.
fn consumer_settings(args: &Args) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = CONSUMER_SETTINGS
        .iter()
        .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
        .collect();
    for (k, v) in &args.consumer_overrides {
        out.retain(|(key, _)| key != k);
        out.push((k.clone(), v.clone()));
    }
    out
}

/// The run with the median MB/s (the lower middle one for an even count), carrying
/// every run's MB/s and server CPU per GB so the spread stays visible.
fn median_run(mut runs: Vec<Value>) -> Value {
    if runs.len() == 1 {
        return runs.pop().unwrap_or(Value::Null);
    }
    let mb = |v: &Value| v["mb_per_s"].as_f64().unwrap_or(0.0);
    let all_mb: Vec<Value> = runs.iter().map(|r| r["mb_per_s"].clone()).collect();
    let all_cpu: Vec<Value> = runs
        .iter()
        .map(|r| r["server_cpu_s_per_gb"].clone())
        .collect();
    let all_other: Vec<Value> = runs.iter().map(|r| r["other_cpu_s"].clone()).collect();
    let all_steal: Vec<Value> = runs.iter().map(|r| r["steal_cpu_s"].clone()).collect();
    runs.sort_by(|a, b| mb(a).total_cmp(&mb(b)));
    let n = runs.len();
    let mut median = runs.swap_remove((n - 1) / 2);
    median["runs"] = json!(n);
    median["runs_mb_per_s"] = Value::Array(all_mb);
    median["runs_server_cpu_s_per_gb"] = Value::Array(all_cpu);
    median["runs_other_cpu_s"] = Value::Array(all_other);
    median["runs_steal_cpu_s"] = Value::Array(all_steal);
    median
}

fn settings_json(settings: &[(&str, &str)]) -> Value {
    Value::Object(
        settings
            .iter()
            .map(|(k, v)| ((*k).to_string(), Value::from(*v)))
            .collect(),
    )
}

fn client_config(bootstrap: &str, settings: &[(&str, &str)]) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", bootstrap)
        .set("socket.timeout.ms", "30000");
    for (k, v) in settings {
        c.set(*k, *v);
    }
    c
}

// ---------------------------------------------------------------------------------
// CPU accounting

/// `getconf CLK_TCK` (the unit of /proc/<pid>/stat times); Linux uses 100 nearly
/// everywhere, which is the fallback.
fn clock_ticks() -> u64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100)
}

/// What /proc/<pid>/stat says of a process (all its threads).
#[derive(Clone, Copy)]
struct Usage {
    /// utime + stime, in seconds.
    cpu_s: f64,
    /// Minor page faults: touching memory freshly mapped from the kernel. A server
    /// that allocates a new buffer per request shows about one per 4 KiB moved.
    minor_faults: u64,
}

fn usage(pid: &str, clk_tck: u64) -> Result<Usage> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("reading /proc/{pid}/stat"))?;
    // The command name (field 2) may contain spaces; the fields after its closing
    // parenthesis start with field 3 (state), so minflt (10), utime (14) and
    // stime (15) sit at indexes 7, 11 and 12.
    let rest = stat
        .rsplit_once(')')
        .map(|(_, r)| r)
        .context("malformed /proc stat")?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let field = |i: usize| -> Result<u64> {
        fields
            .get(i)
            .context("short /proc stat")?
            .parse::<u64>()
            .context("/proc stat field")
    };
    Ok(Usage {
        cpu_s: (field(11)? + field(12)?) as f64 / clk_tck as f64,
        minor_faults: field(7)?,
    })
}

/// The usage of several processes added up (zero for none).
fn usage_sum(pids: &[String], clk_tck: u64) -> Result<Usage> {
    let mut sum = Usage {
        cpu_s: 0.0,
        minor_faults: 0,
    };
    for pid in pids {
        let u = usage(pid, clk_tck)?;
        sum.cpu_s += u.cpu_s;
        sum.minor_faults += u.minor_faults;
    }
    Ok(sum)
}

/// CPU seconds of the whole machine (all cores) from /proc/stat: busy (everything
/// but idle, iowait and steal) and steal (time the hypervisor ran something else
/// while our virtual CPUs wanted to run). Compared with the server's and this
/// process's own time, busy shows how much else ran on this shared machine; steal
/// shows contention outside it, which no process here can see but every figure feels.
fn machine_seconds(clk_tck: u64) -> Result<(f64, f64)> {
    let stat = std::fs::read_to_string("/proc/stat").context("reading /proc/stat")?;
    let line = stat.lines().next().context("empty /proc/stat")?;
    let ticks: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|f| f.parse().ok())
        .collect();
    let at = |i: usize| ticks.get(i).copied().unwrap_or(0);
    // user nice system idle iowait irq softirq steal (guest time is already in user).
    let busy = at(0) + at(1) + at(2) + at(5) + at(6);
    Ok((busy as f64 / clk_tck as f64, at(7) as f64 / clk_tck as f64))
}

/// CPU seconds of the server, of this process and of the machine over one phase.
struct CpuMeter {
    pids: Vec<String>,
    clk_tck: u64,
    server0: Usage,
    /// Each pid's CPU seconds at the start, for the per-node split of a cluster.
    each0: Vec<f64>,
    client0: f64,
    machine0: (f64, f64),
}

impl CpuMeter {
    fn start(args: &Args, clk_tck: u64) -> Result<CpuMeter> {
        let pids: Vec<String> = args.pids.iter().map(u32::to_string).collect();
        let server0 = usage_sum(&pids, clk_tck)?;
        let each0 = pids
            .iter()
            .map(|p| usage(p, clk_tck).map(|u| u.cpu_s))
            .collect::<Result<Vec<_>>>()?;
        Ok(CpuMeter {
            client0: usage("self", clk_tck)?.cpu_s,
            machine0: machine_seconds(clk_tck)?,
            pids,
            clk_tck,
            server0,
            each0,
        })
    }

    /// `{server_cpu_s, server_cpu_s_per_gb, client_cpu_s, ...}` for `bytes` moved in
    /// `seconds`.
    fn finish(&self, bytes: u64, seconds: f64) -> Result<Value> {
        let client = usage("self", self.clk_tck)?.cpu_s - self.client0;
        let (busy, steal) = machine_seconds(self.clk_tck)?;
        let machine = busy - self.machine0.0;
        let steal = steal - self.machine0.1;
        let gb = bytes as f64 / 1e9;
        let mut v = json!({
            "client_cpu_s": round(client, 3),
            "client_cpu_s_per_gb": if gb > 0.0 { Value::from(round(client / gb, 3)) } else { Value::Null },
            "machine_busy_cpu_s": round(machine, 3),
            "steal_cpu_s": round(steal, 3),
            "other_cpu_s": round((machine - client).max(0.0), 3),
        });
        if !self.pids.is_empty() {
            let now = usage_sum(&self.pids, self.clk_tck)?;
            let server = now.cpu_s - self.server0.cpu_s;
            if self.pids.len() > 1 {
                let mut each = Vec::new();
                for (p, start) in self.pids.iter().zip(&self.each0) {
                    each.push(round(usage(p, self.clk_tck)?.cpu_s - start, 3));
                }
                v["server_cpu_s_by_pid"] = json!(each);
            }
            let faults = now.minor_faults.saturating_sub(self.server0.minor_faults);
            v["server_minor_faults"] = json!(faults);
            v["server_minor_faults_per_gb"] = if gb > 0.0 {
                json!(round(faults as f64 / gb, 0))
            } else {
                Value::Null
            };
            // Everything busy that was neither the server nor this driver.
            v["other_cpu_s"] = json!(round((machine - client - server).max(0.0), 3));
            v["server_cpu_s"] = json!(round(server, 3));
            v["server_cpu_s_per_gb"] = if gb > 0.0 {
                json!(round(server / gb, 3))
            } else {
                Value::Null
            };
            v["server_cpu_percent_of_one_core"] =
                json!(round(100.0 * server / seconds.max(1e-9), 1));
        }
        Ok(v)
    }
}

fn round(x: f64, digits: i32) -> f64 {
    let m = 10f64.powi(digits);
    (x * m).round() / m
}

/// Merges the fields of `extra` (an object) into `into` (an object).
fn merge(into: &mut Value, extra: Value) {
    if let (Some(a), Value::Object(b)) = (into.as_object_mut(), extra) {
        a.extend(b);
    }
}

// ---------------------------------------------------------------------------------
// Latency recording

/// Percentiles (nearest rank) of nanosecond samples, in milliseconds.
fn percentiles(samples: &mut [u64]) -> Value {
    if samples.is_empty() {
        return json!({ "count": 0 });
    }
    samples.sort_unstable();
    let at = |q: f64| {
        let rank = ((q * samples.len() as f64).ceil() as usize).clamp(1, samples.len());
        round(samples[rank - 1] as f64 / 1e6, 3)
    };
    let mean = samples.iter().map(|&s| s as f64).sum::<f64>() / samples.len() as f64 / 1e6;
    json!({
        "count": samples.len(),
        "p50_ms": at(0.50),
        "p99_ms": at(0.99),
        "p999_ms": at(0.999),
        "max_ms": at(1.0),
        "mean_ms": round(mean, 3),
    })
}

/// A producer context recording, per delivered message, the time from its enqueue
/// (the opaque: nanoseconds since `base`, shifted left once, low bit = warm-up) to its
/// delivery report. The callback runs on the ThreadedProducer's polling thread,
/// which polls continuously, so the report time is taken as soon as librdkafka
/// hands it over.
struct Recorder {
    base: Instant,
    latencies: Mutex<Vec<u64>>,
    done: AtomicU64,
    failed: AtomicU64,
    last_report_ns: AtomicU64,
    first_error: Mutex<Option<String>>,
}

impl Recorder {
    fn new(base: Instant, capacity: usize) -> Recorder {
        Recorder {
            base,
            latencies: Mutex::new(Vec::with_capacity(capacity)),
            done: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            last_report_ns: AtomicU64::new(0),
            first_error: Mutex::new(None),
        }
    }

    fn now_ns(&self) -> u64 {
        u64::try_from(self.base.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    fn take_latencies(&self) -> Vec<u64> {
        self.latencies
            .lock()
            .map(|mut v| std::mem::take(&mut *v))
            .unwrap_or_default()
    }

    fn first_error(&self) -> Option<String> {
        self.first_error.lock().ok().and_then(|e| e.clone())
    }
}

impl ClientContext for Recorder {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        log_librdkafka(level, fac, message);
    }
    fn error(&self, error: KafkaError, reason: &str) {
        eprintln!("sluice-bench: producer error: {error}: {reason}");
    }
}

impl ProducerContext for Recorder {
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, opaque: usize) {
        let now = self.now_ns();
        let sent = (opaque >> 1) as u64;
        let warm_up = opaque & 1 == 1;
        match result {
            Ok(_) => {
                if !warm_up {
                    if let Ok(mut l) = self.latencies.lock() {
                        l.push(now.saturating_sub(sent));
                    }
                }
            }
            Err((e, _)) => {
                self.failed.fetch_add(1, Ordering::Relaxed);
                if let Ok(mut first) = self.first_error.lock() {
                    first.get_or_insert_with(|| e.to_string());
                }
            }
        }
        self.last_report_ns.fetch_max(now, Ordering::Relaxed);
        self.done.fetch_add(1, Ordering::Release);
    }
}

/// A context that only forwards librdkafka's warnings and errors to stderr.
struct Loud;

impl ClientContext for Loud {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        log_librdkafka(level, fac, message);
    }
    fn error(&self, error: KafkaError, reason: &str) {
        eprintln!("sluice-bench: consumer error: {error}: {reason}");
    }
}

impl ConsumerContext for Loud {}

fn log_librdkafka(level: RDKafkaLogLevel, fac: &str, message: &str) {
    if (level as i32) <= (RDKafkaLogLevel::Warning as i32) {
        eprintln!("sluice-bench: librdkafka {level:?} {fac}: {message}");
    }
}

// ---------------------------------------------------------------------------------
// Phases

fn create_topic(args: &Args, topic: &str) -> Result<()> {
    if !args.create {
        return Ok(());
    }
    let admin: AdminClient<DefaultClientContext> = client_config(&args.bootstrap, &[])
        .create()
        .context("admin client")?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let new = NewTopic::new(topic, 1, TopicReplication::Fixed(args.replication_factor));
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    let results = rt
        .block_on(admin.create_topics([&new], &opts))
        .context("create_topics")?;
    for r in results {
        if let Err((t, e)) = r {
            bail!("creating topic {t}: {e}");
        }
    }
    Ok(())
}

/// Waits until librdkafka knows the topic's leader, so the timed part of a phase
/// does not include the first metadata round trip and connection setup.
fn warm_metadata<C: ClientContext>(client: &rdkafka::client::Client<C>, topic: &str) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let md = client.fetch_metadata(Some(topic), Duration::from_secs(10));
        if let Ok(md) = &md {
            if md.topics().iter().any(|t| {
                t.name() == topic
                    && t.error().is_none()
                    && t.partitions().iter().any(|p| p.leader() >= 0)
            }) {
                return Ok(());
            }
        }
        if Instant::now() > deadline {
            bail!("topic {topic} has no leader after 30 s: {:?}", md.err());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Enqueues one record, waiting while librdkafka's queue is full. The opaque is the
/// enqueue time, taken at the successful attempt so the backoff here is not counted
/// as produce latency.
fn send_blocking(
    producer: &ThreadedProducer<Recorder>,
    recorder: &Recorder,
    topic: &str,
    payload: &[u8],
    warm_up: bool,
) -> Result<()> {
    let mut record: BaseRecord<'_, [u8], [u8], usize> = BaseRecord::with_opaque_to(topic, 0)
        .payload(payload)
        .partition(0);
    loop {
        let now = recorder.now_ns();
        record.delivery_opaque = ((now as usize) << 1) | usize::from(warm_up);
        match producer.send(record) {
            Ok(()) => return Ok(()),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                record = r;
                std::thread::sleep(Duration::from_micros(500));
            }
            Err((e, _)) => bail!("enqueue failed: {e}"),
        }
    }
}

/// Waits until `expected` delivery reports arrived (or `limit` passed).
fn await_reports(recorder: &Recorder, expected: u64, limit: Duration) -> Result<()> {
    let deadline = Instant::now() + limit;
    while recorder.done.load(Ordering::Acquire) < expected {
        if Instant::now() > deadline {
            bail!(
                "only {} of {expected} delivery reports after {limit:?} (first error: {:?})",
                recorder.done.load(Ordering::Acquire),
                recorder.first_error()
            );
        }
        std::thread::sleep(Duration::from_micros(200));
    }
    Ok(())
}

fn produce_phase(args: &Args, clk_tck: u64, topic: &str, acks: &str) -> Result<Value> {
    create_topic(args, topic)?;
    let mut settings = PRODUCER_SETTINGS.to_vec();
    settings.push(("acks", acks));
    let n = usize::try_from(args.messages)?;
    let producer: ThreadedProducer<Recorder> = client_config(&args.bootstrap, &settings)
        .create_with_context(Recorder::new(Instant::now(), n))
        .context("producer")?;
    let recorder = producer.context().clone();
    warm_metadata(producer.client(), topic)?;
    let payload = vec![b'x'; args.size];

    let cpu = CpuMeter::start(args, clk_tck)?;
    let start_ns = recorder.now_ns();
    for _ in 0..args.messages {
        send_blocking(&producer, &recorder, topic, &payload, false)?;
    }
    let enqueued_ns = recorder.now_ns();
    await_reports(&recorder, args.messages, Duration::from_secs(600))?;
    let seconds = (recorder
        .last_report_ns
        .load(Ordering::Relaxed)
        .saturating_sub(start_ns)) as f64
        / 1e9;
    let bytes = args.messages * args.size as u64;
    let mut v = json!({
        "phase": format!("produce acks={acks}"),
        "topic": topic,
        "acks": acks,
        "messages": args.messages,
        "bytes": bytes,
        "seconds": round(seconds, 3),
        "enqueue_seconds": round(enqueued_ns.saturating_sub(start_ns) as f64 / 1e9, 3),
        "mb_per_s": round(bytes as f64 / 1e6 / seconds, 1),
        "msgs_per_s": round(args.messages as f64 / seconds, 0),
        "failed": recorder.failed.load(Ordering::Relaxed),
        "first_error": recorder.first_error(),
        "produce_latency": percentiles(&mut recorder.take_latencies()),
        "note": "produce latency here is dominated by waiting in the client's queue (queue.buffering.max.kbytes), as in any saturating run",
    });
    merge(&mut v, cpu.finish(bytes, seconds)?);
    if recorder.failed.load(Ordering::Relaxed) > 0 {
        bail!(
            "{} deliveries failed (first: {:?})",
            recorder.failed.load(Ordering::Relaxed),
            recorder.first_error()
        );
    }
    Ok(v)
}

fn consume_phase(
    args: &Args,
    clk_tck: u64,
    topic: &str,
    variant: Option<(&str, &str)>,
) -> Result<Value> {
    let mut settings = consumer_settings(args);
    if let Some((k, v)) = variant {
        settings.retain(|(key, _)| key != k);
        settings.push((k.to_string(), v.to_string()));
    }
    let settings: Vec<(&str, &str)> = settings
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let consumer: BaseConsumer<Loud> = client_config(&args.bootstrap, &settings)
        .create_with_context(Loud)
        .context("consumer")?;
    warm_metadata(consumer.client(), topic)?;
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, 0, Offset::Beginning)?;

    let cpu = CpuMeter::start(args, clk_tck)?;
    let start = Instant::now();
    consumer.assign(&tpl)?;
    let mut count = 0u64;
    let mut bytes = 0u64;
    let mut first = None;
    let deadline = start + Duration::from_secs(600);
    while count < args.messages {
        match consumer.poll(Duration::from_millis(100)) {
            None => {
                if Instant::now() > deadline {
                    bail!(
                        "consumed only {count} of {} messages in 600 s",
                        args.messages
                    );
                }
            }
            Some(Err(e)) => bail!("consume error: {e}"),
            Some(Ok(m)) => {
                first.get_or_insert_with(|| start.elapsed());
                let len = m.payload_len();
                if len != args.size {
                    bail!(
                        "message at offset {} has {len} bytes, expected {}",
                        m.offset(),
                        args.size
                    );
                }
                if m.offset() != count as i64 {
                    bail!("expected offset {count}, got {}", m.offset());
                }
                bytes += len as u64;
                count += 1;
            }
        }
    }
    let seconds = start.elapsed().as_secs_f64();
    let partition_fetch_mib = settings
        .iter()
        .find(|(k, _)| *k == "max.partition.fetch.bytes")
        .and_then(|(_, v)| v.parse::<f64>().ok())
        .map_or(1.0, |b| b / 1048576.0);
    let mut v = json!({
        "phase": match variant {
            None => "consume".to_string(),
            Some((k, v)) => format!("consume {k}={v}"),
        },
        "consumer_settings": settings_json(&settings),
        "label": format!("consume, {partition_fetch_mib} MiB fetches"),
        "topic": topic,
        "messages": count,
        "bytes": bytes,
        "seconds": round(seconds, 3),
        "mb_per_s": round(bytes as f64 / 1e6 / seconds, 1),
        "msgs_per_s": round(count as f64 / seconds, 0),
        "first_message_ms": first.map(|d| round(d.as_secs_f64() * 1e3, 1)),
        "note": "timed from assign() to the last message; the data was written moments before, so it is read from the page cache",
    });
    merge(&mut v, cpu.finish(bytes, seconds)?);
    Ok(v)
}

fn latency_phase(args: &Args, clk_tck: u64, topic: &str) -> Result<Value> {
    create_topic(args, topic)?;
    let base = Instant::now();
    let warm_up = args.latency_rate; // one second's worth
    let measured = args.latency_rate * args.latency_secs;
    let total = warm_up + measured;

    // The consumer tails the topic from the beginning on its own thread; the 1 s of
    // warm-up traffic covers its start (metadata, first fetch).
    let consumer: BaseConsumer<Loud> = client_config(&args.bootstrap, LATENCY_CONSUMER_SETTINGS)
        .create_with_context(Loud)
        .context("consumer")?;
    warm_metadata(consumer.client(), topic)?;
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, 0, Offset::Beginning)?;
    consumer.assign(&tpl)?;
    let producer_done = Arc::new(AtomicBool::new(false));
    let consumer_thread = {
        let producer_done = producer_done.clone();
        std::thread::spawn(move || -> Result<(Vec<u64>, u64)> {
            let mut e2e = Vec::with_capacity(usize::try_from(measured).unwrap_or(0));
            let mut seen = 0u64;
            let mut done_at: Option<Instant> = None;
            while seen < total {
                if producer_done.load(Ordering::Acquire) {
                    // Give stragglers 10 s after the last send, then report what came.
                    let t = *done_at.get_or_insert_with(Instant::now);
                    if t.elapsed() > Duration::from_secs(10) {
                        break;
                    }
                }
                match consumer.poll(Duration::from_millis(50)) {
                    None => {}
                    Some(Err(e)) => bail!("consume error: {e}"),
                    Some(Ok(m)) => {
                        let now = u64::try_from(base.elapsed().as_nanos()).unwrap_or(u64::MAX);
                        let p = m.payload().unwrap_or_default();
                        if p.len() >= 9 {
                            let mut ts = [0u8; 8];
                            ts.copy_from_slice(&p[..8]);
                            if p[8] == 0 {
                                e2e.push(now.saturating_sub(u64::from_le_bytes(ts)));
                            }
                        }
                        seen += 1;
                    }
                }
            }
            Ok((e2e, seen))
        })
    };

    let producer: ThreadedProducer<Recorder> =
        client_config(&args.bootstrap, &latency_producer_settings(args))
            .create_with_context(Recorder::new(base, usize::try_from(measured)?))
            .context("producer")?;
    let recorder = producer.context().clone();
    warm_metadata(producer.client(), topic)?;
    let mut payload = vec![0u8; args.size];
    let interval = Duration::from_secs(1).as_nanos() as f64 / args.latency_rate as f64;

    let mut cpu = None;
    let mut measured_start = base;
    let start = Instant::now();
    for i in 0..total {
        let is_warm_up = i < warm_up;
        if i == warm_up {
            cpu = Some(CpuMeter::start(args, clk_tck)?);
            measured_start = Instant::now();
        }
        // Pace against the schedule, not the previous send, so a late send does
        // not shift every later one.
        let due = start + Duration::from_nanos((i as f64 * interval) as u64);
        let now = Instant::now();
        if due > now {
            std::thread::sleep(due - now);
        }
        let sent = recorder.now_ns();
        payload[..8].copy_from_slice(&sent.to_le_bytes());
        payload[8] = u8::from(is_warm_up);
        send_blocking(&producer, &recorder, topic, &payload, is_warm_up)?;
    }
    let send_seconds = measured_start.elapsed().as_secs_f64();
    await_reports(&recorder, total, Duration::from_secs(60))?;
    producer_done.store(true, Ordering::Release);
    let (mut e2e, seen) = consumer_thread
        .join()
        .map_err(|_| anyhow::anyhow!("consumer thread panicked"))??;
    let bytes = measured * args.size as u64;
    let mut v = json!({
        "phase": "latency",
        "acks": args.latency_acks,
        "topic": topic,
        "rate_target_msgs_per_s": args.latency_rate,
        "rate_achieved_msgs_per_s": round(measured as f64 / send_seconds, 1),
        "seconds": round(send_seconds, 3),
        "messages": measured,
        "warm_up_messages": warm_up,
        "consumed": seen,
        "failed": recorder.failed.load(Ordering::Relaxed),
        "produce_latency": percentiles(&mut recorder.take_latencies()),
        "e2e_latency": percentiles(&mut e2e),
    });
    if let Some(cpu) = cpu {
        merge(&mut v, cpu.finish(bytes, send_seconds)?);
    }
    if seen < total {
        eprintln!("sluice-bench: latency phase: consumer saw only {seen} of {total} messages");
    }
    Ok(v)
}
