//! ListGroups (key 16), v0-5: the groups this node coordinates, filtered by state
//! (v4+) and type (v5+).

use std::sync::Arc;

use sluice_protocol::messages::{ListGroupsRequest, ListGroupsResponse};

use crate::broker::Broker;

pub const VERSIONS: (i16, i16) = (0, 5);

pub fn handle(broker: &Arc<Broker>, req: ListGroupsRequest, _version: i16) -> ListGroupsResponse {
    broker.groups.read(|c| c.list_groups(req))
}
