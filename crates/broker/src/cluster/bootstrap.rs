//! Joining the metadata quorum at start: which voters there are, the cluster id they
//! share, forming the quorum on first start (once, on one node), and refusing to start
//! against stored state that disagrees with the configuration.
//!
//! Bootstrapping is idempotent: only a node whose Raft store is empty can initialise, only
//! the lowest-id voter does, and it first waits a few election timeouts for an existing
//! leader to reach it, so a voter whose disk was wiped rejoins the cluster it belonged to
//! instead of founding a second one.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use sluice_controller::{Controller, ControllerNode, NodeId};
use tracing::info;

use crate::config::ClusterConfig;
use crate::error::BrokerError;

/// Parses Kafka's `controller.quorum.voters` form: `1@host:port,2@host:port`.
pub fn parse_voters(list: &str) -> Result<BTreeMap<u64, String>, String> {
    let mut voters = BTreeMap::new();
    for entry in list.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let (id, addr) = entry
            .split_once('@')
            .ok_or_else(|| format!("voter {entry:?} is not ID@HOST:PORT"))?;
        let id: u64 = id
            .parse()
            .map_err(|_| format!("voter {entry:?}: {id:?} is not a node id"))?;
        let port_ok = addr
            .rsplit_once(':')
            .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
        if !port_ok {
            return Err(format!("voter {entry:?}: {addr:?} is not HOST:PORT"));
        }
        if voters.insert(id, addr.to_string()).is_some() {
            return Err(format!("voter id {id} is listed twice"));
        }
    }
    if voters.is_empty() {
        return Err("the voter list is empty".into());
    }
    Ok(voters)
}

/// The cluster id every node of a configuration agrees on without talking: the pinned
/// one, else (several voters) one derived from the voter list, else none (a single node
/// keeps the random id it drew on first start).
pub fn expected_cluster_id(config: &ClusterConfig) -> Option<String> {
    if let Some(id) = &config.cluster_id {
        return Some(id.clone());
    }
    if config.voters.len() < 2 {
        return None;
    }
    let text: Vec<String> = config
        .voters
        .iter()
        .map(|(id, addr)| format!("{id}@{addr}"))
        .collect();
    let text = text.join(",");
    // Two FNV-1a passes with different offsets give 16 stable bytes (std's hasher may
    // change between releases); shown in Kafka's base64 form of a UUID.
    let half = |offset: u64| {
        text.bytes().fold(offset, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
        })
    };
    let mut bytes = [0u8; 16];
    bytes[..8].copy_from_slice(&half(0xcbf2_9ce4_8422_2325).to_be_bytes());
    bytes[8..].copy_from_slice(&half(0x8422_2325_cbf2_9ce4).to_be_bytes());
    Some(sluice_protocol::codec::Uuid(bytes).to_string())
}

/// The voters of the quorum this node belongs to: the configured list, or this node
/// alone at `rpc_addr`.
pub fn voters_or_self(
    config: &ClusterConfig,
    node_id: i32,
    rpc_addr: &str,
) -> BTreeMap<u64, String> {
    if config.voters.is_empty() {
        BTreeMap::from([(node_id as u64, rpc_addr.to_string())])
    } else {
        config.voters.clone()
    }
}

/// Checks the stored membership against the configured voters, and forms the quorum if
/// this is its first start and this node is the one to do it.
pub async fn join(
    controller: &Controller,
    voters: &BTreeMap<u64, String>,
    wait_for_existing: Duration,
) -> Result<(), BrokerError> {
    let node_id = controller.node_id();
    let configured: BTreeSet<NodeId> = voters.keys().copied().collect();
    let raft = controller.raft();
    let initialized = raft
        .is_initialized()
        .await
        .map_err(|e| BrokerError::Metadata(format!("reading the quorum state: {e}")))?;
    if initialized {
        let stored: BTreeSet<NodeId> = {
            let metrics = raft.metrics();
            let m = metrics.borrow();
            m.membership_config.membership().voter_ids().collect()
        };
        if stored != configured {
            return Err(BrokerError::Metadata(format!(
                "the configured voters {configured:?} disagree with the voters {stored:?} stored \
                 in this node's metadata log; refusing to start (changing the voter set is not \
                 supported: restore the original --voters, or start with an empty data dir)"
            )));
        }
        info!(voters = ?stored, "rejoining the metadata quorum");
        return Ok(());
    }
    if configured.first() != Some(&node_id) {
        // Another voter forms the quorum (or it exists): its leader will reach us.
        info!(voters = ?configured, "waiting to be reached by the metadata quorum");
        return Ok(());
    }
    if voters.len() > 1 {
        // A leader of an existing quorum appends to us within a heartbeat or two.
        let mut metrics = raft.metrics();
        let joined = tokio::time::timeout(wait_for_existing, async {
            loop {
                if metrics
                    .borrow()
                    .membership_config
                    .membership()
                    .voter_ids()
                    .next()
                    .is_some()
                {
                    return;
                }
                if metrics.changed().await.is_err() {
                    return;
                }
            }
        })
        .await;
        if joined.is_ok() {
            info!("an existing metadata quorum reached this node; not initialising");
            return Ok(());
        }
    }
    let members: BTreeMap<NodeId, ControllerNode> = voters
        .iter()
        .map(|(id, addr)| (*id, ControllerNode::new(addr.clone())))
        .collect();
    match controller.initialize(members).await {
        Ok(true) => info!(voters = ?configured, "initialised a new metadata quorum"),
        // Someone reached us between the check and the call: that is the quorum to join.
        Ok(false) => info!("metadata quorum already initialised"),
        Err(e) => {
            return Err(BrokerError::Metadata(format!(
                "initialising the quorum: {e}"
            )))
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn voters_parse_in_kafkas_form() {
        let v = parse_voters("1@a:9093, 2@b.example:19093,3@127.0.0.1:1").unwrap();
        assert_eq!(v.len(), 3);
        assert_eq!(v[&2], "b.example:19093");
        for bad in ["", "1@a", "x@a:1", "1@:5", "1@a:1,1@b:2", "1a:1"] {
            assert!(parse_voters(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn derived_cluster_ids_agree_and_differ_by_voters() {
        let mut a = ClusterConfig::default();
        assert_eq!(expected_cluster_id(&a), None);
        a.voters = parse_voters("1@h:1,2@h:2,3@h:3").unwrap();
        let mut b = a.clone();
        assert_eq!(expected_cluster_id(&a), expected_cluster_id(&b));
        b.voters = parse_voters("1@h:1,2@h:2,3@h:4").unwrap();
        assert_ne!(expected_cluster_id(&a), expected_cluster_id(&b));
        b.cluster_id = Some("pinned".into());
        assert_eq!(expected_cluster_id(&b).as_deref(), Some("pinned"));
    }
}
