//! Producer state (KIP-98): per producer id, its epoch and the sequence ranges of its
//! last few batches, so that a leader deduplicates retried batches and rejects sequence
//! gaps; its open transaction and the coordinator epoch of its last marker; the
//! partition's transactions ([`crate::transactions`]); and the snapshot files that
//! persist all of it.
//!
//! The rules are Kafka's (`ProducerStateManager`, `ProducerAppendInfo.checkProducerEpoch`
//! / `checkSequence` / `appendEndTxnMarker`, `ProducerStateEntry.findDuplicateBatch`).
//! Data batches take part when they carry a producer id and a base sequence (both
//! `>= 0`); a transactional one opens its producer's transaction, which the producer's
//! next COMMIT or ABORT marker (a control batch) ends. Every other batch is ignored.
//!
//! The state is a function of the log: followers and recovery apply the same updates the
//! leader did (without validation), so whoever becomes leader deduplicates identically.
//!
//! # Snapshot files
//!
//! `<20-digit offset>.snapshot` in the partition directory (Kafka's name) holds the state
//! as it was with the log ending at that offset (every batch below it applied, none at or
//! above). Our own compact big-endian format:
//!
//! ```text
//! version: i16 (= 2)
//! crc: u32            CRC-32C of every byte after this field
//! offset: i64         the offset in the file name (checked on load)
//! count: u32          number of producers, then per producer:
//!   producer_id: i64, epoch: i16, last_timestamp: i64, coordinator_epoch: i32,
//!   txn_first_offset: i64 (-1: no open transaction), batches: u8 (0..=5), then per
//!   batch (oldest first): first_seq: i32, last_seq: i32, first_offset: i64,
//!   last_offset: i64, max_timestamp: i64
//! aborted: u32        number of aborted transactions, then per one (marker order):
//!   producer_id: i64, first_offset: i64, last_offset: i64, last_stable_offset: i64
//! ```
//!
//! Version 1 (written before transactions) lacks the two transaction fields and the
//! aborted list, and has at least one batch per producer; it is still read.
//!
//! A snapshot that is missing, unreadable or fails its checks is skipped (and deleted):
//! loading falls back to an older one, or to a scan of the whole log, and never fails.

use std::collections::{BTreeMap, VecDeque};
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use sluice_protocol::records::EndTxnMarker;

use crate::batches::BatchInfo;
use crate::checkpoint::TMP_SUFFIX;
use crate::error::{IoContext, StorageError};
use crate::fileio::{parse_segment_file, segment_file, sync_dir};
use crate::segment::Segment;
use crate::transactions::{AbortedTxn, CompletedTxn, Transactions};

/// How many of a producer's latest batches are remembered for deduplication. Kafka's
/// `NUM_BATCHES_TO_RETAIN`, which is why a producer allows at most five in-flight requests
/// per connection with idempotence enabled.
pub(crate) const MAX_CACHED_BATCHES: usize = 5;

/// Extension of producer snapshot files.
pub(crate) const SNAPSHOT_EXT: &str = "snapshot";

/// How many snapshot files are kept (the newest): loading starts from the newest valid
/// one, and a second means a torn or corrupt newest one still leaves a recent fallback
/// rather than a scan of the whole log.
const SNAPSHOTS_KEPT: usize = 2;

const SNAPSHOT_VERSION: i16 = 2;
/// The format before transactions, still read.
const SNAPSHOT_VERSION_1: i16 = 1;
/// version + crc.
const CRC_END: usize = 6;
const PRODUCER_FIXED: usize = 8 + 2 + 8 + 4 + 8 + 1;
const BATCH_SIZE: usize = 4 + 4 + 8 + 8 + 8;
const ABORTED_SIZE: usize = 4 * 8;
/// No coordinator epoch seen yet (Kafka's `RecordBatch.NO_PARTITION_LEADER_EPOCH`).
const NO_COORDINATOR_EPOCH: i32 = -1;

/// One producer as DescribeProducers reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProducerSnapshotEntry {
    pub producer_id: i64,
    pub producer_epoch: i16,
    /// Sequence of the last record of the producer's last batch (-1: no batch cached,
    /// e.g. only a marker seen since its epoch began).
    pub last_sequence: i32,
    /// `maxTimestamp` of the producer's last batch or marker (what expiry measures from).
    pub last_timestamp: i64,
    /// Offset of the first record of the producer's last batch (-1: none).
    pub last_batch_first_offset: i64,
    /// Coordinator epoch of the producer's last transaction marker (-1: none).
    pub coordinator_epoch: i32,
    /// First offset of the producer's open transaction (-1: none).
    pub current_txn_start_offset: i64,
}

