//! Crash-safe small files (write a temp file, fsync, rename, fsync the directory) and the
//! per-partition offsets checkpoint.
//!
//! Kafka keeps the log-start-offset, high-watermark and recovery-point checkpoints per data
//! directory (one file listing every partition). We keep one small file per partition,
//! `partition-offsets-checkpoint`, holding all three: a partition's state then lives in
//! its own directory, is written without coordinating with other partitions, and goes
//! away with the directory when the partition is deleted.

use std::fs::File;
use std::io::Write;
use std::path::Path;

use crate::error::{IoContext, StorageError};
use crate::fileio::sync_dir;

pub(crate) const OFFSETS_FILE: &str = "partition-offsets-checkpoint";
pub(crate) const EPOCH_FILE: &str = "leader-epoch-checkpoint";
pub(crate) const CLEAN_SHUTDOWN_FILE: &str = ".clean-shutdown";
pub(crate) const TMP_SUFFIX: &str = ".tmp";

/// Replaces `dir/name` with `contents` atomically and durably.
pub fn write_atomic(dir: &Path, name: &str, contents: &[u8]) -> Result<(), StorageError> {
    let path = dir.join(name);
    let tmp = dir.join(format!("{name}{TMP_SUFFIX}"));
    let write = || -> std::io::Result<()> {
        let mut f = File::create(&tmp)?;
        f.write_all(contents)?;
        f.sync_all()?;
        std::fs::rename(&tmp, &path)
    };
    write().ctx(|| format!("write checkpoint {}", path.display()))?;
    sync_dir(dir)
}

/// Reads `dir/name` if it exists.
pub(crate) fn read_optional(dir: &Path, name: &str) -> Result<Option<String>, StorageError> {
    let path = dir.join(name);
    match std::fs::read_to_string(&path) {
        Ok(s) => Ok(Some(s)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        // Not UTF-8: treat like any other malformed checkpoint.
        Err(e) if e.kind() == std::io::ErrorKind::InvalidData => Ok(Some(String::new())),
        Err(e) => Err(e).ctx(|| format!("read checkpoint {}", path.display())),
    }
}

/// The three offsets a partition checkpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct OffsetsCheckpoint {
    pub log_start_offset: i64,
    pub high_watermark: i64,
    pub recovery_point: i64,
}

impl OffsetsCheckpoint {
    pub(crate) fn encode(&self) -> String {
        format!(
            "0\nlog-start-offset {}\nhigh-watermark {}\nrecovery-point {}\n",
            self.log_start_offset, self.high_watermark, self.recovery_point
        )
    }

    /// `None` if the text is not a complete version-0 checkpoint.
    pub(crate) fn decode(text: &str) -> Option<Self> {
        let mut lines = text.lines();
        if lines.next()?.trim() != "0" {
            return None;
        }
        let (mut lso, mut hw, mut rp) = (None, None, None);
        for line in lines {
            let (key, value) = line.trim().split_once(' ')?;
            let value: i64 = value.trim().parse().ok()?;
            match key {
                "log-start-offset" => lso = Some(value),
                "high-watermark" => hw = Some(value),
                "recovery-point" => rp = Some(value),
                _ => {}
            }
        }
        Some(Self {
            log_start_offset: lso?,
            high_watermark: hw?,
            recovery_point: rp?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_round_trip_and_garbage() {
        let c = OffsetsCheckpoint {
            log_start_offset: 5,
            high_watermark: 17,
            recovery_point: 12,
        };
        assert_eq!(OffsetsCheckpoint::decode(&c.encode()), Some(c));
        for bad in [
            "",
            "1\nlog-start-offset 1\n",
            "0\nlog-start-offset 1\nhigh-watermark 2\n",
            "0\nlog-start-offset x\n",
        ] {
            assert_eq!(OffsetsCheckpoint::decode(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn atomic_write_replaces_and_leaves_no_temp() {
        let dir = tempfile::tempdir().unwrap();
        write_atomic(dir.path(), "x", b"one").unwrap();
        write_atomic(dir.path(), "x", b"two").unwrap();
        assert_eq!(
            read_optional(dir.path(), "x").unwrap().as_deref(),
            Some("two")
        );
        assert_eq!(read_optional(dir.path(), "missing").unwrap(), None);
        assert!(!dir.path().join("x.tmp").exists());
    }
}
