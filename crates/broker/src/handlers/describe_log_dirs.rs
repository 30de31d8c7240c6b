//! DescribeLogDirs (key 35), v0-4: the data directory with each partition's size.
//! Needs Describe on the cluster; without it, as in Kafka, no results and (v3+, the
//! first with a top-level error) CLUSTER_AUTHORIZATION_FAILED.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use sluice_auth::acl::Operation;
use sluice_protocol::error::ErrorCode;
use sluice_protocol::messages::describe_log_dirs_response::{
    DescribeLogDirsPartition, DescribeLogDirsResult, DescribeLogDirsTopic,
};
use sluice_protocol::messages::{DescribeLogDirsRequest, DescribeLogDirsResponse};

use crate::broker::Broker;
use crate::router::ConnectionInfo;

pub const VERSIONS: (i16, i16) = (0, 4);

pub fn handle(
    broker: &Arc<Broker>,
    conn: &ConnectionInfo,
    req: DescribeLogDirsRequest,
    version: i16,
) -> DescribeLogDirsResponse {
    if !broker
        .access
        .authz(conn)
        .allows_cluster(Operation::Describe)
    {
        return DescribeLogDirsResponse {
            error_code: if version >= 3 {
                ErrorCode::ClusterAuthorizationFailed.code()
            } else {
                ErrorCode::None.code()
            },
            results: Vec::new(),
            ..Default::default()
        };
    }
    // Indexed once, so a request naming many topics and partitions costs linear time.
    let wanted: Option<HashMap<String, HashSet<i32>>> = req.topics.map(|list| {
        let mut m: HashMap<String, HashSet<i32>> = HashMap::new();
        for w in list {
            m.entry(w.topic).or_default().extend(w.partitions);
        }
        m
    });
    let mut topics = Vec::new();
    for t in broker.topics.all() {
        let filter: Option<&HashSet<i32>> = match &wanted {
            None => None,
            Some(m) => match m.get(&t.name) {
                Some(set) => Some(set),
                None => continue,
            },
        };
        let partitions: Vec<_> = t
            .hosted()
            .filter(|p| filter.is_none_or(|f| f.contains(&p.index)))
            .map(|p| DescribeLogDirsPartition {
                partition_index: p.index,
                partition_size: p.log.size_bytes() as i64,
                // The leader's lag is 0 by definition (Kafka reports the future-log lag here).
                offset_lag: 0,
                is_future_key: false,
            })
            .collect();
        if !partitions.is_empty() {
            topics.push(DescribeLogDirsTopic {
                name: t.name.clone(),
                partitions,
            });
        }
    }
    let (total_bytes, usable_bytes) = volume_bytes(&broker.config.data_dir);
    DescribeLogDirsResponse {
        results: vec![DescribeLogDirsResult {
            error_code: ErrorCode::None.code(),
            log_dir: broker.config.data_dir.display().to_string(),
            topics,
            total_bytes,
            usable_bytes,
        }],
        ..Default::default()
    }
}

/// Size and space available to us of the data dir's volume; -1 (Kafka's "unknown")
/// when statvfs fails.
fn volume_bytes(dir: &std::path::Path) -> (i64, i64) {
    match rustix::fs::statvfs(dir) {
        Ok(v) => {
            let total = v.f_blocks.saturating_mul(v.f_frsize);
            let usable = v.f_bavail.saturating_mul(v.f_frsize);
            (
                i64::try_from(total).unwrap_or(i64::MAX),
                i64::try_from(usable).unwrap_or(i64::MAX),
            )
        }
        Err(_) => (-1, -1),
    }
}
