//! DeleteGroups (key 42), v0-2: removes empty groups with their offsets. Each group
//! needs Delete, else it answers GROUP_AUTHORIZATION_FAILED and is left alone.

use std::sync::Arc;

use sluice_auth::acl::Operation;
use sluice_group::Reply;
use sluice_protocol::error::ErrorCode;
use sluice_protocol::messages::delete_groups_response::DeletableGroupResult;
use sluice_protocol::messages::{DeleteGroupsRequest, DeleteGroupsResponse};

use crate::broker::Broker;
use crate::groups::interleave;
use crate::router::ConnectionInfo;

pub const VERSIONS: (i16, i16) = (0, 2);

fn result(group_id: String, code: ErrorCode) -> DeletableGroupResult {
    DeletableGroupResult {
        group_id,
        error_code: code.code(),
    }
}

pub async fn handle(
    broker: &Arc<Broker>,
    conn: &ConnectionInfo,
    mut req: DeleteGroupsRequest,
    _version: i16,
) -> DeleteGroupsResponse {
    let allowed: Vec<bool> = {
        let authz = broker.access.authz(conn);
        req.groups_names
            .iter()
            .map(|g| authz.allows_group(Operation::Delete, g))
            .collect()
    };
    let mut refused = Vec::new();
    if allowed.contains(&false) {
        let all = std::mem::take(&mut req.groups_names);
        for (g, ok) in all.into_iter().zip(&allowed) {
            if *ok {
                req.groups_names.push(g);
            } else {
                refused.push(result(g, ErrorCode::GroupAuthorizationFailed));
            }
        }
    }
    let names = req.groups_names.clone();
    let mut resp = if names.is_empty() && !refused.is_empty() {
        DeleteGroupsResponse::default()
    } else {
        match broker
            .groups
            .call(&broker.topics, |c, id| c.delete_groups(req, id))
            .await
        {
            Some(Reply::DeleteGroups(r)) => r,
            _ => DeleteGroupsResponse {
                results: names
                    .into_iter()
                    .map(|g| result(g, ErrorCode::CoordinatorNotAvailable))
                    .collect(),
                ..Default::default()
            },
        }
    };
    if !refused.is_empty() {
        resp.results = interleave(&allowed, std::mem::take(&mut resp.results), refused);
    }
    resp
}
