//! Where Kafka places a coordinator key (a group id, a transactional id): partition
//! `abs(hashCode(key)) % partitions` of the coordinator's internal topic, with Java's
//! `String.hashCode`. Clients never compute it, but tools that read the internal topics
//! look for a key's records there, so the placement must match Kafka's.

/// Java's `String.hashCode` over UTF-16 code units.
pub fn java_string_hash(s: &str) -> i32 {
    s.encode_utf16()
        .fold(0i32, |h, c| h.wrapping_mul(31).wrapping_add(i32::from(c)))
}

/// The partition of a coordinator's internal topic that holds `key` (and whose leader
/// coordinates it).
pub fn partition_for(key: &str, partitions: i32) -> i32 {
    // Kafka's Utils.abs masks the sign bit (so i32::MIN maps to 0, not overflow).
    (java_string_hash(key) & 0x7fff_ffff) % partitions.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn java_hash_matches_known_values() {
        // Values from java.lang.String#hashCode.
        for (s, h) in [
            ("", 0),
            ("a", 97),
            ("group", 98629247),
            ("console-consumer-12345", 158455506),
            ("\u{e9}t\u{e9}\u{1F600}", 220632961),
        ] {
            assert_eq!(java_string_hash(s), h, "{s}");
        }
        assert_eq!(partition_for("group", 50), 98629247 % 50);
    }
}
