//! Compression codecs of record batches (attributes bits 0-2), in the exact framings
//! Kafka clients write and read, with a hard bound on the decompressed size.
//!
//! Wire formats, as the clients use them:
//! - gzip: an RFC 1952 stream (Java's `GZIPOutputStream`, zlib in librdkafka).
//! - snappy: the Java client writes snappy-java's stream framing ("xerial": the magic
//!   `\x82SNAPPY\0`, a version and a compatible-version int, then chunks of a 4-byte
//!   big-endian length and a raw snappy block); librdkafka and others write one raw
//!   snappy block. Readers must accept both; we write the xerial framing, as Kafka does.
//! - lz4: the LZ4 frame format with a correct header checksum (KIP-57), independent
//!   blocks. librdkafka and python-lz4 may add block checksums, a content checksum or the
//!   content size, so the reader accepts every standard frame flag.
//! - zstd: standard zstd frames; the Java client streams, so the content size may be
//!   absent from the frame header and decoding must not rely on it.
//!
//! Decompression is the one place where a few bytes from a peer can demand gigabytes, so
//! every codec stops as soon as its output would pass `limit` and reports
//! [`RecordsError::DecompressedTooLarge`]; no buffer is ever sized from a length the
//! input claims without that check.

use std::io::{Read, Write};

use crate::records::RecordsError;

/// The codec named by a batch's attributes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub enum Compression {
    #[default]
    None,
    Gzip,
    Snappy,
    Lz4,
    Zstd,
}

const ATTRIBUTE_MASK: i16 = 0x07;

impl Compression {
    /// Every codec, in attribute-bit order.
    pub const ALL: [Compression; 5] = [
        Compression::None,
        Compression::Gzip,
        Compression::Snappy,
        Compression::Lz4,
        Compression::Zstd,
    ];

    pub fn from_attributes(attributes: i16) -> Result<Self, RecordsError> {
        match attributes & ATTRIBUTE_MASK {
            0 => Ok(Self::None),
            1 => Ok(Self::Gzip),
            2 => Ok(Self::Snappy),
            3 => Ok(Self::Lz4),
            4 => Ok(Self::Zstd),
            other => Err(RecordsError::UnknownCompression(other)),
        }
    }

    /// The value of attributes bits 0-2 that names this codec.
    pub fn attribute_bits(self) -> i16 {
        match self {
            Self::None => 0,
            Self::Gzip => 1,
            Self::Snappy => 2,
            Self::Lz4 => 3,
            Self::Zstd => 4,
        }
    }

    /// Kafka's name for the codec (`compression.type` values, `none` for no codec).
    pub fn name(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Gzip => "gzip",
            Self::Snappy => "snappy",
            Self::Lz4 => "lz4",
            Self::Zstd => "zstd",
        }
    }

    /// The codec for one of Kafka's names (case-insensitive, as Kafka parses them).
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|c| c.name().eq_ignore_ascii_case(name))
    }

    /// Compresses `input` in the framing Kafka's own clients and broker write.
    pub fn compress(&self, input: &[u8]) -> Result<Vec<u8>, RecordsError> {
        match self {
            Self::None => Ok(input.to_vec()),
            Self::Gzip => gzip_compress(input),
            Self::Snappy => xerial_compress(input),
            Self::Lz4 => lz4_compress(input),
            Self::Zstd => zstd::bulk::compress(input, ZSTD_LEVEL)
                .map_err(|e| RecordsError::Compression(format!("zstd: {e}"))),
        }
    }

    /// Decompresses `input`, failing with [`RecordsError::DecompressedTooLarge`] as soon
    /// as the output would exceed `limit` bytes.
    pub fn decompress(&self, input: &[u8], limit: usize) -> Result<Vec<u8>, RecordsError> {
        match self {
            Self::None => {
                if input.len() > limit {
                    return Err(RecordsError::DecompressedTooLarge(limit));
                }
                Ok(input.to_vec())
            }
            // Multi-member streams are legal gzip and Java's GZIPInputStream reads them.
            Self::Gzip => read_bounded(flate2::read::MultiGzDecoder::new(input), limit, "gzip"),
            Self::Snappy => snappy_decompress(input, limit),
            Self::Lz4 => lz4_decompress(input, limit),
            Self::Zstd => {
                let decoder = zstd::stream::read::Decoder::with_buffer(input)
                    .map_err(|e| RecordsError::Decompression(format!("zstd: {e}")))?;
                read_bounded(decoder, limit, "zstd")
            }
        }
    }
}

