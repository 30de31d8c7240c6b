//! What `/health/ready` means: the node has joined the metadata quorum, the controller
//! has registered and unfenced its broker (it has caught up with the metadata), and
//! every partition it follows is back in sync. An orchestrator that waits for this
//! before stopping the next node (a StatefulSet rolling update, a PodDisruptionBudget)
//! never takes a second replica of a partition out of its ISR.
//!
//! Liveness asks less: that the process answers at all. A node waiting for a quorum
//! that has not formed yet is alive; restarting it would not help.

use sluice_controller::MetadataImage;

use crate::broker::Broker;

/// Partitions named in a not-ready answer, at most.
const NAMED: usize = 5;

/// `Ok` when ready, else why not (the body of the 503 answer).
pub fn readiness(broker: &Broker) -> Result<(), String> {
    let node = broker.config.node_id;
    if broker.cluster.leader().is_none() {
        return Err("no metadata quorum leader is known to this node".into());
    }
    let image = broker.cluster.image();
    match image.broker(node) {
        None => return Err("this broker is not registered with the controller yet".into()),
        Some(b) if b.fenced => {
            return Err(
                "the controller holds this broker fenced (catching up, or shutting down)".into(),
            )
        }
        Some(_) => {}
    }
    let behind = followers_out_of_sync(broker, &image);
    if behind.is_empty() {
        return Ok(());
    }
    let mut names: Vec<String> = behind.iter().take(NAMED).cloned().collect();
    if behind.len() > NAMED {
        names.push(format!("... ({} in all)", behind.len()));
    }
    Err(format!(
        "partitions this node follows are not in sync yet: {}",
        names.join(", ")
    ))
}

/// Partitions this node hosts as a follower of a live leader without being in their
/// ISR. A partition whose leader is gone or fenced cannot be caught up with, so it
/// does not hold readiness back (the node may be the one that can lead it next).
fn followers_out_of_sync(broker: &Broker, image: &MetadataImage) -> Vec<String> {
    let node = broker.config.node_id;
    let mut out = Vec::new();
    for topic in broker.topics.all() {
        for p in &topic.partitions {
            if p.replica.is_none() || p.led_here || p.isr.contains(&node) {
                continue;
            }
            let leader_live = p.leader >= 0 && image.broker(p.leader).is_some_and(|b| !b.fenced);
            if leader_live {
                out.push(format!("{}-{}", topic.name, p.index));
            }
        }
    }
    out
}
