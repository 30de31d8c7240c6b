//! AddPartitionsToTxn (key 24), v0-5. Clients (v0-3) add partitions to their open
//! transaction (starting it); brokers (v4+, KIP-890) send several transactions at once
//! and may only verify (`VerifyOnly`) that partitions are in a transaction. As in Kafka,
//! a request naming a partition that does not exist changes nothing: those partitions
//! get UNKNOWN_TOPIC_OR_PARTITION and the others OPERATION_NOT_ATTEMPTED.

use std::sync::Arc;

use sluice_protocol::error::ErrorCode;
use sluice_protocol::messages::add_partitions_to_txn_request::AddPartitionsToTxnTopic;
use sluice_protocol::messages::add_partitions_to_txn_response::{
    AddPartitionsToTxnPartitionResult, AddPartitionsToTxnResult, AddPartitionsToTxnTopicResult,
};
use sluice_protocol::messages::{AddPartitionsToTxnRequest, AddPartitionsToTxnResponse};
use sluice_txn::TopicPartition;

use crate::broker::{now_ms, Broker};
use crate::txns::{for_version, reply_code};

pub const VERSIONS: (i16, i16) = (0, 5);

/// PRODUCER_FENCED is known to clients from v2.
const FENCED_SINCE: i16 = 2;

pub async fn handle(
    broker: &Arc<Broker>,
    req: AddPartitionsToTxnRequest,
    version: i16,
) -> AddPartitionsToTxnResponse {
    if version < 4 {
        let results = add(
            broker,
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
    let mut results = Vec::with_capacity(req.transactions.len());
    for t in &req.transactions {
        let topic_results = add(
            broker,
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
async fn add(
    broker: &Arc<Broker>,
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
    let codes: Vec<ErrorCode> = if !wanted.iter().all(exists) {
        wanted
            .iter()
            .map(|tp| {
                if exists(tp) {
                    ErrorCode::OperationNotAttempted
                } else {
                    ErrorCode::UnknownTopicOrPartition
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
