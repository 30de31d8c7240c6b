//! DescribeGroups (key 15), v0-5: state, protocol and members (with metadata and
//! assignment when Stable) of each group.
//!
//! Each group needs Describe (else its entry is GROUP_AUTHORIZATION_FAILED and nothing
//! else about it is shown); `authorized_operations`, when asked for, is the principal's
//! own bitfield for that group.

use std::sync::Arc;

use sluice_auth::acl::{Operation, ResourceType};
use sluice_protocol::error::ErrorCode;
use sluice_protocol::messages::describe_groups_response::DescribedGroup;
use sluice_protocol::messages::{DescribeGroupsRequest, DescribeGroupsResponse};

use super::authorized_ops;
use crate::broker::Broker;
use crate::groups::interleave;
use crate::router::ConnectionInfo;

pub const VERSIONS: (i16, i16) = (0, 5);

pub fn handle(
    broker: &Arc<Broker>,
    conn: &ConnectionInfo,
    mut req: DescribeGroupsRequest,
    _version: i16,
) -> DescribeGroupsResponse {
    let authz = broker.access.authz(conn);
    let allowed: Vec<bool> = req
        .groups
        .iter()
        .map(|g| authz.allows_group(Operation::Describe, g))
        .collect();
    let mut refused = Vec::new();
    if allowed.contains(&false) {
        let all = std::mem::take(&mut req.groups);
        for (g, ok) in all.into_iter().zip(&allowed) {
            if *ok {
                req.groups.push(g);
            } else {
                // Kafka's `groupError`: no state, no protocol, operations omitted.
                refused.push(DescribedGroup {
                    group_id: g,
                    error_code: ErrorCode::GroupAuthorizationFailed.code(),
                    authorized_operations: authorized_ops::NOT_REQUESTED,
                    ..Default::default()
                });
            }
        }
    }
    let include_ops = req.include_authorized_operations;
    // The coordinator gets a placeholder; each group's own bitfield is set below.
    let mut resp = broker
        .groups
        .read(|c| c.describe_groups(req, authorized_ops::NOT_REQUESTED));
    if include_ops {
        for g in &mut resp.groups {
            g.authorized_operations = authz.operations(ResourceType::Group, &g.group_id);
        }
    }
    if !refused.is_empty() {
        resp.groups = interleave(&allowed, std::mem::take(&mut resp.groups), refused);
    }
    resp
}
