//! The records of `__transaction_state` in Kafka's own format: key = int16 version 0 +
//! `TransactionLogKey`, value = int16 version + `TransactionLogValue` (null: the id was
//! removed), so tools that read the topic understand what we write.

use std::collections::BTreeSet;

use bytes::{Buf, Bytes};
use sluice_protocol::codec::{Decode, Encode, Writer};
use sluice_protocol::messages::transaction_log_value::PartitionsSchema;
use sluice_protocol::messages::{TransactionLogKey, TransactionLogValue};

use crate::error::TxnError;
use crate::state::{by_topic, TxnMeta, TxnState};

const KEY_VERSION: i16 = 0;
/// Kafka writes value version 0 for clients without transaction version 2 (KIP-890).
const VALUE_VERSION: i16 = 0;
/// The newest value version read (1 adds tagged fields).
const MAX_VALUE_VERSION: i16 = 1;

/// One key/value pair for the transaction log; `value: None` is a tombstone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyValue {
    pub key: Bytes,
    pub value: Option<Bytes>,
}

fn versioned<M: Encode>(version: i16, msg: &M) -> Result<Bytes, TxnError> {
    let mut w = Writer::new();
    w.put_i16(version);
    msg.encode(&mut w, version)?;
    Ok(w.into_bytes())
}

pub fn key(transactional_id: &str) -> Result<Bytes, TxnError> {
    versioned(
        KEY_VERSION,
        &TransactionLogKey {
            transactional_id: transactional_id.to_string(),
        },
    )
}

/// The record storing `meta` for `transactional_id`.
pub fn record(transactional_id: &str, meta: &TxnMeta) -> Result<KeyValue, TxnError> {
    let topics: Vec<PartitionsSchema> = by_topic(&meta.partitions)
        .into_iter()
        .map(|(topic, partition_ids)| PartitionsSchema {
            topic,
            partition_ids,
        })
        .collect();
    let value = TransactionLogValue {
        producer_id: meta.producer_id,
        // Tagged fields of value version 1, which Kafka writes only for transaction
        // version 2 clients: kept in memory only, as Kafka does at version 0.
        previous_producer_id: -1,
        next_producer_id: -1,
        producer_epoch: meta.producer_epoch,
        transaction_timeout_ms: meta.timeout_ms,
        transaction_status: meta.state.id(),
        // Kafka writes the partitions only while a transaction involves some.
        transaction_partitions: (!meta.partitions.is_empty()).then_some(topics),
        transaction_last_update_timestamp_ms: meta.last_update_ms,
        transaction_start_timestamp_ms: meta.start_ms,
        client_transaction_version: 0,
    };
    Ok(KeyValue {
        key: key(transactional_id)?,
        value: Some(versioned(VALUE_VERSION, &value)?),
    })
}

pub fn tombstone(transactional_id: &str) -> Result<KeyValue, TxnError> {
    Ok(KeyValue {
        key: key(transactional_id)?,
        value: None,
    })
}

fn take_version(buf: &mut Bytes) -> Result<i16, TxnError> {
    if buf.remaining() < 2 {
        return Err(TxnError::BadRecord("record shorter than its version"));
    }
    Ok(buf.get_i16())
}

/// Decodes one record: the transactional id and its state (`None`: removed).
pub fn decode(key: &Bytes, value: Option<&Bytes>) -> Result<(String, Option<TxnMeta>), TxnError> {
    let mut k = key.clone();
    let version = take_version(&mut k)?;
    if version != KEY_VERSION {
        return Err(TxnError::UnknownKeyVersion(version));
    }
    let id = TransactionLogKey::decode(&mut k, KEY_VERSION)?.transactional_id;
    let Some(value) = value else {
        return Ok((id, None));
    };
    let mut v = value.clone();
    let version = take_version(&mut v)?;
    if !(0..=MAX_VALUE_VERSION).contains(&version) {
        return Err(TxnError::BadRecord("unknown value version"));
    }
    let val = TransactionLogValue::decode(&mut v, version)?;
    let state = TxnState::from_id(val.transaction_status)
        .ok_or(TxnError::BadRecord("unknown transaction status"))?;
    let partitions: BTreeSet<(String, i32)> = val
        .transaction_partitions
        .unwrap_or_default()
        .into_iter()
        .flat_map(|t| {
            let topic = t.topic;
            t.partition_ids.into_iter().map(move |p| (topic.clone(), p))
        })
        .collect();
    Ok((
        id,
        Some(TxnMeta {
            producer_id: val.producer_id,
            previous_producer_id: val.previous_producer_id,
            producer_epoch: val.producer_epoch,
            last_producer_epoch: -1,
            timeout_ms: val.transaction_timeout_ms,
            state,
            partitions,
            start_ms: val.transaction_start_timestamp_ms,
            last_update_ms: val.transaction_last_update_timestamp_ms,
        }),
    ))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn records_round_trip_in_kafka_layout() {
        let mut meta = TxnMeta::new(42, 60_000, 1_000);
        meta.producer_epoch = 3;
        meta.state = TxnState::Ongoing;
        meta.start_ms = 900;
        meta.partitions.insert(("b".into(), 1));
        meta.partitions.insert(("a".into(), 2));
        meta.partitions.insert(("a".into(), 0));
        let kv = record("tx", &meta).unwrap();
        // int16 version 0, then the id as an int16-length string.
        assert_eq!(&kv.key[..], b"\x00\x00\x00\x02tx");
        let value = kv.value.clone().unwrap();
        assert_eq!(&value[..2], b"\x00\x00");
        let (id, back) = decode(&kv.key, kv.value.as_ref()).unwrap();
        assert_eq!(id, "tx");
        assert_eq!(back, Some(meta.clone()));
        // The previous producer id (epoch exhaustion) is not in a version 0 value.
        meta.previous_producer_id = 7;
        let kv = record("tx", &meta).unwrap();
        let (_, back) = decode(&kv.key, kv.value.as_ref()).unwrap();
        assert_eq!(back.unwrap().previous_producer_id, -1);
        let (id, gone) = decode(&kv.key, None).unwrap();
        assert_eq!((id.as_str(), gone), ("tx", None));
        assert!(decode(&Bytes::from_static(b"\x00\x01\x00\x02tx"), None).is_err());
        assert!(decode(&Bytes::from_static(b"\x00"), None).is_err());
    }
}
