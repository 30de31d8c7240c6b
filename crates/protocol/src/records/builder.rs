//! Building v2 record batches, for the batches the broker writes itself (internal
//! topics, transaction markers) and for tests and benchmarks.
//!
//! Records are encoded as they are pushed; `build` compresses them, fills in the header
//! fields that depend on all records (lastOffsetDelta, timestamps, count, length) and
//! computes the CRC-32C, exactly as Kafka's `MemoryRecordsBuilder` lays a batch out.

use bytes::{BufMut, Bytes, BytesMut};

use super::batch::{
    RecordsError, TimestampType, ATTRIBUTES, CONTROL_BIT, CRC, HEADER_SIZE, LOG_OVERHEAD, MAGIC_V2,
    TIMESTAMP_TYPE_BIT, TRANSACTIONAL_BIT,
};
use super::record::RecordHeader;
use crate::compression::Compression;

/// Producer id, epoch and sequence of a batch written by no idempotent producer.
pub const NO_PRODUCER_ID: i64 = -1;
pub const NO_PRODUCER_EPOCH: i16 = -1;
pub const NO_SEQUENCE: i32 = -1;

/// Accumulates records and lays them out as one v2 batch.
///
/// The first record's timestamp becomes `baseTimestamp` (later deltas may be negative);
/// `maxTimestamp` is the largest record timestamp. With [`TimestampType::LogAppendTime`]
/// the caller passes the append time as every record's timestamp, as Kafka's broker does.
#[derive(Debug, Clone)]
pub struct RecordBatchBuilder {
    base_offset: i64,
    partition_leader_epoch: i32,
    compression: Compression,
    timestamp_type: TimestampType,
    producer_id: i64,
    producer_epoch: i16,
    base_sequence: i32,
    transactional: bool,
    control: bool,
    /// Encoded records, uncompressed.
    records: Vec<u8>,
    count: i32,
    base_timestamp: Option<i64>,
    max_timestamp: i64,
    last_offset_delta: i32,
}

impl Default for RecordBatchBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl RecordBatchBuilder {
    /// An empty builder: base offset 0, leader epoch -1, no compression, CreateTime, no
    /// producer id, neither transactional nor control.
    pub fn new() -> Self {
        Self {
            base_offset: 0,
            partition_leader_epoch: -1,
            compression: Compression::None,
            timestamp_type: TimestampType::CreateTime,
            producer_id: NO_PRODUCER_ID,
            producer_epoch: NO_PRODUCER_EPOCH,
            base_sequence: NO_SEQUENCE,
            transactional: false,
            control: false,
            records: Vec::new(),
            count: 0,
            base_timestamp: None,
            max_timestamp: -1,
            last_offset_delta: -1,
        }
    }

    pub fn base_offset(mut self, base_offset: i64) -> Self {
        self.base_offset = base_offset;
        self
    }
    pub fn partition_leader_epoch(mut self, epoch: i32) -> Self {
        self.partition_leader_epoch = epoch;
        self
    }
    pub fn compression(mut self, compression: Compression) -> Self {
        self.compression = compression;
        self
    }
    pub fn timestamp_type(mut self, timestamp_type: TimestampType) -> Self {
        self.timestamp_type = timestamp_type;
        self
    }
    /// Sets the idempotent-producer fields (id, epoch, sequence of the first record).
    pub fn producer(mut self, producer_id: i64, producer_epoch: i16, base_sequence: i32) -> Self {
        self.producer_id = producer_id;
        self.producer_epoch = producer_epoch;
        self.base_sequence = base_sequence;
        self
    }
    pub fn transactional(mut self, transactional: bool) -> Self {
        self.transactional = transactional;
        self
    }
    pub fn control(mut self, control: bool) -> Self {
        self.control = control;
        self
    }

