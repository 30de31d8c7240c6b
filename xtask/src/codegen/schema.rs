//! Kafka's JSON message schema format, as read from disk: the serde view of a
//! `*.json` file (comments stripped), plus the version-range type every other
//! codegen module works with.
//!
//! Unknown keys are rejected (`deny_unknown_fields`) so a schema feature we do not
//! understand fails the generator instead of being silently dropped.

use std::fmt;
use std::path::Path;

use anyhow::{bail, Context, Result};
use serde::Deserialize;

/// One `*.json` file: a request, response, header or data message.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MessageSpec {
    pub api_key: Option<i16>,
    #[serde(rename = "type")]
    pub kind: String,
    pub name: String,
    pub valid_versions: String,
    pub flexible_versions: String,
    #[serde(default)]
    pub latest_version_unstable: bool,
    #[serde(default)]
    pub listeners: Vec<String>,
    /// Informational only: deprecated versions are still valid on the wire.
    #[serde(default)]
    #[allow(dead_code)]
    pub deprecated_versions: Option<String>,
    pub fields: Vec<FieldSpec>,
    #[serde(default)]
    pub common_structs: Vec<StructSpec>,
}

/// A named struct shared by several fields of one message (`commonStructs`).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StructSpec {
    pub name: String,
    pub versions: String,
    pub fields: Vec<FieldSpec>,
}

/// One field of a message or struct.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FieldSpec {
    pub name: String,
    #[serde(rename = "type")]
    pub ty: String,
    /// Absent on some tagged-only fields (TransactionLogValue), which then exist in
    /// their `taggedVersions`; `load` fills it in.
    #[serde(default)]
    pub versions: String,
    pub nullable_versions: Option<String>,
    pub tagged_versions: Option<String>,
    /// A number, or a string holding one (both occur).
    pub tag: Option<serde_json::Value>,
    /// A string in most files, but plain JSON booleans and numbers occur too.
    pub default: Option<serde_json::Value>,
    #[serde(default)]
    pub ignorable: bool,
    pub about: Option<String>,
    /// Overrides the message's flexible versions for this field only (RequestHeader's
    /// ClientId stays a classic string so old brokers can read any header).
    pub flexible_versions: Option<String>,
    pub fields: Option<Vec<FieldSpec>>,
    /// Kafka builds hash sets from these; we keep arrays as `Vec`.
    #[serde(default)]
    #[allow(dead_code)]
    pub map_key: bool,
    #[serde(default)]
    #[allow(dead_code)]
    pub entity_type: Option<String>,
    /// Kafka avoids a copy for these; our `bytes` fields are always zero-copy slices.
    #[serde(default)]
    #[allow(dead_code)]
    pub zero_copy: bool,
}

/// Reads and parses one schema file.
pub fn load(path: &Path) -> Result<MessageSpec> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let json = strip_comments(&text);
    // Through `Value` first: some schemas repeat a key (`versions` twice in
    // DescribeTopicPartitionsRequest), which Kafka's Jackson reader accepts with the
    // last value winning; serde_json's map does the same, a derived struct would not.
    let value: serde_json::Value =
        serde_json::from_str(&json).with_context(|| format!("parsing {}", path.display()))?;
    let mut spec: MessageSpec =
        serde_json::from_value(value).with_context(|| format!("reading {}", path.display()))?;
    for field in &mut spec.fields {
        fill_versions(field);
    }
    for cs in &mut spec.common_structs {
        cs.fields.iter_mut().for_each(fill_versions);
    }
    Ok(spec)
}

/// A field without `versions` exists exactly in its `taggedVersions`.
fn fill_versions(field: &mut FieldSpec) {
    if field.versions.is_empty() {
        if let Some(tagged) = &field.tagged_versions {
            field.versions = tagged.clone();
        }
    }
    if let Some(children) = &mut field.fields {
        children.iter_mut().for_each(fill_versions);
    }
}

