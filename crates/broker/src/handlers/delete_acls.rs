//! DeleteAcls (key 31), v0-3: removes the ACL bindings matching each filter and
//! answers, per filter, the bindings it removed. Needs Alter on the cluster.
//!
//! The matches are computed from this node's image after catching up with the quorum,
//! and the exact bindings are written as one record, so a binding created concurrently
//! is never removed without being reported.

use std::collections::BTreeSet;
use std::sync::Arc;

use sluice_auth::acl::{
    AclBinding, AclBindingFilter, Operation, PatternType, Permission, ResourceType,
};
use sluice_controller::{MetadataRecord, MetadataResponse};
use sluice_protocol::error::ErrorCode;
use sluice_protocol::messages::delete_acls_request::DeleteAclsFilter;
use sluice_protocol::messages::delete_acls_response::{
    DeleteAclsFilterResult, DeleteAclsMatchingAcl,
};
use sluice_protocol::messages::{DeleteAclsRequest, DeleteAclsResponse};

use crate::broker::Broker;
use crate::router::ConnectionInfo;

pub const VERSIONS: (i16, i16) = (0, 3);

fn filter(f: DeleteAclsFilter, version: i16) -> AclBindingFilter {
    AclBindingFilter {
        resource_type: ResourceType::from_code(f.resource_type_filter),
        resource_name: f.resource_name_filter,
        pattern_type: if version == 0 {
            PatternType::Literal
        } else {
            PatternType::from_code(f.pattern_type_filter)
        },
        principal: f.principal_filter,
        host: f.host_filter,
        operation: Operation::from_code(f.operation),
        permission: Permission::from_code(f.permission_type),
    }
}

fn failed(code: ErrorCode, message: String) -> DeleteAclsFilterResult {
    DeleteAclsFilterResult {
        error_code: code.code(),
        error_message: Some(message),
        ..Default::default()
    }
}

fn matched(b: &AclBinding) -> DeleteAclsMatchingAcl {
    DeleteAclsMatchingAcl {
        resource_type: b.resource_type.code(),
        resource_name: b.resource_name.clone(),
        pattern_type: b.pattern_type.code(),
        principal: b.principal.clone(),
        host: b.host.clone(),
        operation: b.operation.code(),
        permission_type: b.permission.code(),
        ..Default::default()
    }
}

pub async fn handle(
    broker: &Arc<Broker>,
    conn: &ConnectionInfo,
    req: DeleteAclsRequest,
    version: i16,
) -> DeleteAclsResponse {
    let filters: Vec<AclBindingFilter> = req
        .filters
        .into_iter()
        .map(|f| filter(f, version))
        .collect();
    if !broker.access.authz(conn).allows_cluster(Operation::Alter) {
        return DeleteAclsResponse {
            filter_results: filters
                .iter()
                .map(|_| {
                    failed(
                        ErrorCode::ClusterAuthorizationFailed,
                        "Cluster authorization failed.".into(),
                    )
                })
                .collect(),
            ..Default::default()
        };
    }
    if let Err(e) = broker.cluster.write(MetadataRecord::Noop).await {
        return DeleteAclsResponse {
            filter_results: filters
                .iter()
                .map(|_| failed(e.code, e.message.clone()))
                .collect(),
            ..Default::default()
        };
    }
    let image = broker.cluster.image();
    let per_filter: Vec<Result<Vec<AclBinding>, String>> = filters
        .iter()
        .map(|f| {
            f.validate()
                .map(|()| image.acls().matching(f))
                .map_err(|e| e.to_string())
        })
        .collect();
    let all: BTreeSet<AclBinding> = per_filter
        .iter()
        .flat_map(|r| r.iter().flatten().cloned())
        .collect();
    let written = if all.is_empty() {
        Ok(())
    } else {
        let record = MetadataRecord::RemoveAcls {
            bindings: all.into_iter().collect(),
        };
        match broker.cluster.write(record).await {
            Ok(MetadataResponse::Rejected(reason)) => {
                Err((ErrorCode::UnknownServerError, reason.to_string()))
            }
            Ok(_) => Ok(()),
            Err(e) => Err((e.code, e.message)),
        }
    };
    DeleteAclsResponse {
        filter_results: per_filter
            .into_iter()
            .map(|r| match (r, &written) {
                (Err(message), _) => failed(ErrorCode::InvalidRequest, message),
                (Ok(_), Err((code, message))) => failed(*code, message.clone()),
                (Ok(bindings), Ok(())) => DeleteAclsFilterResult {
                    matching_acls: bindings.iter().map(matched).collect(),
                    ..Default::default()
                },
            })
            .collect(),
        ..Default::default()
    }
}
