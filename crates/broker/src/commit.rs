//! Leader appends with acks=all rules and the wait for their commit, for the writes the
//! broker makes itself: coordinator records and transaction markers. (Produce keeps its
//! own variant, which also reports error messages and record errors to the client.)

use sluice_protocol::error::ErrorCode;
use sluice_replication::waiters::WaitOutcome;
use sluice_replication::{AckError, AppendError};
use sluice_storage::{AppendInfo, StorageError};
use tokio::sync::oneshot;
use tokio::time::Instant;
use tracing::warn;

use crate::partition::Partition;

/// A wait for the high watermark to pass an append; `None`: it already has.
pub type CommitWait = Option<oneshot::Receiver<WaitOutcome>>;

/// The Kafka error code for a storage failure on append.
pub fn storage_error_code(e: &StorageError) -> ErrorCode {
    match e {
        // A batch larger than a whole segment can never be appended: not retriable.
        StorageError::BatchTooLarge { .. } => ErrorCode::RecordListTooLarge,
        StorageError::InvalidProducerEpoch { .. } => ErrorCode::InvalidProducerEpoch,
        StorageError::OutOfOrderSequence { .. } => ErrorCode::OutOfOrderSequenceNumber,
        StorageError::DuplicateSequence { .. } => ErrorCode::DuplicateSequenceNumber,
        StorageError::InvalidTxnState { .. } => ErrorCode::InvalidTxnState,
        StorageError::CoordinatorFenced { .. } => ErrorCode::TransactionCoordinatorFenced,
        // The log was closed under us: the replica is being deleted or moved away.
        StorageError::Closed(_) => ErrorCode::NotLeaderOrFollower,
        _ => {
            warn!(error = %e, "append failed");
            ErrorCode::KafkaStorageError
        }
    }
}

/// Appends with `append` as leader, refusing (NOT_ENOUGH_REPLICAS) while the ISR is
/// below `min.insync.replicas`; returns the wait for the append to be committed.
/// NOT_LEADER_OR_FOLLOWER if `p` does not lead.
pub fn append_committed(
    p: &Partition,
    append: impl FnOnce(&Partition) -> Result<AppendInfo, AppendError>,
) -> Result<CommitWait, ErrorCode> {
    p.check_min_isr().map_err(|e| match e {
        AckError::NotEnoughReplicas { .. } => ErrorCode::NotEnoughReplicas,
        AckError::NotLeader | AckError::NotAReplica(_) => ErrorCode::NotLeaderOrFollower,
    })?;
    let info = append(p).map_err(|e| match e {
        AppendError::NotLeader => ErrorCode::NotLeaderOrFollower,
        AppendError::Storage(e) => storage_error_code(&e),
    })?;
    p.wait_for_high_watermark(info.last_offset + 1)
        .map_err(|_| ErrorCode::NotLeaderOrFollower)
}

/// Waits for a commit until `deadline`: NOT_LEADER_OR_FOLLOWER if the leader stepped
/// down first, REQUEST_TIMED_OUT if the deadline passed.
pub async fn committed(wait: CommitWait, deadline: Instant) -> Result<(), ErrorCode> {
    let Some(wait) = wait else { return Ok(()) };
    match tokio::time::timeout_at(deadline, wait).await {
        Ok(Ok(WaitOutcome::Reached)) => Ok(()),
        Ok(Ok(WaitOutcome::Abandoned)) | Ok(Err(_)) => Err(ErrorCode::NotLeaderOrFollower),
        Err(_) => Err(ErrorCode::RequestTimedOut),
    }
}
