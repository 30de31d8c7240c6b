//! Reads the topic list out of a consumer's JoinGroup metadata (Kafka's
//! ConsumerProtocolSubscription: int16 version, then an array of topic names).
//! The coordinator needs it only for OffsetDelete (GROUP_SUBSCRIBED_TO_TOPIC) and for
//! expiring the offsets of topics a live group no longer reads.

use bytes::Bytes;
use sluice_protocol::codec;

/// The subscribed topics, or `None` if the metadata is not a readable subscription.
pub fn topics(metadata: &Bytes) -> Option<Vec<String>> {
    let mut buf = metadata.clone();
    let version = codec::read_i16(&mut buf).ok()?;
    if version < 0 {
        return None;
    }
    let count = codec::read_i32(&mut buf).ok()?;
    // Each name takes at least its 2-byte length: a count the bytes cannot hold is
    // garbage, and must not size an allocation.
    let count = usize::try_from(count).ok()?;
    if count > buf.len() / 2 {
        return None;
    }
    let mut topics = Vec::with_capacity(count);
    for _ in 0..count {
        topics.push(codec::read_string(&mut buf, false, "topic").ok()?);
    }
    Some(topics)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_topics_of_any_version() {
        let mut raw = vec![0u8, 3, 0, 0, 0, 2, 0, 1, b'a', 0, 2, b'b', b'c'];
        raw.extend_from_slice(&[0xff, 0xff, 0xff, 0xff]); // user data, ignored
        assert_eq!(
            topics(&Bytes::from(raw)),
            Some(vec!["a".to_string(), "bc".to_string()])
        );
    }

    #[test]
    fn garbage_is_none() {
        for raw in [
            &b""[..],
            b"\x00\x00\x7f\xff\xff\xff",
            b"\xff\xff",
            b"\x00\x00\x00\x00\x00\x01\x00\x09x",
        ] {
            assert_eq!(topics(&Bytes::copy_from_slice(raw)), None, "{raw:?}");
        }
    }
}
