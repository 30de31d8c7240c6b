//! `cargo xtask`: the project's automation entry point (see DESIGN.md, "xtask/").
//!
//! Each subcommand lives in its own module; `main` only dispatches. Subcommands
//! to come (ci, tidy, compat, bench, ...) plug in the same way as `codegen`.

mod bench;
mod bench_controller;
mod bench_groups;
mod bench_txn;
mod chaos;
mod ci;
mod cluster;
mod codegen;
mod compat;
mod compose;
mod compose_secure;
mod docker;
mod fuzz;
mod k8s;
mod tidy;
mod util;

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

const USAGE: &str = "\
usage: cargo xtask <command> [args]

commands:
  codegen [--check] [SPEC_DIR]
      Generate crates/protocol/src/{messages/,api.rs} from Kafka's JSON message
      schemas (default SPEC_DIR: ../shared/kafka-specs/message relative to the
      workspace root). --check fails if the committed files are out of date.
  ci [--quick]
      Everything CI runs: fmt, codegen --check, tidy, clippy, build, fuzz,
      compat, and the workspace tests (nextest, release profile). --quick skips
      fuzz and compat.
  tidy
      Check DESIGN's dependency rules and source conventions.
  fuzz [SECONDS]
      Build the cargo-fuzz targets and run each for SECONDS (default 20).
  compat [SUITE...]
      Client scenarios (confluent-kafka, kafka-python, kcat, Sarama), consumer groups
      included, each suite against a fresh broker.
  bench [--null-sink] [...]
      Produce/consume throughput and latency with librdkafka; JSON + SVG in target/bench/.
  bench groups [--quick]
      Consumer-group settle time and commit throughput/latency; JSON + SVG in target/bench/.
  bench transactions [--quick]
      Transactions of 100 records with librdkafka against the idempotent acks=all
      baseline, on one node and three (RF 3): transactions/s, records/s and the
      latency a commit adds; JSON + SVG in target/bench/.
  bench controller [--quick] [--runs N]
      Metadata quorum on 3 local nodes: kill -9 of a broker / of the controller leader
      until every survivor shows it fenced with new leaders, and the CreateTopics round
      trip (to the leader, forwarded); JSON + SVG in target/bench/.
  chaos [--nodes 3] [--kills K] [--seed S] [--duration-secs T] [--interval-ms MS]
        [--pause-ms MS] [--json PATH] [...]
      Chaos test: SIGKILL partition leaders and the controller leader of a 3-node
      cluster under an idempotent acks=all producer; checks no acknowledged write is
      lost, duplicated or reordered, no phantom, no divergent read, ListOffsets latest
      never decreases; prints unavailability per kill. JSON in target/chaos/.
      --docker: the same against the compose cluster (image built, cluster brought up
      and taken down), with docker kill/start and network partitions (docker network
      disconnect of a leader from its peers, --partition-percent, --partition-ms).
  cluster up [--nodes N] [--keep-data] [-- SLUICE_ARGS...] | status | down
  cluster kill --node N | start --node N
      A local cluster of N (1-5, default 3) sluice processes on 127.0.0.1, node i
      serving Kafka on port i9092 (metrics on i9644); state, data and logs in
      target/cluster/.
  docker
      Build the container image sluice:latest (FROM scratch: the release binary and
      the glibc libraries it needs) from deploy/Dockerfile; prints its size.
  compose up|down|smoke [--secure]
      The three-node cluster of deploy/docker-compose.yml (image built first; the
      `docker compose` plugin or docker-compose, whichever this machine has). smoke:
      up, produce and consume from the host, kill a node and carry on, restart it,
      check committed offsets and the lag in /metrics, down. --secure: layered with
      deploy/docker-compose.secure.yml (SASL_SSL clients, SSL between brokers,
      controller mTLS, ACLs) over a test PKI in target/compose-pki; its smoke produces
      and consumes with kcat over SASL_SSL and checks that bad clients are refused.
  k8s-check
      Validate deploy/k8s/ against Kubernetes' schemas (kubernetes-validate, strict,
      offline) and against the binary (flags, ports, probe paths), then run the image
      with the environment the StatefulSet gives pod sluice-1 and check its node id,
      voters and health endpoints. Venv in target/k8s-venv.
  help
      Print this message.";

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some((command, rest)) = args.split_first() else {
        println!("{USAGE}");
        return Ok(());
    };
    match command.as_str() {
        "codegen" => codegen::run(&workspace_root()?, rest),
        "ci" => ci::run_ci(&workspace_root()?, rest),
        "tidy" => tidy::run(&workspace_root()?),
        "fuzz" => fuzz::run(&workspace_root()?, rest),
        "compat" => compat::run(&workspace_root()?, rest),
        "bench" => bench::run(&workspace_root()?, rest),
        "chaos" => chaos::run(&workspace_root()?, rest),
        "cluster" => cluster::run(&workspace_root()?, rest),
        "docker" => docker::run_docker(&workspace_root()?, rest),
        "compose" => compose::run_compose(&workspace_root()?, rest),
        "k8s-check" => k8s::run(&workspace_root()?, rest),
        "help" | "-h" | "--help" => {
            println!("{USAGE}");
            Ok(())
        }
        other => bail!("unknown command `{other}`\n\n{USAGE}"),
    }
}

/// The workspace root: xtask always sits directly below it, so this does not depend
/// on the directory `cargo xtask` was started from.
fn workspace_root() -> Result<PathBuf> {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .context("xtask manifest directory has no parent")
}
