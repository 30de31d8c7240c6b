//! DescribeCluster (key 60), v0-1: cluster id, controller and brokers.
//!
//! As in Kafka (`AuthHelper.computeDescribeClusterResponse`), anyone may describe the
//! cluster (it tells no more than Metadata does); Describe on the cluster gates only the
//! authorized operations, which are 0 without it.

use std::sync::Arc;

use sluice_protocol::error::ErrorCode;
use sluice_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use sluice_protocol::messages::{DescribeClusterRequest, DescribeClusterResponse};

use super::authorized_ops;
use super::metadata::{brokers_on_listener, cluster_operations};
use crate::broker::Broker;
use crate::router::ConnectionInfo;

pub const VERSIONS: (i16, i16) = (0, 1);

/// KIP-919 endpoint types: brokers (1) or controllers (2).
const ENDPOINT_BROKERS: i8 = 1;

pub fn handle(
    broker: &Arc<Broker>,
    conn: &ConnectionInfo,
    req: DescribeClusterRequest,
    version: i16,
) -> DescribeClusterResponse {
    let listener = conn.listener;
    if version >= 1 && req.endpoint_type != ENDPOINT_BROKERS {
        return DescribeClusterResponse {
            error_code: ErrorCode::UnsupportedEndpointType.code(),
            error_message: Some("The broker listener only describes brokers".into()),
            endpoint_type: req.endpoint_type,
            cluster_id: broker.cluster_id.clone(),
            ..Default::default()
        };
    }
    DescribeClusterResponse {
        cluster_id: broker.cluster_id.clone(),
        controller_id: broker
            .cluster
            .leader()
            .and_then(|id| i32::try_from(id).ok())
            .unwrap_or(broker.config.node_id),
        brokers: brokers_on_listener(broker, &broker.cluster.image(), listener)
            .into_iter()
            .map(|b| DescribeClusterBroker {
                broker_id: b.node_id,
                host: b.host,
                port: b.port,
                rack: b.rack,
            })
            .collect(),
        cluster_authorized_operations: if req.include_cluster_authorized_operations {
            cluster_operations(&broker.access.authz(conn))
        } else {
            authorized_ops::NOT_REQUESTED
        },
        ..Default::default()
    }
}
