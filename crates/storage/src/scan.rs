//! Sequential batch-header scanning over a segment file, with optional CRC-32C checks.
//!
//! Reads go through a small buffer so that walking many small batches costs few system
//! calls, and the CRC of a large batch is computed piecewise, so no scan ever allocates
//! more than one chunk whatever the (possibly corrupt) header claims.

use std::fs::File;
use std::path::Path;

use sluice_protocol::records::{RecordBatchHeader, HEADER_SIZE};

use crate::error::{IoContext, StorageError};
use crate::fileio::read_full_at;

const CHUNK: usize = 64 * 1024;
/// The CRC covers everything from the `attributes` field (byte 21) to the end of the batch.
const CRC_START: u64 = 21;

/// One step of a scan.
#[derive(Debug)]
pub(crate) enum Scanned {
    /// A whole batch starting at `position`.
    Batch {
        header: RecordBatchHeader,
        position: u64,
    },
    /// The scan reached its end cleanly.
    End,
    /// The bytes at `position` are not a whole valid batch (torn write or corruption).
    Invalid { position: u64, reason: String },
}

pub(crate) struct LogScanner<'a> {
    file: &'a File,
    path: &'a Path,
    pos: u64,
    end: u64,
    buf: Vec<u8>,
    /// File position of `buf[0]`.
    buf_pos: u64,
}

impl<'a> LogScanner<'a> {
    /// Scans batches in `[start, end)` of `file`.
    pub(crate) fn new(file: &'a File, path: &'a Path, start: u64, end: u64) -> Self {
        Self {
            file,
            path,
            pos: start,
            end,
            buf: Vec::new(),
            buf_pos: start,
        }
    }

    /// Position of the next batch (after the last one returned).
    pub(crate) fn position(&self) -> u64 {
        self.pos
    }

    /// Returns `n <= CHUNK` bytes at `at`, or `None` if the file ends first.
    fn bytes_at(&mut self, at: u64, n: usize) -> Result<Option<&[u8]>, StorageError> {
        let have = at >= self.buf_pos && at + n as u64 <= self.buf_pos + self.buf.len() as u64;
        if !have {
            let want = (self.end.saturating_sub(at)).min(CHUNK as u64) as usize;
            if want < n {
                return Ok(None);
            }
            self.buf.resize(want, 0);
            let got = read_full_at(self.file, &mut self.buf, at)
                .ctx(|| format!("read {}", self.path.display()))?;
            self.buf.truncate(got);
            self.buf_pos = at;
            if got < n {
                return Ok(None);
            }
        }
        let from = (at - self.buf_pos) as usize;
        Ok(self.buf.get(from..from + n))
    }

    /// Reads the next batch header, checking the CRC of the whole batch if `verify_crc`.
    pub(crate) fn next_batch(&mut self, verify_crc: bool) -> Result<Scanned, StorageError> {
        let position = self.pos;
        if position >= self.end {
            return Ok(Scanned::End);
        }
        let invalid = |reason: String| Ok(Scanned::Invalid { position, reason });
        let Some(head) = self.bytes_at(position, HEADER_SIZE)? else {
            return invalid(format!(
                "torn batch header ({} bytes left)",
                self.end - position
            ));
        };
        let header = match RecordBatchHeader::parse(head) {
            Ok(h) => h,
            Err(e) => return invalid(e.to_string()),
        };
        let size = header.total_size() as u64;
        if position + size > self.end {
            return invalid(format!(
                "torn batch: {size} bytes declared, {} left",
                self.end - position
            ));
        }
        if verify_crc {
            let mut crc = 0u32;
            let mut at = position + CRC_START;
            while at < position + size {
                let n = (position + size - at).min(CHUNK as u64) as usize;
                let Some(piece) = self.bytes_at(at, n)? else {
                    return invalid("batch shorter than declared".to_string());
                };
                crc = crc32c::crc32c_append(crc, piece);
                at += n as u64;
            }
            if crc != header.crc {
                return invalid(format!(
                    "CRC mismatch: stored {:#010x}, computed {crc:#010x}",
                    header.crc
                ));
            }
        }
        self.pos = position + size;
        Ok(Scanned::Batch { header, position })
    }
}
