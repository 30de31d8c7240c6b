//! Test-only builder of real v2 record batches (header, uncompressed records, CRC-32C).

#![allow(clippy::unwrap_used)]

#[derive(Debug, Clone)]
pub(crate) struct BatchSpec {
    pub base_offset: i64,
    pub leader_epoch: i32,
    pub attributes: i16,
    pub value_len: usize,
}

impl Default for BatchSpec {
    fn default() -> Self {
        Self {
            base_offset: 0,
            leader_epoch: -1,
            attributes: 0,
            value_len: 10,
        }
    }
}

fn put_varlong(out: &mut Vec<u8>, v: i64) {
    let mut z = ((v << 1) ^ (v >> 63)) as u64;
    while z >= 0x80 {
        out.push((z as u8 & 0x7f) | 0x80);
        z >>= 7;
    }
    out.push(z as u8);
}

/// One record per timestamp; values are `value_len` bytes derived from the record index.
pub(crate) fn batch_with_timestamps(spec: &BatchSpec, timestamps: &[i64]) -> Vec<u8> {
    let base_ts = timestamps.first().copied().unwrap_or(0);
    let max_ts = timestamps.iter().copied().max().unwrap_or(-1);
    let mut records = Vec::new();
    for (i, ts) in timestamps.iter().enumerate() {
        let mut body = vec![0u8]; // attributes
        put_varlong(&mut body, ts - base_ts);
        put_varlong(&mut body, i as i64);
        put_varlong(&mut body, -1); // null key
        put_varlong(&mut body, spec.value_len as i64);
        body.extend((0..spec.value_len).map(|j| (i * 31 + j) as u8));
        put_varlong(&mut body, 0); // no headers
        put_varlong(&mut records, body.len() as i64);
        records.extend(body);
    }
    let n = timestamps.len() as i32;
    let mut b = Vec::with_capacity(61 + records.len());
    b.extend(spec.base_offset.to_be_bytes());
    b.extend(((49 + records.len()) as i32).to_be_bytes());
    b.extend(spec.leader_epoch.to_be_bytes());
    b.push(2);
    b.extend([0u8; 4]); // crc, filled below
    b.extend(spec.attributes.to_be_bytes());
    b.extend((n - 1).max(0).to_be_bytes());
    b.extend(base_ts.to_be_bytes());
    b.extend(max_ts.to_be_bytes());
    b.extend((-1i64).to_be_bytes()); // producer id
    b.extend((-1i16).to_be_bytes()); // producer epoch
    b.extend((-1i32).to_be_bytes()); // base sequence
    b.extend(n.to_be_bytes());
    b.extend(records);
    let crc = crc32c::crc32c(&b[21..]);
    b[17..21].copy_from_slice(&crc.to_be_bytes());
    b
}

/// A batch of `records` records all stamped `ts`, each with a `value_len`-byte value.
pub(crate) fn batch(records: usize, ts: i64, value_len: usize) -> Vec<u8> {
    let spec = BatchSpec {
        value_len,
        ..Default::default()
    };
    batch_with_timestamps(&spec, &vec![ts; records])
}

/// Base offsets of the batches in `buf`, with their last offsets.
pub(crate) fn offsets_of(buf: &[u8]) -> Vec<(i64, i64)> {
    sluice_protocol::records::BatchIter::new(buf)
        .map(|r| {
            let (h, _) = r.unwrap();
            (h.base_offset, h.last_offset())
        })
        .collect()
}

#[test]
fn built_batches_are_valid() {
    let b = batch(3, 1000, 5);
    sluice_protocol::records::verify_crc(&b).unwrap();
    let h = sluice_protocol::records::RecordBatchHeader::parse(&b).unwrap();
    assert_eq!(h.total_size(), b.len());
    assert_eq!(h.records_count, 3);
    assert_eq!(h.last_offset_delta, 2);
    assert_eq!(h.max_timestamp, 1000);
}
