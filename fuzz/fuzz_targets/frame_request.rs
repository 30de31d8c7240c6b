//! Fuzz target: a connection's byte stream through framing, request-header parsing
//! and body decoding, exactly as the broker consumes it. Any panic, hang or huge
//! allocation is a bug: every failure must come back as an error value.

#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use sluice_protocol::api::decode_request;
use sluice_protocol::codec::{Encode, EncodeError, Writer};
use sluice_protocol::frame::{decode_request_header, take_frame};

/// Small enough that the fuzzer reaches bodies instead of waiting on huge frames.
const MAX_FRAME: usize = 1 << 20;

fuzz_target!(|data: &[u8]| {
    let mut buf = BytesMut::from(data);
    while let Ok(Some(mut frame)) = take_frame(&mut buf, MAX_FRAME) {
        let Ok(header) = decode_request_header(&mut frame) else {
            continue;
        };
        let Some(key) = header.api() else { continue };
        if let Ok(body) = decode_request(key, header.api_version, &mut frame) {
            // Whatever decoded must encode again in the same version: decoding
            // never produces a value the encoder rejects. The one exception is a
            // string grown past 32767 bytes by replacing invalid UTF-8 (decoding is
            // lossy like Kafka's, so U+FFFD takes three bytes where one was).
            let mut out = Writer::new();
            match body.encode(&mut out, header.api_version) {
                Ok(()) | Err(EncodeError::TooLong { .. }) => {}
                Err(e) => panic!(
                    "{key} v{}: decoded value does not re-encode: {e}",
                    header.api_version
                ),
            }
        }
    }
});