/// Where one of a producer's batches went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BatchMetadata {
    pub first_seq: i32,
    pub last_seq: i32,
    pub first_offset: i64,
    pub last_offset: i64,
    pub max_timestamp: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct ProducerEntry {
    epoch: i16,
    /// Oldest first, at most [`MAX_CACHED_BATCHES`], all of `epoch`. Empty when the
    /// producer's epoch was set by a marker and it wrote nothing since.
    batches: VecDeque<BatchMetadata>,
    last_timestamp: i64,
    coordinator_epoch: i32,
    /// First offset of the open transaction, if one is open.
    txn_first_offset: Option<i64>,
}

impl ProducerEntry {
    fn last(&self) -> Option<&BatchMetadata> {
        self.batches.back()
    }

    /// Kafka's `findDuplicateBatch`: same epoch and exactly the same sequence range.
    fn duplicate_of(&self, epoch: i16, first_seq: i32, last_seq: i32) -> Option<BatchMetadata> {
        if epoch != self.epoch {
            return None;
        }
        self.batches
            .iter()
            .find(|b| b.first_seq == first_seq && b.last_seq == last_seq)
            .copied()
    }

    fn new(epoch: i16, last_timestamp: i64) -> Self {
        Self {
            epoch,
            batches: VecDeque::new(),
            last_timestamp,
            coordinator_epoch: NO_COORDINATOR_EPOCH,
            txn_first_offset: None,
        }
    }

    /// Kafka's `maybeUpdateProducerEpoch`: a new epoch forgets the old epoch's batches.
    fn set_epoch(&mut self, epoch: i16) {
        if epoch != self.epoch {
            self.epoch = epoch;
            self.batches.clear();
        }
    }

    /// Kafka's `ProducerStateEntry.addBatch`.
    fn add(&mut self, epoch: i16, meta: BatchMetadata) {
        self.set_epoch(epoch);
        self.batches.push_back(meta);
        while self.batches.len() > MAX_CACHED_BATCHES {
            self.batches.pop_front();
        }
        self.last_timestamp = meta.max_timestamp;
    }
}

/// The idempotence fields of a batch, if it is an idempotent one.
struct Idempotent {
    producer_id: i64,
    epoch: i16,
    first_seq: i32,
    last_seq: i32,
}

fn idempotent(b: &BatchInfo) -> Option<Idempotent> {
    if b.producer_id < 0 || b.base_sequence < 0 {
        return None;
    }
    Some(Idempotent {
        producer_id: b.producer_id,
        epoch: b.producer_epoch,
        first_seq: b.base_sequence,
        last_seq: last_sequence(b.base_sequence, b.last_offset_delta),
    })
}

/// Sequence of the last record: sequences wrap from `i32::MAX` to 0 (Kafka's
/// `DefaultRecordBatch.incrementSequence`).
pub(crate) fn last_sequence(base: i32, delta: i32) -> i32 {
    let delta = delta.max(0);
    if base > i32::MAX - delta {
        delta - (i32::MAX - base) - 1
    } else {
        base + delta
    }
}

/// Kafka's `inSequence`: the next batch starts right after the last, wrapping at `i32::MAX`.
fn in_sequence(last_seq: i32, next_seq: i32) -> bool {
    i64::from(next_seq) == i64::from(last_seq) + 1 || (next_seq == 0 && last_seq == i32::MAX)
}

/// What validating a leader append found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Validated {
    /// Every batch may be appended.
    Append,
    /// The (single) batch was appended before; here is where it went.
    Duplicate(BatchMetadata),
}

/// Every producer's state and the partition's transactions, as of the current log end.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct ProducerState {
    producers: BTreeMap<i64, ProducerEntry>,
    txns: Transactions,
}

