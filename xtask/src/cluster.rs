//! `cargo xtask cluster up|status|kill|start|down`: a local multi-node Sluice cluster.
//!
//! Node `i` (1..=5) is a detached `target/release/sluice` process on 127.0.0.1 with its
//! Kafka listener on port `i9092`, its controller RPC on `i9093` and its HTTP endpoint
//! (health, metrics) on `i9644`; nodes 1-3 are the
//! metadata quorum's voters, nodes 4 and 5 join as learners. Everything lives in
//! `target/cluster/`: `node-i/data`, `node-i.log` (stdout and stderr, appended across
//! restarts), `node-i.args` (the full argv, one argument per line, so `start` restarts a
//! node exactly as `up` started it) and `node-i.pid`.
//!
//! The nodes outlive this command (own process group, stdin closed), so the cluster
//! state between invocations is only those files plus `/proc`. `status` asks every
//! live node for its view of the metadata quorum with a raw DescribeQuorum request.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use bytes::Bytes;
use sluice_protocol::api::ApiKey;
use sluice_protocol::codec::Decode;
use sluice_protocol::frame::{decode_response_header, encode_request, frame_size};
use sluice_protocol::messages::describe_quorum_request::{PartitionData, TopicData};
use sluice_protocol::messages::describe_quorum_response::PartitionData as QuorumState;
use sluice_protocol::messages::{DescribeQuorumRequest, DescribeQuorumResponse};

use crate::util::{self, cargo};

/// Ports are `<node id>9092`, so five nodes is as far as u16 goes.
const MAX_NODES: u32 = 5;
/// The first three nodes vote; more voters would only slow elections on one machine.
const MAX_VOTERS: u32 = 3;
/// How long `up` and `start` wait for nodes to log `sluice listening`.
const LISTEN_TIMEOUT: Duration = Duration::from_secs(60);
/// How long `down` gives each node for its controlled shutdown before SIGKILL.
const STOP_TIMEOUT: Duration = Duration::from_secs(20);
/// Bound on one DescribeQuorum round trip (connect, write, read).
const QUERY_TIMEOUT: Duration = Duration::from_secs(2);
/// Lines of a node's log shown when it fails to come up.
const LOG_TAIL_LINES: usize = 40;
/// Logged by the broker once the quorum has registered and unfenced it.
const LISTENING: &str = "sluice listening";

const USAGE: &str = "usage: cargo xtask cluster up [--nodes N] [--keep-data] [-- SLUICE_ARGS...]
       cargo xtask cluster status | down
       cargo xtask cluster kill --node N | start --node N";

pub fn run(root: &Path, args: &[String]) -> Result<()> {
    let dir = root.join("target/cluster");
    let Some((command, rest)) = args.split_first() else {
        bail!("{USAGE}");
    };
    match command.as_str() {
        "help" | "--help" | "-h" => {
            println!("{USAGE}");
            Ok(())
        }
        "up" => up(root, &dir, rest),
        "status" => no_args(rest).and_then(|()| status(&dir)),
        "down" => no_args(rest).and_then(|()| down(&dir)),
        "kill" => kill(&dir, node_arg(rest)?),
        "start" => start(&dir, node_arg(rest)?),
        other => bail!("unknown cluster command `{other}`\n{USAGE}"),
    }
}

fn no_args(rest: &[String]) -> Result<()> {
    ensure!(rest.is_empty(), "unexpected arguments {rest:?}\n{USAGE}");
    Ok(())
}

/// The N of `--node N`.
fn node_arg(rest: &[String]) -> Result<u32> {
    match rest {
        [flag, n] if flag == "--node" => parse_node(n),
        _ => bail!("expected `--node N`\n{USAGE}"),
    }
}

fn parse_node(n: &str) -> Result<u32> {
    let n: u32 = n
        .parse()
        .with_context(|| format!("`{n}` is not a number"))?;
    ensure!((1..=MAX_NODES).contains(&n), "nodes are 1..={MAX_NODES}");
    Ok(n)
}

fn client_port(node: u32) -> u16 {
    (node * 10_000 + 9092) as u16
}

fn rpc_port(node: u32) -> u16 {
    (node * 10_000 + 9093) as u16
}

