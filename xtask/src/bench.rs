//! `cargo xtask bench`: produce/consume throughput, latency and broker CPU per GB with
//! a real client (librdkafka), against this machine's own limits.
//!
//! xtask stays light (no rdkafka): it builds the load driver (`sluice-bench`) and the
//! null sink from the system-tests crate, starts the servers, runs the driver against
//! them and turns its JSON into the table, `bench.json` and `bench.svg` under
//! `target/bench/` (or `--out`).
//!
//! Order of a full run: machine limits (dd with fdatasync, loopback TCP), the null-sink
//! ceiling (the same acks=1 producer against a server that discards everything), then
//! a fresh `sluice` on a data dir on this disk: produce acks=1, produce acks=all,
//! consume, and the steady-rate latency phase. `--null-sink` stops after the ceiling.
//! `--cluster N` (N = 3 for issue 5's figure) then starts N `sluice` nodes on 127.0.0.1
//! (one metadata quorum, `--default-replication-factor 3 --min-insync-replicas 2`),
//! and runs the same phases, acks=all first, with replication-factor-3 topics and the
//! steady phase at acks=all, so replicated and single-node figures come from one
//! invocation on one machine; its results go to `bench-cluster.{json,svg,txt}`. The
//! single node's data is kept until the cluster is done (see `RemovedOnDrop`'s use).
//!
//! The machine has two cores shared with whatever else runs, so every phase also
//! records the machine's busy CPU time that was neither broker nor driver
//! (`other_cpu_s`), and the load average before and after.

use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};

use crate::util::{cargo, output, run as run_cmd};

const USAGE: &str = "\
usage: cargo xtask bench [--null-sink] [--cluster N] [--quick] [--messages N] [--size S] [--repeat K] [--out DIR]
       cargo xtask bench groups [--quick] [--out DIR]   (consumer-group figures, see bench_groups.rs)
       cargo xtask bench controller [--quick] [--runs N] [--out DIR]   (metadata quorum figures, see bench_controller.rs)
  --messages N   messages per throughput phase (default 1000000; 100000 with --quick)
  --size S       message value size in bytes (default 1024)
  --repeat K     runs of each throughput phase, the median reported (default 3)
  --null-sink    measure only the producer ceiling against the null sink
  --cluster N    after the single-node run, the same phases on N nodes (2-3) with
                 replication factor min(N, 3), min.insync.replicas 2 and the steady
                 phase at acks=all; output bench-cluster.{json,svg,txt}
  --quick        smoke run: 100,000 messages, one run each, 3 s latency phase, 512 MiB dd
  --out DIR      output directory (default target/bench)";

/// Targets from the benchmark issue, checked and printed after a full run.
/// Issue 5: acks=all on 3 nodes with RF 3 against single-node acks=1, same machine.
const TARGET_REPLICATED_FRACTION: f64 = 0.5;
const TARGET_CEILING_FRACTION: f64 = 0.95;
const TARGET_CONSUME_MB_S: f64 = 800.0;
const TARGET_PRODUCE_CPU_S_PER_GB: f64 = 1.0;
const TARGET_CONSUME_CPU_S_PER_GB: f64 = 0.5;
const TARGET_PRODUCE_P99_MS: f64 = 2.0;
const TARGET_E2E_P99_MS: f64 = 5.0;

struct Opts {
    messages: u64,
    size: usize,
    null_sink_only: bool,
    cluster: Option<u32>,
    quick: bool,
    repeat: u32,
    out: PathBuf,
}

fn parse(root: &Path, args: &[String]) -> Result<Opts> {
    let mut messages = None;
    let mut size = 1024;
    let mut null_sink_only = false;
    let mut cluster = None;
    let mut quick = false;
    let mut repeat = None;
    let mut out = root.join("target/bench");
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = || {
            it.next()
                .with_context(|| format!("{a} needs a value\n{USAGE}"))
        };
        match a.as_str() {
            "--messages" => messages = Some(value()?.parse().context("--messages")?),
            "--size" => size = value()?.parse().context("--size")?,
            "--null-sink" => null_sink_only = true,
            "--cluster" => {
                let n: u32 = value()?.parse().context("--cluster")?;
                // The quorum and RF 3 need at least 2 nodes; three voters is the most
                // a cluster of this bench (and `cargo xtask cluster`) has.
                if !(2..=3).contains(&n) {
                    bail!("--cluster takes 2 or 3 nodes");
                }
                cluster = Some(n);
            }
            "--quick" => quick = true,
            "--repeat" => repeat = Some(value()?.parse().context("--repeat")?),
            // Relative to where the command was started, made absolute because the
            // servers and the driver get paths below it.
            "--out" => out = std::env::current_dir()?.join(value()?),
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other => bail!("unknown argument {other}\n{USAGE}"),
        }
    }
    Ok(Opts {
        messages: messages.unwrap_or(if quick { 100_000 } else { 1_000_000 }),
        repeat: repeat.unwrap_or(if quick { 1 } else { 3 }).max(1),
        size,
        null_sink_only,
        cluster,
        quick,
        out,
    })
}

/// The flags of a single bench node with its data in `data_dir`: free ports for the
/// Kafka listener (the broker logs the one it got) and for the HTTP endpoint.
pub fn node_args(data_dir: &str) -> [&str; 6] {
    [
        "--data-dir",
        data_dir,
        "--listen",
        "127.0.0.1:0",
        "--http-listen",
        "127.0.0.1:0",
    ]
}

