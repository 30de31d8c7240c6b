//! The fixed 61-byte v2 batch header: a read-only view, CRC-32C checks and the in-place
//! rewrites the broker is allowed to make.

use crate::compression::Compression;

/// Magic byte of the only record format Sluice accepts.
pub const MAGIC_V2: i8 = 2;
/// Bytes before `batchLength` counts: `baseOffset` (8) + `batchLength` (4).
pub const LOG_OVERHEAD: usize = 12;
/// Size of the whole v2 batch header, up to and including `recordsCount`.
pub const HEADER_SIZE: usize = 61;
/// Alias used where the intent is "smallest possible batch".
pub const BATCH_OVERHEAD: usize = HEADER_SIZE;

const BASE_OFFSET: usize = 0;
const BATCH_LENGTH: usize = 8;
const LEADER_EPOCH: usize = 12;
const MAGIC: usize = 16;
pub(crate) const CRC: usize = 17;
/// The CRC covers everything from `attributes` to the end of the batch.
pub(crate) const ATTRIBUTES: usize = 21;
const LAST_OFFSET_DELTA: usize = 23;
const BASE_TIMESTAMP: usize = 27;
const MAX_TIMESTAMP: usize = 35;
const PRODUCER_ID: usize = 43;
const PRODUCER_EPOCH: usize = 51;
const BASE_SEQUENCE: usize = 53;
const RECORDS_COUNT: usize = 57;

const COMPRESSION_MASK: i16 = 0x07;
pub(crate) const TIMESTAMP_TYPE_BIT: i16 = 0x08;
pub(crate) const TRANSACTIONAL_BIT: i16 = 0x10;
pub(crate) const CONTROL_BIT: i16 = 0x20;
const DELETE_HORIZON_BIT: i16 = 0x40;

/// Why a batch (or a run of batches) was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordsError {
    #[error("record batch truncated: need {needed} bytes, have {available}")]
    Truncated { needed: usize, available: usize },
    #[error("unsupported record batch magic {0} (only v2 is accepted)")]
    UnsupportedMagic(i8),
    #[error("invalid record batch length {0}")]
    InvalidLength(i32),
    #[error("record batch CRC mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    CrcMismatch { stored: u32, computed: u32 },
    #[error("unknown compression codec {0}")]
    UnknownCompression(i16),
    #[error("corrupt record: {0}")]
    CorruptRecord(&'static str),
    #[error("decompression failed: {0}")]
    Decompression(String),
    #[error("compression failed: {0}")]
    Compression(String),
    #[error("decompressed data exceeds the limit of {0} bytes")]
    DecompressedTooLarge(usize),
    #[error("cannot encode record batch: {0}")]
    Unencodable(&'static str),
}

/// Whether `maxTimestamp` was set by the producer or by the broker on append.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimestampType {
    CreateTime,
    LogAppendTime,
}

/// A decoded copy of the fixed header fields of one batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordBatchHeader {
    pub base_offset: i64,
    /// Bytes following the `batchLength` field; the whole batch is `batch_length + 12`.
    pub batch_length: i32,
    pub partition_leader_epoch: i32,
    pub magic: i8,
    pub crc: u32,
    pub attributes: i16,
    pub last_offset_delta: i32,
    pub base_timestamp: i64,
    pub max_timestamp: i64,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub base_sequence: i32,
    pub records_count: i32,
}

fn be_i64(b: &[u8], at: usize) -> i64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    i64::from_be_bytes(a)
}
fn be_i32(b: &[u8], at: usize) -> i32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[at..at + 4]);
    i32::from_be_bytes(a)
}
fn be_i16(b: &[u8], at: usize) -> i16 {
    i16::from_be_bytes([b[at], b[at + 1]])
}

impl RecordBatchHeader {
    /// Parses the header at the start of `buf`. Checks the magic and that the declared
    /// length is plausible, but not that the whole batch is present (see [`Self::total_size`]).
    pub fn parse(buf: &[u8]) -> Result<Self, RecordsError> {
        if buf.len() < HEADER_SIZE {
            // Report the magic first when we can see it: a v0/v1 message set is
            // smaller than a v2 header and deserves the clearer error.
            if buf.len() > MAGIC && buf[MAGIC] as i8 != MAGIC_V2 {
                return Err(RecordsError::UnsupportedMagic(buf[MAGIC] as i8));
            }
            return Err(RecordsError::Truncated {
                needed: HEADER_SIZE,
                available: buf.len(),
            });
        }
        let magic = buf[MAGIC] as i8;
        if magic != MAGIC_V2 {
            return Err(RecordsError::UnsupportedMagic(magic));
        }
        let batch_length = be_i32(buf, BATCH_LENGTH);
        if batch_length < (HEADER_SIZE - LOG_OVERHEAD) as i32 {
            return Err(RecordsError::InvalidLength(batch_length));
        }
        Ok(Self {
            base_offset: be_i64(buf, BASE_OFFSET),
            batch_length,
            partition_leader_epoch: be_i32(buf, LEADER_EPOCH),
            magic,
            crc: be_i32(buf, CRC) as u32,
            attributes: be_i16(buf, ATTRIBUTES),
            last_offset_delta: be_i32(buf, LAST_OFFSET_DELTA),
            base_timestamp: be_i64(buf, BASE_TIMESTAMP),
            max_timestamp: be_i64(buf, MAX_TIMESTAMP),
            producer_id: be_i64(buf, PRODUCER_ID),
            producer_epoch: be_i16(buf, PRODUCER_EPOCH),
            base_sequence: be_i32(buf, BASE_SEQUENCE),
            records_count: be_i32(buf, RECORDS_COUNT),
        })
    }

