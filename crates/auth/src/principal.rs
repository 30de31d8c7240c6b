//! Kafka principals (`User:alice`): who a connection authenticated as, the subject of
//! every ACL and of `super.users`.

use std::fmt;

/// A principal as Kafka writes it, `<type>:<name>`. Listeners produce only the `User`
/// type; ACLs may name any type, and `User:*` matches every user.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Principal {
    pub kind: String,
    pub name: String,
}

/// The principal type every authenticated connection has.
pub const USER_TYPE: &str = "User";

impl Principal {
    pub fn user(name: impl Into<String>) -> Self {
        Self {
            kind: USER_TYPE.to_string(),
            name: name.into(),
        }
    }

    /// Who a PLAINTEXT connection, or an SSL one without a client certificate, is.
    pub fn anonymous() -> Self {
        Self::user("ANONYMOUS")
    }

    /// Parses `Type:name` (the name may itself contain `:`, as a certificate DN can).
    pub fn parse(s: &str) -> Option<Self> {
        let (kind, name) = s.split_once(':')?;
        if kind.is_empty() || name.is_empty() {
            return None;
        }
        Some(Self {
            kind: kind.to_string(),
            name: name.to_string(),
        })
    }
}

impl fmt::Display for Principal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.kind, self.name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_display() {
        let p = Principal::parse("User:CN=broker-1,O=Sluice").unwrap();
        assert_eq!(p.kind, "User");
        assert_eq!(p.name, "CN=broker-1,O=Sluice");
        assert_eq!(p.to_string(), "User:CN=broker-1,O=Sluice");
        assert_eq!(Principal::anonymous().to_string(), "User:ANONYMOUS");
        for bad in ["", "User", ":x", "User:"] {
            assert_eq!(Principal::parse(bad), None, "{bad}");
        }
    }
}
