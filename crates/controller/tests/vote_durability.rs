//! A granted vote survives `kill -9`: the store invariant that `save_vote` returns only
//! after sled has flushed the vote (sled alone flushes every 500 ms), checked with real
//! processes.
//!
//! The test binary re-runs itself: each controller node is a separate OS process running
//! the ignored test [`vote_durability_node`], configured through `SLUICE_VD_*` variables,
//! that reports its Raft metrics on stdout as `@@ ...` lines. Three nodes elect a leader;
//! the followers then arm a trap: the moment a follower's vote changes to a vote for
//! another node in a newer term, it prints that vote and aborts on the spot (no cleanup,
//! well inside sled's flush window). The parent SIGKILLs the leader, which makes one
//! survivor vote for the other, and so abort. The parent then opens the dead node's sled
//! store and checks the vote is there, restarts all three nodes, and checks that over
//! the whole run no term had two leaders (from every process's `LEADER` lines).

// A failed step should fail the test; the node processes report on stdout.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use openraft::storage::RaftLogStorage;
use openraft::{ServerState, Vote};
use parking_lot::Mutex;
use sluice_controller::store;
use sluice_controller::{Controller, ControllerConfig, ControllerNode, NodeId};

const ENV_ID: &str = "SLUICE_VD_ID";
const ENV_DIR: &str = "SLUICE_VD_DIR";
/// `id=host:port` for every voter, comma separated.
const ENV_PEERS: &str = "SLUICE_VD_PEERS";
/// `1`: initialize the quorum from this node.
const ENV_INIT: &str = "SLUICE_VD_INIT";
/// `1`: abort on the first vote for another node after following a leader.
const ENV_ARM: &str = "SLUICE_VD_ARM";
/// The child test's name, as libtest knows it.
const CHILD_TEST: &str = "vote_durability_node";
/// Marks the lines a node process reports (libtest prints on the same stdout).
const MARK: &str = "@@ ";

/// Bound of every wait in this test.
const WAIT: Duration = Duration::from_secs(10);

fn config(id: NodeId, dir: &Path) -> ControllerConfig {
    let mut config = ControllerConfig::new(id, dir);
    config.raft.heartbeat_interval = 50;
    config.raft.election_timeout_min = 300;
    config.raft.election_timeout_max = 600;
    config.rpc_timeout = Duration::from_millis(300);
    config.connect_timeout = Duration::from_millis(200);
    config.lifecycle.heartbeat.session_timeout_ms = 3_600_000;
    config.lifecycle.heartbeat.loss_grace_ms = 3_600_000;
    config
}

fn report(line: std::fmt::Arguments<'_>) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{MARK}{line}");
    let _ = out.flush();
}

/// One controller node process (run by [`vote_survives_kill_9`]; returns at once when
/// run on its own).
#[test]
#[ignore = "a node process of vote_survives_kill_9, started by it"]
fn vote_durability_node() {
    let Ok(id) = std::env::var(ENV_ID) else {
        return;
    };
    if std::env::var("RUST_LOG").is_ok() {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_writer(std::io::stderr)
            .try_init();
    }
    let id: NodeId = id.parse().unwrap();
    let dir = PathBuf::from(std::env::var(ENV_DIR).unwrap());
    let peers: BTreeMap<NodeId, ControllerNode> = std::env::var(ENV_PEERS)
        .unwrap()
        .split(',')
        .map(|peer| {
            let (id, addr) = peer.split_once('=').unwrap();
            (id.parse().unwrap(), ControllerNode::new(addr))
        })
        .collect();
    let init = std::env::var(ENV_INIT).as_deref() == Ok("1");
    let armed = std::env::var(ENV_ARM).as_deref() == Ok("1");
    // Die with the parent: it holds our stdin open until then (even if it is SIGKILLed).
    std::thread::spawn(|| {
        let _ = std::io::Read::read_to_end(&mut std::io::stdin(), &mut Vec::new());
        std::process::exit(0);
    });
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    // The watch below runs on this thread, not on a worker the node keeps busy.
    runtime.block_on(run_node(id, &dir, peers, init, armed));
}

