//! The containers of the compose cluster (`deploy/docker-compose.yml`) behind
//! [`Nodes`], for `cargo xtask chaos --docker`: the xtask brings the cluster up and down
//! and names each node's container and Kafka address; this only shells out to `docker`
//! for the faults.
//!
//! - kill: `docker kill` (SIGKILL). The services' `restart: unless-stopped` does not
//!   bring a killed container back (Docker counts a kill as a manual stop), so the node
//!   stays down until [`Nodes::restart`] runs `docker start`.
//! - partition: `docker network disconnect` from the network the nodes talk to each
//!   other on; each node reaches the host through a network of its own, so clients
//!   still reach it on its external listener. The reconnect restores the DNS aliases
//!   the container had there (its service name, which its peers resolve).

use std::collections::BTreeMap;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::cluster::metadata_at;
use crate::nodes::Nodes;

/// Bound on a restarted container serving clients again (it recovers its logs and
/// waits to be unfenced first; a container also takes longer to start than a process).
pub const RESTART_TIMEOUT: Duration = Duration::from_secs(60);

/// One node of the compose cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ComposeNode {
    pub id: i32,
    /// The container's name or id.
    pub container: String,
    /// Its Kafka address on the host (the external listener).
    pub addr: String,
}

impl ComposeNode {
    /// Parses `ID=CONTAINER@HOST:PORT`, as `cargo xtask chaos --docker` passes it.
    pub fn parse(spec: &str) -> Result<ComposeNode> {
        let parsed = spec.split_once('=').and_then(|(id, rest)| {
            let (container, addr) = rest.split_once('@')?;
            Some((id.parse().ok()?, container, addr))
        });
        match parsed {
            Some((id, container, addr)) if !container.is_empty() && addr.contains(':') => {
                Ok(ComposeNode {
                    id,
                    container: container.to_string(),
                    addr: addr.to_string(),
                })
            }
            _ => bail!("`{spec}` is not ID=CONTAINER@HOST:PORT"),
        }
    }
}

/// The compose cluster as the chaos driver sees it. Dropping it leaves the containers
/// as they are: the xtask that started them takes them down.
pub struct ComposeCluster {
    nodes: Vec<ComposeNode>,
    /// The Docker network of node-to-node traffic (compose's `<project>_internal`).
    network: String,
    /// Nodes killed and not started again.
    down: Vec<i32>,
    /// Nodes cut off from `network`, with the DNS aliases to restore on reconnecting.
    cut: BTreeMap<i32, Vec<String>>,
}

impl ComposeCluster {
    /// The cluster of `nodes`, whose containers must be running and attached to
    /// `network`.
    pub fn new(mut nodes: Vec<ComposeNode>, network: &str) -> Result<ComposeCluster> {
        nodes.sort_by_key(|n| n.id);
        if nodes.windows(2).any(|w| w[0].id == w[1].id) {
            bail!("a node id is given twice");
        }
        let cluster = ComposeCluster {
            nodes,
            network: network.to_string(),
            down: Vec::new(),
            cut: BTreeMap::new(),
        };
        for n in &cluster.nodes {
            let running = docker(&["inspect", "--format", "{{.State.Running}}", &n.container])?;
            if running.trim() != "true" {
                bail!("container {} of node {} is not running", n.container, n.id);
            }
            cluster.aliases(n)?;
        }
        Ok(cluster)
    }

    pub fn nodes(&self) -> &[ComposeNode] {
        &self.nodes
    }

    pub fn network(&self) -> &str {
        &self.network
    }

    fn node(&self, id: i32) -> Result<&ComposeNode> {
        self.nodes
            .iter()
            .find(|n| n.id == id)
            .with_context(|| format!("no node {id}"))
    }

