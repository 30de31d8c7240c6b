//! [`Nodes`]: the cluster operations the chaos driver (`src/bin/chaos.rs`) needs, so one
//! driver runs against local `sluice` processes ([`Cluster`]) and against the containers
//! of the compose cluster ([`crate::compose::ComposeCluster`]) alike.
//!
//! Views and the controller leader come over the Kafka API of the nodes either way
//! (provided methods), so both variants judge the cluster by the same answers.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::{Duration, Instant};

use anyhow::{bail, Result};

use crate::cluster::{metadata_at, quorum_at, Cluster, Quorum, View};

/// A cluster whose nodes can be killed, restarted and (where the cluster can) cut off
/// from their peers while clients still reach them.
pub trait Nodes {
    /// Every node id, in order.
    fn ids(&self) -> Vec<i32>;

    /// Node `id`'s Kafka address, as clients reach it.
    fn addr(&self, id: i32) -> String;

    /// Whether node `id` runs, as far as the harness knows (not killed).
    fn is_live(&self, id: i32) -> bool;

    /// Kills node `id` with SIGKILL: a crash, no controlled shutdown.
    fn kill9(&mut self, id: i32) -> Result<()>;

    /// Starts killed node `id` again on the same data and waits (bounded) until it
    /// serves clients again (it has rejoined and been unfenced).
    fn restart(&mut self, id: i32) -> Result<()>;

    /// Whether [`Nodes::isolate`] works here.
    fn can_partition(&self) -> bool {
        false
    }

    /// Cuts node `id` off from its peers (brokers and controllers) while clients can
    /// still reach it.
    fn isolate(&mut self, id: i32) -> Result<()> {
        bail!("node {id}: this cluster cannot cut a node off from its peers")
    }

    /// Undoes [`Nodes::isolate`] of node `id`.
    fn reconnect(&mut self, id: i32) -> Result<()> {
        bail!("node {id}: this cluster cannot cut a node off from its peers")
    }

    /// The nodes currently cut off by [`Nodes::isolate`].
    fn isolated(&self) -> Vec<i32> {
        Vec::new()
    }

    /// The nodes that run (see [`Nodes::is_live`]).
    fn live(&self) -> Vec<i32> {
        self.ids()
            .into_iter()
            .filter(|&id| self.is_live(id))
            .collect()
    }

    /// The bootstrap list of every node's Kafka address.
    fn bootstrap(&self) -> String {
        self.ids()
            .into_iter()
            .map(|id| self.addr(id))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Node `id`'s Metadata, summarized.
    fn view(&self, id: i32) -> std::io::Result<View> {
        metadata_at(&self.addr(id)).map(|m| View::of(&m))
    }

    /// What node `id` says of the metadata quorum (`None`: no answer, or an error).
    fn quorum(&self, id: i32) -> Option<Quorum> {
        quorum_at(&self.addr(id))
    }

    /// The controller leader every live node names (same leader and term), itself live
    /// and not `except`, waited for up to `timeout`. Returns it and how long that took.
    fn await_controller_leader(
        &self,
        timeout: Duration,
        except: Option<i32>,
    ) -> Result<(i32, Duration)> {
        let start = Instant::now();
        loop {
            let live = self.live();
            let seen: Option<Vec<Quorum>> = live.iter().map(|&id| self.quorum(id)).collect();
            if let Some(first) = seen.as_ref().and_then(|s| s.first()) {
                let agreed = seen
                    .iter()
                    .flatten()
                    .all(|q| (q.leader, q.epoch) == (first.leader, first.epoch));
                if agreed && live.contains(&first.leader) && Some(first.leader) != except {
                    return Ok((first.leader, start.elapsed()));
                }
            }
            if start.elapsed() >= timeout {
                bail!(
                    "timed out after {timeout:?} waiting for the live nodes to agree on a controller leader"
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// Runs `f`, turning a panic (the process harness panics on timeouts) into an error
/// that starts with `what`.
pub fn guarded<T>(what: &str, f: impl FnOnce() -> T) -> Result<T> {
    catch_unwind(AssertUnwindSafe(f)).map_err(|e| {
        let msg = e
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_default();
        anyhow::anyhow!("{what}: {msg}")
    })
}

impl Nodes for Cluster {
    fn ids(&self) -> Vec<i32> {
        Cluster::ids(self)
    }

    fn addr(&self, id: i32) -> String {
        Cluster::addr(self, id).to_string()
    }

    fn is_live(&self, id: i32) -> bool {
        Cluster::is_live(self, id)
    }

    fn kill9(&mut self, id: i32) -> Result<()> {
        Cluster::kill9(self, id);
        Ok(())
    }

    fn restart(&mut self, id: i32) -> Result<()> {
        guarded(&format!("restart node {id}"), || Cluster::restart(self, id))
    }
}
