//! One log segment: the `.log` file of batches plus its `.index` and `.timeindex`.
//!
//! A segment is shared (`Arc`) between the log's single writer and any number of readers.
//! The writer appends with positional writes past the committed size and only then
//! publishes the new size (`AtomicU64`, release), so readers, which never look past the
//! size they loaded, only ever see whole batches.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, UNIX_EPOCH};

use bytes::{Bytes, BytesMut};
use sluice_protocol::records::{BatchIter, RecordBatchHeader, HEADER_SIZE};

use crate::batches::BatchInfo;
use crate::error::{IoContext, StorageError};
use crate::fileio::{cleaned_file, read_full_at, read_new_at, segment_file};
use crate::index::{offset_entries_valid, Loaded, OffsetEntry, OffsetIndex};
use crate::locks;
use crate::record_scan;
use crate::scan::{LogScanner, Scanned};
use crate::time_index::{time_entries_valid, TimeEntry, TimeIndex};

/// Bookkeeping the writer keeps per segment (also read by retention and time lookups).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SegmentMeta {
    /// Offset after the last batch (the base offset while empty).
    pub next_offset: i64,
    /// Largest batch `maxTimestamp` seen, -1 if none.
    pub max_timestamp: i64,
    /// Offset recorded for `max_timestamp` (see [`BatchInfo::offset_of_max_timestamp`]).
    pub offset_of_max_timestamp: i64,
    /// `maxTimestamp` of the first batch: what `segment.ms` is measured from, as in Kafka.
    pub first_batch_timestamp: Option<i64>,
    /// Log bytes appended since the last offset-index entry.
    pub bytes_since_index: u64,
    /// When this process created or opened the segment.
    pub created_ms: i64,
    /// Last append (or the file's mtime when opened): retention's fallback clock.
    pub last_modified_ms: i64,
}

impl SegmentMeta {
    fn empty(base_offset: i64, created_ms: i64, last_modified_ms: i64) -> Self {
        Self {
            next_offset: base_offset,
            max_timestamp: -1,
            offset_of_max_timestamp: -1,
            first_batch_timestamp: None,
            bytes_since_index: 0,
            created_ms,
            last_modified_ms,
        }
    }

    /// Accounts for batch `b` stored at `position` and returns the index entries it earns:
    /// an offset entry once more than `interval` bytes went by since the last one (the
    /// first batch is found without one), plus a time entry if the largest timestamp grew
    /// past the time index's last entry.
    fn observe(
        &mut self,
        base_offset: i64,
        b: &BatchInfo,
        position: u64,
        interval: u64,
        last_time_entry: Option<i64>,
    ) -> (Option<OffsetEntry>, Option<TimeEntry>) {
        if self.first_batch_timestamp.is_none() {
            self.first_batch_timestamp = Some(b.max_timestamp);
        }
        if b.max_timestamp > self.max_timestamp {
            self.max_timestamp = b.max_timestamp;
            self.offset_of_max_timestamp = b.offset_of_max_timestamp();
        }
        let mut entries = (None, None);
        if self.bytes_since_index > interval {
            if let (Some(rel), Ok(pos)) = (
                relative(base_offset, b.base_offset),
                u32::try_from(position),
            ) {
                entries.0 = Some(OffsetEntry {
                    relative_offset: rel,
                    position: pos,
                });
                entries.1 = self.time_entry(base_offset, last_time_entry);
                self.bytes_since_index = 0;
            }
        }
        self.bytes_since_index += b.size;
        self.next_offset = b.next_offset();
        entries
    }

    /// A time entry for the largest timestamp so far, if it is newer than `last`.
    fn time_entry(&self, base_offset: i64, last: Option<i64>) -> Option<TimeEntry> {
        if self.max_timestamp < 0 || last.is_some_and(|t| t >= self.max_timestamp) {
            return None;
        }
        relative(base_offset, self.offset_of_max_timestamp).map(|rel| TimeEntry {
            timestamp: self.max_timestamp,
            relative_offset: rel,
        })
    }

    /// The timestamp retention compares with `retention.ms`: the newest record's, or the
    /// last modification when no batch carries a timestamp (Kafka's `largestTimestamp`).
    pub(crate) fn largest_timestamp(&self) -> i64 {
        if self.max_timestamp >= 0 {
            self.max_timestamp
        } else {
            self.last_modified_ms
        }
    }
}

