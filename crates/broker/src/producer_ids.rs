//! Producer ids for idempotent producers: handed out from blocks the controller
//! allocates to this broker (an `AllocateProducerIds` metadata record, Kafka's
//! KIP-730), so ids are unique across the cluster and across restarts without any
//! broker-local persistence.

use sluice_controller::{MetadataRecord, MetadataResponse};
use sluice_protocol::error::ErrorCode;
use tokio::sync::Mutex;
use tracing::{debug, warn};

use crate::cluster::Cluster;

#[derive(Debug, Default)]
struct Block {
    next: i64,
    end: i64,
}

/// The block this broker is handing ids out of.
#[derive(Debug, Default)]
pub struct ProducerIds {
    block: Mutex<Block>,
}

impl ProducerIds {
    /// The next unused producer id, fetching a new block from the controller when the
    /// current one is used up.
    pub async fn next(&self, cluster: &Cluster) -> Result<i64, ErrorCode> {
        let mut block = self.block.lock().await;
        if block.next >= block.end {
            let node = cluster.node_id();
            let epoch = cluster
                .image()
                .broker(node)
                .map(|b| b.epoch)
                .ok_or(ErrorCode::CoordinatorLoadInProgress)?;
            match cluster
                .write(MetadataRecord::AllocateProducerIds {
                    broker_id: node,
                    broker_epoch: epoch,
                })
                .await
            {
                Ok(MetadataResponse::ProducerIds(b)) => {
                    debug!(
                        first = b.first_producer_id,
                        size = b.size,
                        "producer id block allocated"
                    );
                    block.next = b.first_producer_id;
                    block.end = b.first_producer_id.saturating_add(b.size);
                }
                Ok(other) => {
                    warn!(response = ?other, "producer id allocation refused");
                    return Err(ErrorCode::CoordinatorNotAvailable);
                }
                Err(e) => {
                    debug!(error = %e.message, "producer id allocation failed");
                    return Err(ErrorCode::CoordinatorNotAvailable);
                }
            }
        }
        let id = block.next;
        block.next += 1;
        Ok(id)
    }
}