impl ProducerState {
    /// Checks a leader append against the state before anything is written. Each batch is
    /// checked against the state as updated by the batches before it in the same call.
    ///
    /// Duplicates are only recognised for a call of one batch (what Produce v3+ sends):
    /// a retried batch in a call with others would leave no single answer to give, so
    /// such a call is refused with [`StorageError::DuplicateSequence`].
    pub(crate) fn validate(&self, batches: &[BatchInfo]) -> Result<Validated, StorageError> {
        // Only the producers this call touches are copied.
        let mut pending: BTreeMap<i64, Option<ProducerEntry>> = BTreeMap::new();
        for b in batches {
            if b.producer_id < 0 {
                continue;
            }
            if let Some(marker) = b.marker {
                let entry = pending
                    .entry(b.producer_id)
                    .or_insert_with(|| self.producers.get(&b.producer_id).cloned());
                if let Some(e) = entry.as_ref() {
                    check_marker(e, b.producer_id, b.producer_epoch, marker)?;
                }
                end_txn(entry, b.producer_epoch, marker, b.max_timestamp);
                continue;
            }
            if let Some(Some(e)) = pending
                .get(&b.producer_id)
                .map(Option::as_ref)
                .or_else(|| Some(self.producers.get(&b.producer_id)))
            {
                if let (Some(first), false) = (e.txn_first_offset, b.transactional) {
                    return Err(StorageError::InvalidTxnState {
                        producer_id: b.producer_id,
                        txn_first_offset: first,
                    });
                }
            }
            let Some(p) = idempotent(b) else {
                if b.transactional {
                    let current = pending
                        .get(&b.producer_id)
                        .map(Option::as_ref)
                        .unwrap_or_else(|| self.producers.get(&b.producer_id));
                    if let Some(e) = current.filter(|e| b.producer_epoch < e.epoch) {
                        return Err(StorageError::InvalidProducerEpoch {
                            producer_id: b.producer_id,
                            producer_epoch: b.producer_epoch,
                            current_epoch: e.epoch,
                        });
                    }
                }
                continue;
            };
            let entry = pending
                .entry(p.producer_id)
                .or_insert_with(|| self.producers.get(&p.producer_id).cloned());
            if let Some(e) = entry.as_ref() {
                if let Some(dup) = e.duplicate_of(p.epoch, p.first_seq, p.last_seq) {
                    if batches.len() == 1 {
                        return Ok(Validated::Duplicate(dup));
                    }
                    return Err(StorageError::DuplicateSequence {
                        producer_id: p.producer_id,
                        producer_epoch: p.epoch,
                        first_sequence: p.first_seq,
                        last_sequence: p.last_seq,
                    });
                }
                check(e, &p)?;
            }
            // Offsets are not known yet and do not matter for checking later batches.
            apply(entry, &p, b.max_timestamp, -1, -1);
            if let (Some(e), true) = (entry.as_mut(), b.transactional) {
                e.txn_first_offset.get_or_insert(-1);
            }
        }
        Ok(Validated::Append)
    }

    /// Applies appended batches (with their final offsets), without validation: what a
    /// leader does after writing, and what followers and recovery do.
    pub(crate) fn update(&mut self, batches: &[BatchInfo]) {
        for b in batches {
            self.update_one(b);
        }
    }

    pub(crate) fn update_one(&mut self, b: &BatchInfo) {
        if b.producer_id < 0 {
            return;
        }
        if let Some(marker) = b.marker {
            let mut entry = self.producers.remove(&b.producer_id);
            let first = end_txn(&mut entry, b.producer_epoch, marker, b.max_timestamp);
            if let Some(e) = entry {
                self.producers.insert(b.producer_id, e);
            }
            // A marker with no open transaction here (the partition was added to the
            // transaction but got no data) is a transaction of just the marker, as in Kafka.
            self.txns.complete(CompletedTxn {
                producer_id: b.producer_id,
                first_offset: first.unwrap_or(b.base_offset),
                last_offset: b.base_offset,
                aborted: !marker.commit,
            });
            return;
        }
        if b.control {
            return;
        }
        let mut entry = self.producers.remove(&b.producer_id);
        match idempotent(b) {
            Some(p) => apply(
                &mut entry,
                &p,
                b.max_timestamp,
                b.base_offset,
                b.last_offset(),
            ),
            // A transactional batch without a sequence: a coordinator's own write
            // (transactional offset commits), which takes part in the transaction only.
            None if b.transactional => {
                let e = entry
                    .get_or_insert_with(|| ProducerEntry::new(b.producer_epoch, b.max_timestamp));
                e.set_epoch(b.producer_epoch);
                e.last_timestamp = b.max_timestamp;
            }
            None => {}
        }
        if let Some(mut e) = entry {
            if b.transactional && e.txn_first_offset.is_none() {
                e.txn_first_offset = Some(b.base_offset);
                self.txns.begin(b.producer_id, b.base_offset);
            }
            self.producers.insert(b.producer_id, e);
        }
    }

    /// See [`Transactions::on_high_watermark`].
    pub(crate) fn on_high_watermark(&mut self, hw: i64) {
        self.txns.on_high_watermark(hw);
    }

    /// See [`Transactions::first_unstable_offset`].
    pub(crate) fn first_unstable_offset(&self) -> Option<i64> {
        self.txns.first_unstable_offset()
    }

    /// See [`Transactions::aborted_between`].
    pub(crate) fn aborted_between(&self, from: i64, upper: i64) -> Vec<AbortedTxn> {
        self.txns.aborted_between(from, upper)
    }

    /// How many aborted transactions are remembered.
    pub(crate) fn aborted_count(&self) -> usize {
        self.txns.aborted().len()
    }

