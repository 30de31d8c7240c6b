//! Append-only index files with an in-memory copy, and the sparse offset index.
//!
//! Both index kinds are arrays of fixed-size big-endian entries. Files grow by appending
//! (no preallocation), so a file's length always says how many entries it holds; a
//! length that is not a multiple of the entry size, or entries out of order, mean the
//! index is corrupt and the segment rebuilds it from the log.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::RwLock;

use crate::error::{IoContext, StorageError};
use crate::locks;

/// One fixed-size index entry.
pub(crate) trait Entry: Copy + std::fmt::Debug {
    const SIZE: usize;
    fn encode(&self, out: &mut [u8]);
    /// `b` is exactly `SIZE` bytes.
    fn decode(b: &[u8]) -> Self;
}

pub(crate) const OFFSET_ENTRY_SIZE: usize = 8;

/// Offset-index entry: a batch's base offset relative to the segment, and its position.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct OffsetEntry {
    pub relative_offset: u32,
    pub position: u32,
}

impl Entry for OffsetEntry {
    const SIZE: usize = OFFSET_ENTRY_SIZE;
    fn encode(&self, out: &mut [u8]) {
        out[..4].copy_from_slice(&self.relative_offset.to_be_bytes());
        out[4..8].copy_from_slice(&self.position.to_be_bytes());
    }
    fn decode(b: &[u8]) -> Self {
        Self {
            relative_offset: u32::from_be_bytes([b[0], b[1], b[2], b[3]]),
            position: u32::from_be_bytes([b[4], b[5], b[6], b[7]]),
        }
    }
}

/// An index file plus its in-memory copy. Writers (the log's append path) hold the
/// write lock only while appending one entry; readers binary-search under the read lock.
pub(crate) struct EntryFile<E> {
    path: PathBuf,
    file: File,
    entries: RwLock<Vec<E>>,
}

/// What was found on disk when opening an index file.
pub(crate) enum Loaded<E> {
    Entries(Vec<E>),
    /// The length is not a multiple of the entry size.
    Torn,
}

impl<E: Entry> EntryFile<E> {
    /// Opens (creating if missing) the file and decodes what it holds. The in-memory copy
    /// starts empty: the caller validates the entries and installs them with
    /// [`Self::install`], or rebuilds with [`Self::replace_all`].
    pub(crate) fn open(path: &Path) -> Result<(Self, Loaded<E>), StorageError> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .ctx(|| format!("open index {}", path.display()))?;
        let bytes = std::fs::read(path).ctx(|| format!("read index {}", path.display()))?;
        let loaded = if bytes.len() % E::SIZE != 0 {
            Loaded::Torn
        } else {
            Loaded::Entries(bytes.chunks_exact(E::SIZE).map(E::decode).collect())
        };
        let this = Self {
            path: path.to_path_buf(),
            file,
            entries: RwLock::new(Vec::new()),
        };
        Ok((this, loaded))
    }

    /// Creates an empty index, truncating any existing file.
    pub(crate) fn create(path: &Path) -> Result<Self, StorageError> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(path)
            .ctx(|| format!("create index {}", path.display()))?;
        Ok(Self {
            path: path.to_path_buf(),
            file,
            entries: RwLock::new(Vec::new()),
        })
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Adopts entries already validated against the file's contents.
    pub(crate) fn install(&self, entries: Vec<E>) {
        *locks::write(&self.entries) = entries;
    }

    /// Appends one entry to the file and the memory copy.
    pub(crate) fn push(&self, entry: E) -> Result<(), StorageError> {
        let mut entries = locks::write(&self.entries);
        let mut buf = [0u8; 16];
        let buf = &mut buf[..E::SIZE];
        entry.encode(buf);
        let at = (entries.len() * E::SIZE) as u64;
        self.file
            .write_all_at(buf, at)
            .ctx(|| format!("append to index {}", self.path.display()))?;
        entries.push(entry);
        Ok(())
    }

    /// Rewrites the whole file with `new` (used when rebuilding from the log).
    pub(crate) fn replace_all(&self, new: Vec<E>) -> Result<(), StorageError> {
        let mut entries = locks::write(&self.entries);
        let mut bytes = vec![0u8; new.len() * E::SIZE];
        for (e, out) in new.iter().zip(bytes.chunks_exact_mut(E::SIZE)) {
            e.encode(out);
        }
        self.file
            .set_len(0)
            .and_then(|()| self.file.write_all_at(&bytes, 0))
            .ctx(|| format!("rewrite index {}", self.path.display()))?;
        *entries = new;
        Ok(())
    }

    /// Keeps only the first `keep` entries.
    pub(crate) fn truncate(&self, keep: usize) -> Result<(), StorageError> {
        let mut entries = locks::write(&self.entries);
        if keep >= entries.len() {
            return Ok(());
        }
        self.file
            .set_len((keep * E::SIZE) as u64)
            .ctx(|| format!("truncate index {}", self.path.display()))?;
        entries.truncate(keep);
        Ok(())
    }

    pub(crate) fn len(&self) -> usize {
        locks::read(&self.entries).len()
    }

    pub(crate) fn last(&self) -> Option<E> {
        locks::read(&self.entries).last().copied()
    }

    /// Runs `f` on the entries under the read lock.
    pub(crate) fn with_entries<R>(&self, f: impl FnOnce(&[E]) -> R) -> R {
        f(&locks::read(&self.entries))
    }

    pub(crate) fn sync(&self) -> Result<(), StorageError> {
        self.file
            .sync_data()
            .ctx(|| format!("fsync index {}", self.path.display()))
    }
}

