//! Fuzz target: record-batch header parsing and CRC-32C verification on arbitrary
//! bytes, as the broker runs them on every produced batch before it is stored.

#![no_main]

use libfuzzer_sys::fuzz_target;
use sluice_protocol::records::{verify_crc, RecordBatchHeader};

fuzz_target!(|data: &[u8]| {
    let _ = RecordBatchHeader::parse(data);
    let _ = verify_crc(data);
});