    /// See [`Transactions::drop_aborted_below`].
    pub(crate) fn drop_aborted_below(&mut self, log_start_offset: i64) -> usize {
        self.txns.drop_aborted_below(log_start_offset)
    }

    /// Drops producers whose last batch is `expiration_ms` or more older than `now_ms`
    /// (Kafka's `producer.id.expiration.ms`), except those with an open transaction.
    /// Returns how many were dropped.
    pub(crate) fn remove_expired(&mut self, now_ms: i64, expiration_ms: i64) -> usize {
        let before = self.producers.len();
        self.producers.retain(|_, e| {
            e.txn_first_offset.is_some() || now_ms.saturating_sub(e.last_timestamp) < expiration_ms
        });
        before - self.producers.len()
    }

    pub(crate) fn len(&self) -> usize {
        self.producers.len()
    }

    /// Every producer, by id.
    pub(crate) fn entries(&self) -> Vec<ProducerSnapshotEntry> {
        self.producers
            .iter()
            .map(|(&pid, e)| ProducerSnapshotEntry {
                producer_id: pid,
                producer_epoch: e.epoch,
                last_sequence: e.last().map_or(-1, |b| b.last_seq),
                last_timestamp: e.last_timestamp,
                last_batch_first_offset: e.last().map_or(-1, |b| b.first_offset),
                coordinator_epoch: e.coordinator_epoch,
                current_txn_start_offset: e.txn_first_offset.unwrap_or(-1),
            })
            .collect()
    }

    /// The snapshot file's bytes for the state at `offset`.
    pub(crate) fn encode(&self, offset: i64) -> Vec<u8> {
        let aborted = self.txns.aborted();
        let mut out = Vec::with_capacity(
            CRC_END
                + 16
                + self.producers.len() * (PRODUCER_FIXED + BATCH_SIZE)
                + aborted.len() * ABORTED_SIZE,
        );
        out.extend(SNAPSHOT_VERSION.to_be_bytes());
        out.extend([0u8; 4]);
        out.extend(offset.to_be_bytes());
        out.extend((self.producers.len() as u32).to_be_bytes());
        for (pid, e) in &self.producers {
            out.extend(pid.to_be_bytes());
            out.extend(e.epoch.to_be_bytes());
            out.extend(e.last_timestamp.to_be_bytes());
            out.extend(e.coordinator_epoch.to_be_bytes());
            out.extend(e.txn_first_offset.unwrap_or(-1).to_be_bytes());
            out.push(e.batches.len() as u8);
            for b in &e.batches {
                out.extend(b.first_seq.to_be_bytes());
                out.extend(b.last_seq.to_be_bytes());
                out.extend(b.first_offset.to_be_bytes());
                out.extend(b.last_offset.to_be_bytes());
                out.extend(b.max_timestamp.to_be_bytes());
            }
        }
        out.extend((aborted.len() as u32).to_be_bytes());
        for a in aborted {
            out.extend(a.producer_id.to_be_bytes());
            out.extend(a.first_offset.to_be_bytes());
            out.extend(a.last_offset.to_be_bytes());
            out.extend(a.last_stable_offset.to_be_bytes());
        }
        let crc = crc32c::crc32c(out.get(CRC_END..).unwrap_or(&[]));
        if let Some(field) = out.get_mut(2..CRC_END) {
            field.copy_from_slice(&crc.to_be_bytes());
        }
        out
    }

