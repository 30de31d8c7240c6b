//! Kafka wire primitives shared by the generated message codecs: fixed-width integers,
//! varints, strings, bytes, UUIDs, arrays and tagged-field sections, in both the classic
//! and the "compact" (flexible-version) encodings.
//!
//! Every reader takes the remaining frame as a [`Bytes`] and advances it. Readers check
//! the remaining length before touching it, so no input can make them panic, and a
//! length read from the wire is compared with the bytes actually left before anything
//! is allocated for it (a hostile length prefix fails fast instead of reserving memory).
//! `bytes` and `records` payloads are returned as zero-copy slices of the frame.
//!
//! Writers append to a [`Writer`]. **Invariant:** a `records` payload of at least
//! [`ZERO_COPY_MIN`] bytes is never copied on encode: the writer keeps a reference to
//! it (a `Bytes` refcount bump) as its own segment between the bytes written before
//! and after it, so a Fetch response built from storage reads reaches the socket as
//! the very allocations storage returned ([`Writer::into_segments`]). Everything else
//! is copied into the writer's buffer, which is cheaper for small values.

use std::fmt;
use std::str::FromStr;

use bytes::{Buf, BufMut, Bytes, BytesMut};

/// Why a byte sequence could not be decoded. A decode error on a request means the
/// connection that sent it is closed; it never takes the process down.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The input ended in the middle of a value.
    #[error("unexpected end of input: needed {needed} more bytes, {remaining} remaining")]
    Truncated { needed: usize, remaining: usize },
    /// A length prefix (string, bytes, array, tagged field) claims more than is left.
    #[error("{what} length {length} exceeds the {remaining} bytes remaining")]
    LengthExceedsRemaining {
        what: &'static str,
        length: u64,
        remaining: usize,
    },
    /// A length prefix that no encoder produces (negative other than the null marker,
    /// or a string longer than Kafka's 32767-byte limit).
    #[error("invalid {what} length {length}")]
    InvalidLength { what: &'static str, length: i64 },
    /// A null was sent for a field that is not nullable in this version.
    #[error("non-nullable field {field} was serialized as null")]
    UnexpectedNull { field: &'static str },
    /// A varint ran past its maximum encoded width or overflowed its type.
    #[error("varint is too long or overflows its type")]
    InvalidVarint,
    /// The message does not exist in the requested version.
    #[error("{message} does not support version {version}")]
    UnsupportedVersion { message: &'static str, version: i16 },
    /// The api key is not one this codec knows.
    #[error("unknown api key {0}")]
    UnknownApiKey(i16),
}

/// Why a value could not be encoded; mirrors the exceptions Kafka's generated
/// `write` methods throw, so a caller learns about information loss instead of
/// silently sending something else.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    /// The message does not exist in the requested version.
    #[error("{message} does not support version {version}")]
    UnsupportedVersion { message: &'static str, version: i16 },
    /// A non-ignorable field holds a non-default value in a version that cannot carry
    /// it (Kafka's `UnsupportedVersionException` "Attempted to write a non-default ...").
    #[error("attempted to write a non-default {field} at version {version}")]
    NonDefaultField { field: &'static str, version: i16 },
    /// `None` in a field that is not nullable in the version being written.
    #[error("field {field} is null but not nullable in this version")]
    NullNotAllowed { field: &'static str },
    /// A string, bytes or array value longer than its length prefix can express.
    #[error("{field} is too long to be serialized ({length})")]
    TooLong { field: &'static str, length: usize },
    /// A whole frame larger than the 4-byte size prefix can express.
    #[error("frame of {0} bytes is too large")]
    FrameTooLarge(usize),
}

/// Writes a value of a (generated) message type in the given version.
pub trait Encode {
    /// Appends the encoding of `self` in `version` to `w`.
    fn encode(&self, w: &mut Writer, version: i16) -> Result<(), EncodeError>;
}

/// Payloads at least this long are shared by [`Writer::put_shared`] instead of copied.
/// Below it, copying costs less than a segment of its own (an extra `iovec`, and the
/// bytes written so far cut off into a segment).
pub const ZERO_COPY_MIN: usize = 4 * 1024;

/// Where encoders write: a growing buffer plus the finished segments before it.
///
/// Most values are copied into the buffer; [`Writer::put_shared`] appends a large
/// `Bytes` by reference instead, so the output is a sequence of segments (written
/// bytes, shared payload, written bytes, ...). The methods mirror the `BufMut` ones
/// the codec uses; `BufMut` itself is not implemented because it is an `unsafe`
/// trait and the workspace forbids `unsafe`.
#[derive(Debug)]
pub struct Writer {
    /// The bytes written before the first shared payload, split off when it arrived
    /// and kept mutable so a frame's size prefix can be filled in last
    /// ([`Writer::head_mut`]). `None` while nothing has been shared.
    head: Option<BytesMut>,
    /// Finished segments after `head`, in order.
    segments: Vec<Bytes>,
    /// Total length of `head` and `segments`.
    finished: usize,
    /// Where bytes are being written now; it follows every finished segment.
    buf: BytesMut,
}

impl Default for Writer {
    fn default() -> Self {
        Self::new()
    }
}

impl Writer {
    /// An empty writer; the buffer grows on the first write.
    pub fn new() -> Self {
        Self::with_capacity(0)
    }

    /// An empty writer whose buffer holds `capacity` bytes before it must grow.
    pub fn with_capacity(capacity: usize) -> Self {
        Writer {
            head: None,
            segments: Vec::new(),
            finished: 0,
            buf: BytesMut::with_capacity(capacity),
        }
    }

    /// Total bytes written so far, shared segments included.
    pub fn len(&self) -> usize {
        self.finished + self.buf.len()
    }

    /// Whether nothing has been written.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Appends a `u8`.
    pub fn put_u8(&mut self, v: u8) {
        self.buf.put_u8(v);
    }

    /// Appends an `i8`.
    pub fn put_i8(&mut self, v: i8) {
        self.buf.put_i8(v);
    }

    /// Appends a big-endian `i16`.
    pub fn put_i16(&mut self, v: i16) {
        self.buf.put_i16(v);
    }

    /// Appends a big-endian `u16`.
    pub fn put_u16(&mut self, v: u16) {
        self.buf.put_u16(v);
    }

    /// Appends a big-endian `i32`.
    pub fn put_i32(&mut self, v: i32) {
        self.buf.put_i32(v);
    }

    /// Appends a big-endian `u32`.
    pub fn put_u32(&mut self, v: u32) {
        self.buf.put_u32(v);
    }

    /// Appends a big-endian `i64`.
    pub fn put_i64(&mut self, v: i64) {
        self.buf.put_i64(v);
    }

    /// Appends a big-endian `f64`.
    pub fn put_f64(&mut self, v: f64) {
        self.buf.put_f64(v);
    }

    /// Appends a copy of `v`.
    pub fn put_slice(&mut self, v: &[u8]) {
        self.buf.put_slice(v);
    }

    /// Appends `b`: by reference if it is at least [`ZERO_COPY_MIN`] bytes long (what
    /// was written so far becomes a segment, then `b` itself), otherwise by copy.
    pub fn put_shared(&mut self, b: &Bytes) {
        if b.len() < ZERO_COPY_MIN {
            self.buf.put_slice(b);
            return;
        }
        if !self.buf.is_empty() {
            // `split` keeps the rest of the allocation for what follows.
            let written = self.buf.split();
            self.finished += written.len();
            if self.head.is_none() && self.segments.is_empty() {
                self.head = Some(written);
            } else {
                self.segments.push(written.freeze());
            }
        }
        self.finished += b.len();
        self.segments.push(b.clone());
    }

    /// The first contiguous bytes of the output (up to the first shared payload),
    /// writable in place: the frame encoder fills in the size prefix it reserved
    /// once the total length is known.
    pub(crate) fn head_mut(&mut self) -> &mut [u8] {
        match &mut self.head {
            Some(head) => head,
            None if self.segments.is_empty() => &mut self.buf,
            // The output starts with a shared payload, which is not ours to modify.
            None => &mut [],
        }
    }

    /// The output as segments in order, none of them empty (an empty output is one
    /// empty segment). Shared payloads are the caller's own `Bytes`, not copies.
    pub fn into_segments(self) -> Vec<Bytes> {
        let mut out = Vec::with_capacity(self.segments.len() + 2);
        out.extend(self.head.map(BytesMut::freeze));
        out.extend(self.segments);
        if !self.buf.is_empty() || out.is_empty() {
            out.push(self.buf.freeze());
        }
        out
    }

    /// The output as one contiguous `Bytes`; copies only if something was shared.
    pub fn into_bytes(self) -> Bytes {
        if self.head.is_none() && self.segments.is_empty() {
            return self.buf.freeze();
        }
        let mut out = BytesMut::with_capacity(self.len());
        for segment in self.into_segments() {
            out.put_slice(&segment);
        }
        out.freeze()
    }
}

/// Reads a value of a (generated) message type in the given version.
pub trait Decode: Sized {
    /// Reads one value from the front of `buf`, advancing it past what was read.
    fn decode(buf: &mut Bytes, version: i16) -> Result<Self, DecodeError>;
}

/// Kafka strings may not exceed `i16::MAX` bytes, in the compact encoding too
/// (Kafka's generated code enforces the same limit on both sides).
const MAX_STRING_LEN: usize = 0x7fff;

/// Upper bound on what an array decoder reserves up front. The element count on the
/// wire is already checked against the bytes remaining, but one encoded byte can
/// become a much larger Rust value; beyond this the `Vec` only grows as elements are
/// actually decoded, so memory tracks input consumed, not input claimed.
const MAX_PREALLOC_BYTES: usize = 64 * 1024;

// ---------------------------------------------------------------------------------
// Fixed-width reads and writes

fn ensure(buf: &Bytes, needed: usize) -> Result<(), DecodeError> {
    if buf.remaining() < needed {
        return Err(DecodeError::Truncated {
            needed,
            remaining: buf.remaining(),
        });
    }
    Ok(())
}

/// Reads an `int8`.
pub fn read_i8(buf: &mut Bytes) -> Result<i8, DecodeError> {
    ensure(buf, 1)?;
    Ok(buf.get_i8())
}

/// Reads an `int16` (big-endian, as everything fixed-width in Kafka).
pub fn read_i16(buf: &mut Bytes) -> Result<i16, DecodeError> {
    ensure(buf, 2)?;
    Ok(buf.get_i16())
}

/// Reads an `int32`.
pub fn read_i32(buf: &mut Bytes) -> Result<i32, DecodeError> {
    ensure(buf, 4)?;
    Ok(buf.get_i32())
}

/// Reads an `int64`.
pub fn read_i64(buf: &mut Bytes) -> Result<i64, DecodeError> {
    ensure(buf, 8)?;
    Ok(buf.get_i64())
}

/// Reads a `uint16`.
pub fn read_u16(buf: &mut Bytes) -> Result<u16, DecodeError> {
    ensure(buf, 2)?;
    Ok(buf.get_u16())
}

/// Reads a `uint32`.
pub fn read_u32(buf: &mut Bytes) -> Result<u32, DecodeError> {
    ensure(buf, 4)?;
    Ok(buf.get_u32())
}

/// Reads a `float64` (IEEE 754, big-endian).
pub fn read_f64(buf: &mut Bytes) -> Result<f64, DecodeError> {
    ensure(buf, 8)?;
    Ok(buf.get_f64())
}

/// Reads a `bool`; like Kafka, any non-zero byte is `true`.
pub fn read_bool(buf: &mut Bytes) -> Result<bool, DecodeError> {
    ensure(buf, 1)?;
    Ok(buf.get_u8() != 0)
}

/// Reads a 16-byte `uuid`.
pub fn read_uuid(buf: &mut Bytes) -> Result<Uuid, DecodeError> {
    ensure(buf, 16)?;
    let mut raw = [0u8; 16];
    buf.copy_to_slice(&mut raw);
    Ok(Uuid(raw))
}

/// Writes an `int8`.
pub fn write_i8(buf: &mut Writer, v: i8) {
    buf.put_i8(v);
}

/// Writes an `int16`.
pub fn write_i16(buf: &mut Writer, v: i16) {
    buf.put_i16(v);
}

/// Writes an `int32`.
pub fn write_i32(buf: &mut Writer, v: i32) {
    buf.put_i32(v);
}

/// Writes an `int64`.
pub fn write_i64(buf: &mut Writer, v: i64) {
    buf.put_i64(v);
}

/// Writes a `uint16`.
pub fn write_u16(buf: &mut Writer, v: u16) {
    buf.put_u16(v);
}

/// Writes a `uint32`.
pub fn write_u32(buf: &mut Writer, v: u32) {
    buf.put_u32(v);
}

/// Writes a `float64`.
pub fn write_f64(buf: &mut Writer, v: f64) {
    buf.put_f64(v);
}

/// Writes a `bool` as 0 or 1.
pub fn write_bool(buf: &mut Writer, v: bool) {
    buf.put_u8(u8::from(v));
}

/// Writes a 16-byte `uuid`.
pub fn write_uuid(buf: &mut Writer, v: &Uuid) {
    buf.put_slice(&v.0);
}

// ---------------------------------------------------------------------------------
// Varints

/// Reads an unsigned varint (LEB128, at most 5 bytes, must fit in 32 bits).
pub fn read_uvarint(buf: &mut Bytes) -> Result<u32, DecodeError> {
    let v = read_uvarint_wide(buf, 5)?;
    u32::try_from(v).map_err(|_| DecodeError::InvalidVarint)
}

/// Reads an unsigned varlong (LEB128, at most 10 bytes).
pub fn read_uvarlong(buf: &mut Bytes) -> Result<u64, DecodeError> {
    read_uvarint_wide(buf, 10)
}

fn read_uvarint_wide(buf: &mut Bytes, max_bytes: u32) -> Result<u64, DecodeError> {
    let mut value: u64 = 0;
    for i in 0..max_bytes {
        ensure(buf, 1)?;
        let b = buf.get_u8();
        let shift = 7 * i;
        let chunk = u64::from(b & 0x7f);
        // The 10th byte of a varlong may only carry the top bit of a u64.
        if shift == 63 && chunk > 1 {
            return Err(DecodeError::InvalidVarint);
        }
        value |= chunk << shift;
        if b & 0x80 == 0 {
            return Ok(value);
        }
    }
    Err(DecodeError::InvalidVarint)
}

/// Reads a zigzag-encoded signed varint (32-bit).
pub fn read_varint(buf: &mut Bytes) -> Result<i32, DecodeError> {
    let raw = read_uvarint(buf)?;
    // Zigzag: the sign lives in bit 0, so negative numbers stay short on the wire.
    Ok(((raw >> 1) as i32) ^ -((raw & 1) as i32))
}

/// Reads a zigzag-encoded signed varlong (64-bit).
pub fn read_varlong(buf: &mut Bytes) -> Result<i64, DecodeError> {
    let raw = read_uvarlong(buf)?;
    Ok(((raw >> 1) as i64) ^ -((raw & 1) as i64))
}

/// Writes an unsigned varint.
pub fn write_uvarint(buf: &mut Writer, v: u32) {
    write_uvarlong(buf, u64::from(v));
}

/// Writes an unsigned varlong.
pub fn write_uvarlong(buf: &mut Writer, mut v: u64) {
    while v >= 0x80 {
        buf.put_u8((v as u8 & 0x7f) | 0x80);
        v >>= 7;
    }
    buf.put_u8(v as u8);
}

/// Writes a zigzag-encoded signed varint.
pub fn write_varint(buf: &mut Writer, v: i32) {
    write_uvarint(buf, ((v << 1) ^ (v >> 31)) as u32);
}

/// Writes a zigzag-encoded signed varlong.
pub fn write_varlong(buf: &mut Writer, v: i64) {
    write_uvarlong(buf, ((v << 1) ^ (v >> 63)) as u64);
}

/// Number of bytes `write_uvarint` uses for `v`.
pub fn uvarint_len(v: u32) -> usize {
    match v {
        0..=0x7f => 1,
        0x80..=0x3fff => 2,
        0x4000..=0x1f_ffff => 3,
        0x20_0000..=0x0fff_ffff => 4,
        _ => 5,
    }
}

// ---------------------------------------------------------------------------------
// Length prefixes

/// Reads the length prefix of a string (`int16`, or compact `uvarint` length + 1).
/// `None` is the null marker; a length beyond the remaining input is an error.
fn read_string_len(buf: &mut Bytes, flexible: bool) -> Result<Option<usize>, DecodeError> {
    let len: i64 = if flexible {
        i64::from(read_uvarint(buf)?) - 1
    } else {
        i64::from(read_i16(buf)?)
    };
    checked_len(buf, len, "string", MAX_STRING_LEN)
}

/// Reads the length prefix of bytes, records or an array (`int32`, or compact
/// `uvarint` length + 1). `None` is the null marker.
fn read_len(
    buf: &mut Bytes,
    flexible: bool,
    what: &'static str,
) -> Result<Option<usize>, DecodeError> {
    let len: i64 = if flexible {
        i64::from(read_uvarint(buf)?) - 1
    } else {
        i64::from(read_i32(buf)?)
    };
    checked_len(buf, len, what, usize::MAX)
}

fn checked_len(
    buf: &Bytes,
    len: i64,
    what: &'static str,
    max: usize,
) -> Result<Option<usize>, DecodeError> {
    if len == -1 {
        return Ok(None);
    }
    let Ok(len) = usize::try_from(len) else {
        return Err(DecodeError::InvalidLength { what, length: len });
    };
    if len > max {
        return Err(DecodeError::InvalidLength {
            what,
            length: len as i64,
        });
    }
    // For arrays this is Kafka's rule too: every element takes at least one byte in any
    // real message, so a count above the bytes left cannot be honest.
    if len > buf.remaining() {
        return Err(DecodeError::LengthExceedsRemaining {
            what,
            length: len as u64,
            remaining: buf.remaining(),
        });
    }
    Ok(Some(len))
}

fn write_string_len(
    buf: &mut Writer,
    len: Option<usize>,
    flexible: bool,
    field: &'static str,
) -> Result<(), EncodeError> {
    match len {
        None if flexible => write_uvarint(buf, 0),
        None => write_i16(buf, -1),
        Some(n) if n > MAX_STRING_LEN => {
            return Err(EncodeError::TooLong { field, length: n });
        }
        // n <= 0x7fff, so both conversions are lossless.
        Some(n) if flexible => write_uvarint(buf, n as u32 + 1),
        Some(n) => write_i16(buf, n as i16),
    }
    Ok(())
}

fn write_len(
    buf: &mut Writer,
    len: Option<usize>,
    flexible: bool,
    field: &'static str,
) -> Result<(), EncodeError> {
    match len {
        None if flexible => write_uvarint(buf, 0),
        None => write_i32(buf, -1),
        Some(n) => {
            let Ok(n32) = i32::try_from(n) else {
                return Err(EncodeError::TooLong { field, length: n });
            };
            if flexible {
                write_uvarint(buf, n32 as u32 + 1);
            } else {
                write_i32(buf, n32);
            }
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------
// Strings

fn take_string(buf: &mut Bytes, len: usize) -> String {
    let raw = buf.split_to(len);
    // Kafka decodes with `new String(bytes, UTF_8)`, which replaces malformed
    // sequences instead of failing; do the same so we accept what Kafka accepts.
    match std::str::from_utf8(&raw) {
        Ok(s) => s.to_owned(),
        Err(_) => String::from_utf8_lossy(&raw).into_owned(),
    }
}

/// Reads a non-nullable string; a null on the wire is an error naming `field`.
pub fn read_string(
    buf: &mut Bytes,
    flexible: bool,
    field: &'static str,
) -> Result<String, DecodeError> {
    match read_string_len(buf, flexible)? {
        Some(len) => Ok(take_string(buf, len)),
        None => Err(DecodeError::UnexpectedNull { field }),
    }
}

/// Reads a string held in an `Option` field; null is accepted only if `nullable`
/// (the field is nullable in the version being read).
pub fn read_opt_string(
    buf: &mut Bytes,
    flexible: bool,
    nullable: bool,
    field: &'static str,
) -> Result<Option<String>, DecodeError> {
    match read_string_len(buf, flexible)? {
        Some(len) => Ok(Some(take_string(buf, len))),
        None if nullable => Ok(None),
        None => Err(DecodeError::UnexpectedNull { field }),
    }
}

/// Writes a string (never null).
pub fn write_string(
    buf: &mut Writer,
    v: &str,
    flexible: bool,
    field: &'static str,
) -> Result<(), EncodeError> {
    write_string_len(buf, Some(v.len()), flexible, field)?;
    buf.put_slice(v.as_bytes());
    Ok(())
}

/// Writes a string held in an `Option` field; `None` is an error unless `nullable`.
pub fn write_opt_string(
    buf: &mut Writer,
    v: Option<&str>,
    flexible: bool,
    nullable: bool,
    field: &'static str,
) -> Result<(), EncodeError> {
    match v {
        Some(s) => write_string(buf, s, flexible, field),
        None if nullable => write_string_len(buf, None, flexible, field),
        None => Err(EncodeError::NullNotAllowed { field }),
    }
}

// ---------------------------------------------------------------------------------
// Bytes and records (records are opaque here: the record-batch module parses them)

/// Reads non-nullable bytes as a zero-copy slice of the input.
pub fn read_bytes(
    buf: &mut Bytes,
    flexible: bool,
    field: &'static str,
) -> Result<Bytes, DecodeError> {
    match read_len(buf, flexible, "bytes")? {
        Some(len) => Ok(buf.split_to(len)),
        None => Err(DecodeError::UnexpectedNull { field }),
    }
}

/// Reads bytes held in an `Option` field; null is accepted only if `nullable`.
pub fn read_opt_bytes(
    buf: &mut Bytes,
    flexible: bool,
    nullable: bool,
    field: &'static str,
) -> Result<Option<Bytes>, DecodeError> {
    match read_len(buf, flexible, "bytes")? {
        Some(len) => Ok(Some(buf.split_to(len))),
        None if nullable => Ok(None),
        None => Err(DecodeError::UnexpectedNull { field }),
    }
}

/// Writes bytes (never null).
pub fn write_bytes(
    buf: &mut Writer,
    v: &[u8],
    flexible: bool,
    field: &'static str,
) -> Result<(), EncodeError> {
    write_len(buf, Some(v.len()), flexible, field)?;
    buf.put_slice(v);
    Ok(())
}

/// Writes bytes held in an `Option` field; `None` is an error unless `nullable`.
pub fn write_opt_bytes(
    buf: &mut Writer,
    v: Option<&[u8]>,
    flexible: bool,
    nullable: bool,
    field: &'static str,
) -> Result<(), EncodeError> {
    match v {
        Some(b) => write_bytes(buf, b, flexible, field),
        None if nullable => write_len(buf, None, flexible, field),
        None => Err(EncodeError::NullNotAllowed { field }),
    }
}

/// Writes a `records` field (never null): the length prefix, then the payload by
/// reference if it is large (see [`Writer::put_shared`]), so record batches read from
/// storage are not copied into the response.
pub fn write_records(
    buf: &mut Writer,
    v: &Bytes,
    flexible: bool,
    field: &'static str,
) -> Result<(), EncodeError> {
    write_len(buf, Some(v.len()), flexible, field)?;
    buf.put_shared(v);
    Ok(())
}

/// Writes a `records` field held in an `Option`; `None` is an error unless `nullable`.
pub fn write_opt_records(
    buf: &mut Writer,
    v: Option<&Bytes>,
    flexible: bool,
    nullable: bool,
    field: &'static str,
) -> Result<(), EncodeError> {
    match v {
        Some(b) => write_records(buf, b, flexible, field),
        None if nullable => write_len(buf, None, flexible, field),
        None => Err(EncodeError::NullNotAllowed { field }),
    }
}

// ---------------------------------------------------------------------------------
// Arrays

/// Reads one array element: (input, version, flexible).
pub type ReadElem<T> = fn(&mut Bytes, i16, bool) -> Result<T, DecodeError>;
/// Writes one array element: (output, element, version, flexible).
pub type WriteElem<T> = fn(&mut Writer, &T, i16, bool) -> Result<(), EncodeError>;

fn read_elems<T>(
    buf: &mut Bytes,
    n: usize,
    version: i16,
    flexible: bool,
    elem: ReadElem<T>,
) -> Result<Vec<T>, DecodeError> {
    let cap = n.min(MAX_PREALLOC_BYTES / std::mem::size_of::<T>().max(1));
    let mut out = Vec::with_capacity(cap);
    for _ in 0..n {
        out.push(elem(buf, version, flexible)?);
    }
    Ok(out)
}

/// Reads a non-nullable array.
pub fn read_array<T>(
    buf: &mut Bytes,
    version: i16,
    flexible: bool,
    field: &'static str,
    elem: ReadElem<T>,
) -> Result<Vec<T>, DecodeError> {
    match read_len(buf, flexible, "array")? {
        Some(n) => read_elems(buf, n, version, flexible, elem),
        None => Err(DecodeError::UnexpectedNull { field }),
    }
}

/// Reads an array held in an `Option` field; null is accepted only if `nullable`.
pub fn read_opt_array<T>(
    buf: &mut Bytes,
    version: i16,
    flexible: bool,
    nullable: bool,
    field: &'static str,
    elem: ReadElem<T>,
) -> Result<Option<Vec<T>>, DecodeError> {
    match read_len(buf, flexible, "array")? {
        Some(n) => read_elems(buf, n, version, flexible, elem).map(Some),
        None if nullable => Ok(None),
        None => Err(DecodeError::UnexpectedNull { field }),
    }
}

/// Writes an array (never null).
pub fn write_array<T>(
    buf: &mut Writer,
    v: &[T],
    version: i16,
    flexible: bool,
    field: &'static str,
    elem: WriteElem<T>,
) -> Result<(), EncodeError> {
    write_len(buf, Some(v.len()), flexible, field)?;
    for e in v {
        elem(buf, e, version, flexible)?;
    }
    Ok(())
}

/// Writes an array held in an `Option` field; `None` is an error unless `nullable`.
pub fn write_opt_array<T>(
    buf: &mut Writer,
    v: Option<&[T]>,
    version: i16,
    flexible: bool,
    nullable: bool,
    field: &'static str,
    elem: WriteElem<T>,
) -> Result<(), EncodeError> {
    match v {
        Some(items) => write_array(buf, items, version, flexible, field, elem),
        None if nullable => write_len(buf, None, flexible, field),
        None => Err(EncodeError::NullNotAllowed { field }),
    }
}

/// Element readers and writers for arrays of primitives, in the shape
/// [`read_array`] / [`write_array`] expect.
pub mod elem {
    use super::{
        read_i16, read_i32, read_i64, read_i8, read_string, read_uuid, write_i16, write_i32,
        write_i64, write_i8, write_string, write_uuid, DecodeError, EncodeError, Uuid, Writer,
    };
    use bytes::Bytes;

    /// Reads an `int8` element.
    pub fn read_int8(buf: &mut Bytes, _: i16, _: bool) -> Result<i8, DecodeError> {
        read_i8(buf)
    }
    /// Reads an `int16` element.
    pub fn read_int16(buf: &mut Bytes, _: i16, _: bool) -> Result<i16, DecodeError> {
        read_i16(buf)
    }
    /// Reads an `int32` element.
    pub fn read_int32(buf: &mut Bytes, _: i16, _: bool) -> Result<i32, DecodeError> {
        read_i32(buf)
    }
    /// Reads an `int64` element.
    pub fn read_int64(buf: &mut Bytes, _: i16, _: bool) -> Result<i64, DecodeError> {
        read_i64(buf)
    }
    /// Reads a `uuid` element.
    pub fn read_uuid_elem(buf: &mut Bytes, _: i16, _: bool) -> Result<Uuid, DecodeError> {
        read_uuid(buf)
    }
    /// Reads a string element (array elements are never nullable).
    pub fn read_str(buf: &mut Bytes, _: i16, flexible: bool) -> Result<String, DecodeError> {
        read_string(buf, flexible, "array element")
    }
    /// Writes an `int8` element.
    pub fn write_int8(buf: &mut Writer, v: &i8, _: i16, _: bool) -> Result<(), EncodeError> {
        write_i8(buf, *v);
        Ok(())
    }
    /// Writes an `int16` element.
    pub fn write_int16(buf: &mut Writer, v: &i16, _: i16, _: bool) -> Result<(), EncodeError> {
        write_i16(buf, *v);
        Ok(())
    }
    /// Writes an `int32` element.
    pub fn write_int32(buf: &mut Writer, v: &i32, _: i16, _: bool) -> Result<(), EncodeError> {
        write_i32(buf, *v);
        Ok(())
    }
    /// Writes an `int64` element.
    pub fn write_int64(buf: &mut Writer, v: &i64, _: i16, _: bool) -> Result<(), EncodeError> {
        write_i64(buf, *v);
        Ok(())
    }
    /// Writes a `uuid` element.
    pub fn write_uuid_elem(buf: &mut Writer, v: &Uuid, _: i16, _: bool) -> Result<(), EncodeError> {
        write_uuid(buf, v);
        Ok(())
    }
    /// Writes a string element.
    // `&String` because the element type of `Vec<String>` fixes the fn signature.
    #[allow(clippy::ptr_arg)]
    pub fn write_str(
        buf: &mut Writer,
        v: &String,
        _: i16,
        flexible: bool,
    ) -> Result<(), EncodeError> {
        write_string(buf, v, flexible, "array element")
    }
}

// ---------------------------------------------------------------------------------
// Nullable structs

/// Reads the presence marker of a struct field in a version where it is nullable:
/// an `int8`, negative for null, as Kafka writes it outside the tagged section.
/// Returns whether a value follows.
pub fn read_struct_presence(buf: &mut Bytes) -> Result<bool, DecodeError> {
    Ok(read_i8(buf)? >= 0)
}

/// Reads the presence marker of a nullable struct inside a tagged field: a
/// `uvarint`, 0 for null.
pub fn read_tagged_struct_presence(buf: &mut Bytes) -> Result<bool, DecodeError> {
    Ok(read_uvarint(buf)? > 0)
}

/// Writes the presence marker of a struct field in a version where it is nullable.
pub fn write_struct_presence(buf: &mut Writer, present: bool) {
    write_i8(buf, if present { 1 } else { -1 });
}

/// Writes the presence marker of a nullable struct inside a tagged field.
pub fn write_tagged_struct_presence(buf: &mut Writer, present: bool) {
    write_uvarint(buf, u32::from(present));
}

// ---------------------------------------------------------------------------------
// Tagged-field sections (flexible versions only)

/// Reads the field count of a tagged-field section. Each field then takes at least
/// two bytes, so a huge count runs out of input quickly instead of looping.
pub fn read_tagged_count(buf: &mut Bytes) -> Result<u32, DecodeError> {
    read_uvarint(buf)
}

/// Reads one tagged field's header and returns its tag and payload (a zero-copy
/// slice of exactly the declared size, so a malformed payload cannot run into
/// the next field).
pub fn read_tagged_field(buf: &mut Bytes) -> Result<(u32, Bytes), DecodeError> {
    let tag = read_uvarint(buf)?;
    let size = read_uvarint(buf)? as usize;
    if size > buf.remaining() {
        return Err(DecodeError::LengthExceedsRemaining {
            what: "tagged field",
            length: size as u64,
            remaining: buf.remaining(),
        });
    }
    Ok((tag, buf.split_to(size)))
}

/// Skips a whole tagged-field section whose fields are all unknown to us.
pub fn skip_tagged_fields(buf: &mut Bytes) -> Result<(), DecodeError> {
    let n = read_tagged_count(buf)?;
    for _ in 0..n {
        read_tagged_field(buf)?;
    }
    Ok(())
}

/// Writes an empty tagged-field section.
pub fn write_empty_tagged_fields(buf: &mut Writer) {
    write_uvarint(buf, 0);
}

/// Collects the tagged fields of one struct before writing the section: the count
/// and each field's size precede the payloads, so payloads are encoded first into
/// small side buffers. Only fields holding non-default values are added, so the
/// common case allocates nothing.
#[derive(Debug, Default)]
pub struct TaggedFields {
    fields: Vec<(u32, Bytes)>,
}

impl TaggedFields {
    /// Adds a field's encoded payload. Fields must be added in ascending tag order,
    /// as Kafka writes them.
    pub fn push(&mut self, tag: u32, payload: Bytes) {
        self.fields.push((tag, payload));
    }

    /// Writes the section: count, then (tag, size, payload) per field.
    pub fn write_to(self, buf: &mut Writer) -> Result<(), EncodeError> {
        write_uvarint(buf, count_u32(self.fields.len(), "tagged fields")?);
        for (tag, payload) in self.fields {
            write_uvarint(buf, tag);
            write_uvarint(buf, count_u32(payload.len(), "tagged field")?);
            // A large records payload in a tagged field stays shared.
            buf.put_shared(&payload);
        }
        Ok(())
    }
}

fn count_u32(n: usize, field: &'static str) -> Result<u32, EncodeError> {
    u32::try_from(n).map_err(|_| EncodeError::TooLong { field, length: n })
}

// ---------------------------------------------------------------------------------
// Uuid

/// A Kafka UUID (topic ids, incarnation ids, directory ids): 16 raw bytes.
///
/// `Display` prints it as Kafka does (`Uuid.toString()`): URL-safe base64 without
/// padding, 22 characters.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Uuid(pub [u8; 16]);

impl Uuid {
    /// The all-zero UUID Kafka uses for "no id".
    pub const ZERO: Uuid = Uuid([0; 16]);

    /// Whether this is [`Uuid::ZERO`].
    pub fn is_zero(&self) -> bool {
        *self == Self::ZERO
    }
}

const BASE64_URL: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

impl fmt::Display for Uuid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut out = [0u8; 22];
        let mut o = 0;
        // 16 bytes = five 3-byte groups plus one trailing byte (two output chars).
        for chunk in self.0.chunks(3) {
            let b0 = u32::from(chunk.first().copied().unwrap_or(0));
            let b1 = u32::from(chunk.get(1).copied().unwrap_or(0));
            let b2 = u32::from(chunk.get(2).copied().unwrap_or(0));
            let n = (b0 << 16) | (b1 << 8) | b2;
            let chars = chunk.len() + 1;
            for i in 0..chars {
                let idx = ((n >> (18 - 6 * i)) & 0x3f) as usize;
                if let (Some(slot), Some(c)) = (out.get_mut(o), BASE64_URL.get(idx)) {
                    *slot = *c;
                }
                o += 1;
            }
        }
        // Only ASCII from the alphabet above was written.
        f.write_str(std::str::from_utf8(&out).map_err(|_| fmt::Error)?)
    }
}

impl fmt::Debug for Uuid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Uuid({self})")
    }
}

/// The input to [`Uuid::from_str`] was not 22 characters of URL-safe base64.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid uuid string")]
pub struct ParseUuidError;

impl FromStr for Uuid {
    type Err = ParseUuidError;

    /// Parses Kafka's string form (as printed by `Display`).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.as_bytes();
        if s.len() != 22 {
            return Err(ParseUuidError);
        }
        let mut bits: u32 = 0;
        let mut nbits = 0;
        let mut out = [0u8; 16];
        let mut o = 0;
        for &c in s {
            let v = match c {
                b'A'..=b'Z' => c - b'A',
                b'a'..=b'z' => c - b'a' + 26,
                b'0'..=b'9' => c - b'0' + 52,
                b'-' => 62,
                b'_' => 63,
                _ => return Err(ParseUuidError),
            };
            bits = (bits << 6) | u32::from(v);
            nbits += 6;
            if nbits >= 8 {
                nbits -= 8;
                let slot = out.get_mut(o).ok_or(ParseUuidError)?;
                *slot = (bits >> nbits) as u8;
                o += 1;
            }
        }
        // 22 chars carry 132 bits; the 4 spare bits must be zero for a canonical form.
        if o != 16 || bits & ((1 << nbits) - 1) != 0 {
            return Err(ParseUuidError);
        }
        Ok(Uuid(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bytes(v: &[u8]) -> Bytes {
        Bytes::copy_from_slice(v)
    }

    #[test]
    fn uvarint_wire_format() {
        for (value, wire) in [
            (0u32, &[0x00][..]),
            (1, &[0x01]),
            (127, &[0x7f]),
            (128, &[0x80, 0x01]),
            (300, &[0xac, 0x02]),
            (16_383, &[0xff, 0x7f]),
            (16_384, &[0x80, 0x80, 0x01]),
            (u32::MAX, &[0xff, 0xff, 0xff, 0xff, 0x0f]),
        ] {
            let mut out = Writer::new();
            write_uvarint(&mut out, value);
            assert_eq!(&out.into_bytes()[..], wire, "encode {value}");
            assert_eq!(uvarint_len(value), wire.len());
            let mut input = bytes(wire);
            assert_eq!(read_uvarint(&mut input), Ok(value), "decode {value}");
            assert!(input.is_empty());
        }
    }

    #[test]
    fn varint_zigzag_wire_format() {
        for (value, wire) in [
            (0i32, &[0x00][..]),
            (-1, &[0x01]),
            (1, &[0x02]),
            (-2, &[0x03]),
            (63, &[0x7e]),
            (-64, &[0x7f]),
            (64, &[0x80, 0x01]),
            (i32::MAX, &[0xfe, 0xff, 0xff, 0xff, 0x0f]),
            (i32::MIN, &[0xff, 0xff, 0xff, 0xff, 0x0f]),
        ] {
            let mut out = Writer::new();
            write_varint(&mut out, value);
            assert_eq!(&out.into_bytes()[..], wire, "encode {value}");
            assert_eq!(read_varint(&mut bytes(wire)), Ok(value));
        }
        for value in [0i64, -1, 1, i64::MAX, i64::MIN, 1 << 40, -(1 << 40)] {
            let mut out = Writer::new();
            write_varlong(&mut out, value);
            assert_eq!(read_varlong(&mut out.into_bytes()), Ok(value));
        }
        let mut out = Writer::new();
        write_varlong(&mut out, i64::MIN);
        assert_eq!(out.len(), 10);
    }

    #[test]
    fn overlong_varints_are_errors() {
        let six = [0x80, 0x80, 0x80, 0x80, 0x80, 0x01];
        assert_eq!(
            read_uvarint(&mut bytes(&six)),
            Err(DecodeError::InvalidVarint)
        );
        // Five bytes whose value needs more than 32 bits.
        let big = [0xff, 0xff, 0xff, 0xff, 0x1f];
        assert_eq!(
            read_uvarint(&mut bytes(&big)),
            Err(DecodeError::InvalidVarint)
        );
        let eleven = [0xff; 11];
        assert_eq!(
            read_uvarlong(&mut bytes(&eleven)),
            Err(DecodeError::InvalidVarint)
        );
        assert!(matches!(
            read_uvarint(&mut bytes(&[0x80])),
            Err(DecodeError::Truncated { .. })
        ));
    }

    #[test]
    fn string_wire_formats() {
        let mut out = Writer::new();
        write_string(&mut out, "kafka", false, "f").unwrap();
        assert_eq!(&out.into_bytes()[..], b"\x00\x05kafka");
        let mut out = Writer::new();
        write_string(&mut out, "kafka", true, "f").unwrap();
        assert_eq!(&out.into_bytes()[..], b"\x06kafka");
        let mut out = Writer::new();
        write_opt_string(&mut out, None, false, true, "f").unwrap();
        assert_eq!(&out.into_bytes()[..], b"\xff\xff");
        let mut out = Writer::new();
        write_opt_string(&mut out, None, true, true, "f").unwrap();
        assert_eq!(&out.into_bytes()[..], b"\x00");
        assert_eq!(
            write_opt_string(&mut Writer::new(), None, true, false, "f"),
            Err(EncodeError::NullNotAllowed { field: "f" })
        );

        assert_eq!(
            read_string(&mut bytes(b"\x06kafka"), true, "f").as_deref(),
            Ok("kafka")
        );
        assert_eq!(
            read_opt_string(&mut bytes(b"\xff\xff"), false, true, "f"),
            Ok(None)
        );
        assert_eq!(
            read_string(&mut bytes(b"\x00"), true, "f"),
            Err(DecodeError::UnexpectedNull { field: "f" })
        );
        assert!(matches!(
            read_string(&mut bytes(b"\x00\x09kafka"), false, "f"),
            Err(DecodeError::LengthExceedsRemaining { .. })
        ));
        assert!(matches!(
            read_string(&mut bytes(b"\xff\xfe"), false, "f"),
            Err(DecodeError::InvalidLength { .. })
        ));
        let long = "x".repeat(MAX_STRING_LEN + 1);
        assert!(matches!(
            write_string(&mut Writer::new(), &long, true, "f"),
            Err(EncodeError::TooLong { .. })
        ));
    }

    #[test]
    fn bytes_are_zero_copy_slices() {
        let input = bytes(b"\x00\x00\x00\x03abcrest");
        let mut cursor = input.clone();
        let b = read_bytes(&mut cursor, false, "f").unwrap();
        assert_eq!(&b[..], b"abc");
        assert_eq!(&cursor[..], b"rest");
        // Same backing storage: the slice points into the input.
        assert_eq!(b.as_ptr(), input[4..].as_ptr());
        assert_eq!(
            read_opt_bytes(&mut bytes(b"\xff\xff\xff\xff"), false, true, "f"),
            Ok(None)
        );
        let mut out = Writer::new();
        write_bytes(&mut out, b"abc", true, "f").unwrap();
        assert_eq!(&out.into_bytes()[..], b"\x04abc");
    }

    #[test]
    fn hostile_array_length_fails_before_allocating() {
        // Claims i32::MAX elements with four bytes of input left.
        let mut input = bytes(b"\x7f\xff\xff\xff\x00\x00\x00\x01");
        let r = read_array(&mut input, 0, false, "f", elem::read_int32);
        assert!(matches!(
            r,
            Err(DecodeError::LengthExceedsRemaining {
                length: 0x7fff_ffff,
                ..
            })
        ));
        // Compact: uvarint 2^32 - 1 (= 2^32 - 2 elements).
        let mut input = bytes(&[0xff, 0xff, 0xff, 0xff, 0x0f, 0]);
        let r = read_array(&mut input, 0, true, "f", elem::read_int32);
        assert!(matches!(r, Err(DecodeError::LengthExceedsRemaining { .. })));
    }

    #[test]
    fn arrays_round_trip() {
        let mut out = Writer::new();
        write_array(&mut out, &[1i32, 2], 0, true, "f", elem::write_int32).unwrap();
        let mut out = out.into_bytes();
        assert_eq!(&out[..], &[3, 0, 0, 0, 1, 0, 0, 0, 2]);
        let v = read_array(&mut out, 0, true, "f", elem::read_int32).unwrap();
        assert_eq!(v, vec![1, 2]);
        let mut out = Writer::new();
        write_opt_array::<i32>(&mut out, None, 0, false, true, "f", elem::write_int32).unwrap();
        assert_eq!(&out.into_bytes()[..], &[0xff, 0xff, 0xff, 0xff]);
    }

    #[test]
    fn tagged_sections() {
        let mut tagged = TaggedFields::default();
        tagged.push(0, Bytes::from_static(b"ab"));
        tagged.push(5, Bytes::from_static(b"c"));
        let mut out = Writer::new();
        tagged.write_to(&mut out).unwrap();
        let mut input = out.into_bytes();
        assert_eq!(&input[..], &[2, 0, 2, b'a', b'b', 5, 1, b'c']);
        skip_tagged_fields(&mut input).unwrap();
        assert!(input.is_empty());
        // A field claiming more bytes than remain.
        assert!(matches!(
            skip_tagged_fields(&mut bytes(&[1, 0, 9, 0])),
            Err(DecodeError::LengthExceedsRemaining { .. })
        ));
    }

    #[test]
    fn writer_shares_large_records_and_copies_small_ones() {
        let large = Bytes::from(vec![7u8; ZERO_COPY_MIN]);
        let small = Bytes::from(vec![1u8; ZERO_COPY_MIN - 1]);
        let mut w = Writer::with_capacity(16);
        w.put_i32(0);
        write_records(&mut w, &large, false, "f").unwrap();
        write_opt_records(&mut w, Some(&small), true, true, "f").unwrap();
        write_opt_records(&mut w, None, true, true, "f").unwrap();
        write_opt_records(&mut w, Some(&large), true, true, "f").unwrap();
        // Straight after another shared payload: no empty segment in between.
        w.put_shared(&large);
        w.put_u8(9);
        assert_eq!(
            write_opt_records(&mut w, None, true, false, "f"),
            Err(EncodeError::NullNotAllowed { field: "f" })
        );

        let mut expected = vec![1, 2, 3, 4];
        expected.extend_from_slice(&(ZERO_COPY_MIN as i32).to_be_bytes());
        expected.extend_from_slice(&large);
        expected.extend_from_slice(&[0x80, 0x20]); // uvarint 4096 = 4095 + 1
        expected.extend_from_slice(&small);
        expected.push(0); // compact null
        expected.extend_from_slice(&[0x81, 0x20]); // uvarint 4097 = 4096 + 1
        expected.extend_from_slice(&large);
        expected.extend_from_slice(&large);
        expected.push(9);
        assert_eq!(w.len(), expected.len());

        // The bytes before the first shared payload stay writable (frame prefixes).
        w.head_mut()[..4].copy_from_slice(&[1, 2, 3, 4]);
        let segments = w.into_segments();
        let lens: Vec<usize> = segments.iter().map(Bytes::len).collect();
        let big = ZERO_COPY_MIN;
        assert_eq!(lens, [8, big, 2 + (big - 1) + 1 + 2, big, big, 1]);
        for i in [1, 3, 4] {
            assert_eq!(segments[i].as_ptr(), large.as_ptr(), "segment {i} copied");
        }
        assert_eq!(segments.concat(), expected);
    }

    #[test]
    fn writer_edge_cases() {
        let empty = Writer::new();
        assert!(empty.is_empty());
        assert_eq!(empty.into_segments(), [Bytes::new()]);

        let large = Bytes::from(vec![3u8; ZERO_COPY_MIN + 1]);
        let mut w = Writer::new();
        w.put_shared(&large);
        // A shared payload is never written to in place.
        assert!(w.head_mut().is_empty());
        w.put_i16(-2);
        w.put_shared(&large);
        let segments = w.into_segments();
        assert_eq!(segments.len(), 3);
        assert_eq!(segments[0].as_ptr(), large.as_ptr());
        assert_eq!(&segments[1][..], &[0xff, 0xfe]);

        // One contiguous copy when something was shared; no copy otherwise.
        let mut w = Writer::new();
        w.put_u16(1);
        w.put_shared(&large);
        w.put_f64(1.5);
        let all = w.into_bytes();
        assert_eq!(all.len(), 2 + large.len() + 8);
        assert_eq!(&all[2..large.len() + 2], &large[..]);
        let mut w = Writer::new();
        w.put_u32(5);
        w.put_i64(-1);
        w.put_i8(-1);
        assert_eq!(w.len(), 13);
        assert_eq!(w.into_segments().len(), 1);
    }

    #[test]
    fn uuid_string_form_matches_kafka() {
        assert_eq!(Uuid::ZERO.to_string(), "AAAAAAAAAAAAAAAAAAAAAA");
        // Kafka's METADATA_TOPIC_ID is new Uuid(0L, 1L).
        let mut one = [0u8; 16];
        one[15] = 1;
        assert_eq!(Uuid(one).to_string(), "AAAAAAAAAAAAAAAAAAAAAQ");
        let all = Uuid([0xff; 16]);
        assert_eq!(all.to_string(), "_____________________w");
        for u in [Uuid::ZERO, Uuid(one), all, Uuid(*b"0123456789abcdef")] {
            assert_eq!(u.to_string().len(), 22);
            assert_eq!(u.to_string().parse::<Uuid>(), Ok(u));
        }
        assert_eq!(format!("{:?}", Uuid(one)), "Uuid(AAAAAAAAAAAAAAAAAAAAAQ)");
        assert!("AAAAAAAAAAAAAAAAAAAAAB".parse::<Uuid>().is_err());
        assert!("short".parse::<Uuid>().is_err());
        assert!("AAAAAAAAAAAAAAAAAAAA+A".parse::<Uuid>().is_err());
    }
}
