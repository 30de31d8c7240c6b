//! Control records: the transaction markers (COMMIT / ABORT) the broker writes into a
//! partition when a transaction ends, and reading them back.
//!
//! A control batch has the transactional and control attribute bits set and holds one
//! record whose key is `version int16 | type int16` and, for transaction markers, whose
//! value is `version int16 | coordinatorEpoch int32` (Kafka's `EndTransactionMarker`).

use bytes::Bytes;

use super::batch::RecordsError;
use super::builder::{RecordBatchBuilder, NO_SEQUENCE};
use super::record::Record;

/// The types of control record Kafka defines (`ControlRecordType`). Only the transaction
/// markers appear in data partitions; the others belong to the KRaft metadata log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ControlRecordType {
    Abort,
    Commit,
    LeaderChange,
    SnapshotHeader,
    SnapshotFooter,
    KraftVersion,
    KraftVoters,
    /// A type this version does not know; Kafka skips those rather than failing.
    Unknown(i16),
}

impl ControlRecordType {
    pub fn id(self) -> i16 {
        match self {
            Self::Abort => 0,
            Self::Commit => 1,
            Self::LeaderChange => 2,
            Self::SnapshotHeader => 3,
            Self::SnapshotFooter => 4,
            Self::KraftVersion => 5,
            Self::KraftVoters => 6,
            Self::Unknown(id) => id,
        }
    }

    pub fn from_id(id: i16) -> Self {
        match id {
            0 => Self::Abort,
            1 => Self::Commit,
            2 => Self::LeaderChange,
            3 => Self::SnapshotHeader,
            4 => Self::SnapshotFooter,
            5 => Self::KraftVersion,
            6 => Self::KraftVoters,
            other => Self::Unknown(other),
        }
    }

    /// Reads the type from a control record's key. Like Kafka, a key version newer
    /// than 0 is accepted (its first two fields cannot change), a negative one is not.
    pub fn parse_key(key: &[u8]) -> Result<Self, RecordsError> {
        let [v0, v1, t0, t1, ..] = *key else {
            return Err(RecordsError::CorruptRecord(
                "control record key shorter than 4 bytes",
            ));
        };
        if i16::from_be_bytes([v0, v1]) < 0 {
            return Err(RecordsError::CorruptRecord(
                "negative control record key version",
            ));
        }
        Ok(Self::from_id(i16::from_be_bytes([t0, t1])))
    }

    /// The 4-byte key Kafka writes (version 0).
    pub fn key(self) -> [u8; 4] {
        let [t0, t1] = self.id().to_be_bytes();
        [0, 0, t0, t1]
    }
}

/// A COMMIT or ABORT marker, as found in a control batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EndTxnMarker {
    pub commit: bool,
    pub coordinator_epoch: i32,
}

impl EndTxnMarker {
    /// Reads a marker from a control record; `Ok(None)` for control records that are
    /// not transaction markers.
    pub fn from_record(record: &Record) -> Result<Option<Self>, RecordsError> {
        let key = record
            .key
            .as_deref()
            .ok_or(RecordsError::CorruptRecord("control record without a key"))?;
        let commit = match ControlRecordType::parse_key(key)? {
            ControlRecordType::Commit => true,
            ControlRecordType::Abort => false,
            _ => return Ok(None),
        };
        let value = record.value.as_deref().ok_or(RecordsError::CorruptRecord(
            "transaction marker without a value",
        ))?;
        let [v0, v1, e0, e1, e2, e3, ..] = *value else {
            return Err(RecordsError::CorruptRecord(
                "transaction marker value shorter than 6 bytes",
            ));
        };
        if i16::from_be_bytes([v0, v1]) < 0 {
            return Err(RecordsError::CorruptRecord(
                "negative transaction marker version",
            ));
        }
        Ok(Some(Self {
            commit,
            coordinator_epoch: i32::from_be_bytes([e0, e1, e2, e3]),
        }))
    }

    fn value(self) -> [u8; 6] {
        let [e0, e1, e2, e3] = self.coordinator_epoch.to_be_bytes();
        [0, 0, e0, e1, e2, e3]
    }
}

/// Builds the control batch that ends a transaction of `producer_id`/`producer_epoch`:
/// one marker record at `base_offset`, stamped with `partition_leader_epoch` and
/// `timestamp`, flagged transactional and control, with no sequence number.
pub fn build_control_batch(
    base_offset: i64,
    partition_leader_epoch: i32,
    producer_id: i64,
    producer_epoch: i16,
    timestamp: i64,
    marker: EndTxnMarker,
) -> Result<Bytes, RecordsError> {
    let kind = if marker.commit {
        ControlRecordType::Commit
    } else {
        ControlRecordType::Abort
    };
    let mut builder = RecordBatchBuilder::new()
        .base_offset(base_offset)
        .partition_leader_epoch(partition_leader_epoch)
        .producer(producer_id, producer_epoch, NO_SEQUENCE)
        .transactional(true)
        .control(true);
    builder.push(timestamp, Some(&kind.key()), Some(&marker.value()), &[])?;
    builder.build()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_types_round_trip() {
        for id in -1..8 {
            let t = ControlRecordType::from_id(id);
            assert_eq!(t.id(), id);
            assert_eq!(ControlRecordType::parse_key(&t.key()), Ok(t));
        }
        assert_eq!(ControlRecordType::Commit.key(), [0, 0, 0, 1]);
        assert_eq!(ControlRecordType::Abort.key(), [0, 0, 0, 0]);
        // Newer key versions still parse; negative ones and short keys do not.
        assert_eq!(
            ControlRecordType::parse_key(&[0, 1, 0, 1, 9, 9]),
            Ok(ControlRecordType::Commit)
        );
        assert!(ControlRecordType::parse_key(&[0xFF, 0xFF, 0, 1]).is_err());
        assert!(ControlRecordType::parse_key(&[0, 0, 0]).is_err());
    }
}