/// Health and metrics of node i: port i9644, as in the compose file.
fn http_port(node: u32) -> u16 {
    (node * 10_000 + 9644) as u16
}

/// The files of one node in `target/cluster/`.
struct NodeFiles {
    id: u32,
    data: PathBuf,
    log: PathBuf,
    args: PathBuf,
    pid: PathBuf,
}

fn files(dir: &Path, id: u32) -> NodeFiles {
    NodeFiles {
        id,
        data: dir.join(format!("node-{id}/data")),
        log: dir.join(format!("node-{id}.log")),
        args: dir.join(format!("node-{id}.args")),
        pid: dir.join(format!("node-{id}.pid")),
    }
}

/// Nodes that have a pid file, i.e. were started at some point, with their pid.
fn known_nodes(dir: &Path) -> Vec<(NodeFiles, u32)> {
    (1..=MAX_NODES)
        .map(|id| files(dir, id))
        .filter_map(|f| {
            let pid = fs::read_to_string(&f.pid).ok()?.trim().parse().ok()?;
            Some((f, pid))
        })
        .collect()
}

/// Whether `pid` is a running `sluice`. A zombie counts as gone (it only waits to be
/// reaped), and the command name is checked because a dead node's pid may since have
/// been reused by an unrelated process.
fn alive(pid: u32) -> bool {
    let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    // `pid (comm) state ...`: comm may contain spaces, so split at the last ')'.
    let Some((head, tail)) = stat.rsplit_once(')') else {
        return false;
    };
    let comm = head.split_once('(').map_or("", |(_, c)| c);
    comm == "sluice" && !tail.trim_start().starts_with('Z')
}

fn signal(pid: u32, sig: &str) {
    let _ = Command::new("kill")
        .args([sig, &pid.to_string()])
        .stderr(Stdio::null())
        .status();
}

/// Polls until `pid` is gone; false if it is still there at `deadline`.
fn wait_gone(pid: u32, deadline: Instant) -> bool {
    while alive(pid) {
        if Instant::now() > deadline {
            return false;
        }
        sleep(Duration::from_millis(100));
    }
    true
}

fn up(root: &Path, dir: &Path, args: &[String]) -> Result<()> {
    let (ours, extra) = match args.iter().position(|a| a == "--") {
        Some(i) => (&args[..i], &args[i + 1..]),
        None => (args, &[][..]),
    };
    let (mut nodes, mut keep_data) = (3, false);
    let mut it = ours.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--nodes" => nodes = parse_node(it.next().context("--nodes needs a value")?)?,
            "--keep-data" => keep_data = true,
            other => bail!("unknown option `{other}`\n{USAGE}"),
        }
    }
    // The argv is stored one argument per line.
    ensure!(
        !extra.iter().any(|a| a.contains('\n')),
        "sluice arguments must not contain newlines"
    );
    if known_nodes(dir).iter().any(|(_, pid)| alive(*pid)) {
        bail!("cluster already running; `cargo xtask cluster down` first");
    }

    util::run(cargo(root).args(["build", "--release", "-p", "sluice-broker"]))?;
    let sluice = root.join("target/release/sluice");

    if keep_data {
        for (f, _) in known_nodes(dir) {
            fs::remove_file(&f.pid)?;
        }
    } else if dir.exists() {
        fs::remove_dir_all(dir).with_context(|| format!("removing {}", dir.display()))?;
    }
    fs::create_dir_all(dir)?;

    let voters: Vec<String> = (1..=nodes.min(MAX_VOTERS))
        .map(|v| format!("{v}@127.0.0.1:{}", rpc_port(v)))
        .collect();
    let voters = voters.join(",");
    // default.replication.factor=3 and min.insync.replicas=2, capped for tiny clusters.
    let replication = nodes.min(3);
    let min_insync = replication.min(2);

    // Start every node before waiting for any: a node only logs that it listens once
    // the quorum (a majority of the voters) has registered it.
    let mut started = Vec::new();
    for id in 1..=nodes {
        let f = files(dir, id);
        let mut argv = vec![sluice.display().to_string()];
        for (flag, value) in [
            ("--node-id", id.to_string()),
            ("--data-dir", f.data.display().to_string()),
            ("--listen", format!("127.0.0.1:{}", client_port(id))),
            ("--rpc-listen", format!("127.0.0.1:{}", rpc_port(id))),
            ("--http-listen", format!("127.0.0.1:{}", http_port(id))),
            ("--voters", voters.clone()),
            ("--default-replication-factor", replication.to_string()),
            ("--min-insync-replicas", min_insync.to_string()),
        ] {
            // A flag given after `--` replaces the default rather than repeating it
            // (sluice refuses a flag given twice).
            let given = |a: &String| a == flag || a.starts_with(&format!("{flag}="));
            if extra.iter().any(given) {
                continue;
            }
            argv.push(flag.into());
            argv.push(value);
        }
        argv.extend(extra.iter().cloned());
        fs::create_dir_all(&f.data)?;
        fs::write(&f.args, argv.join("\n") + "\n")?;
        started.push(spawn(&f, &argv)?);
    }
    wait_listening(&mut started)?;

    let bootstrap: Vec<String> = (1..=nodes)
        .map(|id| format!("127.0.0.1:{}", client_port(id)))
        .collect();
    println!("cluster: {nodes} node(s) up");
    println!("bootstrap servers: {}", bootstrap.join(","));
    println!("logs: {}/node-N.log", dir.display());
    Ok(())
}

