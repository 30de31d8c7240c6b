//! Decoding the records inside a v2 batch (Kafka's `DefaultRecord` layout), for the few
//! places the broker must look inside a batch: internal topics, compaction, validation.
//!
//! Every record on the wire is
//! `length varint | attributes int8 | timestampDelta varlong | offsetDelta varint |
//! keyLength varint | key | valueLength varint | value | headerCount varint |
//! [headerKeyLength varint | headerKey | headerValueLength varint | headerValue]*`,
//! varints being zigzag-encoded and a length of -1 meaning null.
//!
//! Lengths come from the peer, so each one is checked against the bytes that remain
//! before anything is sliced or allocated; keys, values and header values are zero-copy
//! slices of the (decompressed) batch.

use bytes::Bytes;

use super::batch::{RecordBatchHeader, RecordsError, TimestampType, HEADER_SIZE};
use crate::compression::Compression;

/// One record of a batch, with its offset and timestamp relative to the batch header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub offset_delta: i32,
    pub timestamp_delta: i64,
    pub key: Option<Bytes>,
    pub value: Option<Bytes>,
    pub headers: Vec<RecordHeader>,
}

/// A record header: a string key and a nullable byte value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordHeader {
    pub key: String,
    pub value: Option<Bytes>,
}

impl RecordHeader {
    pub fn new(key: impl Into<String>, value: Option<impl Into<Bytes>>) -> Self {
        Self {
            key: key.into(),
            value: value.map(Into::into),
        }
    }
}

impl Record {
    /// The record's absolute offset in a batch starting at `base_offset`.
    pub fn offset(&self, base_offset: i64) -> i64 {
        base_offset.saturating_add(i64::from(self.offset_delta))
    }

    /// The record's timestamp as a consumer sees it: with `LogAppendTime` every record
    /// carries the batch's `maxTimestamp` (the broker's append time), as in Kafka.
    pub fn timestamp(&self, header: &RecordBatchHeader) -> i64 {
        match header.timestamp_type() {
            TimestampType::LogAppendTime => header.max_timestamp,
            TimestampType::CreateTime => header.base_timestamp.saturating_add(self.timestamp_delta),
        }
    }
}

/// Smallest possible record: length, attributes, timestamp delta, offset delta, key
/// length, value length and header count, one byte each.
const MIN_RECORD_SIZE: usize = 7;
/// Smallest possible header: an empty key's length and a null value's length.
const MIN_HEADER_SIZE: usize = 2;

/// Decodes every record of the batch at the start of `batch`, decompressing it when
/// needed with at most `limit` decompressed bytes.
///
/// Checks the structure (record count, lengths, varints, no bytes left over) but not
/// the CRC: call [`super::verify_crc`] first where the bytes are untrusted.
pub fn decode_records(batch: &Bytes, limit: usize) -> Result<Vec<Record>, RecordsError> {
    let header = RecordBatchHeader::parse(batch)?;
    let size = header.total_size();
    if batch.len() < size {
        return Err(RecordsError::Truncated {
            needed: size,
            available: batch.len(),
        });
    }
    let count = usize::try_from(header.records_count)
        .map_err(|_| RecordsError::CorruptRecord("negative record count"))?;
    // In range: parse() guarantees size >= HEADER_SIZE and we checked batch.len() >= size.
    let body = batch.slice(HEADER_SIZE..size);
    let data = match header.compression()? {
        Compression::None => body,
        codec => Bytes::from(codec.decompress(&body, limit)?),
    };

    let mut reader = Reader::new(&data);
    // The count is untrusted: reserve no more than the bytes could possibly hold.
    let mut records = Vec::with_capacity(count.min(data.len() / MIN_RECORD_SIZE));
    for _ in 0..count {
        records.push(read_record(&mut reader)?);
    }
    if reader.remaining() != 0 {
        return Err(RecordsError::CorruptRecord(
            "bytes left after the last record (record count too small)",
        ));
    }
    Ok(records)
}

fn read_record(batch: &mut Reader<'_>) -> Result<Record, RecordsError> {
    let length = batch.varint()?;
    let length = usize::try_from(length)
        .map_err(|_| RecordsError::CorruptRecord("negative record length"))?;
    let mut r = batch.sub_reader(length)?;

    let _attributes = r.u8()?; // unused in format v2
    let timestamp_delta = r.varlong()?;
    let offset_delta = r.varint()?;
    let key = r.nullable_bytes()?;
    let value = r.nullable_bytes()?;
    let header_count = usize::try_from(r.varint()?)
        .map_err(|_| RecordsError::CorruptRecord("negative header count"))?;
    let mut headers = Vec::with_capacity(header_count.min(r.remaining() / MIN_HEADER_SIZE));
    for _ in 0..header_count {
        let key_len = usize::try_from(r.varint()?)
            .map_err(|_| RecordsError::CorruptRecord("null or negative header key length"))?;
        let key = r.bytes(key_len)?;
        // Strict: a header key that is not UTF-8 cannot be a Rust `String`, and
        // replacing bytes would silently change the record if it were re-encoded.
        let key = String::from_utf8(key.to_vec())
            .map_err(|_| RecordsError::CorruptRecord("header key is not valid UTF-8"))?;
        let value = r.nullable_bytes()?;
        headers.push(RecordHeader { key, value });
    }
    if r.remaining() != 0 {
        return Err(RecordsError::CorruptRecord(
            "record length does not match its fields",
        ));
    }
    Ok(Record {
        offset_delta,
        timestamp_delta,
        key,
        value,
        headers,
    })
}