async fn run_node(
    id: NodeId,
    dir: &Path,
    peers: BTreeMap<NodeId, ControllerNode>,
    init: bool,
    arm: bool,
) {
    let addr: SocketAddr = peers[&id].rpc_addr.parse().unwrap();
    let deadline = Instant::now() + WAIT;
    let controller = loop {
        let attempt = async {
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|e| e.to_string())?;
            Controller::start(config(id, dir), listener)
                .await
                .map_err(|e| e.to_string())
        };
        match attempt.await {
            Ok(controller) => break controller,
            Err(e) if Instant::now() < deadline => {
                tracing::info!(id, error = %e, "retrying start");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("node {id} did not start: {e}"),
        }
    };
    if init {
        controller.initialize(peers).await.unwrap();
    }
    let mut metrics = controller.raft().metrics();
    let mut last = None;
    // The term of the committed vote for a leader when the trap was armed.
    let mut armed_at: Option<u64> = None;
    loop {
        let m = metrics.borrow_and_update().clone();
        let vote = m.vote;
        if let Some(armed_term) = armed_at {
            if vote.leader_id.term > armed_term && voted_for(&vote) != id {
                // Reported saved: it must be on disk now. Die without any cleanup.
                report(format_args!(
                    "VOTED id={id} term={} for={} committed={}",
                    vote.leader_id.term,
                    voted_for(&vote),
                    vote.committed
                ));
                std::process::abort();
            }
        } else if arm && vote.committed && voted_for(&vote) != id {
            armed_at = Some(vote.leader_id.term);
            report(format_args!(
                "ARMED id={id} term={} leader={}",
                vote.leader_id.term,
                voted_for(&vote)
            ));
        }
        let now = (m.state, m.current_term, m.current_leader, vote);
        if last != Some(now) {
            last = Some(now);
            report(format_args!(
                "STATE id={id} state={:?} term={} leader={} vote_term={} vote_for={} \
                 vote_committed={}",
                m.state,
                m.current_term,
                m.current_leader.map_or("-".to_string(), |l| l.to_string()),
                vote.leader_id.term,
                voted_for(&vote),
                vote.committed,
            ));
            if m.state == ServerState::Leader {
                report(format_args!("LEADER term={} id={id}", m.current_term));
            }
        }
        if metrics.changed().await.is_err() {
            return;
        }
    }
}

/// A node process and the `@@` lines it has printed so far.
struct NodeProcess {
    id: NodeId,
    child: Child,
    /// Held open for the node's life: the node exits when it closes.
    _stdin: Option<std::process::ChildStdin>,
    lines: Arc<Mutex<Vec<String>>>,
}