    /// Parses a snapshot file's bytes; `None` unless it is wholly valid and for `offset`.
    pub(crate) fn decode(buf: &[u8], offset: i64) -> Option<Self> {
        let mut r = Reader { buf, at: 0 };
        let version = r.i16()?;
        if version != SNAPSHOT_VERSION && version != SNAPSHOT_VERSION_1 {
            return None;
        }
        let v2 = version == SNAPSHOT_VERSION;
        let crc = r.u32()?;
        if crc32c::crc32c(buf.get(CRC_END..)?) != crc || r.i64()? != offset {
            return None;
        }
        let count = r.u32()?;
        let mut producers = BTreeMap::new();
        let mut txns = Transactions::default();
        for _ in 0..count {
            let pid = r.i64()?;
            let epoch = r.i16()?;
            let last_timestamp = r.i64()?;
            let (coordinator_epoch, txn_first) = if v2 {
                (r.i32()?, r.i64()?)
            } else {
                (NO_COORDINATOR_EPOCH, -1)
            };
            let n = usize::from(r.u8()?);
            if pid < 0 || (n == 0 && !v2) || n > MAX_CACHED_BATCHES || txn_first < -1 {
                return None;
            }
            let mut batches = VecDeque::with_capacity(n);
            for _ in 0..n {
                batches.push_back(BatchMetadata {
                    first_seq: r.i32()?,
                    last_seq: r.i32()?,
                    first_offset: r.i64()?,
                    last_offset: r.i64()?,
                    max_timestamp: r.i64()?,
                });
            }
            let txn_first_offset = (txn_first >= 0).then_some(txn_first);
            if let Some(first) = txn_first_offset {
                txns.begin(pid, first);
            }
            let entry = ProducerEntry {
                epoch,
                batches,
                last_timestamp,
                coordinator_epoch,
                txn_first_offset,
            };
            if producers.insert(pid, entry).is_some() {
                return None;
            }
        }
        if v2 {
            let n = r.u32()?;
            let mut aborted: Vec<AbortedTxn> = Vec::new();
            for _ in 0..n {
                let a = AbortedTxn {
                    producer_id: r.i64()?,
                    first_offset: r.i64()?,
                    last_offset: r.i64()?,
                    last_stable_offset: r.i64()?,
                };
                if aborted
                    .last()
                    .is_some_and(|p| p.last_offset >= a.last_offset)
                {
                    return None;
                }
                aborted.push(a);
            }
            txns.set_aborted(aborted);
        }
        (r.at == buf.len()).then_some(Self { producers, txns })
    }
}

/// Kafka's `checkProducerEpoch` and `checkSequence` for a client (leader) append of batch
/// `p` by a producer with known state `e`.
fn check(e: &ProducerEntry, p: &Idempotent) -> Result<(), StorageError> {
    if p.epoch < e.epoch {
        return Err(StorageError::InvalidProducerEpoch {
            producer_id: p.producer_id,
            producer_epoch: p.epoch,
            current_epoch: e.epoch,
        });
    }
    let out_of_order = |last: i32| StorageError::OutOfOrderSequence {
        producer_id: p.producer_id,
        producer_epoch: p.epoch,
        first_sequence: p.first_seq,
        last_sequence: last,
    };
    if p.epoch > e.epoch {
        // A bumped epoch restarts the sequence.
        if p.first_seq != 0 {
            return Err(out_of_order(-1));
        }
        return Ok(());
    }
    let last = e.last().map_or(-1, |b| b.last_seq);
    if !in_sequence(last, p.first_seq) {
        return Err(out_of_order(last));
    }
    Ok(())
}

/// Kafka's `appendEndTxnMarker` checks for a marker written as leader: not from an older
/// producer epoch, nor from an older coordinator epoch than the last marker's.
fn check_marker(
    e: &ProducerEntry,
    producer_id: i64,
    epoch: i16,
    marker: EndTxnMarker,
) -> Result<(), StorageError> {
    if epoch < e.epoch {
        return Err(StorageError::InvalidProducerEpoch {
            producer_id,
            producer_epoch: epoch,
            current_epoch: e.epoch,
        });
    }
    if marker.coordinator_epoch < e.coordinator_epoch {
        return Err(StorageError::CoordinatorFenced {
            producer_id,
            coordinator_epoch: marker.coordinator_epoch,
            current: e.coordinator_epoch,
        });
    }
    Ok(())
}

/// Applies a marker to `entry` (creating it for a producer not seen here): the epoch
/// and coordinator epoch move to the marker's and the open transaction ends. Returns
/// the ended transaction's first offset, if one was open.
fn end_txn(
    entry: &mut Option<ProducerEntry>,
    epoch: i16,
    marker: EndTxnMarker,
    timestamp: i64,
) -> Option<i64> {
    let e = entry.get_or_insert_with(|| ProducerEntry::new(epoch, timestamp));
    e.set_epoch(epoch);
    e.coordinator_epoch = marker.coordinator_epoch;
    e.last_timestamp = timestamp;
    e.txn_first_offset.take()
}

/// Adds batch `p` to `entry` (creating it for a new producer).
fn apply(
    entry: &mut Option<ProducerEntry>,
    p: &Idempotent,
    max_timestamp: i64,
    first_offset: i64,
    last_offset: i64,
) {
    let meta = BatchMetadata {
        first_seq: p.first_seq,
        last_seq: p.last_seq,
        first_offset,
        last_offset,
        max_timestamp,
    };
    match entry {
        Some(e) => e.add(p.epoch, meta),
        None => {
            let mut e = ProducerEntry::new(p.epoch, max_timestamp);
            e.batches.push_back(meta);
            *entry = Some(e);
        }
    }
}

