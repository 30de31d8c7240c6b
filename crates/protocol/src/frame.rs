//! Kafka framing: the 4-byte big-endian size prefix around every request and
//! response, and the request/response headers at the start of each frame.
//!
//! Sans-io like the rest of the crate: the connection task feeds bytes from the
//! socket into a `BytesMut` and calls [`take_frame`]; this module never reads or
//! writes a socket itself.

use bytes::{Buf, Bytes, BytesMut};

use crate::api::ApiKey;
use crate::codec::{self, Decode, DecodeError, Encode, EncodeError, Writer};
use crate::messages::{RequestHeader, ResponseHeader};

/// Kafka's default `socket.request.max.bytes` (100 MiB).
pub const DEFAULT_MAX_FRAME: usize = 100 * 1024 * 1024;

/// Why the size prefix of a frame is unacceptable. The connection must be closed:
/// there is no way to resynchronise with the peer's byte stream.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// The size prefix is negative.
    #[error("invalid negative frame size {0}")]
    NegativeSize(i32),
    /// The size prefix exceeds the configured maximum (`socket.request.max.bytes`).
    #[error("frame of {size} bytes exceeds the maximum of {max} bytes")]
    TooLarge { size: usize, max: usize },
}

/// Takes one complete frame body off the front of `buf`, once it is fully buffered.
///
/// Returns `Ok(None)` while the size prefix or the body is still incomplete. The size
/// is checked as soon as its 4 bytes are there, before anything is reserved or
/// allocated for the body, so a peer announcing a huge frame is refused at once.
/// Reserving room for the rest of a validated frame is the caller's choice.
pub fn take_frame(buf: &mut BytesMut, max_frame: usize) -> Result<Option<Bytes>, FrameError> {
    let Some(size) = frame_size(buf, max_frame)? else {
        return Ok(None);
    };
    if buf.len() - 4 < size {
        return Ok(None);
    }
    buf.advance(4);
    Ok(Some(buf.split_to(size).freeze()))
}

/// The validated body size announced by the prefix at the front of `buf`, or `None`
/// if fewer than 4 bytes are buffered. Lets a reader size its buffer for the frame.
pub fn frame_size(buf: &[u8], max_frame: usize) -> Result<Option<usize>, FrameError> {
    let Some(prefix) = buf.first_chunk::<4>() else {
        return Ok(None);
    };
    let size = i32::from_be_bytes(*prefix);
    let Ok(size) = usize::try_from(size) else {
        return Err(FrameError::NegativeSize(size));
    };
    if size > max_frame {
        return Err(FrameError::TooLarge {
            size,
            max: max_frame,
        });
    }
    Ok(Some(size))
}

/// The request header fields the broker needs before it dispatches the body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedHeader {
    pub api_key: i16,
    pub api_version: i16,
    pub correlation_id: i32,
    pub client_id: Option<String>,
    /// The request header version this frame was parsed with (0, 1 or 2).
    pub header_version: i16,
}

impl ParsedHeader {
    /// The API, if the key is one we know.
    pub fn api(&self) -> Option<ApiKey> {
        ApiKey::from_i16(self.api_key)
    }
}

/// The request header version for a request of `api_key` / `api_version`.
///
/// For a known API this is Kafka's rule (2 from the first flexible version on, which
/// also covers versions newer than we support since Kafka's flexible ranges are
/// open-ended; ControlledShutdown v0 uses v0). An unknown api key is read as v1:
/// every header version starts with key, version and correlation id, so the broker
/// can still answer with the right correlation id.
pub fn request_header_version(api_key: i16, api_version: i16) -> i16 {
    ApiKey::from_i16(api_key).map_or(1, |k| k.request_header_version(api_version))
}

/// Decodes the request header at the front of `frame` (a body returned by
/// [`take_frame`]), leaving `frame` at the start of the request body.
///
/// The api key and version are peeked first to choose the header version. Note that
/// the client id is a classic (non-compact) nullable string even in header v2, which
/// then ends with a tagged-field section.
pub fn decode_request_header(frame: &mut Bytes) -> Result<ParsedHeader, DecodeError> {
    let mut peek = frame.clone();
    let api_key = codec::read_i16(&mut peek)?;
    let api_version = codec::read_i16(&mut peek)?;
    let header_version = request_header_version(api_key, api_version);
    let header = RequestHeader::decode(frame, header_version)?;
    Ok(ParsedHeader {
        api_key: header.request_api_key,
        api_version: header.request_api_version,
        correlation_id: header.correlation_id,
        client_id: header.client_id,
        header_version,
    })
}

