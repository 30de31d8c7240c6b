//! The records of `__consumer_offsets` in Kafka's own format (a version prefix, then
//! the generated OffsetCommit* / GroupMetadata* schema), so that tools which read the
//! topic directly (Burrow, lag exporters) understand what we write.

use bytes::{Buf, Bytes};
use sluice_protocol::codec::{Decode, Encode, Writer};
use sluice_protocol::messages::group_metadata_value::MemberMetadata;
use sluice_protocol::messages::{
    GroupMetadataKey, GroupMetadataValue, OffsetCommitKey, OffsetCommitValue,
};

use crate::error::GroupError;

/// Key version Kafka uses for committed offsets (0 and 1 share the layout).
const OFFSET_KEY_VERSION: i16 = 1;
/// Key version Kafka uses for group metadata.
const GROUP_KEY_VERSION: i16 = 2;
/// Value versions Kafka 3.x/4.0 write: v3 for offsets (v1 when an explicit expire
/// timestamp is set), v3 for group metadata.
const OFFSET_VALUE_VERSION: i16 = 3;
const OFFSET_VALUE_VERSION_WITH_EXPIRY: i16 = 1;
const GROUP_VALUE_VERSION: i16 = 3;

/// One key/value pair for the offsets topic; `value: None` is a tombstone.
#[derive(Debug, Clone, PartialEq)]
pub struct KeyValue {
    pub key: Bytes,
    pub value: Option<Bytes>,
}

/// A committed offset, as stored and as returned by OffsetFetch.
#[derive(Debug, Clone, PartialEq)]
pub struct CommittedOffset {
    pub offset: i64,
    pub leader_epoch: i32,
    pub metadata: String,
    pub commit_timestamp: i64,
    /// Set only by OffsetCommit v2-4 with an explicit retention time.
    pub expire_timestamp: Option<i64>,
}

/// A member as persisted in the group metadata record.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredMember {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub rebalance_timeout_ms: i32,
    pub session_timeout_ms: i32,
    pub subscription: Bytes,
    pub assignment: Bytes,
}

/// The group metadata record's value.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredGroup {
    pub protocol_type: String,
    pub generation: i32,
    pub protocol: Option<String>,
    pub leader: Option<String>,
    pub state_timestamp: i64,
    pub members: Vec<StoredMember>,
}

/// What one record of the offsets topic says.
#[derive(Debug, Clone, PartialEq)]
pub enum Record {
    Offset {
        group: String,
        topic: String,
        partition: i32,
        /// `None`: the offset was deleted (tombstone).
        value: Option<CommittedOffset>,
    },
    Group {
        group: String,
        /// `None`: the group was deleted (tombstone).
        value: Option<StoredGroup>,
    },
}

fn encode_versioned<M: Encode>(version: i16, msg: &M) -> Result<Bytes, GroupError> {
    let mut w = Writer::new();
    w.put_i16(version);
    msg.encode(&mut w, version)?;
    Ok(w.into_bytes())
}

pub fn offset_key(group: &str, topic: &str, partition: i32) -> Result<Bytes, GroupError> {
    encode_versioned(
        OFFSET_KEY_VERSION,
        &OffsetCommitKey {
            group: group.to_string(),
            topic: topic.to_string(),
            partition,
        },
    )
}

pub fn group_key(group: &str) -> Result<Bytes, GroupError> {
    encode_versioned(
        GROUP_KEY_VERSION,
        &GroupMetadataKey {
            group: group.to_string(),
        },
    )
}

pub fn offset_record(
    group: &str,
    topic: &str,
    partition: i32,
    value: &CommittedOffset,
) -> Result<KeyValue, GroupError> {
    let (version, expire) = match value.expire_timestamp {
        Some(t) => (OFFSET_VALUE_VERSION_WITH_EXPIRY, t),
        None => (OFFSET_VALUE_VERSION, -1),
    };
    let v = OffsetCommitValue {
        offset: value.offset,
        leader_epoch: value.leader_epoch,
        metadata: value.metadata.clone(),
        commit_timestamp: value.commit_timestamp,
        expire_timestamp: expire,
    };
    Ok(KeyValue {
        key: offset_key(group, topic, partition)?,
        value: Some(encode_versioned(version, &v)?),
    })
}

pub fn offset_tombstone(group: &str, topic: &str, partition: i32) -> Result<KeyValue, GroupError> {
    Ok(KeyValue {
        key: offset_key(group, topic, partition)?,
        value: None,
    })
}

pub fn group_record(group: &str, value: &StoredGroup) -> Result<KeyValue, GroupError> {
    let v = GroupMetadataValue {
        protocol_type: value.protocol_type.clone(),
        generation: value.generation,
        protocol: value.protocol.clone(),
        leader: value.leader.clone(),
        current_state_timestamp: value.state_timestamp,
        members: value
            .members
            .iter()
            .map(|m| MemberMetadata {
                member_id: m.member_id.clone(),
                group_instance_id: m.group_instance_id.clone(),
                client_id: m.client_id.clone(),
                client_host: m.client_host.clone(),
                rebalance_timeout: m.rebalance_timeout_ms,
                session_timeout: m.session_timeout_ms,
                subscription: m.subscription.clone(),
                assignment: m.assignment.clone(),
            })
            .collect(),
    };
    Ok(KeyValue {
        key: group_key(group)?,
        value: Some(encode_versioned(GROUP_VALUE_VERSION, &v)?),
    })
}

