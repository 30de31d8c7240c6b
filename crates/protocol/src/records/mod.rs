//! Kafka record batches (message format v2, "magic 2"), kept as bytes end to end.
//!
//! The broker never rebuilds a producer's batch: it checks the header and CRC, then
//! rewrites only the fields Kafka places outside the CRC (base offset, partition leader
//! epoch) in place. Decoding the records inside a batch is only needed where the broker
//! must look inside (compaction, internal topics, validation that is asked for).

mod batch;
mod builder;
mod control;
mod record;

pub use batch::{
    set_base_offset, set_log_append_time, set_partition_leader_epoch, verify_crc, BatchIter,
    RecordBatchHeader, RecordsError, TimestampType, BATCH_OVERHEAD, HEADER_SIZE, LOG_OVERHEAD,
    MAGIC_V2,
};
pub use builder::{RecordBatchBuilder, NO_PRODUCER_EPOCH, NO_PRODUCER_ID, NO_SEQUENCE};
pub use control::{build_control_batch, ControlRecordType, EndTxnMarker};
pub use record::{decode_records, Record, RecordHeader};
