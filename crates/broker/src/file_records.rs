//! Fetch records that stay in their segment files until the socket takes them
//! (sendfile, Kafka's zero-copy transfer): the bytes go from the page cache to the
//! socket without a copy into the broker and another out of it. On a leader this is
//! the read of every byte each follower fetches, and of every byte consumers read.
//!
//! The generated `FetchResponse` holds records as `Bytes`, and the sans-io encoder
//! appends a `records` field of at least `ZERO_COPY_MIN` bytes by reference, as a
//! segment of its own. A partition answered from a file therefore gets a stand-in of
//! the region's length: a slice of one process-wide zero-filled buffer, which nothing
//! reads. After encoding, [`FileRecords::splice`] swaps each stand-in segment (known by
//! its address, in response order) for its file region; the connection's writer sends
//! the regions with sendfile. The buffer is allocated zeroed on first use (`calloc`,
//! pages the kernel maps only if touched), so it costs address space only; a `static`
//! array would add its size to the binary.

use std::sync::OnceLock;

use bytes::Bytes;
use sluice_storage::FileSlice;

use crate::error::BrokerError;

/// Regions smaller than this are read into memory instead: a copy of a few KiB costs
/// less than the extra system calls (header reads, a sendfile of its own).
pub const MIN_LEN: usize = 64 * 1024;

/// Longest region a stand-in can cover; a longer one is read into memory. Fetch reads
/// are capped below this per partition (`handlers::fetch::MAX_READ_PER_PARTITION`).
pub const MAX_LEN: usize = 8 * 1024 * 1024;

/// The buffer every stand-in is a slice of.
fn stand_in_buffer() -> &'static Bytes {
    static BUFFER: OnceLock<Bytes> = OnceLock::new();
    BUFFER.get_or_init(|| Bytes::from(vec![0u8; MAX_LEN]))
}

/// The file regions of one response, in the order their stand-ins were handed out.
#[derive(Debug, Default)]
pub struct FileRecords {
    slices: Vec<FileSlice>,
}

/// One piece of an encoded response: bytes in memory, or a region of a segment file.
#[derive(Debug)]
pub enum Part {
    Bytes(Bytes),
    File(FileSlice),
}

impl Part {
    pub fn len(&self) -> usize {
        match self {
            Part::Bytes(b) => b.len(),
            Part::File(f) => f.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl FileRecords {
    /// Takes `slice` into the response and returns the stand-in to put in its
    /// `records` field; `None` (the slice dropped) if its length is outside
    /// [`MIN_LEN`]..=[`MAX_LEN`], where the caller reads the bytes instead.
    pub fn stand_in(&mut self, slice: FileSlice) -> Option<Bytes> {
        if !(MIN_LEN..=MAX_LEN).contains(&slice.len()) {
            return None;
        }
        let stand_in = stand_in_buffer().slice(..slice.len());
        self.slices.push(slice);
        Some(stand_in)
    }

    /// Whether `records` is a stand-in handed out by [`FileRecords::stand_in`].
    pub fn is_stand_in(records: &Bytes) -> bool {
        !records.is_empty() && records.as_ptr() == stand_in_buffer().as_ptr()
    }

    /// The region behind the last stand-in handed out.
    pub fn last(&self) -> Option<&FileSlice> {
        self.slices.last()
    }

    pub fn is_empty(&self) -> bool {
        self.slices.is_empty()
    }

    /// The encoded response `segments` with each stand-in replaced by its region. The
    /// encoder keeps every stand-in as a segment of its own and in field order; a
    /// mismatch would mean sending zeros as records, so it is an error instead.
    pub fn splice(self, segments: Vec<Bytes>) -> Result<Vec<Part>, BrokerError> {
        let mut slices = self.slices.into_iter();
        let mut parts = Vec::with_capacity(segments.len());
        for segment in segments {
            if !Self::is_stand_in(&segment) {
                parts.push(Part::Bytes(segment));
                continue;
            }
            match slices.next() {
                Some(slice) if slice.len() == segment.len() => parts.push(Part::File(slice)),
                _ => return Err(mismatch()),
            }
        }
        match slices.next() {
            Some(_) => Err(mismatch()),
            None => Ok(parts),
        }
    }
}

fn mismatch() -> BrokerError {
    BrokerError::Net(std::io::Error::other(
        "fetch response segments do not match its file regions",
    ))
}

/// A log in `dir` holding `batches` one-record batches of `value_len`-byte values.
#[cfg(test)]
pub(crate) fn test_log(
    dir: &std::path::Path,
    value_len: usize,
    batches: i64,
) -> sluice_storage::PartitionLog {
    let log = sluice_storage::PartitionLog::open(dir, sluice_storage::LogConfig::default(), 0)
        .expect("open");
    for ts in 1_000..1_000 + batches {
        let mut builder = sluice_protocol::records::RecordBatchBuilder::new();
        let value: Vec<u8> = (0..value_len).map(|i| (i % 251) as u8).collect();
        builder.push(ts, None, Some(&value), &[]).expect("push");
        let mut b = builder.build().expect("build").to_vec();
        log.append_as_leader(&mut b, 0, ts).expect("append");
    }
    log
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A slice of all of a two-batch log of `value_len`-byte values.
    fn slice_of(dir: &std::path::Path, value_len: usize) -> FileSlice {
        test_log(dir, value_len, 2)
            .read_slice(0, usize::MAX, i64::MAX, 0)
            .expect("read")
            .expect("slice")
    }

    #[test]
    fn stand_ins_are_spliced_back_in_order() {
        let dir = tempfile::tempdir().expect("dir");
        let big = slice_of(dir.path(), 80 * 1024);
        let mut files = FileRecords::default();
        let first = files.stand_in(big.clone()).expect("stand-in");
        let second = files.stand_in(big.clone()).expect("stand-in");
        assert!(FileRecords::is_stand_in(&first));
        assert!(!FileRecords::is_stand_in(&Bytes::from(vec![0u8; 10])));
        let head = Bytes::from_static(b"head");
        let parts = files
            .splice(vec![
                head.clone(),
                first,
                Bytes::from_static(b"mid"),
                second,
            ])
            .expect("splice");
        let kinds: Vec<_> = parts
            .iter()
            .map(|p| match p {
                Part::Bytes(b) => format!("bytes {}", b.len()),
                Part::File(f) => format!("file {}", f.len()),
            })
            .collect();
        let n = big.len();
        assert_eq!(
            kinds,
            [
                "bytes 4",
                &format!("file {n}"),
                "bytes 3",
                &format!("file {n}")
            ]
        );
    }

    #[test]
    fn small_slices_get_no_stand_in_and_mismatches_are_errors() {
        let dir = tempfile::tempdir().expect("dir");
        let small = slice_of(dir.path(), 100);
        let mut files = FileRecords::default();
        assert!(files.stand_in(small).is_none());
        assert!(files.is_empty());

        let dir = tempfile::tempdir().expect("dir");
        let big = slice_of(dir.path(), 80 * 1024);
        let mut files = FileRecords::default();
        let stand_in = files.stand_in(big).expect("stand-in");
        // The stand-in missing from the segments, or cut: an error, not zeros on the wire.
        assert!(FileRecords::default()
            .splice(vec![stand_in.clone()])
            .is_err());
        let mut cut = FileRecords::default();
        let dir2 = tempfile::tempdir().expect("dir");
        cut.stand_in(slice_of(dir2.path(), 80 * 1024))
            .expect("stand-in");
        assert!(cut.splice(vec![stand_in.slice(1..)]).is_err());
        assert!(files.splice(vec![Bytes::from_static(b"x")]).is_err());
    }
}