/// Kafka's default `compression.zstd.level`. (gzip uses flate2's default, level 6, which
/// is also Kafka's default `compression.gzip.level`.)
const ZSTD_LEVEL: i32 = 3;

/// Reads a streaming decoder to its end, but never more than `limit` bytes: one byte past
/// the limit is enough to know the input is too large.
fn read_bounded<R: Read>(reader: R, limit: usize, codec: &str) -> Result<Vec<u8>, RecordsError> {
    let cap = u64::try_from(limit).unwrap_or(u64::MAX).saturating_add(1);
    let mut out = Vec::new();
    reader
        .take(cap)
        .read_to_end(&mut out)
        .map_err(|e| RecordsError::Decompression(format!("{codec}: {e}")))?;
    if out.len() > limit {
        return Err(RecordsError::DecompressedTooLarge(limit));
    }
    Ok(out)
}

fn corrupt(codec: &str, why: impl std::fmt::Display) -> RecordsError {
    RecordsError::Decompression(format!("{codec}: {why}"))
}

/// Splits `n` bytes off the front of `input`, or fails if fewer remain.
fn take<'a>(input: &mut &'a [u8], n: usize, codec: &str) -> Result<&'a [u8], RecordsError> {
    match input.split_at_checked(n) {
        Some((head, tail)) => {
            *input = tail;
            Ok(head)
        }
        None => Err(corrupt(codec, "input truncated")),
    }
}

fn take_array<const N: usize>(input: &mut &[u8], codec: &str) -> Result<[u8; N], RecordsError> {
    let mut a = [0u8; N];
    a.copy_from_slice(take(input, N, codec)?);
    Ok(a)
}

/// Fails unless `extra` more output bytes keep `produced` within `limit`.
fn check_room(produced: usize, extra: usize, limit: usize) -> Result<(), RecordsError> {
    match produced.checked_add(extra) {
        Some(total) if total <= limit => Ok(()),
        _ => Err(RecordsError::DecompressedTooLarge(limit)),
    }
}

// ---------------------------------------------------------------------------------------
// gzip

fn gzip_compress(input: &[u8]) -> Result<Vec<u8>, RecordsError> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder
        .write_all(input)
        .and_then(|()| encoder.finish())
        .map_err(|e| RecordsError::Compression(format!("gzip: {e}")))
}

// ---------------------------------------------------------------------------------------
// snappy

/// snappy-java's stream magic (`SnappyCodec.MAGIC_HEADER`).
const XERIAL_MAGIC: [u8; 8] = [0x82, b'S', b'N', b'A', b'P', b'P', b'Y', 0];
/// Magic, then the format version and the oldest compatible version (both 1, big-endian).
const XERIAL_HEADER: [u8; 16] = [
    0x82, b'S', b'N', b'A', b'P', b'P', b'Y', 0, 0, 0, 0, 1, 0, 0, 0, 1,
];
/// snappy-java's default block size, which Kafka's client keeps.
const XERIAL_BLOCK_SIZE: usize = 32 * 1024;

fn xerial_compress(input: &[u8]) -> Result<Vec<u8>, RecordsError> {
    let mut out =
        Vec::with_capacity(XERIAL_HEADER.len() + snap::raw::max_compress_len(input.len()));
    out.extend_from_slice(&XERIAL_HEADER);
    let mut encoder = snap::raw::Encoder::new();
    for chunk in input.chunks(XERIAL_BLOCK_SIZE) {
        let block = encoder
            .compress_vec(chunk)
            .map_err(|e| RecordsError::Compression(format!("snappy: {e}")))?;
        // A block of at most 32 KiB input always compresses to far less than 2 GiB.
        let len = u32::try_from(block.len())
            .map_err(|_| RecordsError::Compression("snappy: block too large".into()))?;
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(&block);
    }
    Ok(out)
}