pub fn group_tombstone(group: &str) -> Result<KeyValue, GroupError> {
    Ok(KeyValue {
        key: group_key(group)?,
        value: None,
    })
}

fn take_version(buf: &mut Bytes) -> Result<i16, GroupError> {
    if buf.remaining() < 2 {
        return Err(GroupError::BadRecord("record shorter than its version"));
    }
    Ok(buf.get_i16())
}

/// Decodes one record of the offsets topic. Keys of other coordinators' formats (a
/// version we do not know) are an error the loader skips, as Kafka's loader does.
pub fn decode(key: &Bytes, value: Option<&Bytes>) -> Result<Record, GroupError> {
    let mut k = key.clone();
    match take_version(&mut k)? {
        0 | 1 => {
            let key = OffsetCommitKey::decode(&mut k, OFFSET_KEY_VERSION)?;
            let value = match value {
                None => None,
                Some(v) => {
                    let mut v = v.clone();
                    let version = take_version(&mut v)?;
                    let val = OffsetCommitValue::decode(&mut v, version)?;
                    Some(CommittedOffset {
                        offset: val.offset,
                        leader_epoch: val.leader_epoch,
                        metadata: val.metadata,
                        commit_timestamp: val.commit_timestamp,
                        expire_timestamp: (val.expire_timestamp >= 0)
                            .then_some(val.expire_timestamp),
                    })
                }
            };
            Ok(Record::Offset {
                group: key.group,
                topic: key.topic,
                partition: key.partition,
                value,
            })
        }
        2 => {
            let key = GroupMetadataKey::decode(&mut k, GROUP_KEY_VERSION)?;
            let value = match value {
                None => None,
                Some(v) => {
                    let mut v = v.clone();
                    let version = take_version(&mut v)?;
                    let val = GroupMetadataValue::decode(&mut v, version)?;
                    Some(StoredGroup {
                        protocol_type: val.protocol_type,
                        generation: val.generation,
                        protocol: val.protocol,
                        leader: val.leader,
                        state_timestamp: val.current_state_timestamp,
                        members: val
                            .members
                            .into_iter()
                            .map(|m| StoredMember {
                                member_id: m.member_id,
                                group_instance_id: m.group_instance_id,
                                client_id: m.client_id,
                                client_host: m.client_host,
                                rebalance_timeout_ms: m.rebalance_timeout,
                                session_timeout_ms: m.session_timeout,
                                subscription: m.subscription,
                                assignment: m.assignment,
                            })
                            .collect(),
                    })
                }
            };
            Ok(Record::Group {
                group: key.group,
                value,
            })
        }
        other => Err(GroupError::UnknownRecordVersion(other)),
    }
}

/// Where a group lives: Kafka's placement, shared with the transaction coordinator.
pub use sluice_protocol::coordinator_key::{java_string_hash, partition_for};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_roundtrip_in_kafka_layout() {
        let v = CommittedOffset {
            offset: 42,
            leader_epoch: 3,
            metadata: "m".into(),
            commit_timestamp: 1000,
            expire_timestamp: None,
        };
        let kv = offset_record("g", "t", 5, &v).unwrap();
        // Kafka's key layout: int16 version 1, then group, topic (int16-length strings), partition.
        assert_eq!(&kv.key[..], b"\x00\x01\x00\x01g\x00\x01t\x00\x00\x00\x05");
        let value = kv.value.clone().unwrap();
        assert_eq!(&value[..2], b"\x00\x03");
        let rec = decode(&kv.key, kv.value.as_ref()).unwrap();
        assert_eq!(
            rec,
            Record::Offset {
                group: "g".into(),
                topic: "t".into(),
                partition: 5,
                value: Some(v)
            }
        );
        let tomb = offset_tombstone("g", "t", 5).unwrap();
        assert!(matches!(
            decode(&tomb.key, None).unwrap(),
            Record::Offset { value: None, .. }
        ));
    }

    #[test]
    fn group_roundtrip() {
        let g = StoredGroup {
            protocol_type: "consumer".into(),
            generation: 7,
            protocol: Some("range".into()),
            leader: Some("m1".into()),
            state_timestamp: 55,
            members: vec![StoredMember {
                member_id: "m1".into(),
                group_instance_id: Some("i1".into()),
                client_id: "c".into(),
                client_host: "/127.0.0.1".into(),
                rebalance_timeout_ms: 300_000,
                session_timeout_ms: 45_000,
                subscription: Bytes::from_static(b"sub"),
                assignment: Bytes::from_static(b"asg"),
            }],
        };
        let kv = group_record("grp", &g).unwrap();
        assert_eq!(&kv.key[..2], b"\x00\x02");
        assert_eq!(
            decode(&kv.key, kv.value.as_ref()).unwrap(),
            Record::Group {
                group: "grp".into(),
                value: Some(g)
            }
        );
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        for key in [&b""[..], b"\x00", b"\x00\x09abc", b"\x00\x01\xff\xff"] {
            assert!(decode(&Bytes::copy_from_slice(key), None).is_err());
        }
    }

    #[test]
    fn partition_placement_is_in_range() {
        for g in ["a", "b", "console-consumer-12345", "\u{1F600}"] {
            let p = partition_for(g, 50);
            assert!((0..50).contains(&p));
        }
        assert_eq!(partition_for("a", 50), 97 % 50);
    }
}
