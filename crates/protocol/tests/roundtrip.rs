//! Round trips of every generated message in every valid version: decode(encode(x))
//! gives x back, consumes exactly what was written, and re-encodes to the same
//! bytes; every strict prefix of an encoding is a decode error (never a panic).

use std::fmt::Debug;

use bytes::Bytes;
use sluice_protocol::codec::{Decode, DecodeError, Encode, EncodeError, Writer};
use sluice_protocol::messages::testing::{visit_all, MessageVisitor};

#[derive(Default)]
struct Checker {
    messages: usize,
    cases: usize,
    prefixes: usize,
}

impl Checker {
    fn check_one<M>(&mut self, name: &str, version: i16, value: &M)
    where
        M: Encode + Decode + PartialEq + Debug + Clone + Default,
    {
        let mut buf = Writer::new();
        value
            .encode(&mut buf, version)
            .unwrap_or_else(|e| panic!("{name} v{version}: encode failed: {e}"));
        let bytes = buf.into_bytes();

        let mut input = bytes.clone();
        let decoded = M::decode(&mut input, version)
            .unwrap_or_else(|e| panic!("{name} v{version}: decode failed: {e}"));
        assert_eq!(&decoded, value, "{name} v{version}: value changed");
        assert!(
            input.is_empty(),
            "{name} v{version}: {} trailing bytes",
            input.len()
        );

        let mut again = Writer::new();
        decoded
            .encode(&mut again, version)
            .unwrap_or_else(|e| panic!("{name} v{version}: re-encode failed: {e}"));
        assert_eq!(
            again.into_bytes(),
            bytes,
            "{name} v{version}: re-encoding differs"
        );

        // Every field that exists consumes at least one byte... except messages
        // whose encoding is empty, for which there is no strict prefix to test.
        for len in 0..bytes.len() {
            let mut prefix = bytes.slice(..len);
            assert!(
                M::decode(&mut prefix, version).is_err(),
                "{name} v{version}: prefix of {len}/{} bytes decoded",
                bytes.len()
            );
            self.prefixes += 1;
        }
        self.cases += 1;
    }
}

impl MessageVisitor for Checker {
    fn visit<M>(&mut self, name: &'static str, min: i16, max: i16, sample: fn(i16, bool) -> M)
    where
        M: Encode + Decode + PartialEq + Debug + Clone + Default,
    {
        self.messages += 1;
        assert!(min <= max, "{name}: empty version range");
        for version in min..=max {
            for nulls in [false, true] {
                let value = sample(version, nulls);
                self.check_one(name, version, &value);
            }
            // The default value encodes in every version (it has nothing to lose)
            // and comes back unchanged.
            self.check_one(name, version, &M::default());
        }
        // Versions outside validVersions are refused both ways.
        for version in [min - 1, max + 1] {
            let value = sample(max, false);
            assert!(
                matches!(
                    value.encode(&mut Writer::new(), version),
                    Err(EncodeError::UnsupportedVersion { .. })
                ),
                "{name} v{version} encoded"
            );
            let mut empty = Bytes::new();
            assert!(matches!(
                M::decode(&mut empty, version),
                Err(DecodeError::UnsupportedVersion { .. })
            ));
        }
    }
}

#[test]
fn every_message_round_trips_in_every_version() {
    let mut checker = Checker::default();
    visit_all(&mut checker);
    // 88 request/response pairs, 2 headers, 8 data schemas and the 6 coordinator
    // records (__consumer_offsets, __transaction_state).
    assert_eq!(checker.messages, 192);
    assert!(checker.cases > 1500, "only {} cases", checker.cases);
    eprintln!(
        "{} messages, {} (message, version, nulls) cases, {} truncated prefixes",
        checker.messages, checker.cases, checker.prefixes
    );
}