/// `offset - base` as an index's u32 relative offset, if it fits Kafka's int range.
pub(crate) fn relative(base_offset: i64, offset: i64) -> Option<u32> {
    let rel = offset.checked_sub(base_offset)?;
    if (0..=i64::from(i32::MAX)).contains(&rel) {
        u32::try_from(rel).ok()
    } else {
        None
    }
}

/// What a full recovery scan found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Recovered {
    pub valid_bytes: u64,
    pub truncated_bytes: u64,
    pub next_offset: i64,
}

/// Outcome of reading batches out of one segment.
#[derive(Debug)]
pub(crate) struct Chunk {
    pub bytes: BytesMut,
    /// Every batch up to the end of the segment's data was taken (the read may go on in
    /// the next segment); false when a limit (bytes, upper offset) stopped it.
    pub reached_end: bool,
}

pub(crate) struct Segment {
    base_offset: i64,
    log_path: PathBuf,
    file: File,
    size: AtomicU64,
    index: OffsetIndex,
    time_index: TimeIndex,
    meta: Mutex<SegmentMeta>,
}

impl Segment {
    /// Creates an empty segment, replacing any files of that name.
    pub(crate) fn create(dir: &Path, base_offset: i64, now_ms: i64) -> Result<Self, StorageError> {
        Self::create_at(dir, base_offset, now_ms, segment_file)
    }

    /// Creates the empty `.cleaned` files a compaction fills before swapping them in.
    /// The result is only written and flushed, then dropped: the swapped-in segment is
    /// reopened under its final names.
    pub(crate) fn create_cleaned(
        dir: &Path,
        base_offset: i64,
        now_ms: i64,
    ) -> Result<Self, StorageError> {
        Self::create_at(dir, base_offset, now_ms, cleaned_file)
    }

