//! CreatePartitions (key 37), v0-3: raises a topic's partition count. Needs Alter on
//! the topic, else TOPIC_AUTHORIZATION_FAILED whether or not it exists (Kafka's rule).

use std::collections::HashSet;
use std::sync::Arc;

use sluice_auth::acl::Operation;
use sluice_protocol::error::ErrorCode;
use sluice_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use sluice_protocol::messages::{CreatePartitionsRequest, CreatePartitionsResponse};

use crate::broker::Broker;
use crate::router::ConnectionInfo;

pub const VERSIONS: (i16, i16) = (0, 3);

pub fn handle(
    broker: &Arc<Broker>,
    conn: &ConnectionInfo,
    req: CreatePartitionsRequest,
    _version: i16,
) -> CreatePartitionsResponse {
    let authz = broker.access.authz(conn);
    let mut seen = HashSet::new();
    let dupes: HashSet<String> = req
        .topics
        .iter()
        .filter(|t| !seen.insert(t.name.clone()))
        .map(|t| t.name.clone())
        .collect();
    let results = req
        .topics
        .into_iter()
        .map(|t| {
            let outcome = if dupes.contains(&t.name) {
                Err((
                    ErrorCode::InvalidRequest,
                    "Duplicate topic in request.".to_string(),
                ))
            } else if !authz.allows_topic(Operation::Alter, &t.name) {
                Err((
                    ErrorCode::TopicAuthorizationFailed,
                    "Authorization failed.".to_string(),
                ))
            } else {
                let assignment = t
                    .assignments
                    .as_ref()
                    .map(|a| a.iter().map(|x| x.broker_ids.clone()).collect());
                broker
                    .add_partitions(&t.name, t.count, assignment, req.validate_only)
                    .map_err(|e| (e.code, e.message))
            };
            match outcome {
                Ok(()) => CreatePartitionsTopicResult {
                    name: t.name,
                    error_code: ErrorCode::None.code(),
                    error_message: None,
                },
                Err((code, msg)) => CreatePartitionsTopicResult {
                    name: t.name,
                    error_code: code.code(),
                    error_message: Some(msg),
                },
            }
        })
        .collect();
    CreatePartitionsResponse {
        results,
        ..Default::default()
    }
}
