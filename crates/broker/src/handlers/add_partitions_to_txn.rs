//! AddPartitionsToTxn (key 24), v0-5. Clients (v0-3) add partitions to their open
//! transaction (starting it); brokers (v4+, KIP-890) send several transactions at once
//! and may only verify (`VerifyOnly`) that partitions are in a transaction. As in Kafka,
//! a request naming a partition that does not exist changes nothing: those partitions
//! get UNKNOWN_TOPIC_OR_PARTITION and the others OPERATION_NOT_ATTEMPTED.
//!
//! Authorization, as Kafka: a client (v0-3) needs Write on the transactional id (else
//! every partition answers TRANSACTIONAL_ID_AUTHORIZATION_FAILED) and Write on each
//! topic (else that topic's partitions answer TOPIC_AUTHORIZATION_FAILED, unknown or
//! not, and nothing is added: the other partitions answer OPERATION_NOT_ATTEMPTED).
//! Brokers (v4+) need ClusterAction on the cluster (else the top-level
//! CLUSTER_AUTHORIZATION_FAILED); their transactions are not checked further, since
//! the client was checked when it added the partitions.

use std::sync::Arc;

use sluice_auth::acl::Operation;
use sluice_protocol::error::ErrorCode;
use sluice_protocol::messages::add_partitions_to_txn_request::AddPartitionsToTxnTopic;
use sluice_protocol::messages::add_partitions_to_txn_response::{
    AddPartitionsToTxnPartitionResult, AddPartitionsToTxnResult, AddPartitionsToTxnTopicResult,
};
use sluice_protocol::messages::{AddPartitionsToTxnRequest, AddPartitionsToTxnResponse};
use sluice_txn::TopicPartition;

use crate::access::Authz;
use crate::broker::{now_ms, Broker};
use crate::router::ConnectionInfo;
use crate::txns::{for_version, reply_code};

pub const VERSIONS: (i16, i16) = (0, 5);

/// PRODUCER_FENCED is known to clients from v2.
const FENCED_SINCE: i16 = 2;

/// What authorization allows of one transaction's request.
enum Allowed {
    /// No Write on the transactional id: nothing is looked at.
    NotTxn,
    /// Whether each topic (in request order) may be written.
    Topics(Vec<bool>),
}

/// A client's (v0-3) checks for one transaction.
fn client_checks(
    authz: &Authz<'_>,
    transactional_id: &str,
    topics: &[AddPartitionsToTxnTopic],
) -> Allowed {
    if !authz.allows_txn(Operation::Write, transactional_id) {
        return Allowed::NotTxn;
    }
    Allowed::Topics(
        topics
            .iter()
            .map(|t| authz.allows_topic(Operation::Write, &t.name))
            .collect(),
    )
}

pub async fn handle(
    broker: &Arc<Broker>,
    conn: &ConnectionInfo,
    req: AddPartitionsToTxnRequest,
    version: i16,
) -> AddPartitionsToTxnResponse {
    if version < 4 {
        let allowed = client_checks(
            &broker.access.authz(conn),
            &req.v3_and_below_transactional_id,
            &req.v3_and_below_topics,
        );
        let results = add(
            broker,
            allowed,
            &req.v3_and_below_transactional_id,
            req.v3_and_below_producer_id,
            req.v3_and_below_producer_epoch,
            false,
            &req.v3_and_below_topics,
            version,
        )
        .await;
        return AddPartitionsToTxnResponse {
            results_by_topic_v3_and_below: results,
            ..Default::default()
        };
    }
    if !broker
        .access
        .authz(conn)
        .allows_cluster(Operation::ClusterAction)
    {
        return AddPartitionsToTxnResponse {
            error_code: ErrorCode::ClusterAuthorizationFailed.code(),
            ..Default::default()
        };
    }
    let mut results = Vec::with_capacity(req.transactions.len());
    for t in &req.transactions {
        let topic_results = add(
            broker,
            Allowed::Topics(vec![true; t.topics.len()]),
            &t.transactional_id,
            t.producer_id,
            t.producer_epoch,
            t.verify_only,
            &t.topics,
            version,
        )
        .await;
        results.push(AddPartitionsToTxnResult {
            transactional_id: t.transactional_id.clone(),
            topic_results,
        });
    }
    AddPartitionsToTxnResponse {
        results_by_transaction: results,
        ..Default::default()
    }
}

/// One transaction's partitions: each partition's code.
#[allow(clippy::too_many_arguments)]
async fn add(
    broker: &Arc<Broker>,
    allowed: Allowed,
    transactional_id: &str,
    producer_id: i64,
    producer_epoch: i16,
    verify_only: bool,
    topics: &[AddPartitionsToTxnTopic],
    version: i16,
) -> Vec<AddPartitionsToTxnTopicResult> {
    let wanted: Vec<TopicPartition> = topics
        .iter()
        .flat_map(|t| t.partitions.iter().map(|&p| (t.name.clone(), p)))
        .collect();
    let exists = |(topic, p): &TopicPartition| {
        broker
            .topics
            .get(topic)
            .is_some_and(|t| t.state(*p).is_some())
    };
    // Whether each wanted partition's topic may be written.
    let writable: Vec<bool> = match &allowed {
        Allowed::NotTxn => Vec::new(),
        Allowed::Topics(ok) => topics
            .iter()
            .zip(ok)
            .flat_map(|(t, ok)| t.partitions.iter().map(move |_| *ok))
            .collect(),
    };
    let codes: Vec<ErrorCode> = if matches!(allowed, Allowed::NotTxn) {
        vec![ErrorCode::TransactionalIdAuthorizationFailed; wanted.len()]
    } else if writable.contains(&false) || !wanted.iter().all(exists) {
        // All or nothing: one refused or unknown partition and none is added. A topic
        // that may not be written is refused whether it exists or not.
        wanted
            .iter()
            .zip(&writable)
            .map(|(tp, ok)| {
                if !ok {
                    ErrorCode::TopicAuthorizationFailed
                } else if !exists(tp) {
                    ErrorCode::UnknownTopicOrPartition
                } else {
                    ErrorCode::OperationNotAttempted
                }
            })
            .collect()
    } else if verify_only {
        let verified = broker
            .txns
            .read(|c| c.verify_partitions(transactional_id, producer_id, producer_epoch, &wanted));
        match verified {
            Ok(v) => v.into_iter().map(|(_, code)| code).collect(),
            Err(code) => vec![code; wanted.len()],
        }
    } else {
        let reply = broker
            .txns
            .call(&broker.topics, |c, reply| {
                c.add_partitions(
                    transactional_id,
                    producer_id,
                    producer_epoch,
                    &wanted,
                    now_ms(),
                    reply,
                )
            })
            .await;
        vec![reply_code(reply); wanted.len()]
    };
    let mut out: Vec<AddPartitionsToTxnTopicResult> = Vec::new();
    for ((topic, partition), code) in wanted.into_iter().zip(codes) {
        let result = AddPartitionsToTxnPartitionResult {
            partition_index: partition,
            partition_error_code: for_version(code, version, FENCED_SINCE).code(),
        };
        match out.iter_mut().find(|t| t.name == topic) {
            Some(t) => t.results_by_partition.push(result),
            None => out.push(AddPartitionsToTxnTopicResult {
                name: topic,
                results_by_partition: vec![result],
            }),
        }
    }
    out
}
