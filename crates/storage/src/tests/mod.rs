//! Tests of the whole log engine through its public API, on temporary directories.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod append_read;
mod compaction;
mod durability;
mod epochs;
mod manager;
mod producer_state;
mod retention;
mod timestamps;
mod transactions;

use std::path::Path;

use crate::testutil::batch;
use crate::{AppendInfo, LogConfig, PartitionLog};

#[test]
fn shared_types_are_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<PartitionLog>();
    check::<crate::LogManager>();
}

/// A config small enough to roll and index often.
pub(super) fn small_config(segment_bytes: i32) -> LogConfig {
    LogConfig {
        segment_bytes,
        index_interval_bytes: 256,
        ..Default::default()
    }
}

pub(super) fn open(dir: &Path, config: LogConfig) -> PartitionLog {
    PartitionLog::open(dir, config, 1_000).unwrap()
}

/// Appends one batch as leader (epoch 0) and returns its stored bytes and append info.
pub(super) fn append(
    log: &PartitionLog,
    records: usize,
    ts: i64,
    value_len: usize,
) -> (Vec<u8>, AppendInfo) {
    let mut b = batch(records, ts, value_len);
    let info = log.append_as_leader(&mut b, 0, ts.max(1_000)).unwrap();
    (b, info)
}

/// Reads everything from `offset` up to the log end.
pub(super) fn read_all(log: &PartitionLog, offset: i64) -> Vec<u8> {
    log.read(offset, usize::MAX, i64::MAX, true)
        .unwrap()
        .records
        .to_vec()
}
