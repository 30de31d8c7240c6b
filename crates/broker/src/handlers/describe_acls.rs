//! DescribeAcls (key 29), v0-3: the ACL bindings matching a filter, grouped by
//! resource pattern. Needs Describe on the cluster.

use std::collections::BTreeMap;
use std::sync::Arc;

use sluice_auth::acl::{AclBindingFilter, Operation, PatternType, Permission, ResourceType};
use sluice_protocol::error::ErrorCode;
use sluice_protocol::messages::describe_acls_response::{AclDescription, DescribeAclsResource};
use sluice_protocol::messages::{DescribeAclsRequest, DescribeAclsResponse};

use crate::broker::Broker;
use crate::router::ConnectionInfo;

pub const VERSIONS: (i16, i16) = (0, 3);

pub fn handle(
    broker: &Arc<Broker>,
    conn: &ConnectionInfo,
    req: DescribeAclsRequest,
    version: i16,
) -> DescribeAclsResponse {
    let fail = |code: ErrorCode, message: &str| DescribeAclsResponse {
        error_code: code.code(),
        error_message: Some(message.to_string()),
        ..Default::default()
    };
    if !broker
        .access
        .authz(conn)
        .allows_cluster(Operation::Describe)
    {
        return fail(
            ErrorCode::ClusterAuthorizationFailed,
            "Cluster authorization failed.",
        );
    }
    let filter = AclBindingFilter {
        resource_type: ResourceType::from_code(req.resource_type_filter),
        resource_name: req.resource_name_filter,
        // v0 knew only literal ACLs.
        pattern_type: if version == 0 {
            PatternType::Literal
        } else {
            PatternType::from_code(req.pattern_type_filter)
        },
        principal: req.principal_filter,
        host: req.host_filter,
        operation: Operation::from_code(req.operation),
        permission: Permission::from_code(req.permission_type),
    };
    if let Err(e) = filter.validate() {
        return fail(ErrorCode::InvalidRequest, &e.to_string());
    }
    let image = broker.cluster.image();
    let mut resources: BTreeMap<(i8, String, i8), Vec<AclDescription>> = BTreeMap::new();
    for b in image.acls().matching(&filter) {
        resources
            .entry((
                b.resource_type.code(),
                b.resource_name.clone(),
                b.pattern_type.code(),
            ))
            .or_default()
            .push(AclDescription {
                principal: b.principal.clone(),
                host: b.host.clone(),
                operation: b.operation.code(),
                permission_type: b.permission.code(),
            });
    }
    DescribeAclsResponse {
        resources: resources
            .into_iter()
            .map(
                |((resource_type, resource_name, pattern_type), acls)| DescribeAclsResource {
                    resource_type,
                    resource_name,
                    pattern_type,
                    acls,
                },
            )
            .collect(),
        ..Default::default()
    }
}