    /// Size of the whole batch on the wire and on disk.
    pub fn total_size(&self) -> usize {
        // `parse` guarantees a positive length; a hand-built header might not.
        usize::try_from(self.batch_length)
            .unwrap_or(0)
            .saturating_add(LOG_OVERHEAD)
    }
    /// Offset of the last record in the batch.
    pub fn last_offset(&self) -> i64 {
        // Saturating: the fields come from the wire, and an absurd base offset must not
        // overflow (a panic in debug builds).
        self.base_offset
            .saturating_add(i64::from(self.last_offset_delta))
    }
    /// Offset the next batch after this one would start at.
    pub fn next_offset(&self) -> i64 {
        self.last_offset().saturating_add(1)
    }
    pub fn compression(&self) -> Result<Compression, RecordsError> {
        Compression::from_attributes(self.attributes)
    }
    pub fn timestamp_type(&self) -> TimestampType {
        if self.attributes & TIMESTAMP_TYPE_BIT != 0 {
            TimestampType::LogAppendTime
        } else {
            TimestampType::CreateTime
        }
    }
    pub fn is_transactional(&self) -> bool {
        self.attributes & TRANSACTIONAL_BIT != 0
    }
    pub fn is_control(&self) -> bool {
        self.attributes & CONTROL_BIT != 0
    }
    pub fn has_delete_horizon(&self) -> bool {
        self.attributes & DELETE_HORIZON_BIT != 0
    }
    /// Raw compression bits (0 none, 1 gzip, 2 snappy, 3 lz4, 4 zstd).
    pub fn compression_bits(&self) -> i16 {
        self.attributes & COMPRESSION_MASK
    }
}

/// Checks the CRC-32C of one whole batch (`batch` must be exactly the batch's bytes or
/// start with it; bytes past `total_size` are ignored).
pub fn verify_crc(batch: &[u8]) -> Result<(), RecordsError> {
    let header = RecordBatchHeader::parse(batch)?;
    let size = header.total_size();
    if batch.len() < size {
        return Err(RecordsError::Truncated {
            needed: size,
            available: batch.len(),
        });
    }
    let computed = crc32c::crc32c(&batch[ATTRIBUTES..size]);
    if computed != header.crc {
        return Err(RecordsError::CrcMismatch {
            stored: header.crc,
            computed,
        });
    }
    Ok(())
}

/// Rewrites `baseOffset` in place; outside the CRC, so the CRC stays valid.
/// `batch` must hold at least a full header (checked by [`RecordBatchHeader::parse`]).
pub fn set_base_offset(batch: &mut [u8], base_offset: i64) {
    if batch.len() >= HEADER_SIZE {
        batch[BASE_OFFSET..BASE_OFFSET + 8].copy_from_slice(&base_offset.to_be_bytes());
    }
}

/// Stamps `partitionLeaderEpoch` in place; outside the CRC. Leader-epoch truncation
/// (KIP-101) relies on every stored batch carrying the epoch of the leader that wrote it.
pub fn set_partition_leader_epoch(batch: &mut [u8], epoch: i32) {
    if batch.len() >= HEADER_SIZE {
        batch[LEADER_EPOCH..LEADER_EPOCH + 4].copy_from_slice(&epoch.to_be_bytes());
    }
}

/// Applies `message.timestamp.type=LogAppendTime`: sets the timestamp-type bit and
/// `maxTimestamp`, which lie inside the CRC, so the CRC is recomputed (as Kafka does).
pub fn set_log_append_time(batch: &mut [u8], now_ms: i64) -> Result<(), RecordsError> {
    let header = RecordBatchHeader::parse(batch)?;
    let size = header.total_size();
    if batch.len() < size {
        return Err(RecordsError::Truncated {
            needed: size,
            available: batch.len(),
        });
    }
    let attributes = header.attributes | TIMESTAMP_TYPE_BIT;
    batch[ATTRIBUTES..ATTRIBUTES + 2].copy_from_slice(&attributes.to_be_bytes());
    batch[MAX_TIMESTAMP..MAX_TIMESTAMP + 8].copy_from_slice(&now_ms.to_be_bytes());
    let crc = crc32c::crc32c(&batch[ATTRIBUTES..size]);
    batch[CRC..CRC + 4].copy_from_slice(&crc.to_be_bytes());
    Ok(())
}

/// Walks a buffer of concatenated batches, yielding each header with its byte range.
///
/// Stops with an error at the first batch that is malformed or does not fit; the caller
/// decides whether that is a torn tail (recovery truncates there) or bad input.
pub struct BatchIter<'a> {
    buf: &'a [u8],
    pos: usize,
    failed: bool,
}

impl<'a> BatchIter<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Self {
            buf,
            pos: 0,
            failed: false,
        }
    }
    /// Byte position of the next batch to be returned (the valid prefix length so far).
    /// After an error it stays at the start of the batch that failed, which is where
    /// recovery truncates.
    pub fn position(&self) -> usize {
        self.pos
    }
}

impl<'a> Iterator for BatchIter<'a> {
    /// The header and the batch's start position within the buffer.
    type Item = Result<(RecordBatchHeader, usize), RecordsError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        let rest = self.buf.get(self.pos..)?;
        if rest.is_empty() {
            return None;
        }
        let header = match RecordBatchHeader::parse(rest) {
            Ok(h) => h,
            Err(e) => {
                // Fuse: after an error the iterator ends, `pos` still marking the bad batch.
                self.failed = true;
                return Some(Err(e));
            }
        };
        let size = header.total_size();
        if rest.len() < size {
            self.failed = true;
            return Some(Err(RecordsError::Truncated {
                needed: size,
                available: rest.len(),
            }));
        }
        let start = self.pos;
        self.pos += size;
        Some(Ok((header, start)))
    }
}
