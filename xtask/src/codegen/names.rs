//! Turning schema names (`ThrottleTimeMs`, `KRaftVersionRecord`) into Rust
//! identifiers: snake_case for fields and modules, keyword escaping.

/// Rust keywords (strict, reserved and edition-2024 `gen`) that cannot be used as
/// plain identifiers; such field names get a trailing underscore (`type_`).
const KEYWORDS: &[&str] = &[
    "abstract", "as", "async", "await", "become", "box", "break", "const", "continue", "crate",
    "do", "dyn", "else", "enum", "extern", "false", "final", "fn", "for", "gen", "if", "impl",
    "in", "let", "loop", "macro", "match", "mod", "move", "mut", "override", "priv", "pub", "ref",
    "return", "self", "static", "struct", "super", "trait", "true", "try", "type", "typeof",
    "unsafe", "unsized", "use", "virtual", "where", "while", "yield",
];

/// `ThrottleTimeMs` -> `throttle_time_ms`, `KRaftVersion` -> `k_raft_version`,
/// `V0Host` -> `v0_host`. An underscore goes before an uppercase letter that follows
/// a lowercase letter or digit, or that starts a new word after an acronym.
pub fn snake_case(name: &str) -> String {
    let chars: Vec<char> = name.chars().collect();
    let mut out = String::with_capacity(name.len() + 4);
    for (i, &c) in chars.iter().enumerate() {
        if c.is_ascii_uppercase() {
            let prev = i.checked_sub(1).map(|j| chars[j]);
            let next = chars.get(i + 1).copied();
            let boundary = match prev {
                None => false,
                Some(p) if p.is_ascii_lowercase() || p.is_ascii_digit() => true,
                Some(p) if p.is_ascii_uppercase() => next.is_some_and(|n| n.is_ascii_lowercase()),
                Some(_) => false,
            };
            if boundary {
                out.push('_');
            }
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

/// The Rust field name for a schema field name.
pub fn field_name(name: &str) -> String {
    let s = snake_case(name);
    if KEYWORDS.contains(&s.as_str()) {
        format!("{s}_")
    } else {
        s
    }
}

/// Whether `code` uses the variable `word`: as a whole identifier (not part of a
/// longer one such as `client_software_version`), not a field access (`self.version`)
/// and not a field name in a struct literal (`version: f_version`). Used to prefix
/// unused parameters with `_`.
pub fn uses_ident(code: &str, word: &str) -> bool {
    let is_ident = |c: char| c.is_ascii_alphanumeric() || c == '_';
    code.match_indices(word).any(|(i, _)| {
        let before = code[..i].chars().next_back();
        let rest = &code[i + word.len()..];
        let after = rest.chars().next();
        let field_init = rest.starts_with(':') && !rest.starts_with("::");
        !before.is_some_and(|c| is_ident(c) || c == '.')
            && !after.is_some_and(is_ident)
            && !field_init
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snake_case_table() {
        for (input, expected) in [
            ("ThrottleTimeMs", "throttle_time_ms"),
            ("TopicId", "topic_id"),
            ("ProducerIdStart", "producer_id_start"),
            ("KRaftVersionRecord", "k_raft_version_record"),
            ("V0Host", "v0_host"),
            ("ResultsByTopicV3AndBelow", "results_by_topic_v3_and_below"),
            ("isKRaftController", "is_k_raft_controller"),
            ("ProduceRequest", "produce_request"),
        ] {
            assert_eq!(snake_case(input), expected, "{input}");
        }
        assert_eq!(field_name("Type"), "type_");
        assert_eq!(field_name("Match"), "match_");
    }

    #[test]
    fn ident_use() {
        assert!(uses_ident("read(buf, version)", "version"));
        assert!(!uses_ident("self.client_software_version", "version"));
        assert!(!uses_ident("versions", "version"));
        assert!(!uses_ident("self.version", "version"));
        assert!(!uses_ident("Self { version: f_version }", "version"));
        assert!(uses_ident("Err(E { field, version })", "version"));
        assert!(uses_ident("codec::read(buf)", "codec"));
    }
}