    fn create_at(
        dir: &Path,
        base_offset: i64,
        now_ms: i64,
        name: fn(&Path, i64, &str) -> PathBuf,
    ) -> Result<Self, StorageError> {
        let log_path = name(dir, base_offset, "log");
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&log_path)
            .ctx(|| format!("create segment {}", log_path.display()))?;
        Ok(Self {
            base_offset,
            file,
            size: AtomicU64::new(0),
            index: OffsetIndex::create(&name(dir, base_offset, "index"))?,
            time_index: TimeIndex::create(&name(dir, base_offset, "timeindex"))?,
            meta: Mutex::new(SegmentMeta::empty(base_offset, now_ms, now_ms)),
            log_path,
        })
    }

    /// Opens an existing segment and loads its indexes. Returns whether the indexes look
    /// sound; if not they are left empty and the caller must [`Self::recover`] the segment.
    /// The metadata is provisional until [`Self::load_tail`] or [`Self::recover`] runs.
    pub(crate) fn open(
        dir: &Path,
        base_offset: i64,
        now_ms: i64,
    ) -> Result<(Self, bool), StorageError> {
        let log_path = segment_file(dir, base_offset, "log");
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&log_path)
            .ctx(|| format!("open segment {}", log_path.display()))?;
        let md = file
            .metadata()
            .ctx(|| format!("stat segment {}", log_path.display()))?;
        let mtime_ms = md
            .modified()
            .ok()
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map_or(now_ms, |d| i64::try_from(d.as_millis()).unwrap_or(now_ms));
        let index_path = segment_file(dir, base_offset, "index");
        let time_path = segment_file(dir, base_offset, "timeindex");
        // A missing index (deleted, or a crash while the segment was being created) is
        // rebuilt, as Kafka does; an empty one is fine for a small segment.
        let present = index_path.exists() && time_path.exists();
        let (index, offsets) = OffsetIndex::open(&index_path)?;
        let (time_index, times) = TimeIndex::open(&time_path)?;
        let sound = present
            && match (offsets, times) {
                (Loaded::Entries(o), Loaded::Entries(t))
                    if offset_entries_valid(&o, md.len()) && time_entries_valid(&t) =>
                {
                    index.install(o);
                    time_index.install(t);
                    true
                }
                _ => false,
            };
        let mut meta = SegmentMeta::empty(base_offset, now_ms, mtime_ms);
        if let Some(t) = time_index.last() {
            meta.max_timestamp = t.timestamp;
            meta.offset_of_max_timestamp = base_offset + i64::from(t.relative_offset);
        }
        let seg = Self {
            base_offset,
            file,
            size: AtomicU64::new(md.len()),
            index,
            time_index,
            meta: Mutex::new(meta),
            log_path,
        };
        Ok((seg, sound))
    }

    pub(crate) fn base_offset(&self) -> i64 {
        self.base_offset
    }

    pub(crate) fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// Committed bytes: everything below is whole batches.
    pub(crate) fn size(&self) -> u64 {
        self.size.load(Ordering::Acquire)
    }

    pub(crate) fn meta(&self) -> SegmentMeta {
        locks::lock(&self.meta).clone()
    }

    pub(crate) fn set_next_offset_hint(&self, next_offset: i64) {
        locks::lock(&self.meta).next_offset = next_offset;
    }

    pub(crate) fn index_entries(&self) -> (usize, usize) {
        (self.index.len(), self.time_index.len())
    }

    /// Writes `data` (whole batches described by `batches`, positions relative to `data`)
    /// at the end of the segment and indexes it.
    pub(crate) fn append(
        &self,
        data: &[u8],
        batches: &[BatchInfo],
        interval: u64,
        now_ms: i64,
    ) -> Result<(), StorageError> {
        let pos = self.size();
        if let Err(e) = self.file.write_all_at(data, pos) {
            // Drop whatever part was written so the file matches the committed size.
            let _ = self.file.set_len(pos);
            return Err(e).ctx(|| format!("write segment {}", self.log_path.display()));
        }
        self.size.store(pos + data.len() as u64, Ordering::Release);
        let mut meta = locks::lock(&self.meta);
        for b in batches {
            let last_time = self.time_index.last().map(|t| t.timestamp);
            let (oe, te) = meta.observe(self.base_offset, b, pos + b.position, interval, last_time);
            // Index entries only speed lookups up (the index is sparse and rebuildable),
            // and the data is already committed: a failed index write must not fail the
            // append, or the caller would reuse the offsets.
            if let Some(e) = oe {
                if let Err(err) = self.index.push(e) {
                    tracing::warn!(%err, "offset index append failed");
                }
            }
            if let Some(e) = te {
                if let Err(err) = self.time_index.push(e) {
                    tracing::warn!(%err, "time index append failed");
                }
            }
        }
        meta.last_modified_ms = now_ms;
        Ok(())
    }

    /// `len` bytes at `position` (fewer if the file ends first): a compaction's
    /// sequential reads of a closed segment.
    pub(crate) fn read_at(&self, position: u64, len: usize) -> Result<Bytes, StorageError> {
        let mut buf = vec![0u8; len];
        let n = read_full_at(&self.file, &mut buf, position)
            .ctx(|| format!("read {}", self.log_path.display()))?;
        buf.truncate(n);
        Ok(Bytes::from(buf))
    }

    /// `maxTimestamp` of the first batch (what `max.compaction.lag.ms` is measured from,
    /// as Kafka's `getFirstBatchTimestampForSegments`), -1 if none. Segments opened
    /// without a scan do not know it, so it is read from the file then.
    pub(crate) fn first_batch_timestamp(&self) -> Result<i64, StorageError> {
        if let Some(t) = locks::lock(&self.meta).first_batch_timestamp {
            return Ok(t);
        }
        Ok(self
            .header_at(0, self.size())?
            .map_or(-1, |h| h.max_timestamp))
    }

    /// Sets the log file's modification time. A compacted segment keeps the time of its
    /// original's last append, which is what retention and the tombstone rule measure.
    pub(crate) fn set_last_modified(&self, ms: i64) -> Result<(), StorageError> {
        let t = UNIX_EPOCH + Duration::from_millis(u64::try_from(ms).unwrap_or(0));
        self.file
            .set_modified(t)
            .ctx(|| format!("set mtime of {}", self.log_path.display()))?;
        locks::lock(&self.meta).last_modified_ms = ms;
        Ok(())
    }

    /// Full scan from the start with CRC checks: rebuilds both indexes and the metadata
    /// and cuts the file at the first batch that is torn, corrupt, or whose offsets go
    /// backwards (below `expected_first_offset` or the previous batch).
    pub(crate) fn recover(
        &self,
        expected_first_offset: i64,
        interval: u64,
        on_batch: &mut dyn FnMut(&BatchInfo),
    ) -> Result<Recovered, StorageError> {
        let file_len = self
            .file
            .metadata()
            .ctx(|| format!("stat segment {}", self.log_path.display()))?
            .len();
        let mut guard = locks::lock(&self.meta);
        let mut meta =
            SegmentMeta::empty(self.base_offset, guard.created_ms, guard.last_modified_ms);
        let mut offsets = Vec::new();
        let mut times: Vec<TimeEntry> = Vec::new();
        let mut expected = expected_first_offset.max(self.base_offset);
        let mut scanner = LogScanner::new(&self.file, &self.log_path, 0, file_len);
        let valid = loop {
            match scanner.next_batch(true)? {
                Scanned::Batch { header, position } => {
                    let b = BatchInfo::from_header(&header, position);
                    if b.base_offset < expected
                        || b.last_offset_delta < 0
                        || relative(self.base_offset, b.last_offset()).is_none()
                    {
                        tracing::warn!(
                            segment = %self.log_path.display(), position, base = b.base_offset, expected,
                            "batch offsets out of order, truncating"
                        );
                        break position;
                    }
                    on_batch(&b);
                    let (oe, te) = meta.observe(
                        self.base_offset,
                        &b,
                        position,
                        interval,
                        times.last().map(|t| t.timestamp),
                    );
                    offsets.extend(oe);
                    times.extend(te);
                    expected = b.next_offset();
                }
                Scanned::End => break scanner.position(),
                Scanned::Invalid { position, reason } => {
                    tracing::warn!(segment = %self.log_path.display(), position, %reason, "invalid batch, truncating");
                    break position;
                }
            }
        };
        if valid < file_len {
            self.file
                .set_len(valid)
                .ctx(|| format!("truncate segment {}", self.log_path.display()))?;
        }
        self.size.store(valid, Ordering::Release);
        self.index.replace_all(offsets)?;
        self.time_index.replace_all(times)?;
        let next_offset = meta.next_offset;
        *guard = meta;
        Ok(Recovered {
            valid_bytes: valid,
            truncated_bytes: file_len - valid,
            next_offset,
        })
    }

    /// Rebuilds the metadata from the indexes plus a scan of the bytes after the last
    /// offset-index entry (cheap: about `index.interval.bytes`). With `verify_crc`, returns
    /// `false` if that tail holds an invalid batch (the caller then recovers the segment).
    pub(crate) fn load_tail(&self, verify_crc: bool) -> Result<bool, StorageError> {
        let end = self.size();
        let last = self.index.last();
        let start = last.map_or(0, |e| u64::from(e.position));
        let mut guard = locks::lock(&self.meta);
        let mut meta =
            SegmentMeta::empty(self.base_offset, guard.created_ms, guard.last_modified_ms);
        if let Some(t) = self.time_index.last() {
            meta.max_timestamp = t.timestamp;
            meta.offset_of_max_timestamp = self.base_offset + i64::from(t.relative_offset);
        }
        if let Some(e) = last {
            meta.next_offset = self.base_offset + i64::from(e.relative_offset);
        }
        let mut scanner = LogScanner::new(&self.file, &self.log_path, start, end);
        let mut expected = meta.next_offset;
        loop {
            match scanner.next_batch(verify_crc)? {
                Scanned::Batch { header, position } => {
                    let b = BatchInfo::from_header(&header, position);
                    if b.base_offset < expected || b.last_offset_delta < 0 {
                        if verify_crc {
                            return Ok(false);
                        }
                        return Err(StorageError::corrupt(
                            &self.log_path,
                            format!("offsets go backwards at position {position}"),
                        ));
                    }
                    if position == 0 {
                        meta.first_batch_timestamp = Some(b.max_timestamp);
                    }
                    if b.max_timestamp > meta.max_timestamp {
                        meta.max_timestamp = b.max_timestamp;
                        meta.offset_of_max_timestamp = b.offset_of_max_timestamp();
                    }
                    meta.bytes_since_index += b.size;
                    meta.next_offset = b.next_offset();
                    expected = b.next_offset();
                }
                Scanned::End => break,
                Scanned::Invalid { position, reason } => {
                    if verify_crc {
                        return Ok(false);
                    }
                    return Err(StorageError::corrupt(
                        &self.log_path,
                        format!("position {position}: {reason}"),
                    ));
                }
            }
        }
        if meta.first_batch_timestamp.is_none() && end > 0 {
            meta.first_batch_timestamp = self.header_at(0, end)?.map(|h| h.max_timestamp);
        }
        *guard = meta;
        Ok(true)
    }

    /// The header of the batch at `position`, if one fits below `end`.
    fn header_at(
        &self,
        position: u64,
        end: u64,
    ) -> Result<Option<RecordBatchHeader>, StorageError> {
        if position + HEADER_SIZE as u64 > end {
            return Ok(None);
        }
        let mut buf = [0u8; HEADER_SIZE];
        let n = read_full_at(&self.file, &mut buf, position)
            .ctx(|| format!("read {}", self.log_path.display()))?;
        Ok(buf.get(..n).and_then(|b| RecordBatchHeader::parse(b).ok()))
    }

    /// Position and header of the first batch whose last offset is `>= offset`, looking
    /// only below `end`; `None` if every batch there ends before `offset`.
    pub(crate) fn locate(
        &self,
        offset: i64,
        end: u64,
    ) -> Result<Option<(u64, RecordBatchHeader)>, StorageError> {
        let start = relative(self.base_offset, offset)
            .and_then(|rel| self.index.floor(rel))
            .map_or(0, |e| u64::from(e.position));
        self.scan_until(start, end, |h| h.last_offset() >= offset)
    }

    /// Calls `f` for every batch whose last offset is `>= from` and whose base offset is
    /// below `to`, in order, reading headers only (and the one record of a control
    /// batch; no CRC check: the data was recovered when the log opened). Stops quietly
    /// at anything that is not a whole batch, which recovery would have cut.
    pub(crate) fn scan_headers(
        &self,
        from: i64,
        to: i64,
        f: &mut dyn FnMut(&BatchInfo),
    ) -> Result<(), StorageError> {
        let end = self.size();
        let Some((start, _)) = self.locate(from, end)? else {
            return Ok(());
        };
        let mut scanner = LogScanner::new(&self.file, &self.log_path, start, end);
        loop {
            match scanner.next_batch(false)? {
                Scanned::Batch { header, position } => {
                    if header.base_offset >= to {
                        return Ok(());
                    }
                    let info = if header.is_control() {
                        // The marker is in the record: control batches are tiny.
                        let batch = self.read_batch(position, &header)?;
                        BatchInfo::with_marker(&header, position, &batch)
                    } else {
                        BatchInfo::from_header(&header, position)
                    };
                    f(&info);
                }
                Scanned::End => return Ok(()),
                Scanned::Invalid { position, reason } => {
                    tracing::warn!(segment = %self.log_path.display(), position, %reason, "header scan stopped at an invalid batch");
                    return Ok(());
                }
            }
        }
    }

    /// The first record at or above `min_offset` with a timestamp `>= target`, as
    /// `(offset, timestamp)`, starting from the time index's hint. If a batch's records do
    /// not decode, its first offset (at least `min_offset`) and max timestamp stand in.
    pub(crate) fn find_timestamp(
        &self,
        target: i64,
        min_offset: i64,
        end: u64,
    ) -> Result<Option<(i64, i64)>, StorageError> {
        let start = self
            .time_index
            .floor(target)
            .and_then(|t| self.index.floor(t.relative_offset))
            .map_or(0, |e| u64::from(e.position));
        let mut scanner = LogScanner::new(&self.file, &self.log_path, start, end);
        loop {
            match scanner.next_batch(false)? {
                Scanned::Batch { header, position } => {
                    if header.max_timestamp < target || header.last_offset() < min_offset {
                        continue;
                    }
                    let batch = self.read_batch(position, &header)?;
                    match record_scan::record_timestamps(&batch) {
                        Some(records) => {
                            let hit = records
                                .into_iter()
                                .find(|&(o, t)| t >= target && o >= min_offset);
                            if hit.is_some() {
                                return Ok(hit);
                            }
                        }
                        None => {
                            return Ok(Some((
                                header.base_offset.max(min_offset),
                                header.max_timestamp,
                            )))
                        }
                    }
                }
                Scanned::End => return Ok(None),
                Scanned::Invalid { position, reason } => {
                    return Err(StorageError::corrupt(
                        &self.log_path,
                        format!("position {position}: {reason}"),
                    ))
                }
            }
        }
    }

    fn scan_until(
        &self,
        start: u64,
        end: u64,
        found: impl Fn(&RecordBatchHeader) -> bool,
    ) -> Result<Option<(u64, RecordBatchHeader)>, StorageError> {
        let mut scanner = LogScanner::new(&self.file, &self.log_path, start, end);
        loop {
            match scanner.next_batch(false)? {
                Scanned::Batch { header, position } if found(&header) => {
                    return Ok(Some((position, header)))
                }
                Scanned::Batch { .. } => {}
                Scanned::End => return Ok(None),
                Scanned::Invalid { position, reason } => {
                    return Err(StorageError::corrupt(
                        &self.log_path,
                        format!("position {position}: {reason}"),
                    ))
                }
            }
        }
    }

    /// Reads one whole batch (for record-level timestamp lookups).
    pub(crate) fn read_batch(
        &self,
        position: u64,
        header: &RecordBatchHeader,
    ) -> Result<Bytes, StorageError> {
        let mut buf = vec![0u8; header.total_size()];
        let n = read_full_at(&self.file, &mut buf, position)
            .ctx(|| format!("read {}", self.log_path.display()))?;
        buf.truncate(n);
        Ok(Bytes::from(buf))
    }

    /// Reads whole batches from `start` (a batch boundary) up to `end`: only batches whose
    /// last offset is below `upper`, at most `budget` bytes, except that with `take_first`
    /// the first batch is returned whatever its size (KIP-74).
    pub(crate) fn read_from(
        &self,
        start: u64,
        end: u64,
        budget: usize,
        take_first: bool,
        upper: i64,
    ) -> Result<Chunk, StorageError> {
        let avail = end.saturating_sub(start);
        let mut want = budget as u64;
        if take_first {
            want = want.max(HEADER_SIZE as u64);
        }
        let want = want.min(avail) as usize;
        let mut buf = BytesMut::from(bytes::Bytes::from(
            read_new_at(&self.file, want, start)
                .ctx(|| format!("read {}", self.log_path.display()))?,
        ));
        if take_first {
            if let Ok(h) = RecordBatchHeader::parse(&buf) {
                let first = (h.total_size() as u64).min(avail) as usize;
                if first > buf.len() {
                    let have = buf.len();
                    buf.resize(first, 0);
                    let more = read_full_at(&self.file, &mut buf[have..], start + have as u64)
                        .ctx(|| format!("read {}", self.log_path.display()))?;
                    buf.truncate(have + more);
                }
            }
        }
        let mut taken = 0usize;
        let mut limited = false;
        for item in BatchIter::new(&buf) {
            let Ok((h, pos)) = item else {
                // A batch cut by the read size: the byte budget is spent.
                limited = true;
                break;
            };
            let size = h.total_size();
            let fits = pos + size <= budget || (take_first && pos == 0);
            if h.last_offset() >= upper || !fits {
                limited = true;
                break;
            }
            taken = pos + size;
        }
        buf.truncate(taken);
        Ok(Chunk {
            reached_end: !limited && start + taken as u64 == end,
            bytes: buf,
        })
    }

    /// Drops every batch whose last offset is `>= offset`; returns the bytes removed and
    /// the base offset of the first batch removed (`None` if none was).
    pub(crate) fn truncate_to(&self, offset: i64) -> Result<(u64, Option<i64>), StorageError> {
        let end = self.size();
        let Some((pos, header)) = self.locate(offset, end)? else {
            return Ok((0, None));
        };
        self.file
            .set_len(pos)
            .ctx(|| format!("truncate segment {}", self.log_path.display()))?;
        self.size.store(pos, Ordering::Release);
        let keep = u32::try_from(pos).map_or(self.index.len(), |p| self.index.first_at_or_after(p));
        self.index.truncate(keep)?;
        let keep = relative(self.base_offset, header.base_offset)
            .map_or(self.time_index.len(), |r| {
                self.time_index.first_at_or_after(r)
            });
        self.time_index.truncate(keep)?;
        self.load_tail(false)?;
        Ok((end - pos, Some(header.base_offset)))
    }

    /// Called when the segment stops being the active one (roll, close): records the
    /// final largest timestamp in the time index, so that reopening finds it there.
    pub(crate) fn on_inactive(&self) -> Result<(), StorageError> {
        let meta = self.meta();
        let last = self.time_index.last().map(|t| t.timestamp);
        if let Some(e) = meta.time_entry(self.base_offset, last) {
            self.time_index.push(e)?;
        }
        Ok(())
    }

    /// fsyncs the log and both indexes.
    pub(crate) fn flush(&self) -> Result<(), StorageError> {
        self.file
            .sync_data()
            .ctx(|| format!("fsync segment {}", self.log_path.display()))?;
        self.index.sync()?;
        self.time_index.sync()
    }

    pub(crate) fn sync_time_index(&self) -> Result<(), StorageError> {
        self.time_index.sync()
    }

    /// Removes the segment's files (open handles held by readers stay valid). The log
    /// goes first: an index without its log is an orphan that opening cleans up.
    pub(crate) fn delete_files(&self) -> Result<(), StorageError> {
        for path in [
            self.log_path.as_path(),
            self.index.path(),
            self.time_index.path(),
        ] {
            match std::fs::remove_file(path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e).ctx(|| format!("delete {}", path.display())),
            }
        }
        Ok(())
    }
}
