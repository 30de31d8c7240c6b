//! Reads that return where batches lie in a segment file instead of their bytes, so the
//! caller can send them with sendfile (Kafka's `FileRecords`): the bytes go from the page
//! cache to the socket without being copied into the process and out again.

use std::fs::File;
use std::sync::Arc;

use bytes::Bytes;

use super::PartitionLog;
use crate::error::{IoContext, StorageError};
use crate::fileio::read_new_at;
use crate::segment::Segment;

/// Most batch headers one slice read looks at before leaving the read to
/// [`PartitionLog::read`]: a region of many small batches is cheaper to copy in one read
/// than to delimit with a header read each.
const MAX_HEADERS: usize = 64;

/// Whole batches in one segment file: `len` bytes from `position`.
///
/// The bytes below a segment's committed size never change while the segment exists,
/// except when the log is truncated (a replica that stopped leading cuts back to its new
/// leader). A sender that then finds the file shorter than the slice must drop the
/// response (and its connection) rather than send what is there now.
#[derive(Clone)]
pub struct FileSlice {
    /// Keeps the file open even if retention deletes the segment meanwhile.
    segment: Arc<Segment>,
    position: u64,
    len: usize,
    next_offset: i64,
}

impl std::fmt::Debug for FileSlice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileSlice")
            .field("segment", &self.segment.log_path())
            .field("position", &self.position)
            .field("len", &self.len)
            .field("next_offset", &self.next_offset)
            .finish()
    }
}

impl FileSlice {
    pub fn file(&self) -> &File {
        self.segment.file()
    }

    pub fn position(&self) -> u64 {
        self.position
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The offset after the last batch in the slice.
    pub fn next_offset(&self) -> i64 {
        self.next_offset
    }

    /// The slice's bytes, for a transport that cannot send from a file; fails if the file
    /// no longer holds all of them.
    pub fn read(&self) -> Result<Bytes, StorageError> {
        let path = self.segment.log_path();
        let bytes = read_new_at(self.file(), self.len, self.position)
            .ctx(|| format!("read {}", path.display()))?;
        if bytes.len() < self.len {
            return Err(StorageError::corrupt(
                path,
                format!(
                    "{} bytes at {} were truncated while being sent",
                    self.len, self.position
                ),
            ));
        }
        Ok(Bytes::from(bytes))
    }
}

impl PartitionLog {
    /// The batches [`PartitionLog::read`] would return from `offset` (below `max_offset`,
    /// within `max_bytes`, without KIP-74's oversized first batch), as a region of one
    /// segment file, when they are at least `min_len` bytes. `None` whenever `read` must
    /// answer instead: an offset out of range (for its error), nothing to return, a first
    /// batch larger than `max_bytes`, a region too small to be worth a sendfile, or many
    /// small batches. The region stops at the end of its segment, so it may hold less
    /// than `read` would; a fetch may always return less than it allows.
    pub fn read_slice(
        &self,
        offset: i64,
        max_bytes: usize,
        max_offset: i64,
        min_len: usize,
    ) -> Result<Option<FileSlice>, StorageError> {
        // The same order as `read`: the segment list first, then the offsets.
        let view = self.snapshot();
        let start = self.log_start_offset();
        let upper = max_offset.min(self.log_end_offset());
        if offset < start || offset >= upper {
            return Ok(None);
        }
        let Some(segment) = view
            .partition_point(|s| s.base_offset() <= offset)
            .checked_sub(1)
            .and_then(|i| view.get(i))
        else {
            return Ok(None);
        };
        let span = segment.batch_span(offset, segment.size(), max_bytes, upper, MAX_HEADERS)?;
        Ok(span
            .filter(|(from, to, _)| to - from >= min_len as u64)
            .and_then(|(from, to, next_offset)| {
                Some(FileSlice {
                    segment: Arc::clone(segment),
                    position: from,
                    len: usize::try_from(to - from).ok()?,
                    next_offset,
                })
            }))
    }
}
