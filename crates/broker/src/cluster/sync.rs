//! The task that makes the broker follow the committed metadata: each time the local
//! state machine applies entries it hands the new image to the broker (which opens,
//! leads, follows and deletes replicas accordingly, off the async threads), then
//! publishes the index it reached, which admin writes and the heartbeat wait on.
//!
//! It starts following only once the image holds this broker's current registration.
//! A restarting node replays the metadata log from its last snapshot, passing through
//! old states (a topic later deleted and re-created under its name, say); acting on those
//! could delete live data. The registration is appended after everything committed
//! before it, so an image that holds it holds the whole history up to this start.
//!
//! Changes are coalesced: if several batches are applied while one is being followed,
//! the next round follows the latest image only.

use std::sync::Arc;

use sluice_controller::MetadataImage;
use tracing::{debug, info, warn};

use super::Cluster;

/// What follows the metadata: the broker.
pub trait SyncTarget: Send + Sync + 'static {
    /// Brings the node's state to `image`. Blocking.
    fn follow_image(&self, image: &MetadataImage);
}

pub fn spawn(cluster: Arc<Cluster>, target: Arc<dyn SyncTarget>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut applied = cluster.reader.subscribe();
        let mut status = cluster.status.lock().clone();
        let mut following = false;
        loop {
            applied.borrow_and_update();
            let (image, index) = cluster.reader.image_at();
            if !following {
                let registered = status.as_ref().and_then(|s| s.borrow().epoch);
                let in_image = image.broker(cluster.node_id).map(|b| b.epoch);
                following = registered.is_some() && in_image >= registered;
                if following {
                    info!(
                        index,
                        "metadata replayed up to this broker's registration; following it"
                    );
                }
            }
            if following {
                let image = Arc::new(image);
                if **cluster.image.read() != *image || index == 0 {
                    let (t, img) = (target.clone(), image.clone());
                    let followed = tokio::task::spawn_blocking(move || t.follow_image(&img)).await;
                    if let Err(e) = followed {
                        warn!(error = %e, "following the metadata image failed");
                    }
                    *cluster.image.write() = image;
                }
                debug!(index, "metadata followed");
                cluster.synced.send_if_modified(|current| {
                    let advanced = index > *current;
                    if advanced {
                        *current = index;
                    }
                    advanced
                });
            }
            let status_changed = async {
                match status.as_mut() {
                    Some(s) => s.changed().await.is_ok(),
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                r = applied.changed() => if r.is_err() { return },
                alive = status_changed, if !following => {
                    if !alive {
                        status = None;
                    }
                }
            }
        }
    })
}