/// A node started by this command, waiting for its `sluice listening` line.
struct Starting {
    id: u32,
    child: Child,
    log: PathBuf,
    /// Log length before the start: only later lines are about this run.
    offset: u64,
}

/// Starts a node detached from this process: its own process group (a Ctrl-C meant
/// for xtask does not reach it, and it keeps running after xtask exits), no stdin,
/// stdout and stderr appended to its log. Writes the pid file.
fn spawn(f: &NodeFiles, argv: &[String]) -> Result<Starting> {
    let log = OpenOptions::new().create(true).append(true).open(&f.log)?;
    let offset = log.metadata()?.len();
    let (program, args) = argv.split_first().context("empty argv")?;
    let child = Command::new(program)
        .args(args)
        .process_group(0)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .with_context(|| format!("starting node {} ({program})", f.id))?;
    fs::write(&f.pid, format!("{}\n", child.id()))?;
    println!(
        "cluster: node {} started, pid {}, listen 127.0.0.1:{}",
        f.id,
        child.id(),
        client_port(f.id)
    );
    Ok(Starting {
        id: f.id,
        child,
        log: f.log.clone(),
        offset,
    })
}

/// Waits until every node has logged `sluice listening` since it was started. Fails
/// with the log's tail if a node exits first or the deadline passes; nodes already
/// running are left alone for a post-mortem (`down` stops them).
fn wait_listening(nodes: &mut [Starting]) -> Result<()> {
    let deadline = Instant::now() + LISTEN_TIMEOUT;
    let mut waiting: Vec<&mut Starting> = nodes.iter_mut().collect();
    while !waiting.is_empty() {
        let mut still = Vec::new();
        for n in waiting {
            let text = read_from(&n.log, n.offset);
            if text.contains(LISTENING) {
                println!("cluster: node {} listening", n.id);
            } else if let Some(status) = n.child.try_wait()? {
                print_tail(n.id, &n.log, &text);
                bail!("node {} exited with {status} before listening", n.id);
            } else {
                still.push(n);
            }
        }
        waiting = still;
        if !waiting.is_empty() && Instant::now() > deadline {
            for n in &waiting {
                print_tail(n.id, &n.log, &read_from(&n.log, n.offset));
            }
            let ids: Vec<String> = waiting.iter().map(|n| n.id.to_string()).collect();
            bail!(
                "node(s) {} did not log `{LISTENING}` within {}s; they are still running \
                 (`cargo xtask cluster down` stops them)",
                ids.join(","),
                LISTEN_TIMEOUT.as_secs()
            );
        }
        sleep(Duration::from_millis(200));
    }
    Ok(())
}