/// Removes `//` line comments (Kafka's JSON dialect) while leaving `//` inside string
/// literals alone. Line structure is preserved so serde_json's error positions still
/// point at the right line of the original file.
pub fn strip_comments(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for line in text.lines() {
        let mut in_string = false;
        let mut escaped = false;
        let mut end = line.len();
        let mut prev_slash = false;
        for (i, c) in line.char_indices() {
            if in_string {
                if escaped {
                    escaped = false;
                } else if c == '\\' {
                    escaped = true;
                } else if c == '"' {
                    in_string = false;
                }
                continue;
            }
            if c == '"' {
                in_string = true;
                prev_slash = false;
            } else if c == '/' {
                if prev_slash {
                    end = i - 1;
                    break;
                }
                prev_slash = true;
            } else {
                prev_slash = false;
            }
        }
        out.push_str(&line[..end]);
        out.push('\n');
    }
    out
}

/// An inclusive, contiguous range of versions; empty when `lo > hi`. "N+" is
/// open-ended, represented with `hi = i16::MAX`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Versions {
    pub lo: i16,
    pub hi: i16,
}

impl Versions {
    pub const NONE: Versions = Versions { lo: 1, hi: 0 };

    /// Parses Kafka's version syntax: `none`, `N`, `N+`, `N-M`.
    pub fn parse(s: &str) -> Result<Versions> {
        let s = s.trim();
        let num = |t: &str| -> Result<i16> {
            t.trim()
                .parse::<i16>()
                .with_context(|| format!("bad version `{t}` in `{s}`"))
        };
        let v = if s == "none" {
            Versions::NONE
        } else if let Some(lo) = s.strip_suffix('+') {
            Versions {
                lo: num(lo)?,
                hi: i16::MAX,
            }
        } else if let Some((lo, hi)) = s.split_once('-') {
            Versions {
                lo: num(lo)?,
                hi: num(hi)?,
            }
        } else {
            let v = num(s)?;
            Versions { lo: v, hi: v }
        };
        if v.lo < 0 || (s != "none" && v.is_empty()) {
            bail!("bad version range `{s}`");
        }
        Ok(v)
    }

    pub fn is_empty(self) -> bool {
        self.lo > self.hi
    }

    pub fn intersect(self, other: Versions) -> Versions {
        let r = Versions {
            lo: self.lo.max(other.lo),
            hi: self.hi.min(other.hi),
        };
        if r.is_empty() {
            Versions::NONE
        } else {
            r
        }
    }

    /// Smallest range covering both (ranges here are contiguous, and a hull is only
    /// used to decide which version checks can be left out, so it stays correct).
    pub fn hull(self, other: Versions) -> Versions {
        if self.is_empty() {
            other
        } else if other.is_empty() {
            self
        } else {
            Versions {
                lo: self.lo.min(other.lo),
                hi: self.hi.max(other.hi),
            }
        }
    }

    /// Whether every version of `self` is in `other`.
    pub fn is_subset_of(self, other: Versions) -> bool {
        self.is_empty() || (other.lo <= self.lo && self.hi <= other.hi)
    }
}

impl fmt::Display for Versions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_empty() {
            write!(f, "none")
        } else if self.hi == i16::MAX {
            write!(f, "{}+", self.lo)
        } else if self.lo == self.hi {
            write!(f, "{}", self.lo)
        } else {
            write!(f, "{}-{}", self.lo, self.hi)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comments_are_stripped_outside_strings() {
        let text = "// header\n{ \"a\": \"x // y\", // tail\n \"b\": 1 }\n";
        let v: serde_json::Value = serde_json::from_str(&strip_comments(text)).unwrap();
        assert_eq!(v["a"], "x // y");
        assert_eq!(v["b"], 1);
    }

    #[test]
    fn version_syntax() {
        assert_eq!(
            Versions::parse("3+").unwrap(),
            Versions {
                lo: 3,
                hi: i16::MAX
            }
        );
        assert_eq!(Versions::parse("0-7").unwrap(), Versions { lo: 0, hi: 7 });
        assert_eq!(Versions::parse("4").unwrap(), Versions { lo: 4, hi: 4 });
        assert!(Versions::parse("none").unwrap().is_empty());
        assert!(Versions::parse("7-3").is_err());
        assert_eq!(
            Versions::parse("3+")
                .unwrap()
                .intersect(Versions { lo: 0, hi: 5 }),
            Versions { lo: 3, hi: 5 }
        );
    }
}