/// A cursor over `data[pos..end]`; `pos <= end <= data.len()` always holds.
struct Reader<'a> {
    data: &'a Bytes,
    pos: usize,
    end: usize,
}

const PAST_END: RecordsError =
    RecordsError::CorruptRecord("field extends past the end of its record");

impl<'a> Reader<'a> {
    fn new(data: &'a Bytes) -> Self {
        Self {
            data,
            pos: 0,
            end: data.len(),
        }
    }

    fn remaining(&self) -> usize {
        self.end - self.pos
    }

    fn u8(&mut self) -> Result<u8, RecordsError> {
        if self.pos >= self.end {
            return Err(PAST_END);
        }
        let b = *self.data.get(self.pos).ok_or(PAST_END)?;
        self.pos += 1;
        Ok(b)
    }

    /// Kafka's zigzag varint: at most 5 bytes (bits past 32 are dropped, as Java does).
    fn varint(&mut self) -> Result<i32, RecordsError> {
        let mut raw: u32 = 0;
        for i in 0..5 {
            let b = self.u8()?;
            raw |= u32::from(b & 0x7F) << (7 * i);
            if b & 0x80 == 0 {
                return Ok((raw >> 1) as i32 ^ -((raw & 1) as i32));
            }
        }
        Err(RecordsError::CorruptRecord("varint longer than 5 bytes"))
    }

    /// Kafka's zigzag varlong: at most 10 bytes.
    fn varlong(&mut self) -> Result<i64, RecordsError> {
        let mut raw: u64 = 0;
        for i in 0..10 {
            let b = self.u8()?;
            raw |= u64::from(b & 0x7F) << (7 * i);
            if b & 0x80 == 0 {
                return Ok((raw >> 1) as i64 ^ -((raw & 1) as i64));
            }
        }
        Err(RecordsError::CorruptRecord("varlong longer than 10 bytes"))
    }

    fn bytes(&mut self, len: usize) -> Result<Bytes, RecordsError> {
        if len > self.remaining() {
            return Err(PAST_END);
        }
        let b = self.data.slice(self.pos..self.pos + len);
        self.pos += len;
        Ok(b)
    }

    /// A length-prefixed byte string where -1 means null.
    fn nullable_bytes(&mut self) -> Result<Option<Bytes>, RecordsError> {
        match self.varint()? {
            -1 => Ok(None),
            len => {
                let len = usize::try_from(len)
                    .map_err(|_| RecordsError::CorruptRecord("negative length other than -1"))?;
                self.bytes(len).map(Some)
            }
        }
    }

    /// Consumes `len` bytes and returns a reader confined to them.
    fn sub_reader(&mut self, len: usize) -> Result<Reader<'a>, RecordsError> {
        if len > self.remaining() {
            return Err(RecordsError::CorruptRecord(
                "record length extends past the end of the batch",
            ));
        }
        let sub = Reader {
            data: self.data,
            pos: self.pos,
            end: self.pos + len,
        };
        self.pos += len;
        Ok(sub)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reader_over(bytes: &'static [u8]) -> Bytes {
        Bytes::from_static(bytes)
    }

    #[test]
    fn varints_match_kafka_encoding() {
        // (encoded bytes, value) pairs from Kafka's ByteUtilsTest.
        let cases: &[(&'static [u8], i32)] = &[
            (&[0x00], 0),
            (&[0x01], -1),
            (&[0x02], 1),
            (&[0x03], -2),
            (&[0x7E], 63),
            (&[0x7F], -64),
            (&[0x80, 0x01], 64),
            (&[0xFE, 0xFF, 0xFF, 0xFF, 0x0F], i32::MAX),
            (&[0xFF, 0xFF, 0xFF, 0xFF, 0x0F], i32::MIN),
        ];
        for &(bytes, value) in cases {
            let data = reader_over(bytes);
            let mut r = Reader::new(&data);
            assert_eq!(r.varint().unwrap(), value, "{bytes:?}");
            assert_eq!(r.remaining(), 0);
        }
        let long = reader_over(&[0x80, 0x80, 0x80, 0x80, 0x80, 0x01]);
        assert!(Reader::new(&long).varint().is_err());
        let cut = reader_over(&[0x80]);
        assert!(Reader::new(&cut).varint().is_err());
    }

    #[test]
    fn varlongs_match_kafka_encoding() {
        let cases: &[(&'static [u8], i64)] = &[
            (&[0x00], 0),
            (&[0x01], -1),
            (&[0x02], 1),
            (
                &[0xFE, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x01],
                i64::MAX,
            ),
            (
                &[0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x01],
                i64::MIN,
            ),
        ];
        for &(bytes, value) in cases {
            let data = reader_over(bytes);
            assert_eq!(Reader::new(&data).varlong().unwrap(), value, "{bytes:?}");
        }
        let long = reader_over(&[0x80; 11]);
        assert!(Reader::new(&long).varlong().is_err());
    }

    #[test]
    fn sub_reader_stays_inside_its_record() {
        // A record claiming 3 bytes whose key length points past them.
        let data = reader_over(&[0x06, 0x00, 0x00, 0x00, 0x08, b'a', b'b', b'c', b'd']);
        let mut r = Reader::new(&data);
        assert!(read_record(&mut r).is_err());
    }
}