/// Accepts both the xerial stream framing (Java client) and a bare raw block
/// (librdkafka), telling them apart by the magic as librdkafka and snappy-java do.
fn snappy_decompress(input: &[u8], limit: usize) -> Result<Vec<u8>, RecordsError> {
    let mut out = Vec::new();
    if !input.starts_with(&XERIAL_MAGIC) {
        snappy_raw_into(&mut out, input, limit)?;
        return Ok(out);
    }
    let mut rest = input;
    while !rest.is_empty() {
        // snappy-java reads concatenated streams, so a header may follow a chunk. Its
        // version fields are not checked: there has only ever been version 1.
        if rest.starts_with(&XERIAL_MAGIC) {
            take(&mut rest, XERIAL_HEADER.len(), "snappy")?;
            continue;
        }
        let len = u32::from_be_bytes(take_array(&mut rest, "snappy")?);
        let len = usize::try_from(len).map_err(|_| corrupt("snappy", "chunk too large"))?;
        let chunk = take(&mut rest, len, "snappy")?;
        snappy_raw_into(&mut out, chunk, limit)?;
    }
    Ok(out)
}

/// Appends one raw snappy block. The block states its decompressed length up front,
/// which is checked against the limit before any allocation.
fn snappy_raw_into(out: &mut Vec<u8>, block: &[u8], limit: usize) -> Result<(), RecordsError> {
    let len = snap::raw::decompress_len(block).map_err(|e| corrupt("snappy", e))?;
    check_room(out.len(), len, limit)?;
    let start = out.len();
    out.resize(start + len, 0);
    let tail = out.get_mut(start..).unwrap_or_default();
    let written = snap::raw::Decoder::new()
        .decompress(block, tail)
        .map_err(|e| corrupt("snappy", e))?;
    if written != len {
        return Err(corrupt("snappy", "block shorter than its stated length"));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// lz4 (frame format, https://github.com/lz4/lz4/blob/dev/doc/lz4_Frame_format.md)

const LZ4_MAGIC: u32 = 0x184D_2204;
/// Skippable frames carry user data that decoders ignore; the spec reserves 16 magics.
const LZ4_SKIPPABLE_MAGIC: u32 = 0x184D_2A50;
const LZ4_SKIPPABLE_MASK: u32 = 0xFFFF_FFF0;
const LZ4_FLG_VERSION_MASK: u8 = 0xC0;
const LZ4_FLG_VERSION_01: u8 = 0x40;
const LZ4_FLG_BLOCK_INDEPENDENT: u8 = 0x20;
const LZ4_FLG_BLOCK_CHECKSUM: u8 = 0x10;
const LZ4_FLG_CONTENT_SIZE: u8 = 0x08;
const LZ4_FLG_CONTENT_CHECKSUM: u8 = 0x04;
const LZ4_FLG_RESERVED: u8 = 0x02;
const LZ4_FLG_DICT_ID: u8 = 0x01;
const LZ4_BD_RESERVED: u8 = 0x8F;
const LZ4_UNCOMPRESSED_BIT: u32 = 0x8000_0000;
/// Linked blocks may reference up to 64 KiB of earlier output.
const LZ4_WINDOW: usize = 64 * 1024;

fn lz4_compress(input: &[u8]) -> Result<Vec<u8>, RecordsError> {
    // Kafka's Java reader decompresses every block on its own (linked blocks would fail
    // there), so write the frame Kafka's own writer and librdkafka write: independent
    // 64 KiB blocks, no checksums, no content size.
    let info = lz4_flex::frame::FrameInfo::new()
        .block_size(lz4_flex::frame::BlockSize::Max64KB)
        .block_mode(lz4_flex::frame::BlockMode::Independent)
        .block_checksums(false)
        .content_checksum(false);
    let mut encoder = lz4_flex::frame::FrameEncoder::with_frame_info(info, Vec::new());
    encoder
        .write_all(input)
        .map_err(|e| RecordsError::Compression(format!("lz4: {e}")))?;
    encoder
        .finish()
        .map_err(|e| RecordsError::Compression(format!("lz4: {e}")))
}

/// Decodes one or more concatenated frames. Written against the frame spec rather than
/// `lz4_flex`'s streaming reader because that reader treats a frame cut off at a block
/// boundary as complete; here a missing end mark is an error, every declared checksum
/// and content size is verified, and each block is decoded straight into the output
/// with no more room than the limit leaves.
fn lz4_decompress(input: &[u8], limit: usize) -> Result<Vec<u8>, RecordsError> {
    if input.is_empty() {
        return Err(corrupt("lz4", "empty input"));
    }
    let mut out = Vec::new();
    let mut rest = input;
    while !rest.is_empty() {
        lz4_frame(&mut rest, &mut out, limit)?;
    }
    Ok(out)
}

fn xxh32(data: &[u8]) -> u32 {
    twox_hash::XxHash32::oneshot(0, data)
}

fn lz4_frame(rest: &mut &[u8], out: &mut Vec<u8>, limit: usize) -> Result<(), RecordsError> {
    const C: &str = "lz4";
    let magic = u32::from_le_bytes(take_array(rest, C)?);
    if magic & LZ4_SKIPPABLE_MASK == LZ4_SKIPPABLE_MAGIC {
        let len = u32::from_le_bytes(take_array(rest, C)?);
        let len = usize::try_from(len).map_err(|_| corrupt(C, "skippable frame too large"))?;
        take(rest, len, C)?;
        return Ok(());
    }
    if magic != LZ4_MAGIC {
        return Err(corrupt(C, format_args!("bad frame magic {magic:#010x}")));
    }

    // The header checksum covers the descriptor from FLG up to (excluding) HC.
    let descriptor_start = *rest;
    let [flg, bd] = take_array::<2>(rest, C)?;
    if flg & LZ4_FLG_VERSION_MASK != LZ4_FLG_VERSION_01 {
        return Err(corrupt(C, "unsupported frame version"));
    }
    if flg & LZ4_FLG_RESERVED != 0 || bd & LZ4_BD_RESERVED != 0 {
        return Err(corrupt(C, "reserved descriptor bits set"));
    }
    if flg & LZ4_FLG_DICT_ID != 0 {
        return Err(corrupt(C, "frames needing a dictionary are not supported"));
    }
    let max_block = match (bd >> 4) & 0x07 {
        4 => 64 * 1024,
        5 => 256 * 1024,
        6 => 1024 * 1024,
        7 => 4 * 1024 * 1024,
        _ => return Err(corrupt(C, "invalid block maximum size")),
    };
    let content_size = if flg & LZ4_FLG_CONTENT_SIZE != 0 {
        let size = u64::from_le_bytes(take_array(rest, C)?);
        // A frame that announces more than the limit is refused before decoding it.
        if size > u64::try_from(limit).unwrap_or(u64::MAX) {
            return Err(RecordsError::DecompressedTooLarge(limit));
        }
        Some(size)
    } else {
        None
    };
    let descriptor_len = descriptor_start.len() - rest.len();
    let described = descriptor_start
        .get(..descriptor_len)
        .ok_or_else(|| corrupt(C, "descriptor"))?;
    let [hc] = take_array::<1>(rest, C)?;
    if hc != ((xxh32(described) >> 8) & 0xFF) as u8 {
        return Err(corrupt(C, "frame header checksum mismatch"));
    }

    let linked = flg & LZ4_FLG_BLOCK_INDEPENDENT == 0;
    let block_checksum = flg & LZ4_FLG_BLOCK_CHECKSUM != 0;
    let frame_start = out.len();
    loop {
        let word = u32::from_le_bytes(take_array(rest, C)?);
        if word == 0 {
            break; // end mark
        }
        let stored = word & LZ4_UNCOMPRESSED_BIT != 0;
        let size = usize::try_from(word & !LZ4_UNCOMPRESSED_BIT)
            .map_err(|_| corrupt(C, "block too large"))?;
        if size > max_block {
            return Err(corrupt(C, "block larger than the frame's maximum"));
        }
        let data = take(rest, size, C)?;
        if block_checksum {
            let sum = u32::from_le_bytes(take_array(rest, C)?);
            if sum != xxh32(data) {
                return Err(corrupt(C, "block checksum mismatch"));
            }
        }
        if stored {
            check_room(out.len(), data.len(), limit)?;
            out.extend_from_slice(data);
            continue;
        }
        // Give the decoder exactly the room the limit leaves (at most one block): a
        // block that needs more is a bomb, not a corrupt block.
        let start = out.len();
        let room = max_block.min(limit.saturating_sub(start));
        out.resize(start + room, 0);
        let (before, tail) = out.split_at_mut(start);
        let result = if linked {
            let dict_from = start.saturating_sub(LZ4_WINDOW).max(frame_start);
            let dict = before.get(dict_from..).unwrap_or_default();
            lz4_flex::block::decompress_into_with_dict(data, tail, dict)
        } else {
            lz4_flex::block::decompress_into(data, tail)
        };
        match result {
            Ok(written) => out.truncate(start + written),
            Err(lz4_flex::block::DecompressError::OutputTooSmall { .. }) if room < max_block => {
                return Err(RecordsError::DecompressedTooLarge(limit));
            }
            Err(e) => return Err(corrupt(C, e)),
        }
    }
    let content = out.get(frame_start..).unwrap_or_default();
    if flg & LZ4_FLG_CONTENT_CHECKSUM != 0 {
        let sum = u32::from_le_bytes(take_array(rest, C)?);
        if sum != xxh32(content) {
            return Err(corrupt(C, "content checksum mismatch"));
        }
    }
    if let Some(size) = content_size {
        if u64::try_from(content.len()).ok() != Some(size) {
            return Err(corrupt(C, "content size mismatch"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMIT: usize = 1 << 20;

    fn sample(len: usize) -> Vec<u8> {
        // Compressible but not trivial: a repeating sentence with a counter mixed in.
        let mut v = Vec::with_capacity(len);
        let mut i = 0u32;
        while v.len() < len {
            v.extend_from_slice(format!("record {i} of the sluice test stream; ").as_bytes());
            i += 1;
        }
        v.truncate(len);
        v
    }

    #[test]
    fn attribute_bits_round_trip() {
        for (bits, codec) in Compression::ALL.iter().enumerate() {
            assert_eq!(codec.attribute_bits(), bits as i16);
            assert_eq!(
                Compression::from_attributes(codec.attribute_bits()),
                Ok(*codec)
            );
            // Other attribute bits (timestamp type, transactional, control) are ignored.
            assert_eq!(
                Compression::from_attributes(codec.attribute_bits() | 0x78),
                Ok(*codec)
            );
            assert_eq!(Compression::from_name(codec.name()), Some(*codec));
        }
        for bits in 5..8 {
            assert_eq!(
                Compression::from_attributes(bits),
                Err(RecordsError::UnknownCompression(bits))
            );
        }
        assert_eq!(Compression::from_name("LZ4"), Some(Compression::Lz4));
        assert_eq!(Compression::from_name("brotli"), None);
    }

    #[test]
    fn round_trip_every_codec_and_size() {
        for codec in Compression::ALL {
            for len in [
                0usize,
                1,
                100,
                32 * 1024,
                32 * 1024 + 1,
                64 * 1024 + 7,
                300_000,
            ] {
                let input = sample(len);
                let packed = codec.compress(&input).unwrap();
                let unpacked = codec.decompress(&packed, LIMIT).unwrap();
                assert_eq!(unpacked, input, "{codec:?} len {len}");
            }
        }
    }

    #[test]
    fn limit_is_inclusive() {
        let input = sample(5000);
        for codec in Compression::ALL {
            let packed = codec.compress(&input).unwrap();
            assert_eq!(codec.decompress(&packed, 5000).unwrap(), input, "{codec:?}");
            assert_eq!(
                codec.decompress(&packed, 4999),
                Err(RecordsError::DecompressedTooLarge(4999)),
                "{codec:?}"
            );
        }
    }

    #[test]
    fn bombs_fail_at_the_limit() {
        let zeros = vec![0u8; 100 * 1024 * 1024];
        for codec in [
            Compression::Gzip,
            Compression::Snappy,
            Compression::Lz4,
            Compression::Zstd,
        ] {
            let bomb = codec.compress(&zeros).unwrap();
            assert!(bomb.len() < 10 * 1024 * 1024, "{codec:?} {}", bomb.len());
            assert_eq!(
                codec.decompress(&bomb, LIMIT),
                Err(RecordsError::DecompressedTooLarge(LIMIT)),
                "{codec:?}"
            );
        }
    }

    #[test]
    fn raw_snappy_bomb_is_refused_before_allocating() {
        // One raw block claiming 4 GiB - 1: only its length prefix is read.
        let claim = [0xFF, 0xFF, 0xFF, 0xFF, 0x0F, 0x00];
        assert_eq!(
            Compression::Snappy.decompress(&claim, LIMIT),
            Err(RecordsError::DecompressedTooLarge(LIMIT))
        );
    }

    #[test]
    fn xerial_snappy_layout() {
        let input = sample(70_000);
        let packed = Compression::Snappy.compress(&input).unwrap();
        assert_eq!(&packed[..16], &XERIAL_HEADER);
        // Three chunks: 32 KiB, 32 KiB, the rest; each a length then a raw block.
        let mut rest = &packed[16..];
        let mut chunks = 0;
        let mut total = 0;
        while !rest.is_empty() {
            let len = u32::from_be_bytes(rest[..4].try_into().unwrap()) as usize;
            let block = &rest[4..4 + len];
            total += snap::raw::decompress_len(block).unwrap();
            rest = &rest[4 + len..];
            chunks += 1;
        }
        assert_eq!(chunks, 3);
        assert_eq!(total, input.len());
    }

    #[test]
    fn raw_and_xerial_snappy_both_decode() {
        let input = sample(50_000);
        let raw = snap::raw::Encoder::new().compress_vec(&input).unwrap();
        assert_eq!(Compression::Snappy.decompress(&raw, LIMIT).unwrap(), input);
        let xerial = Compression::Snappy.compress(&input).unwrap();
        assert_eq!(
            Compression::Snappy.decompress(&xerial, LIMIT).unwrap(),
            input
        );
        // Two xerial streams back to back (snappy-java reads those too).
        let mut twice = xerial.clone();
        twice.extend_from_slice(&xerial);
        let mut expected = input.clone();
        expected.extend_from_slice(&input);
        assert_eq!(
            Compression::Snappy.decompress(&twice, LIMIT).unwrap(),
            expected
        );
        // A header with no chunks is an empty stream.
        assert_eq!(
            Compression::Snappy
                .decompress(&XERIAL_HEADER, LIMIT)
                .unwrap(),
            b""
        );
    }

    #[test]
    fn lz4_writes_kafka_frame_header() {
        let packed = Compression::Lz4.compress(b"hello").unwrap();
        assert_eq!(&packed[..4], &[0x04, 0x22, 0x4D, 0x18]);
        // FLG: version 01, independent blocks, nothing else; BD: 64 KiB blocks.
        assert_eq!(packed[4], 0x60);
        assert_eq!(packed[5], 0x40);
        assert_eq!(packed[6], ((xxh32(&packed[4..6]) >> 8) & 0xFF) as u8);
        assert_eq!(&packed[packed.len() - 4..], &[0, 0, 0, 0]);
    }

    /// Assembles a frame by hand so every optional field can be exercised.
    fn lz4_frame_by_hand(
        input: &[u8],
        block_checksum: bool,
        content_size: bool,
        content_checksum: bool,
    ) -> Vec<u8> {
        let mut flg = LZ4_FLG_VERSION_01 | LZ4_FLG_BLOCK_INDEPENDENT;
        if block_checksum {
            flg |= LZ4_FLG_BLOCK_CHECKSUM;
        }
        if content_size {
            flg |= LZ4_FLG_CONTENT_SIZE;
        }
        if content_checksum {
            flg |= LZ4_FLG_CONTENT_CHECKSUM;
        }
        let mut f = LZ4_MAGIC.to_le_bytes().to_vec();
        f.push(flg);
        f.push(0x40);
        if content_size {
            f.extend_from_slice(&(input.len() as u64).to_le_bytes());
        }
        let hc = ((xxh32(&f[4..]) >> 8) & 0xFF) as u8;
        f.push(hc);
        for (i, chunk) in input.chunks(64 * 1024).enumerate() {
            // Alternate compressed and stored blocks.
            let (word, data) = if i % 2 == 0 {
                let c = lz4_flex::block::compress(chunk);
                (c.len() as u32, c)
            } else {
                (chunk.len() as u32 | LZ4_UNCOMPRESSED_BIT, chunk.to_vec())
            };
            f.extend_from_slice(&word.to_le_bytes());
            f.extend_from_slice(&data);
            if block_checksum {
                f.extend_from_slice(&xxh32(&data).to_le_bytes());
            }
        }
        f.extend_from_slice(&0u32.to_le_bytes());
        if content_checksum {
            f.extend_from_slice(&xxh32(input).to_le_bytes());
        }
        f
    }

    #[test]
    fn lz4_accepts_every_optional_field() {
        let input = sample(200_000);
        for bits in 0..8 {
            let (bc, cs, cc) = (bits & 1 != 0, bits & 2 != 0, bits & 4 != 0);
            let frame = lz4_frame_by_hand(&input, bc, cs, cc);
            assert_eq!(
                Compression::Lz4.decompress(&frame, LIMIT).unwrap(),
                input,
                "block checksum {bc}, content size {cs}, content checksum {cc}"
            );
        }
    }

    #[test]
    fn lz4_checks_what_the_frame_declares() {
        let input = sample(100_000);
        let frame = lz4_frame_by_hand(&input, true, true, true);
        let fails = |f: &[u8]| Compression::Lz4.decompress(f, LIMIT).is_err();
        // Header checksum.
        let mut bad = frame.clone();
        bad[4 + 2 + 8] ^= 1;
        assert!(fails(&bad));
        // Block checksum: flip a byte of the first block's data.
        let mut bad = frame.clone();
        bad[4 + 2 + 8 + 1 + 4 + 10] ^= 1;
        assert!(fails(&bad));
        // Content checksum.
        let mut bad = frame.clone();
        let n = bad.len();
        bad[n - 1] ^= 1;
        assert!(fails(&bad));
        // Missing end mark.
        assert!(fails(&frame[..frame.len() - 8]));
        // Trailing garbage after the frame.
        let mut bad = frame.clone();
        bad.extend_from_slice(b"junk");
        assert!(fails(&bad));
        // Declared content size larger than the limit is refused up front.
        let big = lz4_frame_by_hand(&input, false, true, false);
        assert_eq!(
            Compression::Lz4.decompress(&big, 1000),
            Err(RecordsError::DecompressedTooLarge(1000))
        );
        // Two frames back to back decode to both contents.
        let mut two = frame.clone();
        two.extend_from_slice(&frame);
        assert_eq!(
            Compression::Lz4.decompress(&two, LIMIT).unwrap().len(),
            200_000
        );
    }

    #[test]
    fn lz4_linked_blocks_decode() {
        // lz4_flex writes linked blocks when asked; python-lz4 does so by default.
        let input = sample(300_000);
        let info = lz4_flex::frame::FrameInfo::new()
            .block_mode(lz4_flex::frame::BlockMode::Linked)
            .block_size(lz4_flex::frame::BlockSize::Max64KB);
        let mut enc = lz4_flex::frame::FrameEncoder::with_frame_info(info, Vec::new());
        enc.write_all(&input).unwrap();
        let frame = enc.finish().unwrap();
        assert_eq!(frame[4] & LZ4_FLG_BLOCK_INDEPENDENT, 0);
        assert_eq!(Compression::Lz4.decompress(&frame, LIMIT).unwrap(), input);
    }

    #[test]
    fn zstd_frame_without_content_size_decodes() {
        // Streaming compression (as zstd-jni's output stream does) omits the content size.
        let input = sample(100_000);
        let mut enc = zstd::stream::write::Encoder::new(Vec::new(), 3).unwrap();
        enc.include_contentsize(false).unwrap();
        enc.write_all(&input).unwrap();
        let frame = enc.finish().unwrap();
        assert_eq!(Compression::Zstd.decompress(&frame, LIMIT).unwrap(), input);
        assert_eq!(
            Compression::Zstd.decompress(&frame, 1000),
            Err(RecordsError::DecompressedTooLarge(1000))
        );
    }

    #[test]
    fn garbage_and_truncation_are_errors() {
        let input = sample(10_000);
        for codec in [
            Compression::Gzip,
            Compression::Snappy,
            Compression::Lz4,
            Compression::Zstd,
        ] {
            let packed = codec.compress(&input).unwrap();
            for cut in [0, 1, packed.len() / 2, packed.len() - 1] {
                assert!(
                    codec.decompress(&packed[..cut], LIMIT).is_err(),
                    "{codec:?} cut at {cut}"
                );
            }
            assert!(codec
                .decompress(b"definitely not compressed", LIMIT)
                .is_err());
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(256))]

        #[test]
        fn random_input_never_panics(data in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..2048)) {
            for codec in Compression::ALL {
                let _ = codec.decompress(&data, 64 * 1024);
            }
            // Random bytes behind a valid-looking prefix reach the deeper parsers.
            let mut xerial = XERIAL_HEADER.to_vec();
            xerial.extend_from_slice(&data);
            let _ = Compression::Snappy.decompress(&xerial, 64 * 1024);
            let mut lz4 = vec![0x04, 0x22, 0x4D, 0x18, 0x60, 0x40, 0x82];
            lz4.extend_from_slice(&data);
            let _ = Compression::Lz4.decompress(&lz4, 64 * 1024);
        }

        #[test]
        fn round_trip_random(data in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..20_000)) {
            for codec in Compression::ALL {
                let packed = codec.compress(&data).unwrap();
                proptest::prop_assert_eq!(codec.decompress(&packed, data.len()).unwrap(), data.clone());
            }
        }
    }
}