pub fn run(root: &Path, args: &[String]) -> Result<()> {
    if args.first().is_some_and(|a| a == "groups") {
        return crate::bench_groups::run(root, &args[1..]);
    }
    if args.first().is_some_and(|a| a == "controller") {
        return crate::bench_controller::run(root, &args[1..]);
    }
    if args.first().is_some_and(|a| a == "transactions") {
        return crate::bench_txn::run(root, &args[1..]);
    }
    let opts = parse(root, args)?;
    if opts.null_sink_only && opts.cluster.is_some() {
        bail!("--null-sink and --cluster exclude each other");
    }
    let started = Instant::now();
    // One cargo at a time on this machine: the two builds run one after the other.
    run_cmd(cargo(root).args(["build", "--release", "-p", "sluice-system-tests", "--bins"]))?;
    if !opts.null_sink_only {
        run_cmd(cargo(root).args(["build", "--release", "-p", "sluice-broker"]))?;
    }
    // Taken right after the build, which is what the binaries were built from.
    let code = code_state(root);
    std::fs::create_dir_all(&opts.out)
        .with_context(|| format!("creating {}", opts.out.display()))?;
    let bin = root.join("target/release");

    let load_before = loadavg();
    let machine = machine_info();
    eprintln!("xtask bench: filling the page cache (kept until the run ends)");
    let fill = fill_page_cache(&opts.out)?;
    eprintln!("xtask bench: measuring disk write speed (dd, fdatasync)");
    let disk = dd_write(&opts.out, if opts.quick { 512 } else { 2048 })?;
    eprintln!("xtask bench: measuring loopback TCP throughput");
    let loopback = loopback_tcp(Duration::from_secs(if opts.quick { 1 } else { 3 }))?;

    eprintln!("xtask bench: null-sink ceiling");
    let ceiling = {
        let server = Server::start(
            &bin.join("null-sink"),
            &[],
            "null-sink listening",
            &opts.out.join("null-sink.log"),
            None,
        )?;
        let r = driver(
            &bin,
            &opts,
            &server.addr,
            &[server.pid],
            "produce-acks1",
            &["--no-create"],
        )?;
        server.stop()?;
        r
    };
    let ceiling_phase = ceiling["phases"].get(0).cloned().unwrap_or(Value::Null);

    let mut broker = Value::Null;
    // Kept until the cluster phases are done: deleting it would free its page-cache
    // pages, which this VM hands back to the host, and the cluster would then pay the
    // fresh-memory cost the fill is there to take out.
    let mut single_node_data = None;
    if !opts.null_sink_only {
        eprintln!("xtask bench: sluice broker");
        // A fresh data dir on this disk (target/ lives on /work), not on tmpfs, so
        // the broker persists to the same device dd measured.
        let data_dir = opts.out.join(format!("data-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&data_dir);
        std::fs::create_dir_all(&data_dir)?;
        let data_arg = data_dir.to_string_lossy().into_owned();
        let result = (|| -> Result<Value> {
            let server = Server::start(
                &bin.join("sluice"),
                &node_args(&data_arg),
                "sluice listening",
                &opts.out.join("broker.log"),
                Some(("SLUICE_LOG_LEVEL", "info")),
            )?;
            let r = driver(
                &bin,
                &opts,
                &server.addr,
                &[server.pid],
                "produce-acks1,produce-acksall,consume,consume-1mib,latency",
                &[],
            )?;
            server.stop()?;
            Ok(r)
        })();
        single_node_data = Some(RemovedOnDrop(data_dir));
        broker = result?;
    }
    let mut cluster = Value::Null;
    if let Some(nodes) = opts.cluster {
        eprintln!("xtask bench: {nodes}-node sluice cluster");
        cluster = cluster_run(&bin, &opts, nodes)?;
    }
    let load_after = loadavg();

    let driver_meta = if broker.is_null() { &ceiling } else { &broker };
    let doc = json!({
        "date": output(Command::new("date").args(["-u", "+%Y-%m-%dT%H:%M:%SZ"])).map(|s| s.trim().to_string()).unwrap_or_default(),
        "mode": match (opts.null_sink_only, opts.cluster) {
            (true, _) => "null-sink".to_string(),
            (false, None) => "full".to_string(),
            (false, Some(n)) => format!("full + {n}-node cluster"),
        },
        "messages": opts.messages,
        "repeat": opts.repeat,
        "size": opts.size,
        "gb": "1e9 bytes of message payload (values only)",
        "librdkafka_version": driver_meta["librdkafka_version"],
        "machine": machine,
        "code": code,
        "load_average_before": load_before,
        "load_average_after": load_after,
        "limits": { "disk_write": disk, "loopback_tcp": loopback, "page_cache_fill": fill.report.clone() },
        "null_sink": ceiling_phase,
        "broker_phases": broker["phases"],
        "producer_settings": driver_meta["producer_settings"],
        "consumer_settings": driver_meta["consumer_settings"],
        "latency_producer_settings": driver_meta["latency_producer_settings"],
        "latency_consumer_settings": driver_meta["latency_consumer_settings"],
        "cluster": cluster,
        "targets": targets(&ceiling_phase, &broker, &cluster),
        "total_seconds": (started.elapsed().as_secs_f64() * 10.0).round() / 10.0,
    });

    let stem = if opts.null_sink_only {
        "null-sink"
    } else if opts.cluster.is_some() {
        "bench-cluster"
    } else {
        "bench"
    };
    let table = table(&doc);
    println!("{table}");
    let json_path = opts.out.join(format!("{stem}.json"));
    let svg_path = opts.out.join(format!("{stem}.svg"));
    std::fs::write(&json_path, serde_json::to_string_pretty(&doc)?)
        .with_context(|| format!("writing {}", json_path.display()))?;
    std::fs::write(&svg_path, svg(&doc))
        .with_context(|| format!("writing {}", svg_path.display()))?;
    std::fs::write(opts.out.join(format!("{stem}.txt")), &table)?;
    println!("wrote {} and {}", json_path.display(), svg_path.display());
    // Held until here: every phase ran with the page cache full.
    drop(single_node_data);
    drop(fill);
    Ok(())
}

// ---------------------------------------------------------------------------------
// Servers and the driver

/// `nodes` fresh `sluice` processes on 127.0.0.1 sharing one metadata quorum (every
/// node votes), as `cargo xtask cluster up` starts them but on free ports and a data
/// dir under `--out`, kept attached so they die with the bench. Runs the single-node
/// phases (less the 1 MiB consume) against them with topics of replication factor
/// min(nodes, 3) and the steady phase at acks=all; broker CPU is all nodes' together.
fn cluster_run(bin: &Path, opts: &Opts, nodes: u32) -> Result<Value> {
    let replication = nodes.min(3);
    let min_insync = replication.min(2);
    let data_root = opts
        .out
        .join(format!("cluster-data-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&data_root);
    let logs: Vec<PathBuf> = (1..=nodes)
        .map(|i| opts.out.join(format!("cluster-node-{i}.log")))
        .collect();
    let result = (|| -> Result<Value> {
        let servers = start_nodes(bin, &data_root, &logs, replication, min_insync)?;
        let bootstrap: Vec<&str> = servers.iter().map(|s| s.addr.as_str()).collect();
        let bootstrap = bootstrap.join(",");
        let pids: Vec<u32> = servers.iter().map(|s| s.pid).collect();
        let rf = replication.to_string();
        let r = driver(
            bin,
            opts,
            &bootstrap,
            &pids,
            // acks=all first: it is the phase the replication target compares, so it
            // runs while the fill still covers what the run has written.
            "produce-acksall,produce-acks1,consume,latency",
            &["--replication-factor", &rf, "--latency-acks", "all"],
        );
        // All at once, as `cargo xtask cluster down` does: one at a time, the last
        // nodes would lose their quorum in the middle of their controlled shutdown.
        let stopped = stop_all(servers);
        let r = r?;
        let shutdown = match stopped {
            Ok(()) => Value::Null,
            Err(e) => {
                eprintln!("xtask bench: cluster shutdown: {e:#}");
                json!(format!("{e:#}"))
            }
        };
        Ok(json!({
            "nodes": nodes,
            "replication_factor": replication,
            "min_insync_replicas": min_insync,
            "bootstrap": bootstrap,
            "node_logs": logs.iter().map(|l| l.display().to_string()).collect::<Vec<_>>(),
            "shutdown_problem": shutdown,
            "latency_producer_settings": r["latency_producer_settings"],
            "server_cpu": "utime+stime of all nodes together",
            "phases": r["phases"],
        }))
    })();
    if let Err(e) = std::fs::remove_dir_all(&data_root) {
        eprintln!("xtask bench: could not remove {}: {e}", data_root.display());
    }
    result
}

/// Prints a bench's table and writes `<name>.json`, `<name>.svg` and `<name>.txt` into
/// `out` (the smaller benches: groups, controller, transactions).
pub(crate) fn publish(out: &Path, name: &str, doc: &Value, table: &str, svg: &str) -> Result<()> {
    println!("{table}");
    let json_path = out.join(format!("{name}.json"));
    let svg_path = out.join(format!("{name}.svg"));
    std::fs::write(&json_path, serde_json::to_string_pretty(doc)?)?;
    std::fs::write(&svg_path, svg)?;
    std::fs::write(out.join(format!("{name}.txt")), table)?;
    println!("wrote {} and {}", json_path.display(), svg_path.display());
    Ok(())
}

/// A JSON number with `digits` decimals, or "-" when it is absent.
pub(crate) fn fmt_num(v: &Value, digits: usize) -> String {
    v.as_f64()
        .map_or_else(|| "-".to_string(), |x| format!("{x:.digits$}"))
}

/// The options of the smaller benches (`bench groups`, `bench transactions`):
/// `--quick` and `--out DIR` (default `target/bench`).
pub(crate) struct SmallOpts {
    pub(crate) quick: bool,
    pub(crate) out: PathBuf,
}

impl SmallOpts {
    pub(crate) fn parse(root: &Path, args: &[String], bench: &str) -> Result<SmallOpts> {
        let mut opts = SmallOpts {
            quick: false,
            out: root.join("target/bench"),
        };
        let mut it = args.iter();
        while let Some(a) = it.next() {
            match a.as_str() {
                "--quick" => opts.quick = true,
                "--out" => {
                    opts.out =
                        std::env::current_dir()?.join(it.next().context("--out needs a value")?)
                }
                other => bail!(
                    "unknown option {other} (usage: cargo xtask bench {bench} [--quick] [--out DIR])"
                ),
            }
        }
        Ok(opts)
    }
}

/// Starts one cluster node per log in `logs` (node ids from 1) on free 127.0.0.1 ports,
/// all voters, data under `data_root`, with Kafka's replication defaults set to
/// `replication` and `min_insync`; returns once every node listens.
pub(crate) fn start_nodes(
    bin: &Path,
    data_root: &Path,
    logs: &[PathBuf],
    replication: u32,
    min_insync: u32,
) -> Result<Vec<Server>> {
    let nodes = logs.len() as u32;
    let ports = free_ports(2 * logs.len())?;
    let client_port = |i: u32| ports[2 * (i as usize - 1)];
    let rpc_port = |i: u32| ports[2 * (i as usize - 1) + 1];
    let voters: Vec<String> = (1..=nodes)
        .map(|i| format!("{i}@127.0.0.1:{}", rpc_port(i)))
        .collect();
    let voters = voters.join(",");
    // Every node is spawned before any is awaited: a node logs `sluice listening`
    // only once a majority of the voters has formed the quorum and unfenced it.
    let mut starting = Vec::new();
    for i in 1..=nodes {
        let data = data_root.join(format!("node-{i}"));
        std::fs::create_dir_all(&data)?;
        let args = [
            "--node-id".to_string(),
            i.to_string(),
            "--data-dir".into(),
            data.to_string_lossy().into_owned(),
            "--listen".into(),
            format!("127.0.0.1:{}", client_port(i)),
            "--rpc-listen".into(),
            format!("127.0.0.1:{}", rpc_port(i)),
            "--http-listen".into(),
            "127.0.0.1:0".into(),
            "--voters".into(),
            voters.clone(),
            "--default-replication-factor".into(),
            replication.to_string(),
            "--min-insync-replicas".into(),
            min_insync.to_string(),
        ];
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        starting.push(Server::spawn(
            &bin.join("sluice"),
            &args,
            "sluice listening",
            &logs[i as usize - 1],
            Some(("SLUICE_LOG_LEVEL", "info")),
        )?);
    }
    let mut servers = Vec::new();
    for s in starting {
        servers.push(s.wait(Duration::from_secs(60))?);
    }
    Ok(servers)
}

/// `n` distinct free TCP ports on 127.0.0.1 (bound together, then released).
fn free_ports(n: usize) -> Result<Vec<u16>> {
    let listeners = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0"))
        .collect::<std::io::Result<Vec<_>>>()?;
    listeners
        .iter()
        .map(|l| Ok(l.local_addr()?.port()))
        .collect()
}

/// SIGTERM to every server, then waits up to 30 s for all of them; the first failure
/// is returned after every server is gone.
pub(crate) fn stop_all(servers: Vec<Server>) -> Result<()> {
    for s in &servers {
        s.terminate();
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut first = Ok(());
    for s in servers {
        let r = s.wait_exit(deadline);
        if first.is_ok() {
            first = r;
        }
    }
    first
}

/// A server process (broker or null sink) that is killed if the bench fails midway.
pub(crate) struct Server {
    child: Option<Child>,
    pub(crate) addr: String,
    pid: u32,
}

impl Server {
    /// Starts `program`, copies its stdout and stderr to `log`, and waits for the
    /// line containing `marker` to learn the bound address (`listen=HOST:PORT`).
    pub(crate) fn start(
        program: &Path,
        args: &[&str],
        marker: &str,
        log: &Path,
        env: Option<(&str, &str)>,
    ) -> Result<Server> {
        Server::spawn(program, args, marker, log, env)?.wait(Duration::from_secs(30))
    }

    /// [`Server::start`] without the wait, for servers that only print the marker
    /// once their peers run too (the nodes of a cluster): spawn them all, then wait.
    pub(crate) fn spawn(
        program: &Path,
        args: &[&str],
        marker: &str,
        log: &Path,
        env: Option<(&str, &str)>,
    ) -> Result<Starting> {
        let mut cmd = Command::new(program);
        cmd.args(args).stdout(Stdio::piped()).stderr(Stdio::piped());
        if let Some((k, v)) = env {
            cmd.env(k, v);
        }
        let mut child = cmd
            .spawn()
            .with_context(|| format!("starting {}", program.display()))?;
        let pid = child.id();
        let log_file =
            std::fs::File::create(log).with_context(|| format!("creating {}", log.display()))?;
        let (tx, rx) = mpsc::channel();
        if let Some(stdout) = child.stdout.take() {
            let log_file = log_file.try_clone()?;
            copy_lines(stdout, log_file, Some((marker.to_string(), tx)));
        }
        if let Some(stderr) = child.stderr.take() {
            copy_lines(stderr, log_file, None);
        }
        Ok(Starting {
            server: Server {
                child: Some(child),
                addr: String::new(),
                pid,
            },
            rx,
            what: format!("{} did not print `{marker} listen=...`", program.display()),
            log: log.to_path_buf(),
        })
    }

    /// Sends SIGTERM without waiting (see [`Server::wait_exit`]).
    fn terminate(&self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.pid.to_string()])
            .status();
    }

    /// SIGTERM, then waits up to 30 s for a clean exit.
    pub(crate) fn stop(self) -> Result<()> {
        self.terminate();
        self.wait_exit(Instant::now() + Duration::from_secs(30))
    }

    /// Waits for the exit after [`Server::terminate`]; SIGKILL and an error at
    /// `deadline`.
    fn wait_exit(mut self, deadline: Instant) -> Result<()> {
        let Some(mut child) = self.child.take() else {
            return Ok(());
        };
        loop {
            if let Some(status) = child.try_wait()? {
                if !status.success() {
                    eprintln!("xtask bench: server {} exited with {status}", self.pid);
                }
                return Ok(());
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                bail!(
                    "server {} did not exit within 30 s of SIGTERM; killed",
                    self.pid
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// A server spawned by [`Server::spawn`] whose marker line has not been seen yet.
pub(crate) struct Starting {
    server: Server,
    rx: mpsc::Receiver<String>,
    what: String,
    log: PathBuf,
}

impl Starting {
    /// Waits up to `timeout` for the marker line (the server is killed if it never
    /// comes).
    pub(crate) fn wait(self, timeout: Duration) -> Result<Server> {
        let mut server = self.server;
        match self.rx.recv_timeout(timeout) {
            Ok(addr) => server.addr = addr,
            Err(_) => bail!(
                "{} within {} s (see {})",
                self.what,
                timeout.as_secs(),
                self.log.display()
            ),
        }
        Ok(server)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Copies lines from a child's pipe into `log` on a thread; the first line containing
/// the marker sends the address after `listen=`.
fn copy_lines(
    from: impl Read + Send + 'static,
    mut log: std::fs::File,
    marker: Option<(String, mpsc::Sender<String>)>,
) {
    std::thread::spawn(move || {
        let mut marker = marker;
        for line in BufReader::new(from).lines() {
            let Ok(line) = line else { break };
            if let Some((m, tx)) = &marker {
                if line.contains(m.as_str()) {
                    if let Some(addr) = line
                        .split("listen=")
                        .nth(1)
                        .and_then(|r| r.split_whitespace().next())
                    {
                        let _ = tx.send(addr.to_string());
                        marker = None;
                    }
                }
            }
            let _ = writeln!(log, "{line}");
        }
    });
}

/// Runs `sluice-bench` against the server(s) at `bootstrap` (their CPU time is that of
/// `pids`, summed) with `extra` driver arguments and returns its JSON document.
fn driver(
    bin: &Path,
    opts: &Opts,
    bootstrap: &str,
    pids: &[u32],
    phases: &str,
    extra: &[&str],
) -> Result<Value> {
    let pid_list: Vec<String> = pids.iter().map(u32::to_string).collect();
    let json_path = opts.out.join(format!("driver-{}.json", pid_list.join("-")));
    let mut cmd = Command::new(bin.join("sluice-bench"));
    cmd.args(["--bootstrap", bootstrap, "--pid", &pid_list.join(",")])
        .args([
            "--messages",
            &opts.messages.to_string(),
            "--size",
            &opts.size.to_string(),
        ])
        .args(["--phases", phases])
        .arg("--json")
        .arg(&json_path);
    cmd.args(["--repeat", &opts.repeat.to_string()]);
    if opts.quick {
        cmd.args(["--latency-secs", "3"]);
    }
    cmd.args(extra);
    run_cmd(&mut cmd)?;
    let text = std::fs::read_to_string(&json_path)
        .with_context(|| format!("reading {}", json_path.display()))?;
    let _ = std::fs::remove_file(&json_path);
    serde_json::from_str(&text).context("parsing the driver's JSON")
}

// ---------------------------------------------------------------------------------
// Machine and its limits

pub(crate) fn machine_info() -> Value {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, v)| v.trim().to_string())
        .unwrap_or_default();
    let mem_kb: u64 = std::fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("MemTotal:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    json!({
        "nproc": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        "cpu_model": model,
        "kernel": std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default().trim(),
        "memory_gib": (mem_kb as f64 / 1024.0 / 1024.0 * 10.0).round() / 10.0,
    })
}

/// Which code was measured: HEAD and the files under crates/ changed since (other
/// engineers edit the broker while benchmarks run, so HEAD alone may not say it).
pub(crate) fn code_state(root: &Path) -> Value {
    let git = |args: &[&str]| {
        output(Command::new("git").current_dir(root).args(args))
            .map(|s| s.trim().to_string())
            .unwrap_or_default()
    };
    let dirty: Vec<String> = git(&["status", "--porcelain", "--", "crates"])
        .lines()
        .map(|l| l.trim().to_string())
        .collect();
    json!({ "head": git(&["rev-parse", "--short", "HEAD"]), "uncommitted_in_crates": dirty })
}

pub(crate) fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

/// A file that fills the page cache for the length of the run; removed when dropped.
struct PageCacheFill {
    path: PathBuf,
    report: Value,
}

/// A directory removed when dropped, error or not.
struct RemovedOnDrop(PathBuf);

impl Drop for RemovedOnDrop {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_dir_all(&self.0) {
            eprintln!("xtask bench: could not remove {}: {e}", self.0.display());
        }
    }
}

impl Drop for PageCacheFill {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Fills the page cache with a scratch file (flushed, so its pages are clean and
/// reclaimable) as big as the memory available less 2 GiB, and keeps it until the run
/// ends, so the brokers' writes recycle page-cache pages as a long-running broker's do.
///
/// This machine is a Firecracker VM whose host backs guest memory lazily and takes
/// freed memory back (free page reporting): the first write to such a page costs a host
/// fault, about 2.6 CPU-s per GB here (dd writes 395 MB/s into fresh memory and
/// 4.9 GB/s into reused pages), charged to whoever touches it, which for a broker is
/// the kernel copying a produce into a new page-cache page. Without the fill a phase's
/// figures depend on how much free memory earlier phases left behind; with it, every
/// phase sees the steady state. The fill rate (which includes that fault cost) is
/// reported among the machine's limits.
fn fill_page_cache(dir: &Path) -> Result<PageCacheFill> {
    let available_kb: u64 = std::fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("MemAvailable:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let mib = (available_kb / 1024).saturating_sub(2048);
    let path = dir.join("page-cache-fill.bin");
    let mut fill = PageCacheFill {
        path: path.clone(),
        report: Value::Null,
    };
    let start = Instant::now();
    let mut file =
        std::fs::File::create(&path).with_context(|| format!("creating {}", path.display()))?;
    let chunk = vec![0x5au8; 1 << 20];
    for _ in 0..mib {
        file.write_all(&chunk)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    file.sync_data()?;
    let secs = start.elapsed().as_secs_f64();
    fill.report = json!({
        "file": path.display().to_string(),
        "mib": mib,
        "seconds": (secs * 10.0).round() / 10.0,
        "mb_per_s": (mib as f64 * 1.048576 / secs * 10.0).round() / 10.0,
    });
    Ok(fill)
}

/// Sequential write speed of the disk holding `dir`: dd of `mib` MiB with fdatasync.
fn dd_write(dir: &Path, mib: u64) -> Result<Value> {
    let file = dir.join("dd-test.bin");
    let out = Command::new("dd")
        .arg("if=/dev/zero")
        .arg(format!("of={}", file.display()))
        .args(["bs=1M", &format!("count={mib}"), "conv=fdatasync"])
        .output()
        .context("running dd")?;
    let _ = std::fs::remove_file(&file);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    if !out.status.success() {
        bail!("dd failed: {stderr}");
    }
    // "2147483648 bytes (2.1 GB, 2.0 GiB) copied, 2.9 s, 738 MB/s": bytes and seconds
    // give the rate with more digits than dd prints.
    let line = stderr
        .lines()
        .find(|l| l.contains("copied"))
        .context("no summary line from dd")?;
    let bytes: f64 = line
        .split_whitespace()
        .next()
        .and_then(|b| b.parse().ok())
        .context("dd byte count")?;
    let secs: f64 = line
        .split(", ")
        .find(|p| p.ends_with(" s"))
        .and_then(|p| p.trim_end_matches(" s").trim().parse().ok())
        .context("dd seconds")?;
    Ok(json!({
        "command": format!("dd if=/dev/zero of={} bs=1M count={mib} conv=fdatasync", file.display()),
        "bytes": bytes,
        "seconds": secs,
        "mb_per_s": (bytes / 1e6 / secs * 10.0).round() / 10.0,
        "dd_says": line.trim(),
    }))
}

/// One TCP stream over 127.0.0.1 for `duration`, 1 MiB writes, reader discarding.
fn loopback_tcp(duration: Duration) -> Result<Value> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let reader = std::thread::spawn(move || -> std::io::Result<(u64, Instant)> {
        let (mut s, _) = listener.accept()?;
        let mut buf = vec![0u8; 1 << 20];
        let mut total = 0u64;
        loop {
            let n = s.read(&mut buf)?;
            if n == 0 {
                return Ok((total, Instant::now()));
            }
            total += n as u64;
        }
    });
    let mut s = TcpStream::connect(addr)?;
    let chunk = vec![0x5au8; 1 << 20];
    let start = Instant::now();
    while start.elapsed() < duration {
        s.write_all(&chunk)?;
    }
    drop(s);
    let (bytes, end) = reader
        .join()
        .map_err(|_| anyhow::anyhow!("loopback reader panicked"))??;
    let secs = end.duration_since(start).as_secs_f64();
    Ok(json!({
        "streams": 1,
        "write_size": 1 << 20,
        "bytes": bytes,
        "seconds": (secs * 1000.0).round() / 1000.0,
        "mb_per_s": (bytes as f64 / 1e6 / secs * 10.0).round() / 10.0,
    }))
}

// ---------------------------------------------------------------------------------
// Targets, table, plot

fn phase<'a>(broker: &'a Value, name: &str) -> &'a Value {
    broker["phases"]
        .as_array()
        .and_then(|p| p.iter().find(|x| x["phase"] == name))
        .unwrap_or(&Value::Null)
}

/// Each target of the issue with the measured value and whether it is met.
fn targets(ceiling: &Value, broker: &Value, cluster: &Value) -> Value {
    if broker.is_null() {
        return Value::Null;
    }
    let acks1 = phase(broker, "produce acks=1");
    let acksall = phase(broker, "produce acks=all");
    let consume = phase(broker, "consume");
    let latency = phase(broker, "latency");
    let mut out = Vec::new();
    let mut check = |name: &str, value: Option<f64>, target: f64, at_most: bool| {
        let met = value.map(|v| if at_most { v <= target } else { v >= target });
        out.push(json!({ "name": name, "value": value, "target": target, "at_most": at_most, "met": met }));
    };
    let ratio = match (acks1["mb_per_s"].as_f64(), ceiling["mb_per_s"].as_f64()) {
        (Some(a), Some(c)) if c > 0.0 => Some((a / c * 1000.0).round() / 1000.0),
        _ => None,
    };
    check(
        "produce acks=1 / null-sink ceiling",
        ratio,
        TARGET_CEILING_FRACTION,
        false,
    );
    check(
        "consume MB/s",
        consume["mb_per_s"].as_f64(),
        TARGET_CONSUME_MB_S,
        false,
    );
    check(
        "broker CPU s/GB, produce acks=1",
        acks1["server_cpu_s_per_gb"].as_f64(),
        TARGET_PRODUCE_CPU_S_PER_GB,
        true,
    );
    check(
        "broker CPU s/GB, produce acks=all",
        acksall["server_cpu_s_per_gb"].as_f64(),
        TARGET_PRODUCE_CPU_S_PER_GB,
        true,
    );
    check(
        "broker CPU s/GB, consume",
        consume["server_cpu_s_per_gb"].as_f64(),
        TARGET_CONSUME_CPU_S_PER_GB,
        true,
    );
    check(
        "steady produce latency p99 ms",
        latency["produce_latency"]["p99_ms"].as_f64(),
        TARGET_PRODUCE_P99_MS,
        true,
    );
    check(
        "steady end-to-end latency p99 ms",
        latency["e2e_latency"]["p99_ms"].as_f64(),
        TARGET_E2E_P99_MS,
        true,
    );
    if !cluster.is_null() {
        check(
            &format!(
                "{} nodes RF {} acks=all / 1 node acks=1",
                cluster["nodes"], cluster["replication_factor"]
            ),
            replicated_ratio(broker, cluster),
            TARGET_REPLICATED_FRACTION,
            false,
        );
    }
    Value::Array(out)
}

/// The cluster's acks=all MB/s over the single node's acks=1 MB/s.
fn replicated_ratio(broker: &Value, cluster: &Value) -> Option<f64> {
    let single = phase(broker, "produce acks=1")["mb_per_s"].as_f64()?;
    let replicated = phase(cluster, "produce acks=all")["mb_per_s"].as_f64()?;
    (single > 0.0).then(|| (replicated / single * 1000.0).round() / 1000.0)
}

fn num(v: &Value, digits: usize) -> String {
    v.as_f64()
        .map_or_else(|| "-".to_string(), |x| format!("{x:.digits$}"))
}

/// Integer with thousands separators.
fn grouped(v: &Value) -> String {
    let Some(x) = v.as_f64() else {
        return "-".into();
    };
    let s = format!("{:.0}", x.round());
    let (sign, digits) = s.strip_prefix('-').map_or(("", s.as_str()), |d| ("-", d));
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    format!("{sign}{out}")
}

fn table(doc: &Value) -> String {
    let mut t = String::new();
    let m = &doc["machine"];
    let _ = writeln!(
        t,
        "sluice bench ({}): {} messages x {} B, librdkafka {}, {} cores ({}), {} GiB, kernel {}, {}",
        doc["mode"].as_str().unwrap_or_default(),
        grouped(&doc["messages"]),
        doc["size"],
        doc["librdkafka_version"].as_str().unwrap_or("?"),
        m["nproc"],
        m["cpu_model"].as_str().unwrap_or_default(),
        m["memory_gib"],
        m["kernel"].as_str().unwrap_or_default(),
        doc["date"].as_str().unwrap_or_default(),
    );
    let _ = writeln!(
        t,
        "machine limits: disk write {} MB/s (dd 1 MiB blocks, fdatasync, {} MB); loopback TCP {} MB/s (1 stream); page-cache fill {} MB/s ({} MiB into fresh memory, kept during the run)",
        num(&doc["limits"]["disk_write"]["mb_per_s"], 1),
        num(&json!(doc["limits"]["disk_write"]["bytes"].as_f64().unwrap_or(0.0) / 1e6), 0),
        num(&doc["limits"]["loopback_tcp"]["mb_per_s"], 1),
        num(&doc["limits"]["page_cache_fill"]["mb_per_s"], 1),
        doc["limits"]["page_cache_fill"]["mib"],
    );
    let dirty = doc["code"]["uncommitted_in_crates"]
        .as_array()
        .map_or(0, Vec::len);
    let _ = writeln!(
        t,
        "code: HEAD {}{}",
        doc["code"]["head"].as_str().unwrap_or("?"),
        if dirty > 0 {
            format!(" + {dirty} uncommitted file(s) under crates/ (listed in the JSON)")
        } else {
            String::new()
        }
    );
    let _ = writeln!(
        t,
        "load average before {} / after {}; CPU seconds per GB = per 1e9 payload bytes",
        doc["load_average_before"].as_str().unwrap_or_default(),
        doc["load_average_after"].as_str().unwrap_or_default()
    );
    t.push('\n');
    let _ = writeln!(
        t,
        "{:<24} {:>8} {:>10} {:>8} | {:>8} {:>8} {:>8} | {:>7} {:>7} | {:>7} {:>7} {:>7} {:>7} {:>7}",
        "phase",
        "MB/s",
        "msgs/s",
        "secs",
        "prod p50",
        "p99",
        "p99.9",
        "e2e p50",
        "p99",
        "srv CPU",
        "s/GB",
        "drv CPU",
        "other",
        "steal"
    );
    let _ = writeln!(
        t,
        "{:<24} {:>8} {:>10} {:>8} | {:>8} {:>8} {:>8} | {:>7} {:>7} | {:>7} {:>7} {:>7} {:>7} {:>7}",
        "", "", "", "", "ms", "ms", "ms", "ms", "ms", "s", "", "s", "s", "s"
    );
    let row = |t: &mut String, name: &str, p: &Value| {
        if p.is_null() {
            return;
        }
        let _ = writeln!(
            t,
            "{:<24} {:>8} {:>10} {:>8} | {:>8} {:>8} {:>8} | {:>7} {:>7} | {:>7} {:>7} {:>7} {:>7} {:>7}",
            name,
            num(&p["mb_per_s"], 1),
            grouped(if p["msgs_per_s"].is_null() {
                &p["rate_achieved_msgs_per_s"]
            } else {
                &p["msgs_per_s"]
            }),
            num(&p["seconds"], 2),
            num(&p["produce_latency"]["p50_ms"], 3),
            num(&p["produce_latency"]["p99_ms"], 3),
            num(&p["produce_latency"]["p999_ms"], 3),
            num(&p["e2e_latency"]["p50_ms"], 3),
            num(&p["e2e_latency"]["p99_ms"], 3),
            num(&p["server_cpu_s"], 2),
            // Per GB means nothing at 2 MB/s: the steady phase shows "-" there.
            if p["phase"] == "latency" {
                "-".to_string()
            } else {
                num(&p["server_cpu_s_per_gb"], 3)
            },
            num(&p["client_cpu_s"], 2),
            num(&p["other_cpu_s"], 2),
            num(&p["steal_cpu_s"], 2),
        );
    };
    let name = |p: &Value| {
        if p["phase"] == "latency" {
            match p["acks"].as_str() {
                Some("all") => format!("steady {}/s acks=all", p["rate_target_msgs_per_s"]),
                _ => format!("steady {}/s linger=0", p["rate_target_msgs_per_s"]),
            }
        } else {
            p["label"]
                .as_str()
                .or(p["phase"].as_str())
                .unwrap_or_default()
                .to_string()
        }
    };
    row(&mut t, "null sink (ceiling)", &doc["null_sink"]);
    for p in doc["broker_phases"].as_array().into_iter().flatten() {
        row(&mut t, &name(p), p);
    }
    let cluster = &doc["cluster"];
    if let Some(phases) = cluster["phases"].as_array() {
        let _ = writeln!(
            t,
            "{} nodes on this machine, topics with replication factor {}, min.insync.replicas {} (srv CPU: all nodes):",
            cluster["nodes"], cluster["replication_factor"], cluster["min_insync_replicas"]
        );
        for p in phases {
            row(&mut t, &format!("  {}", name(p)), p);
        }
    }
    // The spread behind each median, so a reader sees how much one run can move.
    let mut spread = Vec::new();
    let mut runs_of = |name: &str, p: &Value| {
        if let Some(runs) = p["runs_mb_per_s"].as_array() {
            let list: Vec<String> = runs.iter().map(|v| num(v, 0)).collect();
            spread.push(format!("{name} {}", list.join("/")));
        }
    };
    runs_of("null sink", &doc["null_sink"]);
    for p in doc["broker_phases"].as_array().into_iter().flatten() {
        runs_of(
            p["label"]
                .as_str()
                .or(p["phase"].as_str())
                .unwrap_or_default(),
            p,
        );
    }
    for p in cluster["phases"].as_array().into_iter().flatten() {
        runs_of(
            &format!(
                "{} nodes {}",
                cluster["nodes"],
                p["label"]
                    .as_str()
                    .or(p["phase"].as_str())
                    .unwrap_or_default()
            ),
            p,
        );
    }
    if !spread.is_empty() {
        let _ = writeln!(
            t,
            "\nthroughput rows are the median of {} runs; MB/s of each run: {}",
            doc["repeat"],
            spread.join("; ")
        );
    }
    // Which node burned the CPU (the partition leader is the busiest).
    let by_node: Vec<String> = cluster["phases"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| {
            let each = p["server_cpu_s_by_pid"].as_array()?;
            let list: Vec<String> = each.iter().map(|v| num(v, 2)).collect();
            Some(format!("{} {}", name(p), list.join("/")))
        })
        .collect();
    if !by_node.is_empty() {
        let _ = writeln!(
            t,
            "{} nodes, srv CPU s of node 1/2/...: {}",
            cluster["nodes"],
            by_node.join("; ")
        );
    }
    t.push_str(
        "\n(throughput phases: produce latency is enqueue -> delivery report and mostly time in the client's queue;\n \
         srv CPU = server process utime+stime over the phase (steady phase: over its measured seconds);\n \
         drv = the load driver; other = the rest of the machine's busy CPU in the same interval;\n \
         steal = CPU time the hypervisor gave to other guests while ours wanted it: runs with\n \
         much other or steal time are disturbed)\n",
    );
    if let Some(targets) = doc["targets"].as_array() {
        t.push_str("\ntargets:\n");
        for v in targets {
            let name = v["name"].as_str().unwrap_or_default();
            let met = match v["met"].as_bool() {
                Some(true) => "met",
                Some(false) => "MISSED",
                None => "n/a",
            };
            let _ = writeln!(
                t,
                "  {:<40} {:>9} {} {:<6} {}",
                name,
                num(&v["value"], 3),
                if v["at_most"].as_bool() == Some(true) {
                    "<="
                } else {
                    ">="
                },
                num(&v["target"], 2),
                met
            );
        }
    }
    t
}

/// Opens an SVG document of `width` x 440 on a white background with `title` on top.
pub(crate) fn svg_start(s: &mut String, width: u32, title: &str) {
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="440" font-family="sans-serif">"#
    );
    let _ = writeln!(s, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        s,
        r#"<text x="20" y="22" font-size="13">{}</text>"#,
        esc(title)
    );
}

pub(crate) fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// One bar chart panel: bars with value labels, optional dashed target lines.
pub(crate) fn bar_panel(
    svg: &mut String,
    x0: f64,
    title: &str,
    unit: &str,
    bars: &[(String, Option<f64>, &str)],
    lines: &[(String, f64)],
    digits: usize,
) {
    let (w, h, top) = (420.0, 300.0, 70.0);
    let max = bars
        .iter()
        .filter_map(|b| b.1)
        .chain(lines.iter().map(|l| l.1))
        .fold(0.0f64, f64::max)
        .max(1e-9)
        * 1.15;
    let base = top + h;
    let y = |v: f64| base - v / max * h;
    let _ = writeln!(
        svg,
        r#"<text x="{}" y="{}" font-size="15" font-weight="bold">{}</text>"#,
        x0,
        top - 30.0,
        esc(title)
    );
    let _ = writeln!(
        svg,
        r##"<line x1="{x0}" y1="{base}" x2="{}" y2="{base}" stroke="#333"/>"##,
        x0 + w
    );
    let slot = w / bars.len().max(1) as f64;
    for (i, (label, value, color)) in bars.iter().enumerate() {
        let bx = x0 + i as f64 * slot + slot * 0.15;
        let bw = slot * 0.7;
        if let Some(v) = value {
            let _ = writeln!(
                svg,
                r#"<rect x="{bx:.1}" y="{:.1}" width="{bw:.1}" height="{:.1}" fill="{color}"/>"#,
                y(*v),
                base - y(*v)
            );
            let _ = writeln!(
                svg,
                r#"<text x="{:.1}" y="{:.1}" font-size="11" text-anchor="middle">{v:.digits$}</text>"#,
                bx + bw / 2.0,
                y(*v) - 4.0
            );
        }
        for (k, part) in label.split('\n').enumerate() {
            let _ = writeln!(
                svg,
                r#"<text x="{:.1}" y="{:.1}" font-size="11" text-anchor="middle">{}</text>"#,
                bx + bw / 2.0,
                base + 15.0 + 13.0 * k as f64,
                esc(part)
            );
        }
    }
    for (label, v) in lines {
        let _ = writeln!(
            svg,
            r##"<line x1="{x0}" y1="{:.1}" x2="{}" y2="{:.1}" stroke="#c0392b" stroke-dasharray="5,4"/>"##,
            y(*v),
            x0 + w,
            y(*v)
        );
        let _ = writeln!(
            svg,
            r##"<text x="{}" y="{:.1}" font-size="10" fill="#c0392b" text-anchor="end" stroke="white" stroke-width="3" paint-order="stroke">{}</text>"##,
            x0 + w,
            y(*v) - 3.0,
            esc(label)
        );
    }
    let _ = writeln!(
        svg,
        r#"<text x="{x0}" y="{}" font-size="11">{}</text>"#,
        top - 12.0,
        esc(unit)
    );
}

/// "consume\n50 MiB fetches" from a consume phase's label.
fn consume_label(p: &Value) -> String {
    p["label"].as_str().map_or_else(
        || "consume".to_string(),
        |l| l.replacen(", ", "\n", 1).replace(" fetches", "\nfetches"),
    )
}

fn svg(doc: &Value) -> String {
    let mut s = String::new();
    // Two panels after a full run, four with a cluster; the null-sink run has
    // throughput only.
    let width = if doc["broker_phases"].is_null() {
        490
    } else if doc["cluster"]["phases"].is_null() {
        960
    } else {
        1920
    };
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="485" font-family="sans-serif">"#
    );
    let _ = writeln!(s, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        s,
        r#"<text x="20" y="22" font-size="13">sluice bench: {} x {} B, {} cores, {}</text>"#,
        grouped(&doc["messages"]),
        doc["size"],
        doc["machine"]["nproc"],
        esc(doc["date"].as_str().unwrap_or_default()),
    );
    // Loopback is several times every other bar, so it is a caption, not a bar.
    let _ = writeln!(
        s,
        r#"<text x="20" y="470" font-size="12">loopback TCP (1 stream): {} MB/s</text>"#,
        num(&doc["limits"]["loopback_tcp"]["mb_per_s"], 0)
    );
    let phases = &doc["broker_phases"];
    let find = |name: &str| {
        phases
            .as_array()
            .and_then(|p| p.iter().find(|x| x["phase"] == name))
            .cloned()
            .unwrap_or(Value::Null)
    };
    let ceiling = doc["null_sink"]["mb_per_s"].as_f64();
    let bars = vec![
        ("null sink\n(ceiling)".to_string(), ceiling, "#95a5a6"),
        (
            "produce\nacks=1".to_string(),
            find("produce acks=1")["mb_per_s"].as_f64(),
            "#2980b9",
        ),
        (
            "produce\nacks=all".to_string(),
            find("produce acks=all")["mb_per_s"].as_f64(),
            "#2471a3",
        ),
        (
            consume_label(&find("consume")),
            find("consume")["mb_per_s"].as_f64(),
            "#27ae60",
        ),
        (
            consume_label(&find("consume max.partition.fetch.bytes=1048576")),
            find("consume max.partition.fetch.bytes=1048576")["mb_per_s"].as_f64(),
            "#1e8449",
        ),
        (
            "disk write\n(dd)".to_string(),
            doc["limits"]["disk_write"]["mb_per_s"].as_f64(),
            "#7f8c8d",
        ),
    ];
    // Phases that did not run (the null-sink mode) get no empty slot.
    let bars: Vec<_> = bars.into_iter().filter(|b| b.1.is_some()).collect();
    let mut lines = Vec::new();
    if let Some(c) = ceiling {
        lines.push(("95% of ceiling".to_string(), c * TARGET_CEILING_FRACTION));
    }
    if !phases.is_null() {
        lines.push(("consume target".to_string(), TARGET_CONSUME_MB_S));
    }
    bar_panel(
        &mut s,
        30.0,
        "Throughput",
        "MB/s (1e6 payload bytes per second)",
        &bars,
        &lines,
        1,
    );
    let lat = find("latency");
    if !lat.is_null() {
        let bars = vec![
            (
                "produce\np50".to_string(),
                lat["produce_latency"]["p50_ms"].as_f64(),
                "#8e44ad",
            ),
            (
                "produce\np99".to_string(),
                lat["produce_latency"]["p99_ms"].as_f64(),
                "#8e44ad",
            ),
            (
                "produce\np99.9".to_string(),
                lat["produce_latency"]["p999_ms"].as_f64(),
                "#8e44ad",
            ),
            (
                "e2e\np50".to_string(),
                lat["e2e_latency"]["p50_ms"].as_f64(),
                "#d35400",
            ),
            (
                "e2e\np99".to_string(),
                lat["e2e_latency"]["p99_ms"].as_f64(),
                "#d35400",
            ),
        ];
        let lines = vec![
            ("produce p99 target".to_string(), TARGET_PRODUCE_P99_MS),
            ("e2e p99 target".to_string(), TARGET_E2E_P99_MS),
        ];
        let title = format!(
            "Latency at a steady {}/s (linger.ms=0, acks=1)",
            lat["rate_target_msgs_per_s"]
        );
        bar_panel(&mut s, 510.0, &title, "milliseconds", &bars, &lines, 2);
    }
    // Broker CPU per GB, the third criterion, as a caption under the bars.
    if !phases.is_null() {
        let _ = writeln!(
            s,
            r#"<text x="20" y="450" font-size="12">broker CPU per GB of payload: produce acks=1 {} s, acks=all {} s (target &lt;= {TARGET_PRODUCE_CPU_S_PER_GB}); consume {} s (target &lt;= {TARGET_CONSUME_CPU_S_PER_GB})</text>"#,
            num(&find("produce acks=1")["server_cpu_s_per_gb"], 3),
            num(&find("produce acks=all")["server_cpu_s_per_gb"], 3),
            num(&find("consume")["server_cpu_s_per_gb"], 3),
        );
    }
    cluster_panels(&mut s, doc);
    s.push_str("</svg>\n");
    s
}

/// The third and fourth panels of a `--cluster` run: produce throughput on one node
/// and on the cluster with the replication target, and the cluster's steady latency.
fn cluster_panels(s: &mut String, doc: &Value) {
    let cluster = &doc["cluster"];
    if cluster["phases"].is_null() {
        return;
    }
    let single = |name: &str| phase(&json!({ "phases": doc["broker_phases"] }), name).clone();
    let nodes = format!(
        "{} nodes RF {}",
        cluster["nodes"], cluster["replication_factor"]
    );
    let acks1 = single("produce acks=1")["mb_per_s"].as_f64();
    let bars = vec![
        ("1 node\nacks=1".to_string(), acks1, "#2980b9"),
        (
            "1 node\nacks=all".to_string(),
            single("produce acks=all")["mb_per_s"].as_f64(),
            "#2471a3",
        ),
        (
            format!("{nodes}\nacks=1"),
            phase(cluster, "produce acks=1")["mb_per_s"].as_f64(),
            "#ca6f1e",
        ),
        (
            format!("{nodes}\nacks=all"),
            phase(cluster, "produce acks=all")["mb_per_s"].as_f64(),
            "#a04000",
        ),
        (
            format!("{nodes}\nconsume"),
            phase(cluster, "consume")["mb_per_s"].as_f64(),
            "#27ae60",
        ),
    ];
    let lines: Vec<(String, f64)> = acks1
        .map(|a| {
            (
                "50% of 1 node acks=1".to_string(),
                a * TARGET_REPLICATED_FRACTION,
            )
        })
        .into_iter()
        .collect();
    bar_panel(
        s,
        990.0,
        &format!("Replication: {nodes}, same machine"),
        "MB/s (1e6 payload bytes per second)",
        &bars,
        &lines,
        1,
    );
    let lat = phase(cluster, "latency");
    if !lat.is_null() {
        let bars = vec![
            (
                "produce\np50".to_string(),
                lat["produce_latency"]["p50_ms"].as_f64(),
                "#8e44ad",
            ),
            (
                "produce\np99".to_string(),
                lat["produce_latency"]["p99_ms"].as_f64(),
                "#8e44ad",
            ),
            (
                "produce\np99.9".to_string(),
                lat["produce_latency"]["p999_ms"].as_f64(),
                "#8e44ad",
            ),
            (
                "e2e\np50".to_string(),
                lat["e2e_latency"]["p50_ms"].as_f64(),
                "#d35400",
            ),
            (
                "e2e\np99".to_string(),
                lat["e2e_latency"]["p99_ms"].as_f64(),
                "#d35400",
            ),
        ];
        let title = format!(
            "{nodes}: steady {}/s, acks=all",
            lat["rate_target_msgs_per_s"]
        );
        bar_panel(s, 1470.0, &title, "milliseconds", &bars, &[], 2);
    }
}