/// Bounds-checked big-endian reads.
struct Reader<'a> {
    buf: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn take<const N: usize>(&mut self) -> Option<[u8; N]> {
        let bytes = self.buf.get(self.at..self.at.checked_add(N)?)?;
        self.at += N;
        bytes.try_into().ok()
    }
    fn u8(&mut self) -> Option<u8> {
        self.take::<1>().map(|b| b[0])
    }
    fn i16(&mut self) -> Option<i16> {
        self.take().map(i16::from_be_bytes)
    }
    fn i32(&mut self) -> Option<i32> {
        self.take().map(i32::from_be_bytes)
    }
    fn u32(&mut self) -> Option<u32> {
        self.take().map(u32::from_be_bytes)
    }
    fn i64(&mut self) -> Option<i64> {
        self.take().map(i64::from_be_bytes)
    }
}

pub(crate) fn snapshot_path(dir: &Path, offset: i64) -> PathBuf {
    segment_file(dir, offset, SNAPSHOT_EXT)
}

/// Offsets of the snapshot files in `dir`, ascending.
pub(crate) fn list_snapshots(dir: &Path) -> Result<Vec<i64>, StorageError> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).ctx(|| format!("list {}", dir.display()))? {
        let entry = entry.ctx(|| format!("list {}", dir.display()))?;
        if let Some(offset) = parse_segment_file(&entry.file_name().to_string_lossy(), SNAPSHOT_EXT)
        {
            out.push(offset);
        }
    }
    out.sort_unstable();
    Ok(out)
}

fn remove_snapshot(dir: &Path, offset: i64) -> Result<(), StorageError> {
    let path = snapshot_path(dir, offset);
    match std::fs::remove_file(&path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e).ctx(|| format!("delete {}", path.display())),
    }
}

/// Deletes the snapshots whose offset satisfies `doomed`; returns how many.
pub(crate) fn delete_snapshots(
    dir: &Path,
    doomed: impl Fn(i64) -> bool,
) -> Result<usize, StorageError> {
    let mut n = 0;
    for offset in list_snapshots(dir)? {
        if doomed(offset) {
            remove_snapshot(dir, offset)?;
            n += 1;
        }
    }
    Ok(n)
}

/// Writes the snapshot for `offset` (temp file then rename), then deletes all but the
/// newest [`SNAPSHOTS_KEPT`]. With `durable` the file and directory are fsynced (clean
/// shutdown); without (segment roll, on the append path) a crash may lose or tear the
/// file, which loading detects and falls back from.
pub(crate) fn write_snapshot(
    dir: &Path,
    offset: i64,
    state: &ProducerState,
    durable: bool,
) -> Result<(), StorageError> {
    let path = snapshot_path(dir, offset);
    let tmp = PathBuf::from(format!("{}{TMP_SUFFIX}", path.display()));
    let bytes = state.encode(offset);
    let write = || -> std::io::Result<()> {
        let mut f = File::create(&tmp)?;
        f.write_all(&bytes)?;
        if durable {
            f.sync_all()?;
        }
        std::fs::rename(&tmp, &path)
    };
    write().ctx(|| format!("write producer snapshot {}", path.display()))?;
    if durable {
        sync_dir(dir)?;
    }
    let all = list_snapshots(dir)?;
    let excess = all.len().saturating_sub(SNAPSHOTS_KEPT);
    for &old in all.iter().take(excess) {
        remove_snapshot(dir, old)?;
    }
    tracing::trace!(dir = %dir.display(), offset, producers = state.len(), "producer snapshot written");
    Ok(())
}

/// The newest valid snapshot at or below `max_offset`, with its offset. Invalid ones are
/// deleted (with a warning) on the way down, so they are not tried again.
fn load_newest(dir: &Path, max_offset: i64) -> Result<Option<(i64, ProducerState)>, StorageError> {
    let snapshots = list_snapshots(dir)?;
    for &offset in snapshots.iter().rev().filter(|&&o| o <= max_offset) {
        let path = snapshot_path(dir, offset);
        let state = match std::fs::read(&path) {
            Ok(buf) => ProducerState::decode(&buf, offset),
            Err(err) => {
                tracing::warn!(path = %path.display(), %err, "producer snapshot unreadable");
                None
            }
        };
        match state {
            Some(s) => return Ok(Some((offset, s))),
            None => {
                tracing::warn!(path = %path.display(), "corrupt producer snapshot ignored");
                if let Err(err) = remove_snapshot(dir, offset) {
                    tracing::warn!(path = %path.display(), %err, "could not delete corrupt producer snapshot");
                }
            }
        }
    }
    Ok(None)
}

