//! Helpers shared by the controller's integration tests.

use std::time::{Duration, Instant};

use sluice_controller::{Controller, NodeId};

/// How long any wait in these tests may take.
const WAIT: Duration = Duration::from_secs(5);

/// Waits until every node agrees on one leader among them and returns its id.
pub async fn wait_leader(nodes: &[&Controller], not: Option<NodeId>) -> NodeId {
    let deadline = Instant::now() + WAIT;
    loop {
        let leaders: Vec<Option<NodeId>> = nodes
            .iter()
            .map(|n| n.raft().metrics().borrow().current_leader)
            .collect();
        if let Some(Some(leader)) = leaders.first() {
            let agreed = leaders.iter().all(|l| *l == Some(*leader));
            let member = nodes.iter().any(|n| n.node_id() == *leader);
            if agreed && member && Some(*leader) != not {
                return *leader;
            }
        }
        assert!(Instant::now() < deadline, "no agreed leader: {leaders:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
