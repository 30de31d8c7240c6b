//! Version conditions in generated code. A check is rendered relative to the range
//! of versions the surrounding code can run in, so checks that always hold (or never
//! do) disappear instead of cluttering the output.

use super::schema::Versions;

/// Whether a set of versions contains the current `version`, simplified against
/// the versions possible at that point of the generated code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cond {
    Always,
    Never,
    /// `version >= n`
    AtLeast(i16),
    /// `version <= n`
    AtMost(i16),
    /// `(lo..=hi).contains(&version)`
    Between(i16, i16),
}

impl Cond {
    /// The condition "version is in `set`", knowing that version is in `ctx`.
    pub fn of(set: Versions, ctx: Versions) -> Cond {
        let i = set.intersect(ctx);
        if i.is_empty() {
            return Cond::Never;
        }
        match (i.lo > ctx.lo, i.hi < ctx.hi) {
            (false, false) => Cond::Always,
            (true, false) => Cond::AtLeast(i.lo),
            (false, true) => Cond::AtMost(i.hi),
            (true, true) if i.lo == i.hi => Cond::Between(i.lo, i.lo),
            (true, true) => Cond::Between(i.lo, i.hi),
        }
    }

    /// A boolean Rust expression over the variable `version`.
    pub fn expr(self) -> String {
        match self {
            Cond::Always => "true".to_owned(),
            Cond::Never => "false".to_owned(),
            Cond::AtLeast(n) => format!("version >= {n}"),
            Cond::AtMost(n) => format!("version <= {n}"),
            Cond::Between(lo, hi) if lo == hi => format!("version == {lo}"),
            Cond::Between(lo, hi) => format!("({lo}..={hi}).contains(&version)"),
        }
    }

    /// The negation, written the way clippy's `nonminimal_bool` wants it.
    pub fn negated_expr(self) -> String {
        match self {
            Cond::Always => "false".to_owned(),
            Cond::Never => "true".to_owned(),
            Cond::AtLeast(n) => format!("version < {n}"),
            Cond::AtMost(n) => format!("version > {n}"),
            Cond::Between(lo, hi) if lo == hi => format!("version != {lo}"),
            Cond::Between(lo, hi) => format!("!({lo}..={hi}).contains(&version)"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(lo: i16, hi: i16) -> Versions {
        Versions { lo, hi }
    }

    #[test]
    fn conditions_simplify_against_context() {
        let ctx = v(0, 11);
        assert_eq!(Cond::of(v(0, i16::MAX), ctx), Cond::Always);
        assert_eq!(Cond::of(v(3, i16::MAX), ctx), Cond::AtLeast(3));
        assert_eq!(Cond::of(v(0, 7), ctx), Cond::AtMost(7));
        assert_eq!(Cond::of(v(2, 4), ctx), Cond::Between(2, 4));
        assert_eq!(Cond::of(v(12, i16::MAX), ctx), Cond::Never);
        assert_eq!(Cond::of(v(3, i16::MAX), v(5, 11)), Cond::Always);
        assert_eq!(Cond::AtLeast(3).negated_expr(), "version < 3");
        assert_eq!(Cond::Between(2, 4).expr(), "(2..=4).contains(&version)");
    }
}
