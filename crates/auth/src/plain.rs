//! SASL PLAIN (RFC 4616) as Kafka serves it: one message, `authzid NUL authcid NUL
//! passwd`, checked against a user table (Kafka's `PlainLoginModule` users, which
//! Sluice reads from a file, for development).

use std::collections::BTreeMap;

use subtle::ConstantTimeEq;

use crate::AuthError;

/// Checks a PLAIN message against `users` (name -> password); the user on success.
pub fn authenticate(message: &[u8], users: &BTreeMap<String, String>) -> Result<String, AuthError> {
    let mut parts = message.split(|b| *b == 0);
    let (Some(authzid), Some(user), Some(password), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(AuthError::Malformed(
            "PLAIN takes authzid NUL user NUL password".into(),
        ));
    };
    let user = std::str::from_utf8(user)
        .map_err(|_| AuthError::Malformed("user name is not UTF-8".into()))?;
    if user.is_empty() || password.is_empty() {
        return Err(AuthError::Malformed("empty user name or password".into()));
    }
    // As Kafka: an authorization id other than the user itself is refused.
    if !authzid.is_empty() && authzid != user.as_bytes() {
        return Err(AuthError::AuthzidMismatch);
    }
    match users.get(user) {
        Some(expected) if bool::from(expected.as_bytes().ct_eq(password)) => Ok(user.to_string()),
        _ => Err(AuthError::BadCredentials),
    }
}

/// Reads a users file: one `user:password` per line; blank lines and `#` comments are
/// skipped.
pub fn parse_users(text: &str) -> Result<BTreeMap<String, String>, AuthError> {
    let mut users = BTreeMap::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        match line.split_once(':') {
            Some((user, password)) if !user.is_empty() && !password.is_empty() => {
                users.insert(user.to_string(), password.to_string());
            }
            _ => {
                return Err(AuthError::Malformed(format!(
                    "users file line {}: expected user:password",
                    i + 1
                )))
            }
        }
    }
    Ok(users)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_checks_user_password_and_authzid() {
        let users = parse_users("# dev users\nalice:wonder land\n\nbob:b\n").unwrap();
        assert_eq!(users.len(), 2);
        assert_eq!(
            authenticate(b"\0alice\0wonder land", &users).unwrap(),
            "alice"
        );
        assert_eq!(
            authenticate(b"alice\0alice\0wonder land", &users).unwrap(),
            "alice"
        );
        assert_eq!(
            authenticate(b"bob\0alice\0wonder land", &users).unwrap_err(),
            AuthError::AuthzidMismatch
        );
        assert_eq!(
            authenticate(b"\0alice\0wrong", &users).unwrap_err(),
            AuthError::BadCredentials
        );
        assert_eq!(
            authenticate(b"\0carol\0x", &users).unwrap_err(),
            AuthError::BadCredentials
        );
        for bad in [&b"alice"[..], b"\0alice", b"\0alice\0pw\0extra", b"\0\0pw"] {
            assert!(matches!(
                authenticate(bad, &users),
                Err(AuthError::Malformed(_))
            ));
        }
        assert!(parse_users("nopassword\n").is_err());
    }
}
