//! Hostile input: random bytes, truncated frames and absurd length prefixes must
//! decode to errors, never panic, and never make the decoder allocate what the
//! input cannot back.

use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};
use proptest::prelude::*;
use sluice_protocol::api::{decode_request, ApiKey};
use sluice_protocol::codec::DecodeError;
use sluice_protocol::frame::{decode_request_header, take_frame, FrameError, DEFAULT_MAX_FRAME};

/// Every (api, version) pair in the schemas.
fn all_versions() -> Vec<(ApiKey, i16)> {
    ApiKey::ALL
        .iter()
        .flat_map(|&key| {
            let (lo, hi) = key.valid_versions();
            (lo..=hi).map(move |v| (key, v))
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn random_bodies_never_panic(body in proptest::collection::vec(any::<u8>(), 0..256)) {
        let body = Bytes::from(body);
        for (key, version) in all_versions() {
            let mut input = body.clone();
            let _ = decode_request(key, version, &mut input);
        }
    }

    /// Frames with a well-formed size prefix and the start of a header (any api key
    /// and version, valid or not), then noise: exercises header parsing and the
    /// body decoders behind it.
    #[test]
    fn random_frames_never_panic(
        key in -1i16..90,
        version in -1i16..20,
        body in proptest::collection::vec(any::<u8>(), 0..256),
    ) {
        let mut wire = BytesMut::new();
        wire.put_i32(8 + body.len() as i32);
        wire.put_i16(key);
        wire.put_i16(version);
        wire.put_i32(1);
        wire.put_slice(&body);
        let mut frame = take_frame(&mut wire, 1 << 16).unwrap().unwrap();
        if let Ok(header) = decode_request_header(&mut frame) {
            if let Some(key) = header.api() {
                let _ = decode_request(key, header.api_version, &mut frame);
            }
        }
    }

    /// Mostly-valid input: a small valid prefix of some message, then noise. Reaches
    /// deeper into the decoders than uniform noise does.
    #[test]
    fn noisy_arrays_never_panic(
        count in prop_oneof![Just(0i32), Just(1), Just(2), Just(-1), Just(i32::MAX), any::<i32>()],
        tail in proptest::collection::vec(any::<u8>(), 0..128),
    ) {
        for (key, version) in all_versions() {
            let mut buf = BytesMut::new();
            // Many requests start with an array or a string; both read a length.
            buf.put_i32(count);
            buf.put_slice(&tail);
            let _ = decode_request(key, version, &mut buf.clone().freeze());
            let mut compact = BytesMut::new();
            compact.put_u8(0xff);
            compact.put_slice(&tail);
            let _ = decode_request(key, version, &mut compact.freeze());
        }
    }
}

#[test]
fn huge_array_counts_fail_fast_without_allocating() {
    // Produce v3: null transactional id, acks, timeout, then a topic array claiming
    // 2^31 - 1 elements in a 14-byte body. And a compact variant at v9 claiming 2^32 - 2.
    let classic: &[u8] = &[
        0xff, 0xff, 0, 1, 0, 0, 0x75, 0x30, 0x7f, 0xff, 0xff, 0xff, 0, 0,
    ];
    let compact: &[u8] = &[
        0, 0, 1, 0, 0, 0x75, 0x30, 0xff, 0xff, 0xff, 0xff, 0x0f, 0, 0,
    ];
    let start = Instant::now();
    for (version, body) in [(3, classic), (9, compact)] {
        let mut input = Bytes::from_static(body);
        let err = decode_request(ApiKey::Produce, version, &mut input).unwrap_err();
        assert!(
            matches!(
                err,
                DecodeError::LengthExceedsRemaining { what: "array", .. }
            ),
            "{err}"
        );
    }
    // Same for every api: a body of 2^31-ish counts everywhere.
    let body = Bytes::from_static(&[0x7f, 0xff, 0xff, 0xff, 0x7f, 0xff, 0xff, 0xff, 0x7f, 0xff]);
    for (key, version) in all_versions() {
        let _ = decode_request(key, version, &mut body.clone());
    }
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "{:?}",
        start.elapsed()
    );
}

#[test]
fn oversized_frames_are_refused_on_the_prefix() {
    let mut buf = BytesMut::from(&[0x40, 0, 0, 0][..]);
    assert!(matches!(
        take_frame(&mut buf, DEFAULT_MAX_FRAME),
        Err(FrameError::TooLarge { .. })
    ));
    let mut buf = BytesMut::from(&[0x80, 0, 0, 0][..]);
    assert!(matches!(
        take_frame(&mut buf, DEFAULT_MAX_FRAME),
        Err(FrameError::NegativeSize(_))
    ));
}

#[test]
fn truncated_headers_are_errors() {
    let full: &[u8] = &[0, 3, 0, 12, 0, 0, 0, 1, 0, 2, b'i', b'd', 0];
    for len in 0..full.len() {
        let mut frame = Bytes::copy_from_slice(&full[..len]);
        assert!(decode_request_header(&mut frame).is_err(), "prefix {len}");
    }
    let mut frame = Bytes::copy_from_slice(full);
    let header = decode_request_header(&mut frame).unwrap();
    assert_eq!(header.client_id.as_deref(), Some("id"));
}