pub(crate) type OffsetIndex = EntryFile<OffsetEntry>;

impl OffsetIndex {
    /// The last entry whose relative offset is `<= relative_offset`: the position to start
    /// scanning from for the batch holding that offset (position 0 when there is none).
    pub(crate) fn floor(&self, relative_offset: u32) -> Option<OffsetEntry> {
        self.with_entries(|e| {
            let n = e.partition_point(|x| x.relative_offset <= relative_offset);
            n.checked_sub(1).map(|i| e[i])
        })
    }

    /// Index of the first entry at or after byte `position` (entries from there on point
    /// into a truncated part of the log).
    pub(crate) fn first_at_or_after(&self, position: u32) -> usize {
        self.with_entries(|e| e.partition_point(|x| x.position < position))
    }
}

/// Whether loaded offset-index entries are plausible for a log of `log_size` bytes:
/// strictly increasing offsets and positions, all inside the log.
pub(crate) fn offset_entries_valid(entries: &[OffsetEntry], log_size: u64) -> bool {
    let ordered = entries
        .windows(2)
        .all(|w| w[0].relative_offset < w[1].relative_offset && w[0].position < w[1].position);
    ordered
        && entries
            .last()
            .is_none_or(|e| u64::from(e.position) < log_size)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(relative_offset: u32, position: u32) -> OffsetEntry {
        OffsetEntry {
            relative_offset,
            position,
        }
    }

    #[test]
    fn push_reopen_floor_truncate() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("0.index");
        let idx = OffsetIndex::create(&path).unwrap();
        for (r, p) in [(0, 0), (10, 4000), (25, 8100)] {
            idx.push(e(r, p)).unwrap();
        }
        let cases = [
            (0, Some(e(0, 0))),
            (9, Some(e(0, 0))),
            (10, Some(e(10, 4000))),
            (99, Some(e(25, 8100))),
        ];
        for (target, want) in cases {
            assert_eq!(idx.floor(target), want, "floor({target})");
        }
        assert_eq!(idx.first_at_or_after(4000), 1);
        assert_eq!(idx.first_at_or_after(4001), 2);
        idx.truncate(2).unwrap();
        drop(idx);
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 16);
        let (idx, loaded) = OffsetIndex::open(&path).unwrap();
        let Loaded::Entries(entries) = loaded else {
            panic!("torn")
        };
        assert_eq!(entries, vec![e(0, 0), e(10, 4000)]);
        idx.install(entries);
        assert_eq!(idx.last(), Some(e(10, 4000)));
        assert_eq!(idx.len(), 2);
    }

    #[test]
    fn torn_file_is_detected() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("0.index");
        std::fs::write(&path, [0u8; 13]).unwrap();
        let (_, loaded) = OffsetIndex::open(&path).unwrap();
        assert!(matches!(loaded, Loaded::Torn));
    }

    #[test]
    fn validity_table() {
        let cases: Vec<(Vec<OffsetEntry>, u64, bool)> = vec![
            (vec![], 0, true),
            (vec![e(1, 100)], 101, true),
            (vec![e(1, 100)], 100, false),
            (vec![e(1, 100), e(1, 200)], 1000, false),
            (vec![e(1, 100), e(2, 100)], 1000, false),
            (vec![e(2, 100), e(1, 200)], 1000, false),
            (vec![e(1, 100), e(2, 200)], 1000, true),
        ];
        for (entries, size, want) in cases {
            assert_eq!(
                offset_entries_valid(&entries, size),
                want,
                "{entries:?} {size}"
            );
        }
    }
}