/// Decodes a response header of `header_version` and returns its correlation id,
/// leaving `frame` at the start of the response body.
pub fn decode_response_header(frame: &mut Bytes, header_version: i16) -> Result<i32, DecodeError> {
    Ok(ResponseHeader::decode(frame, header_version)?.correlation_id)
}

/// Room reserved up front for an encoded frame: enough for most responses other than
/// Fetch (headers, ApiVersions, small Metadata) without growing, small enough not to
/// matter per in-flight response.
const INITIAL_FRAME_CAPACITY: usize = 1024;

/// Encodes a complete response frame: size prefix, response header of
/// `header_version` (v1 carries an empty tagged-field section), then `body` in
/// `version`. The frame is one contiguous `Bytes`; large record payloads are copied
/// into it once (see [`encode_response_segments`] to avoid that).
pub fn encode_response<M: Encode>(
    correlation_id: i32,
    header_version: i16,
    body: &M,
    version: i16,
) -> Result<Bytes, EncodeError> {
    Ok(response_writer(correlation_id, header_version, body, version)?.into_bytes())
}

/// Encodes the same frame as [`encode_response`], as segments to be written in order:
/// the first starts with the size prefix (computed over all of them), and `records`
/// payloads of at least [`codec::ZERO_COPY_MIN`] bytes are segments of their own that
/// share the body's `Bytes` instead of copying them.
pub fn encode_response_segments<M: Encode>(
    correlation_id: i32,
    header_version: i16,
    body: &M,
    version: i16,
) -> Result<Vec<Bytes>, EncodeError> {
    Ok(response_writer(correlation_id, header_version, body, version)?.into_segments())
}

fn response_writer<M: Encode>(
    correlation_id: i32,
    header_version: i16,
    body: &M,
    version: i16,
) -> Result<Writer, EncodeError> {
    let mut w = Writer::with_capacity(INITIAL_FRAME_CAPACITY);
    w.put_i32(0);
    ResponseHeader { correlation_id }.encode(&mut w, header_version)?;
    body.encode(&mut w, version)?;
    finish_frame(w)
}

/// Encodes a complete request frame: size prefix, the request header version
/// `api_key` prescribes for `api_version`, then `body` in `api_version`.
pub fn encode_request<M: Encode>(
    api_key: ApiKey,
    api_version: i16,
    correlation_id: i32,
    client_id: Option<&str>,
    body: &M,
) -> Result<Bytes, EncodeError> {
    let mut w = Writer::with_capacity(INITIAL_FRAME_CAPACITY);
    w.put_i32(0);
    let header = RequestHeader {
        request_api_key: api_key as i16,
        request_api_version: api_version,
        correlation_id,
        client_id: client_id.map(str::to_owned),
    };
    header.encode(&mut w, api_key.request_header_version(api_version))?;
    body.encode(&mut w, api_version)?;
    Ok(finish_frame(w)?.into_bytes())
}

