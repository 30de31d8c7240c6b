//! Small file-system helpers: positional reads that tolerate a shrinking file, directory
//! fsync, and file-name formatting for segments.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::error::{IoContext, StorageError};

/// Reads into `buf` at `pos` until it is full or the file ends; returns the bytes read.
/// A short count means the file is shorter than expected (e.g. truncated concurrently).
pub(crate) fn read_full_at(file: &File, buf: &mut [u8], pos: u64) -> io::Result<usize> {
    let mut done = 0;
    while done < buf.len() {
        match file.read_at(&mut buf[done..], pos + done as u64) {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(done)
}

/// Reads up to `len` bytes at `pos` into a new buffer, stopping early only at the end
/// of the file. Unlike [`read_full_at`] on a zeroed buffer, the memory is written once:
/// for a fetch of a megabyte, zeroing first cost as much CPU as the read itself.
pub(crate) fn read_new_at(file: &File, len: usize, pos: u64) -> io::Result<Vec<u8>> {
    let mut buf = Vec::with_capacity(len);
    if buf.capacity() != len {
        // The allocator gave more than asked: reading into all of it could pass `len`.
        buf.resize(len, 0);
        let n = read_full_at(file, &mut buf, pos)?;
        buf.truncate(n);
        return Ok(buf);
    }
    while buf.len() < len {
        let at = pos + buf.len() as u64;
        match rustix::io::pread(file, rustix::buffer::spare_capacity(&mut buf), at) {
            Ok(0) => break,
            Ok(_) => {}
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(buf)
}

/// Makes renames, creations and deletions inside `dir` durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<(), StorageError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .ctx(|| format!("fsync directory {}", dir.display()))
}

/// `<20-digit zero-padded offset>.<ext>`, Kafka's segment file naming.
pub(crate) fn segment_file(dir: &Path, base_offset: i64, ext: &str) -> PathBuf {
    dir.join(format!("{base_offset:020}.{ext}"))
}

/// Suffix of the files a compaction writes before swapping them in
/// (`<base>.log.cleaned`, ...). Leftovers after a crash are deleted on open.
pub(crate) const CLEANED_SUFFIX: &str = ".cleaned";

/// `<20-digit zero-padded offset>.<ext>.cleaned`: a segment file being rewritten.
pub(crate) fn cleaned_file(dir: &Path, base_offset: i64, ext: &str) -> PathBuf {
    dir.join(format!("{base_offset:020}.{ext}{CLEANED_SUFFIX}"))
}

/// The base offset encoded in a segment file name with extension `ext`, if it is one.
pub(crate) fn parse_segment_file(name: &str, ext: &str) -> Option<i64> {
    let stem = name.strip_suffix(ext)?.strip_suffix('.')?;
    if stem.len() != 20 || !stem.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    stem.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segment_names() {
        let p = segment_file(Path::new("/d"), 42, "log");
        assert_eq!(p, Path::new("/d/00000000000000000042.log"));
        let cases = [
            ("00000000000000000042.log", "log", Some(42)),
            ("00000000000000000042.index", "log", None),
            ("00000000000000000042.index", "index", Some(42)),
            ("0042.log", "log", None),
            ("0000000000000000004x.log", "log", None),
            ("00000000000000000042.log.tmp", "log", None),
            ("09223372036854775807.log", "log", Some(i64::MAX)),
            ("99999999999999999999.log", "log", None),
        ];
        for (name, ext, want) in cases {
            assert_eq!(parse_segment_file(name, ext), want, "{name}");
        }
    }
}
