//! DescribeGroups (key 15), v0-5: state, protocol and members (with metadata and
//! assignment when Stable) of each group.

use std::sync::Arc;

use sluice_protocol::messages::{DescribeGroupsRequest, DescribeGroupsResponse};

use super::authorized_ops;
use crate::broker::Broker;

pub const VERSIONS: (i16, i16) = (0, 5);

pub fn handle(
    broker: &Arc<Broker>,
    req: DescribeGroupsRequest,
    _version: i16,
) -> DescribeGroupsResponse {
    let ops = if req.include_authorized_operations {
        authorized_ops::GROUP
    } else {
        authorized_ops::NOT_REQUESTED
    };
    broker.groups.read(|c| c.describe_groups(req, ops))
}
