//! ListGroups (key 16), v0-5: the groups this node coordinates, filtered by state
//! (v4+) and type (v5+). Describe on the cluster lists every group; otherwise only
//! the groups the principal may Describe are listed (as Kafka does).

use std::sync::Arc;

use sluice_auth::acl::Operation;
use sluice_protocol::messages::{ListGroupsRequest, ListGroupsResponse};

use crate::broker::Broker;
use crate::router::ConnectionInfo;

pub const VERSIONS: (i16, i16) = (0, 5);

pub fn handle(
    broker: &Arc<Broker>,
    conn: &ConnectionInfo,
    req: ListGroupsRequest,
    _version: i16,
) -> ListGroupsResponse {
    let authz = broker.access.authz(conn);
    let mut resp = broker.groups.read(|c| c.list_groups(req));
    if !authz.allows_cluster(Operation::Describe) {
        resp.groups
            .retain(|g| authz.allows_group(Operation::Describe, &g.group_id));
    }
    resp
}