/// The log from byte `offset` on (lossy: a line may be cut mid-character).
fn read_from(log: &Path, offset: u64) -> String {
    let mut bytes = Vec::new();
    if let Ok(mut file) = File::open(log) {
        if file.seek(SeekFrom::Start(offset)).is_ok() {
            let _ = file.read_to_end(&mut bytes);
        }
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

fn print_tail(id: u32, log: &Path, text: &str) {
    let lines: Vec<&str> = text.lines().collect();
    let tail = &lines[lines.len().saturating_sub(LOG_TAIL_LINES)..];
    eprintln!("cluster: last {} lines of {}:", tail.len(), log.display());
    for line in tail {
        eprintln!("[node {id}] {line}");
    }
}

fn kill(dir: &Path, id: u32) -> Result<()> {
    let f = files(dir, id);
    let pid = read_pid(&f)?;
    if !alive(pid) {
        println!("cluster: node {id} (pid {pid}) is already down");
        return Ok(());
    }
    signal(pid, "-KILL");
    ensure!(
        wait_gone(pid, Instant::now() + Duration::from_secs(10)),
        "node {id} (pid {pid}) still running 10s after SIGKILL"
    );
    // The pid file stays: it marks the node as part of the cluster, now down.
    println!("cluster: node {id} (pid {pid}) killed; data kept, `cargo xtask cluster start --node {id}` restarts it");
    Ok(())
}

fn read_pid(f: &NodeFiles) -> Result<u32> {
    let text = fs::read_to_string(&f.pid).with_context(|| {
        format!(
            "node {} is not part of the cluster (no {})",
            f.id,
            f.pid.display()
        )
    })?;
    text.trim()
        .parse()
        .with_context(|| format!("bad pid in {}", f.pid.display()))
}

fn start(dir: &Path, id: u32) -> Result<()> {
    let f = files(dir, id);
    let pid = read_pid(&f)?;
    ensure!(!alive(pid), "node {id} is running (pid {pid})");
    let argv: Vec<String> = fs::read_to_string(&f.args)
        .with_context(|| format!("reading {}", f.args.display()))?
        .lines()
        .map(str::to_string)
        .collect();
    let mut node = spawn(&f, &argv)?;
    wait_listening(std::slice::from_mut(&mut node))
}

fn down(dir: &Path) -> Result<()> {
    let nodes = known_nodes(dir);
    if nodes.is_empty() {
        println!("cluster: no nodes (no pid files in {})", dir.display());
        return Ok(());
    }
    // SIGTERM all at once: each node does its controlled shutdown in parallel, so the
    // whole stop takes one shutdown's time, not the sum.
    let live: Vec<&(NodeFiles, u32)> = nodes.iter().filter(|(_, pid)| alive(*pid)).collect();
    for (_, pid) in &live {
        signal(*pid, "-TERM");
    }
    let deadline = Instant::now() + STOP_TIMEOUT;
    for (f, pid) in &live {
        if wait_gone(*pid, deadline) {
            println!("cluster: node {} (pid {pid}) stopped", f.id);
        } else {
            signal(*pid, "-KILL");
            let gone = wait_gone(*pid, Instant::now() + Duration::from_secs(5));
            println!(
                "cluster: node {} (pid {pid}) did not stop within {}s; SIGKILL{}",
                f.id,
                STOP_TIMEOUT.as_secs(),
                if gone { "ed" } else { " sent, still there" }
            );
        }
    }
    for (f, _) in &nodes {
        fs::remove_file(&f.pid)?;
    }
    println!("cluster: down; data and logs stay in {}", dir.display());
    Ok(())
}

fn status(dir: &Path) -> Result<()> {
    let nodes = known_nodes(dir);
    if nodes.is_empty() {
        println!("cluster: no nodes (no pid files in {})", dir.display());
        return Ok(());
    }
    // Each live node's own view of the quorum; a failed query is reported below.
    let views: Vec<Option<Result<QuorumState>>> = nodes
        .iter()
        .map(|(f, pid)| alive(*pid).then(|| describe_quorum(client_port(f.id))))
        .collect();
    // Lag is measured against the leader's committed offset, as the leader reports it
    // (the highest term wins should two nodes both still think they lead).
    let leader_hw = nodes
        .iter()
        .zip(&views)
        .filter_map(|((f, _), v)| match v {
            Some(Ok(q)) if q.leader_id == f.id as i32 => Some((q.leader_epoch, q.high_watermark)),
            _ => None,
        })
        .max()
        .map(|(_, hw)| hw);

    println!(
        "{:<5} {:>8}  {:<11} {:>6} {:>5} {:>10} {:>8} {:>5}",
        "node", "pid", "state", "leader", "term", "committed", "log end", "lag"
    );
    const NO_VIEW: &str = "      -     -          -        -     -";
    let mut problems = Vec::new();
    for ((f, pid), view) in nodes.iter().zip(&views) {
        let id = f.id as i32;
        let q = match view {
            None => {
                println!("{:<5} {:>8}  {:<11}{NO_VIEW}", f.id, pid, "down");
                continue;
            }
            Some(Err(e)) => {
                println!("{:<5} {:>8}  {:<11}{NO_VIEW}", f.id, pid, "no answer");
                problems.push(format!("node {}: {e:#}", f.id));
                continue;
            }
            Some(Ok(q)) => q,
        };
        let own_end = q
            .current_voters
            .iter()
            .chain(&q.observers)
            .find(|r| r.replica_id == id)
            .map(|r| r.log_end_offset)
            .filter(|&end| end >= 0);
        let state = if q.leader_id == id {
            "leader"
        } else if q.observers.iter().any(|r| r.replica_id == id) {
            "learner"
        } else if q.leader_id < 0 {
            "no leader"
        } else {
            "follower"
        };
        let dash = |v: Option<i64>| v.map_or("-".to_string(), |v| v.to_string());
        println!(
            "{:<5} {:>8}  {:<11} {:>6} {:>5} {:>10} {:>8} {:>5}",
            f.id,
            pid,
            state,
            dash((q.leader_id >= 0).then_some(q.leader_id.into())),
            q.leader_epoch,
            q.high_watermark,
            dash(own_end),
            dash(leader_hw.zip(own_end).map(|(hw, end)| hw - end)),
        );
    }
    for p in problems {
        println!("{p}");
    }
    Ok(())
}

/// One DescribeQuorum v1 round trip on a fresh connection; returns this node's view
/// of the metadata log (`__cluster_metadata`, partition 0).
fn describe_quorum(port: u16) -> Result<QuorumState> {
    // v1 has all `status` shows; v2 only adds node listeners and directory ids.
    const VERSION: i16 = 1;
    let api = ApiKey::DescribeQuorum;
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut stream = TcpStream::connect_timeout(&addr, QUERY_TIMEOUT)
        .with_context(|| format!("connecting to {addr}"))?;
    stream.set_read_timeout(Some(QUERY_TIMEOUT))?;
    stream.set_write_timeout(Some(QUERY_TIMEOUT))?;

    let request = DescribeQuorumRequest {
        topics: vec![TopicData {
            topic_name: "__cluster_metadata".into(),
            partitions: vec![PartitionData { partition_index: 0 }],
        }],
    };
    let correlation_id = 1;
    let frame = encode_request(
        api,
        VERSION,
        correlation_id,
        Some("xtask-cluster"),
        &request,
    )?;
    stream.write_all(&frame)?;

    // The broker closes the connection instead of answering a request it cannot
    // handle or encode; read_exact alone would only say "failed to fill whole buffer".
    let closed = "connection closed without a (complete) DescribeQuorum response";
    let mut prefix = [0u8; 4];
    stream.read_exact(&mut prefix).context(closed)?;
    let size = frame_size(&prefix, 1 << 20)?.context("short size prefix")?;
    let mut body = vec![0u8; size];
    stream.read_exact(&mut body).context(closed)?;
    let mut body = Bytes::from(body);
    let got = decode_response_header(&mut body, api.response_header_version(VERSION))?;
    ensure!(
        got == correlation_id,
        "correlation id {got}, expected {correlation_id}"
    );
    let response = DescribeQuorumResponse::decode(&mut body, VERSION)?;
    ensure!(
        response.error_code == 0,
        "DescribeQuorum error {}",
        response.error_code
    );
    let partition = response
        .topics
        .into_iter()
        .flat_map(|t| t.partitions)
        .next()
        .context("DescribeQuorum response without a partition")?;
    ensure!(
        partition.error_code == 0,
        "DescribeQuorum partition error {}",
        partition.error_code
    );
    Ok(partition)
}
