//! Record-level offsets and timestamps of one stored batch, so that ListOffsets by
//! timestamp and MAX_TIMESTAMP name the exact record, as Kafka does. Records are decoded
//! (and decompressed) by the protocol crate; a batch that does not decode within the
//! limit makes callers fall back to batch granularity.

use bytes::Bytes;
use sluice_protocol::records::{decode_records, RecordBatchHeader};

/// Largest decompressed size inflated for one lookup (a bound against compression bombs).
const MAX_DECOMPRESSED: usize = 64 * 1024 * 1024;

/// `(offset, timestamp)` of every record in `batch` (one whole batch, header included);
/// with LogAppendTime every record carries the batch's max timestamp.
pub(crate) fn record_timestamps(batch: &Bytes) -> Option<Vec<(i64, i64)>> {
    let header = RecordBatchHeader::parse(batch).ok()?;
    let records = decode_records(batch, MAX_DECOMPRESSED).ok()?;
    Some(
        records
            .iter()
            .map(|r| (r.offset(header.base_offset), r.timestamp(&header)))
            .collect(),
    )
}

/// First record carrying exactly `timestamp`.
pub(crate) fn first_with(batch: &Bytes, timestamp: i64) -> Option<i64> {
    record_timestamps(batch)?
        .into_iter()
        .find(|&(_, ts)| ts == timestamp)
        .map(|(o, _)| o)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{batch_with_timestamps, BatchSpec};
    use sluice_protocol::compression::Compression;
    use sluice_protocol::records::{set_log_append_time, RecordBatchBuilder};

    #[test]
    fn walks_plain_compressed_and_log_append_time_batches() {
        let spec = BatchSpec {
            base_offset: 10,
            ..Default::default()
        };
        let plain = Bytes::from(batch_with_timestamps(&spec, &[5, 9, 7]));
        assert_eq!(
            record_timestamps(&plain),
            Some(vec![(10, 5), (11, 9), (12, 7)])
        );
        assert_eq!(first_with(&plain, 7), Some(12));
        assert_eq!(first_with(&plain, 8), None);

        let mut builder = RecordBatchBuilder::new()
            .base_offset(20)
            .compression(Compression::Gzip);
        for ts in [3, 8, 8] {
            builder.push(ts, None, Some(b"v"), &[]).unwrap();
        }
        let gzip = builder.build().unwrap();
        assert_eq!(
            record_timestamps(&gzip),
            Some(vec![(20, 3), (21, 8), (22, 8)])
        );

        let mut lat = batch_with_timestamps(&spec, &[1, 2]);
        set_log_append_time(&mut lat, 50).unwrap();
        assert_eq!(
            record_timestamps(&Bytes::from(lat)),
            Some(vec![(10, 50), (11, 50)])
        );

        // Truncated or bogus input yields nothing, never a panic.
        for cut in 0..plain.len() {
            assert_eq!(record_timestamps(&plain.slice(..cut)), None);
        }
        let bogus = Bytes::from(batch_with_timestamps(
            &BatchSpec {
                attributes: 1,
                ..spec
            },
            &[1],
        ));
        assert_eq!(
            record_timestamps(&bogus),
            None,
            "gzip flag over plain records"
        );
    }
}