    /// Number of records pushed so far.
    pub fn len(&self) -> usize {
        usize::try_from(self.count).unwrap_or(0)
    }
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Appends a record at the next offset (one past the previous record's).
    pub fn push(
        &mut self,
        timestamp: i64,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        headers: &[RecordHeader],
    ) -> Result<&mut Self, RecordsError> {
        let offset_delta = self
            .last_offset_delta
            .checked_add(1)
            .ok_or(RecordsError::Unencodable("offset delta overflows int32"))?;
        self.push_at(offset_delta, timestamp, key, value, headers)
    }

    /// Appends a record at an explicit offset delta, which must exceed the previous
    /// record's. Gaps are allowed: compacted batches keep their surviving offsets.
    pub fn push_at(
        &mut self,
        offset_delta: i32,
        timestamp: i64,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        headers: &[RecordHeader],
    ) -> Result<&mut Self, RecordsError> {
        if offset_delta <= self.last_offset_delta {
            return Err(RecordsError::Unencodable("offset deltas must increase"));
        }
        let count = self
            .count
            .checked_add(1)
            .ok_or(RecordsError::Unencodable("too many records"))?;
        let base_timestamp = self.base_timestamp.unwrap_or(timestamp);
        let timestamp_delta = timestamp
            .checked_sub(base_timestamp)
            .ok_or(RecordsError::Unencodable("timestamp delta overflows int64"))?;

        // Encode the body first: the record is prefixed with its own length.
        let mut body =
            Vec::with_capacity(16 + key.map_or(0, <[u8]>::len) + value.map_or(0, <[u8]>::len));
        body.push(0); // attributes: unused in format v2
        put_varlong(&mut body, timestamp_delta);
        put_varint(&mut body, offset_delta);
        put_nullable_bytes(&mut body, key)?;
        put_nullable_bytes(&mut body, value)?;
        put_varint(&mut body, len_i32(headers.len())?);
        for header in headers {
            put_nullable_bytes(&mut body, Some(header.key.as_bytes()))?;
            put_nullable_bytes(&mut body, header.value.as_deref())?;
        }
        put_varint(&mut self.records, len_i32(body.len())?);
        self.records.extend_from_slice(&body);

        self.count = count;
        self.last_offset_delta = offset_delta;
        self.max_timestamp = match self.base_timestamp {
            None => timestamp,
            Some(_) => self.max_timestamp.max(timestamp),
        };
        self.base_timestamp = Some(base_timestamp);
        Ok(self)
    }

    /// Lays out the batch. Fails for a batch without records (Kafka never sends one) or
    /// one larger than the format can describe.
    pub fn build(&self) -> Result<Bytes, RecordsError> {
        let Some(base_timestamp) = self.base_timestamp else {
            return Err(RecordsError::Unencodable(
                "a batch needs at least one record",
            ));
        };
        let compressed;
        let payload: &[u8] = match self.compression {
            Compression::None => &self.records,
            codec => {
                compressed = codec.compress(&self.records)?;
                &compressed
            }
        };
        let total = HEADER_SIZE
            .checked_add(payload.len())
            .ok_or(RecordsError::Unencodable("batch too large"))?;
        let batch_length = i32::try_from(total - LOG_OVERHEAD)
            .map_err(|_| RecordsError::Unencodable("batch larger than 2 GiB"))?;

        let mut attributes = self.compression.attribute_bits();
        if self.timestamp_type == TimestampType::LogAppendTime {
            attributes |= TIMESTAMP_TYPE_BIT;
        }
        if self.transactional {
            attributes |= TRANSACTIONAL_BIT;
        }
        if self.control {
            attributes |= CONTROL_BIT;
        }

        let mut buf = BytesMut::with_capacity(total);
        buf.put_i64(self.base_offset);
        buf.put_i32(batch_length);
        buf.put_i32(self.partition_leader_epoch);
        buf.put_i8(MAGIC_V2);
        buf.put_u32(0); // CRC, filled in below
        buf.put_i16(attributes);
        buf.put_i32(self.last_offset_delta);
        buf.put_i64(base_timestamp);
        buf.put_i64(self.max_timestamp);
        buf.put_i64(self.producer_id);
        buf.put_i16(self.producer_epoch);
        buf.put_i32(self.base_sequence);
        buf.put_i32(self.count);
        buf.put_slice(payload);

        let crc = crc32c::crc32c(buf.get(ATTRIBUTES..).unwrap_or_default());
        if let Some(field) = buf.get_mut(CRC..CRC + 4) {
            field.copy_from_slice(&crc.to_be_bytes());
        }
        Ok(buf.freeze())
    }
}

fn len_i32(len: usize) -> Result<i32, RecordsError> {
    i32::try_from(len).map_err(|_| RecordsError::Unencodable("length exceeds int32"))
}

fn put_varint(out: &mut Vec<u8>, value: i32) {
    let mut v = ((value << 1) ^ (value >> 31)) as u32;
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn put_varlong(out: &mut Vec<u8>, value: i64) {
    let mut v = ((value << 1) ^ (value >> 63)) as u64;
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn put_nullable_bytes(out: &mut Vec<u8>, bytes: Option<&[u8]>) -> Result<(), RecordsError> {
    match bytes {
        None => put_varint(out, -1),
        Some(b) => {
            put_varint(out, len_i32(b.len())?);
            out.extend_from_slice(b);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varint_encoding_matches_kafka() {
        let cases: &[(i32, &[u8])] = &[
            (0, &[0x00]),
            (-1, &[0x01]),
            (1, &[0x02]),
            (63, &[0x7E]),
            (-64, &[0x7F]),
            (64, &[0x80, 0x01]),
            (300, &[0xD8, 0x04]),
            (i32::MAX, &[0xFE, 0xFF, 0xFF, 0xFF, 0x0F]),
            (i32::MIN, &[0xFF, 0xFF, 0xFF, 0xFF, 0x0F]),
        ];
        for &(value, bytes) in cases {
            let mut out = Vec::new();
            put_varint(&mut out, value);
            assert_eq!(out, bytes, "{value}");
        }
        let mut out = Vec::new();
        put_varlong(&mut out, i64::MIN);
        assert_eq!(
            out,
            [0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x01]
        );
    }

    #[test]
    fn empty_and_misordered_input_is_refused() {
        assert!(matches!(
            RecordBatchBuilder::new().build(),
            Err(RecordsError::Unencodable(_))
        ));
        let mut b = RecordBatchBuilder::new();
        b.push_at(5, 0, None, None, &[]).unwrap();
        assert!(b.push_at(5, 0, None, None, &[]).is_err());
        assert!(b.push_at(4, 0, None, None, &[]).is_err());
        b.push(0, None, None, &[]).unwrap();
        assert_eq!(b.last_offset_delta, 6);
        // maxTimestamp is the largest pushed, even when all are below -1.
        let mut b = RecordBatchBuilder::new();
        b.push(-20, None, None, &[]).unwrap();
        b.push(-10, None, None, &[]).unwrap();
        assert_eq!(b.max_timestamp, -10);
        let mut b = RecordBatchBuilder::new();
        b.push(i64::MAX, None, None, &[]).unwrap();
        assert!(b.push(-2, None, None, &[]).is_err());
        assert_eq!(b.len(), 1);
    }
}