/// Rebuilds the state of the log made of `segments` (oldest first) between
/// `log_start_offset` and `log_end_offset`: deletes snapshots above the log end, loads the
/// newest valid one at or below it, and applies every batch from there (or from the log
/// start if there is none) up to the log end, reading only batch headers.
pub(crate) fn rebuild(
    dir: &Path,
    segments: &[Arc<Segment>],
    log_start_offset: i64,
    log_end_offset: i64,
) -> Result<ProducerState, StorageError> {
    let stale = delete_snapshots(dir, |o| o > log_end_offset)?;
    let (from, mut state) = match load_newest(dir, log_end_offset)? {
        Some((offset, state)) => (offset.max(log_start_offset), state),
        None => (log_start_offset, ProducerState::default()),
    };
    let mut scanned = 0usize;
    for (i, seg) in segments.iter().enumerate() {
        if seg.base_offset() >= log_end_offset {
            break;
        }
        if segments
            .get(i + 1)
            .is_some_and(|next| next.base_offset() <= from)
        {
            continue;
        }
        seg.scan_headers(from, log_end_offset, &mut |b| {
            scanned += 1;
            state.update_one(b);
        })?;
    }
    tracing::debug!(
        dir = %dir.display(), from, log_end_offset, scanned_batches = scanned,
        stale_snapshots = stale, producers = state.len(), "producer state loaded"
    );
    Ok(state)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn info(pid: i64, epoch: i16, seq: i32, records: i32, offset: i64, ts: i64) -> BatchInfo {
        BatchInfo {
            position: 0,
            size: 100,
            base_offset: offset,
            last_offset_delta: records - 1,
            max_timestamp: ts,
            log_append_time: false,
            leader_epoch: 0,
            producer_id: pid,
            producer_epoch: epoch,
            base_sequence: seq,
            transactional: false,
            control: false,
            marker: None,
        }
    }

    fn sample() -> ProducerState {
        let mut s = ProducerState::default();
        for i in 0..7 {
            s.update_one(&info(1, 0, i * 2, 2, i64::from(i) * 2, 100 + i64::from(i)));
        }
        s.update_one(&info(42, 3, 0, 1, 20, 500));
        s.update_one(&info(7, 0, i32::MAX, 3, 21, -1));
        s
    }

    #[test]
    fn sequences_wrap() {
        assert_eq!(last_sequence(0, 4), 4);
        assert_eq!(last_sequence(i32::MAX, 0), i32::MAX);
        assert_eq!(last_sequence(i32::MAX, 1), 0);
        assert_eq!(last_sequence(i32::MAX - 1, 3), 1);
        assert!(in_sequence(4, 5));
        assert!(in_sequence(i32::MAX, 0));
        assert!(!in_sequence(4, 6));
        assert!(!in_sequence(i32::MAX, 1));
    }

    #[test]
    fn snapshot_round_trips() {
        let s = sample();
        assert_eq!(s.producers.get(&1).map(|e| e.batches.len()), Some(5));
        let bytes = s.encode(30);
        assert_eq!(ProducerState::decode(&bytes, 30), Some(s.clone()));
        let empty = ProducerState::default();
        assert_eq!(ProducerState::decode(&empty.encode(0), 0), Some(empty));
        // The offset must match the file name.
        assert_eq!(ProducerState::decode(&bytes, 31), None);
        assert_eq!(
            s.entries()[0],
            ProducerSnapshotEntry {
                producer_id: 1,
                producer_epoch: 0,
                last_sequence: 13,
                last_timestamp: 106,
                last_batch_first_offset: 12,
                coordinator_epoch: -1,
                current_txn_start_offset: -1,
            }
        );
    }

    #[test]
    fn corrupt_snapshots_are_refused() {
        let bytes = sample().encode(30);
        for cut in 0..bytes.len() {
            assert_eq!(
                ProducerState::decode(&bytes[..cut], 30),
                None,
                "cut at {cut}"
            );
        }
        for at in 0..bytes.len() {
            let mut flipped = bytes.clone();
            flipped[at] ^= 0x10;
            assert_eq!(ProducerState::decode(&flipped, 30), None, "flip at {at}");
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert_eq!(ProducerState::decode(&longer, 30), None);
    }

    #[test]
    fn loading_falls_back_from_a_corrupt_snapshot() {
        let dir = tempfile::tempdir().unwrap();
        let older = sample();
        let mut newer = sample();
        newer.update_one(&info(99, 0, 0, 1, 40, 900));
        write_snapshot(dir.path(), 30, &older, true).unwrap();
        write_snapshot(dir.path(), 41, &newer, false).unwrap();
        assert_eq!(list_snapshots(dir.path()).unwrap(), vec![30, 41]);
        assert_eq!(
            load_newest(dir.path(), 100).unwrap(),
            Some((41, newer.clone()))
        );
        assert_eq!(
            load_newest(dir.path(), 40).unwrap(),
            Some((30, older.clone()))
        );
        assert_eq!(load_newest(dir.path(), 29).unwrap(), None);

        // Tear the newest: the older one is used and the torn one deleted.
        let path = snapshot_path(dir.path(), 41);
        let len = std::fs::metadata(&path).unwrap().len();
        std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(len / 2)
            .unwrap();
        assert_eq!(load_newest(dir.path(), 100).unwrap(), Some((30, older)));
        assert_eq!(list_snapshots(dir.path()).unwrap(), vec![30]);

        // Garbage everywhere: nothing, and no error.
        std::fs::write(snapshot_path(dir.path(), 30), b"garbage").unwrap();
        assert_eq!(load_newest(dir.path(), 100).unwrap(), None);
        assert!(list_snapshots(dir.path()).unwrap().is_empty());
    }

    #[test]
    fn only_the_newest_snapshots_are_kept() {
        let dir = tempfile::tempdir().unwrap();
        for offset in [10, 20, 30, 40] {
            write_snapshot(dir.path(), offset, &sample(), false).unwrap();
        }
        assert_eq!(list_snapshots(dir.path()).unwrap(), vec![30, 40]);
        assert_eq!(delete_snapshots(dir.path(), |o| o < 35).unwrap(), 1);
        assert_eq!(list_snapshots(dir.path()).unwrap(), vec![40]);
    }

    #[test]
    fn validation_follows_kafkas_rules() {
        let mut s = ProducerState::default();
        // Unknown producer: any sequence.
        assert_eq!(
            s.validate(&[info(1, 0, 17, 3, 0, 1)]).unwrap(),
            Validated::Append
        );
        s.update_one(&info(1, 0, 17, 3, 0, 1));
        // Next in sequence, a gap, a duplicate.
        assert_eq!(
            s.validate(&[info(1, 0, 20, 1, 0, 1)]).unwrap(),
            Validated::Append
        );
        assert!(matches!(
            s.validate(&[info(1, 0, 21, 1, 0, 1)]),
            Err(StorageError::OutOfOrderSequence {
                last_sequence: 19,
                ..
            })
        ));
        assert!(matches!(
            s.validate(&[info(1, 0, 17, 3, 0, 1)]).unwrap(),
            Validated::Duplicate(BatchMetadata {
                first_offset: 0,
                last_offset: 2,
                ..
            })
        ));
        // A multi-batch call is checked batch by batch against the updated state.
        assert_eq!(
            s.validate(&[info(1, 0, 20, 2, 0, 1), info(1, 0, 22, 1, 0, 1)])
                .unwrap(),
            Validated::Append
        );
        assert!(matches!(
            s.validate(&[info(1, 0, 20, 2, 0, 1), info(1, 0, 20, 2, 0, 1)]),
            Err(StorageError::DuplicateSequence { .. })
        ));
        assert!(matches!(
            s.validate(&[info(1, 0, 20, 2, 0, 1), info(1, 0, 23, 1, 0, 1)]),
            Err(StorageError::OutOfOrderSequence { .. })
        ));
        // Epochs.
        s.update_one(&info(1, 2, 0, 1, 3, 1));
        assert!(matches!(
            s.validate(&[info(1, 1, 0, 1, 0, 1)]),
            Err(StorageError::InvalidProducerEpoch {
                current_epoch: 2,
                ..
            })
        ));
        assert_eq!(
            s.validate(&[info(1, 3, 0, 1, 0, 1)]).unwrap(),
            Validated::Append
        );
        assert!(matches!(
            s.validate(&[info(1, 3, 5, 1, 0, 1)]),
            Err(StorageError::OutOfOrderSequence { .. })
        ));
        // Batches without producer id or sequence are ignored.
        assert_eq!(
            s.validate(&[info(-1, -1, -1, 1, 0, 1)]).unwrap(),
            Validated::Append
        );
        assert_eq!(
            s.validate(&[info(1, 0, -1, 1, 0, 1)]).unwrap(),
            Validated::Append
        );
        s.update_one(&info(5, 0, -1, 1, 0, 1));
        assert_eq!(s.len(), 1);
    }

    #[test]
    fn expiry_measures_from_the_last_batch() {
        let mut s = sample();
        // Producer 7's last timestamp is -1, producer 1's 106, producer 42's 500.
        assert_eq!(s.remove_expired(1_000, 1_000), 1);
        assert_eq!(s.remove_expired(1_105, 1_000), 0);
        assert_eq!(s.remove_expired(1_106, 1_000), 1);
        assert_eq!(
            s.entries()
                .iter()
                .map(|e| e.producer_id)
                .collect::<Vec<_>>(),
            vec![42]
        );
    }
}