impl NodeProcess {
    fn spawn(id: NodeId, dir: &Path, peers: &str, init: bool, arm: bool) -> Self {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                CHILD_TEST,
                "--exact",
                "--nocapture",
                "--include-ignored",
                "--test-threads=1",
            ])
            .env(ENV_ID, id.to_string())
            .env(ENV_DIR, dir)
            .env(ENV_PEERS, peers)
            .env(ENV_INIT, if init { "1" } else { "0" })
            .env(ENV_ARM, if arm { "1" } else { "0" })
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        std::thread::spawn({
            let lines = lines.clone();
            move || {
                for line in BufReader::new(stdout).lines() {
                    let Ok(line) = line else { break };
                    if let Some(at) = line.find(MARK) {
                        lines.lock().push(line[at + MARK.len()..].to_string());
                    }
                }
            }
        });
        Self {
            id,
            child,
            _stdin: stdin,
            lines,
        }
    }

    fn lines(&self) -> Vec<String> {
        self.lines.lock().clone()
    }

    /// The reported lines starting with `kind`, as their `key=value` fields.
    fn reports(&self, kind: &str) -> Vec<BTreeMap<String, String>> {
        self.lines()
            .iter()
            .filter_map(|line| line.strip_prefix(kind))
            .filter_map(|rest| rest.strip_prefix(' '))
            .map(fields)
            .collect()
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

fn fields(line: &str) -> BTreeMap<String, String> {
    line.split_whitespace()
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn num(fields: &BTreeMap<String, String>, key: &str) -> u64 {
    fields[key].parse().unwrap()
}

/// Polls `check` every 10 ms until it returns `Some`, failing with `what` after [`WAIT`].
fn wait_for<T>(what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting: {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Every `LEADER term=T id=N` line any process printed, by term.
fn leaders_by_term(all_lines: &[String]) -> BTreeMap<u64, BTreeSet<NodeId>> {
    let mut leaders: BTreeMap<u64, BTreeSet<NodeId>> = BTreeMap::new();
    for line in all_lines {
        if let Some(rest) = line.strip_prefix("LEADER ") {
            let f = fields(rest);
            leaders
                .entry(num(&f, "term"))
                .or_default()
                .insert(num(&f, "id"));
        }
    }
    leaders
}

/// The vote stored in a dead node's sled directory.
fn stored_vote(dir: &Path) -> Option<Vote<NodeId>> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let db = wait_for("the dead node's store unlocks", || store::open_db(dir).ok());
    let (mut log, _) = store::open_stores(&db).unwrap();
    let vote = runtime.block_on(log.read_vote()).unwrap();
    drop(log);
    drop(db);
    vote
}

#[test]
fn vote_survives_kill_9() {
    let started = Instant::now();
    let root = tempfile::tempdir().unwrap();
    let ids: [NodeId; 3] = [1, 2, 3];
    let dirs: BTreeMap<NodeId, PathBuf> = ids
        .iter()
        .map(|&id| (id, root.path().join(format!("node-{id}"))))
        .collect();
    let addrs: Vec<SocketAddr> = {
        let listeners: Vec<std::net::TcpListener> = ids
            .iter()
            .map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap())
            .collect();
        listeners.iter().map(|l| l.local_addr().unwrap()).collect()
    };
    let peers = ids
        .iter()
        .zip(&addrs)
        .map(|(id, addr)| format!("{id}={addr}"))
        .collect::<Vec<_>>()
        .join(",");
    let mut all_lines: Vec<String> = Vec::new();

    // Three armed nodes; node 1 forms the quorum.
    let mut nodes: Vec<NodeProcess> = ids
        .iter()
        .map(|&id| NodeProcess::spawn(id, &dirs[&id], &peers, id == 1, true))
        .collect();
    // Wait for a leader and both followers armed under it.
    let (leader, term) = wait_for("a leader followed by two armed followers", || {
        let armed: Vec<_> = nodes.iter().flat_map(|n| n.reports("ARMED")).collect();
        if armed.len() < 2 {
            return None;
        }
        let leader = num(&armed[0], "leader");
        let term = num(&armed[0], "term");
        let agree = armed
            .iter()
            .all(|a| num(a, "leader") == leader && num(a, "term") == term);
        assert!(agree, "followers armed under different leaders: {armed:?}");
        Some((leader, term))
    });
    println!(
        "leader {leader} in term {term}, after {:?}",
        started.elapsed()
    );

    // kill -9 the leader: one survivor votes for the other and dies at once.
    let leader_index = nodes.iter().position(|n| n.id == leader).unwrap();
    let mut old_leader = nodes.remove(leader_index);
    old_leader.kill();
    all_lines.extend(old_leader.lines());
    let (voter_index, voted) = wait_for("a survivor votes and aborts", || {
        nodes.iter().enumerate().find_map(|(i, n)| {
            let voted = n.reports("VOTED");
            voted.first().cloned().map(|v| (i, v))
        })
    });
    let mut voter = nodes.remove(voter_index);
    let status = wait_for("the voter exits", || voter.child.try_wait().unwrap());
    println!("node {} voted {voted:?} and exited: {status:?}", voter.id);
    assert_eq!(
        status.signal(),
        Some(6),
        "the voter did not abort: {status:?}"
    );
    all_lines.extend(voter.lines());
    let voter_id = voter.id;
    let voted_term = num(&voted, "term");
    let voted_node = num(&voted, "for");
    assert!(voted_term > term);

    // The vote it was told was saved is on disk.
    let stored = stored_vote(&dirs[&voter.id]);
    println!("node {} stored vote: {stored:?}", voter.id);
    let stored = stored.expect("no vote stored at all");
    assert_eq!(
        (stored.leader_id.term, voted_for(&stored)),
        (voted_term, voted_node),
        "node {} reported voting for {voted_node} in term {voted_term} but stored {stored}",
        voter.id
    );

    // Restart everything, unarmed, on the same addresses and stores.
    for mut node in nodes.drain(..) {
        node.kill();
        all_lines.extend(node.lines());
    }
    drop(voter);
    let nodes: Vec<NodeProcess> = ids
        .iter()
        .map(|&id| NodeProcess::spawn(id, &dirs[&id], &peers, false, false))
        .collect();
    let deadline = Instant::now() + WAIT;
    let (new_leader, new_term) = wait_for("the restarted nodes agree on a leader", || {
        if Instant::now() + Duration::from_millis(50) > deadline {
            for n in &nodes {
                println!("node {}: {:#?}", n.id, n.lines());
            }
        }
        let states: Vec<BTreeMap<String, String>> = nodes
            .iter()
            .map(|n| n.reports("STATE").last().cloned())
            .collect::<Option<_>>()?;
        let leader = states[0].get("leader")?.parse::<NodeId>().ok()?;
        let term = num(&states[0], "term");
        let agreed = states.iter().all(|s| {
            s.get("leader").map(String::as_str) == Some(&leader.to_string())
                && num(s, "term") == term
        });
        (agreed && term >= voted_term).then_some((leader, term))
    });
    println!("restarted: leader {new_leader} in term {new_term}");
    // The restarted voter came back with its vote, never an older one (skipping the
    // blank metrics openraft publishes before it has read the store).
    let first_state = nodes
        .iter()
        .find(|n| n.id == voter_id)
        .and_then(|n| {
            n.reports("STATE")
                .into_iter()
                .find(|s| num(s, "term") > 0 || num(s, "vote_term") > 0)
        })
        .unwrap();
    println!("voter's first state after restart: {first_state:?}");
    assert!(
        num(&first_state, "vote_term") >= voted_term,
        "node {voter_id} restarted with an older vote: {first_state:?}"
    );
    for node in &nodes {
        all_lines.extend(node.lines());
    }
    drop(nodes);

    // openraft's default leader-id mode orders votes by (term, node), so two candidates
    // of one term could in principle both win, the later (higher node id) superseding
    // the other; in these elections (one candidate, then two nodes) neither can, so a
    // second leader in a term here means a forgotten vote.
    let leaders = leaders_by_term(&all_lines);
    println!("leaders by term: {leaders:?}");
    for (term, ids) in &leaders {
        assert_eq!(ids.len(), 1, "term {term} had two leaders: {ids:?}");
    }
    assert_eq!(leaders.get(&term), Some(&BTreeSet::from([leader])));
    assert_eq!(leaders.get(&new_term), Some(&BTreeSet::from([new_leader])));
    println!("done in {:?}", started.elapsed());
    assert!(started.elapsed() < Duration::from_secs(30));
}

/// The node a vote is for (0 for none: node ids start at 1).
fn voted_for(vote: &openraft::Vote<u64>) -> u64 {
    vote.leader_id().voted_for().unwrap_or(0)
}