/// Fills in the size prefix reserved at the front of `w`. The prefix was written
/// first, before anything could be shared, so it lies in the writer's head.
fn finish_frame(mut w: Writer) -> Result<Writer, EncodeError> {
    let size = w.len().saturating_sub(4);
    let size32 = i32::try_from(size).map_err(|_| EncodeError::FrameTooLarge(size))?;
    if let Some(prefix) = w.head_mut().first_chunk_mut::<4>() {
        *prefix = size32.to_be_bytes();
    }
    Ok(w)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::messages::ApiVersionsRequest;

    #[test]
    fn take_frame_waits_for_the_whole_body() {
        let mut buf = BytesMut::new();
        assert_eq!(take_frame(&mut buf, 100), Ok(None));
        buf.extend_from_slice(&[0, 0]);
        assert_eq!(take_frame(&mut buf, 100), Ok(None));
        buf.extend_from_slice(&[0, 3, b'a', b'b']);
        assert_eq!(take_frame(&mut buf, 100), Ok(None));
        buf.extend_from_slice(&[b'c', 0, 0, 0, 0, 9]);
        assert_eq!(
            take_frame(&mut buf, 100),
            Ok(Some(Bytes::from_static(b"abc")))
        );
        // An empty frame is valid; the trailing byte belongs to the next one.
        assert_eq!(take_frame(&mut buf, 100), Ok(Some(Bytes::new())));
        assert_eq!(&buf[..], &[9]);
    }

    #[test]
    fn bad_sizes_fail_on_the_prefix_alone() {
        let mut buf = BytesMut::from(&[0xff, 0xff, 0xff, 0xfe][..]);
        assert_eq!(take_frame(&mut buf, 100), Err(FrameError::NegativeSize(-2)));
        let mut buf = BytesMut::from(&[0x7f, 0xff, 0xff, 0xff][..]);
        let cap_before = buf.capacity();
        assert_eq!(
            take_frame(&mut buf, DEFAULT_MAX_FRAME),
            Err(FrameError::TooLarge {
                size: 0x7fff_ffff,
                max: DEFAULT_MAX_FRAME
            })
        );
        assert_eq!(buf.capacity(), cap_before, "nothing reserved for the body");
        let mut buf = BytesMut::from(&[0, 0, 0, 101][..]);
        assert!(take_frame(&mut buf, 100).is_err());
        let mut buf = BytesMut::from(&[0, 0, 0, 100][..]);
        assert_eq!(take_frame(&mut buf, 100), Ok(None));
    }

    #[test]
    fn request_frames_round_trip_through_the_header_parser() {
        for (version, header_version) in [(0, 1), (2, 1), (3, 2), (4, 2)] {
            let body = ApiVersionsRequest {
                client_software_name: if version >= 3 {
                    "sluice".into()
                } else {
                    String::new()
                },
                client_software_version: if version >= 3 {
                    "0.1".into()
                } else {
                    String::new()
                },
            };
            let frame =
                encode_request(ApiKey::ApiVersions, version, 7, Some("cli"), &body).unwrap();
            let mut buf = BytesMut::from(&frame[..]);
            let mut frame = take_frame(&mut buf, 1 << 20).unwrap().unwrap();
            let h = decode_request_header(&mut frame).unwrap();
            assert_eq!(
                h,
                ParsedHeader {
                    api_key: 18,
                    api_version: version,
                    correlation_id: 7,
                    client_id: Some("cli".into()),
                    header_version,
                }
            );
            assert_eq!(
                ApiVersionsRequest::decode(&mut frame, version).unwrap(),
                body
            );
            assert!(frame.is_empty());
        }
    }

    #[test]
    fn unknown_api_key_still_yields_the_correlation_id() {
        // api key 999, version 0, correlation id 42, client id "x", then junk.
        let mut frame = Bytes::from_static(&[3, 0xe7, 0, 0, 0, 0, 0, 42, 0, 1, b'x', 1, 2, 3]);
        let h = decode_request_header(&mut frame).unwrap();
        assert_eq!(
            (h.api_key, h.correlation_id, h.header_version),
            (999, 42, 1)
        );
        assert_eq!(h.api(), None);
        assert_eq!(&frame[..], &[1, 2, 3]);
    }

    #[test]
    fn controlled_shutdown_v0_has_no_client_id() {
        let mut frame = Bytes::from_static(&[0, 7, 0, 0, 0, 0, 0, 5, 0, 0, 0, 1]);
        let h = decode_request_header(&mut frame).unwrap();
        // Like Kafka, a header without a client id reports the field's default, "".
        assert_eq!(
            (h.header_version, h.correlation_id, h.client_id.as_deref()),
            (0, 5, Some(""))
        );
        assert_eq!(&frame[..], &[0, 0, 0, 1]);
    }

    use crate::codec::ZERO_COPY_MIN;
    use crate::messages::{fetch_response, FetchResponse};
    use proptest::prelude::*;

    /// A FetchResponse in `version` with one topic per entry of `topics`, each with a
    /// partition per records size (`None`: null records). Every payload is an
    /// allocation of its own, so sharing can be told from copying by address.
    fn fetch_response(version: i16, topics: &[Vec<Option<usize>>]) -> FetchResponse {
        let mut resp = FetchResponse::sample(version, false);
        let topic = resp.responses.first().cloned().unwrap_or_default();
        let partition = topic.partitions.first().cloned().unwrap_or_default();
        resp.responses = topics
            .iter()
            .enumerate()
            .map(|(t, sizes)| fetch_response::FetchableTopicResponse {
                partitions: sizes
                    .iter()
                    .enumerate()
                    .map(|(p, size)| fetch_response::PartitionData {
                        partition_index: p as i32,
                        records: size.map(|n| Bytes::from(vec![(t * 16 + p) as u8; n])),
                        ..partition.clone()
                    })
                    .collect(),
                ..topic.clone()
            })
            .collect();
        resp
    }

    fn check_segments(version: i16, topics: &[Vec<Option<usize>>]) {
        let resp = fetch_response(version, topics);
        let header_version = ApiKey::Fetch.response_header_version(version);
        let whole = encode_response(5, header_version, &resp, version).unwrap();
        let segments = encode_response_segments(5, header_version, &resp, version).unwrap();
        assert!(segments.iter().all(|s| !s.is_empty()), "empty segment");
        assert_eq!(segments.concat(), &whole[..], "v{version}: segments differ");

        // Every large payload went out as the caller's own allocation.
        let large: Vec<&Bytes> = resp
            .responses
            .iter()
            .flat_map(|t| &t.partitions)
            .filter_map(|p| p.records.as_ref())
            .filter(|r| r.len() >= ZERO_COPY_MIN)
            .collect();
        assert_eq!(segments.len() > 1, !large.is_empty());
        for r in &large {
            assert!(
                segments
                    .iter()
                    .any(|s| s.as_ptr() == r.as_ptr() && s.len() == r.len()),
                "v{version}: a {}-byte payload was copied",
                r.len()
            );
        }
        let written = segments.len() - large.len();
        assert!(
            written <= large.len() + 1,
            "one written segment between payloads"
        );

        let mut buf = BytesMut::from(&whole[..]);
        let mut frame = take_frame(&mut buf, DEFAULT_MAX_FRAME).unwrap().unwrap();
        assert!(buf.is_empty());
        assert_eq!(decode_response_header(&mut frame, header_version), Ok(5));
        assert_eq!(FetchResponse::decode(&mut frame, version).unwrap(), resp);
        assert!(frame.is_empty());
    }

    #[test]
    fn fetch_segments_share_large_records() {
        let big = ZERO_COPY_MIN;
        for version in [4, 11, 12, 13, 16, 17] {
            check_segments(version, &[]);
            check_segments(version, &[vec![None, Some(0), Some(big - 1)]]);
            check_segments(version, &[vec![Some(big)]]);
            check_segments(
                version,
                &[
                    vec![Some(1 << 20), Some(10), Some(big), Some(big + 1)],
                    vec![None, Some(3 * big), Some(big - 1)],
                ],
            );
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn fetch_segments_equal_the_contiguous_frame(
            version in prop::sample::select(vec![4i16, 11, 12, 13, 16, 17]),
            topics in prop::collection::vec(
                prop::collection::vec(
                    prop_oneof![
                        Just(None),
                        (0..ZERO_COPY_MIN).prop_map(Some),
                        (ZERO_COPY_MIN..4 * ZERO_COPY_MIN).prop_map(Some),
                    ],
                    0..4,
                ),
                0..3,
            ),
        ) {
            check_segments(version, &topics);
        }
    }

    #[test]
    fn response_header_versions() {
        let body = crate::messages::ApiVersionsResponse::default();
        // v1 header: correlation id then an empty tagged-field section.
        let frame = encode_response(9, 1, &body, 0).unwrap();
        assert_eq!(&frame[..10], &[0, 0, 0, 11, 0, 0, 0, 9, 0, 0]);
        let frame = encode_response(9, 0, &body, 0).unwrap();
        assert_eq!(&frame[..8], &[0, 0, 0, 10, 0, 0, 0, 9]);
        let mut rest = frame.slice(4..);
        assert_eq!(decode_response_header(&mut rest, 0), Ok(9));
    }
}
