//! DeleteGroups (key 42), v0-2: removes empty groups with their offsets.

use std::sync::Arc;

use sluice_group::Reply;
use sluice_protocol::error::ErrorCode;
use sluice_protocol::messages::delete_groups_response::DeletableGroupResult;
use sluice_protocol::messages::{DeleteGroupsRequest, DeleteGroupsResponse};

use crate::broker::Broker;

pub const VERSIONS: (i16, i16) = (0, 2);

pub async fn handle(
    broker: &Arc<Broker>,
    req: DeleteGroupsRequest,
    _version: i16,
) -> DeleteGroupsResponse {
    let names = req.groups_names.clone();
    match broker
        .groups
        .call(&broker.topics, |c, id| c.delete_groups(req, id))
        .await
    {
        Some(Reply::DeleteGroups(r)) => r,
        _ => DeleteGroupsResponse {
            results: names
                .into_iter()
                .map(|group_id| DeletableGroupResult {
                    group_id,
                    error_code: ErrorCode::CoordinatorNotAvailable.code(),
                })
                .collect(),
            ..Default::default()
        },
    }
}