    /// The DNS aliases of `node`'s container on the node-to-node network (an error if
    /// it is not attached to it).
    fn aliases(&self, node: &ComposeNode) -> Result<Vec<String>> {
        let format = format!(
            "{{{{json (index .NetworkSettings.Networks \"{}\")}}}}",
            self.network
        );
        let out = docker(&["inspect", "--format", &format, &node.container])?;
        let endpoint: serde_json::Value = serde_json::from_str(out.trim())
            .with_context(|| format!("docker inspect {}: {}", node.container, out.trim()))?;
        if endpoint.is_null() {
            bail!(
                "container {} of node {} is not attached to network {}",
                node.container,
                node.id,
                self.network
            );
        }
        Ok(endpoint["Aliases"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default())
    }
}

impl Nodes for ComposeCluster {
    fn ids(&self) -> Vec<i32> {
        self.nodes.iter().map(|n| n.id).collect()
    }

    fn addr(&self, id: i32) -> String {
        self.node(id).map(|n| n.addr.clone()).unwrap_or_default()
    }

    fn is_live(&self, id: i32) -> bool {
        !self.down.contains(&id)
    }

    fn kill9(&mut self, id: i32) -> Result<()> {
        let container = self.node(id)?.container.clone();
        docker(&["kill", "--signal", "KILL", &container])?;
        self.down.push(id);
        Ok(())
    }

    /// `docker start`, then waits until the node answers Metadata listing itself as a
    /// live broker: what a process's "listening" line means (the broker opens its
    /// Kafka listeners only once the quorum unfenced it).
    fn restart(&mut self, id: i32) -> Result<()> {
        let node = self.node(id)?.clone();
        docker(&["start", &node.container])?;
        self.down.retain(|&d| d != id);
        let start = Instant::now();
        loop {
            let last = match metadata_at(&node.addr) {
                Ok(m) if m.brokers.iter().any(|b| b.node_id == id) => return Ok(()),
                Ok(_) => "it does not list itself as a broker yet".to_string(),
                Err(e) => e.to_string(),
            };
            if start.elapsed() > RESTART_TIMEOUT {
                bail!(
                    "node {id} (container {}) did not serve Metadata at {} within {RESTART_TIMEOUT:?}: {last}",
                    node.container,
                    node.addr
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn can_partition(&self) -> bool {
        true
    }

    fn isolate(&mut self, id: i32) -> Result<()> {
        let node = self.node(id)?.clone();
        let aliases = self.aliases(&node)?;
        docker(&["network", "disconnect", &self.network, &node.container])?;
        self.cut.insert(id, aliases);
        Ok(())
    }

    fn reconnect(&mut self, id: i32) -> Result<()> {
        let node = self.node(id)?.clone();
        let aliases = self
            .cut
            .get(&id)
            .with_context(|| format!("node {id} is not cut off"))?
            .clone();
        let mut args = vec!["network", "connect"];
        for a in &aliases {
            args.extend(["--alias", a.as_str()]);
        }
        args.extend([self.network.as_str(), node.container.as_str()]);
        docker(&args)?;
        self.cut.remove(&id);
        Ok(())
    }

    fn isolated(&self) -> Vec<i32> {
        self.cut.keys().copied().collect()
    }
}

/// Runs `docker args` and returns its stdout; the error names the command and holds
/// what docker wrote on stderr.
fn docker(args: &[&str]) -> Result<String> {
    let out = Command::new("docker")
        .args(args)
        .output()
        .with_context(|| format!("starting `docker {}`", args.join(" ")))?;
    if !out.status.success() {
        bail!(
            "`docker {}` failed ({}): {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_specs_parse() {
        assert_eq!(
            ComposeNode::parse("2=sluice_sluice-2_1@localhost:29092").unwrap(),
            ComposeNode {
                id: 2,
                container: "sluice_sluice-2_1".into(),
                addr: "localhost:29092".into(),
            }
        );
        for bad in ["x=c@h:1", "2=c", "2=@h:1", "2=c@host", "2c@h:1"] {
            assert!(ComposeNode::parse(bad).is_err(), "{bad}");
        }
    }
}
