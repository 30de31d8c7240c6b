//! Fetch from a follower (a request with a replica id): records the follower's position
//! on the leader (which may move the high watermark and expand the ISR), then returns
//! whole batches up to the log end offset, not the high watermark, long polling on
//! appends until `min_bytes` is met or the wait passes.

use std::sync::Arc;

use bytes::Bytes;
use futures_util::future::select_all;
use sluice_protocol::error::ErrorCode;
use sluice_protocol::messages::fetch_response::FetchableTopicResponse;
use sluice_replication::AckError;
use tokio::sync::watch;
use tokio::time::Instant;

use super::fetch::{
    check_leader_epoch, error_partition, partition_limit, read_partition, topic_response, Wanted,
};
use crate::broker::{now_ms, Broker};
use crate::topics::Topic;

/// Who is fetching.
#[derive(Debug, Clone, Copy)]
pub struct Follower {
    pub id: i32,
    /// Its broker registration epoch (Fetch v15+), -1 if not sent.
    pub broker_epoch: i64,
}

pub(super) async fn serve(
    broker: &Arc<Broker>,
    wanted: &[Wanted],
    use_ids: bool,
    follower: Follower,
    max_bytes: usize,
    min_bytes: usize,
    deadline: Instant,
) -> Vec<FetchableTopicResponse> {
    let topics: Vec<Option<Arc<Topic>>> = wanted
        .iter()
        .map(|w| {
            if use_ids {
                broker.topics.get_by_id(&w.id)
            } else {
                broker.topics.get(&w.name)
            }
        })
        .collect();
    // Record the follower's position once per request: it is what the follower holds.
    let now = now_ms();
    let mut refused: Vec<(usize, i32, ErrorCode)> = Vec::new();
    for (ti, (w, t)) in wanted.iter().zip(&topics).enumerate() {
        for fp in &w.partitions {
            let Some(t) = t else { continue };
            let Ok(p) = t.lookup(fp.partition) else {
                continue;
            };
            if check_leader_epoch(p, fp.current_leader_epoch).is_some() {
                continue;
            }
            match p.follower_fetch(follower.id, follower.broker_epoch, fp.fetch_offset, now) {
                Ok(outcome) => {
                    if let Some(proposal) = outcome.proposal {
                        broker.replicas.propose(&t.name, t.id, p, proposal);
                    }
                }
                Err(AckError::NotAReplica(_)) | Err(_) => {
                    refused.push((ti, fp.partition, ErrorCode::NotLeaderOrFollower));
                }
            }
        }
    }
    loop {
        let mut watchers: Vec<watch::Receiver<i64>> = Vec::new();
        for (w, t) in wanted.iter().zip(&topics) {
            if let Some(t) = t {
                for fp in &w.partitions {
                    if let Some(p) = t.partition(fp.partition) {
                        watchers.push(p.subscribe_leo());
                    }
                }
            }
        }
        let (responses, bytes, errors) = read_all(wanted, &topics, use_ids, max_bytes, &refused);
        let done =
            bytes >= min_bytes || errors || watchers.is_empty() || Instant::now() >= deadline;
        if done {
            return responses;
        }
        let changed = select_all(watchers.iter_mut().map(|w| Box::pin(w.changed())));
        if tokio::time::timeout_at(deadline, changed).await.is_err() {
            return read_all(wanted, &topics, use_ids, max_bytes, &refused).0;
        }
    }
}

fn read_all(
    wanted: &[Wanted],
    topics: &[Option<Arc<Topic>>],
    use_ids: bool,
    max_bytes: usize,
    refused: &[(usize, i32, ErrorCode)],
) -> (Vec<FetchableTopicResponse>, usize, bool) {
    let mut total = 0usize;
    let mut errors = false;
    let mut out = Vec::with_capacity(wanted.len());
    for (ti, (w, topic)) in wanted.iter().zip(topics).enumerate() {
        let mut partitions = Vec::with_capacity(w.partitions.len());
        for fp in &w.partitions {
            let refusal = refused
                .iter()
                .find(|(t, p, _)| *t == ti && *p == fp.partition)
                .map(|(_, _, code)| *code);
            let part = topic
                .as_ref()
                .ok_or(if use_ids {
                    ErrorCode::UnknownTopicId
                } else {
                    ErrorCode::UnknownTopicOrPartition
                })
                .and_then(|t| t.lookup(fp.partition));
            let data = match (refusal, part) {
                (Some(code), _) | (None, Err(code)) => error_partition(fp.partition, code),
                (None, Ok(p)) => {
                    let limit = partition_limit(fp, max_bytes, total);
                    let leo = p.log.log_end_offset();
                    read_partition(p, fp, limit, total == 0, false, leo)
                }
            };
            if data.error_code != ErrorCode::None.code() {
                errors = true;
            }
            total += data.records.as_ref().map_or(0, Bytes::len);
            partitions.push(data);
        }
        out.push(topic_response(w, use_ids, partitions));
    }
    (out, total, errors)
}
