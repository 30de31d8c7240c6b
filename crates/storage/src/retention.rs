//! Which whole segments retention deletes: Kafka's rules as a pure function.
//!
//! Segments are considered oldest first and only as a prefix: `retention.ms` (the
//! segment's largest timestamp is older than that), then `retention.bytes` (the log stays
//! larger than that without the segment), then the log start offset (the whole segment is
//! below it). The first two apply only when `cleanup.policy` includes `delete` (a
//! `compact`-only log keeps every segment; the cleaner shrinks it instead), as in Kafka. A segment is never deleted while any of it is above the high watermark, and
//! an empty active segment never is; a non-empty active segment can be (the log rolls
//! first, as Kafka's `deleteSegments` does).

use crate::config::LogConfig;

/// What retention needs to know about one segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SegmentStat {
    pub base_offset: i64,
    pub size: u64,
    pub largest_timestamp: i64,
}

/// Log-wide positions retention respects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Bounds {
    pub log_start_offset: i64,
    pub log_end_offset: i64,
    pub high_watermark: i64,
}

/// How many of the oldest segments to delete, by each rule in turn.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Plan {
    pub by_time: usize,
    pub by_size: usize,
    pub by_start_offset: usize,
}

impl Plan {
    pub(crate) fn total(&self) -> usize {
        self.by_time + self.by_size + self.by_start_offset
    }
}

/// Extends the deletable prefix from `from` while `pred(i, next_base)` holds.
fn take_while(
    stats: &[SegmentStat],
    from: usize,
    bounds: &Bounds,
    mut pred: impl FnMut(usize, Option<i64>) -> bool,
) -> usize {
    let mut i = from;
    while let Some(seg) = stats.get(i) {
        let next_base = stats.get(i + 1).map(|s| s.base_offset);
        let last_and_empty = next_base.is_none() && seg.size == 0;
        let upper = next_base.unwrap_or(bounds.log_end_offset);
        if last_and_empty || bounds.high_watermark < upper || !pred(i, next_base) {
            break;
        }
        i += 1;
    }
    i
}

pub(crate) fn plan(
    stats: &[SegmentStat],
    bounds: &Bounds,
    config: &LogConfig,
    now_ms: i64,
) -> Plan {
    let mut done = 0;
    let mut plan = Plan::default();
    if config.delete && config.retention_ms >= 0 {
        let end = take_while(stats, done, bounds, |i, _| {
            now_ms.saturating_sub(stats[i].largest_timestamp) > config.retention_ms
        });
        plan.by_time = end - done;
        done = end;
    }
    if config.delete && config.retention_bytes >= 0 {
        let total: u64 = stats.iter().skip(done).map(|s| s.size).sum();
        let mut excess = i128::from(total) - i128::from(config.retention_bytes);
        let end = take_while(stats, done, bounds, |i, _| {
            let size = i128::from(stats[i].size);
            if excess - size >= 0 {
                excess -= size;
                true
            } else {
                false
            }
        });
        plan.by_size = end - done;
        done = end;
    }
    let end = take_while(stats, done, bounds, |_, next_base| {
        next_base.is_some_and(|b| b <= bounds.log_start_offset)
    });
    plan.by_start_offset = end - done;
    plan
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Segments of 100 offsets and 1000 bytes each; `ts[i]` is segment i's largest timestamp.
    fn segs(ts: &[i64]) -> Vec<SegmentStat> {
        ts.iter()
            .enumerate()
            .map(|(i, &t)| SegmentStat {
                base_offset: i as i64 * 100,
                size: 1000,
                largest_timestamp: t,
            })
            .collect()
    }

    fn bounds(n: usize, hw: i64, lso: i64) -> Bounds {
        Bounds {
            log_start_offset: lso,
            log_end_offset: n as i64 * 100,
            high_watermark: hw,
        }
    }

    fn cfg(retention_ms: i64, retention_bytes: i64) -> LogConfig {
        LogConfig {
            retention_ms,
            retention_bytes,
            ..Default::default()
        }
    }

    #[test]
    fn retention_table() {
        let now = 10_000;
        // (timestamps, hw, lso, retention.ms, retention.bytes, expected plan)
        type Case<'a> = (&'a [i64], i64, i64, i64, i64, Plan);
        let cases: Vec<Case> = vec![
            // Nothing configured.
            (&[0, 0, 0], 300, 0, -1, -1, Plan::default()),
            // Two old segments, one recent: the old prefix goes.
            (
                &[1000, 2000, 9500],
                300,
                0,
                5000,
                -1,
                Plan {
                    by_time: 2,
                    ..Default::default()
                },
            ),
            // Only a prefix: an old segment after a recent one stays.
            (
                &[1000, 9500, 1000],
                300,
                0,
                5000,
                -1,
                Plan {
                    by_time: 1,
                    ..Default::default()
                },
            ),
            // Everything expired, including the active segment (rolled first).
            (
                &[1000, 1000, 1000],
                300,
                0,
                5000,
                -1,
                Plan {
                    by_time: 3,
                    ..Default::default()
                },
            ),
            // ... but not above the high watermark.
            (
                &[1000, 1000, 1000],
                150,
                0,
                5000,
                -1,
                Plan {
                    by_time: 1,
                    ..Default::default()
                },
            ),
            // Exactly at the limit is kept (strictly older only).
            (&[5000, 9500], 200, 0, 5000, -1, Plan::default()),
            // Size: 3000 bytes, limit 1500: one segment goes (2000 > 1500, 1000 < 1500).
            (
                &[9000, 9000, 9000],
                300,
                0,
                -1,
                1500,
                Plan {
                    by_size: 1,
                    ..Default::default()
                },
            ),
            (
                &[9000, 9000, 9000],
                300,
                0,
                -1,
                1000,
                Plan {
                    by_size: 2,
                    ..Default::default()
                },
            ),
            (
                &[9000, 9000, 9000],
                300,
                0,
                -1,
                0,
                Plan {
                    by_size: 3,
                    ..Default::default()
                },
            ),
            // Time then size on the rest.
            (
                &[1000, 9000, 9000, 9000],
                400,
                0,
                5000,
                1000,
                Plan {
                    by_time: 1,
                    by_size: 2,
                    ..Default::default()
                },
            ),
            // Log start offset: segments wholly below it.
            (
                &[9000, 9000, 9000],
                300,
                200,
                -1,
                -1,
                Plan {
                    by_start_offset: 2,
                    ..Default::default()
                },
            ),
            (
                &[9000, 9000, 9000],
                300,
                199,
                -1,
                -1,
                Plan {
                    by_start_offset: 1,
                    ..Default::default()
                },
            ),
            // Never the active segment by log start offset.
            (
                &[9000, 9000, 9000],
                300,
                300,
                -1,
                -1,
                Plan {
                    by_start_offset: 2,
                    ..Default::default()
                },
            ),
        ];
        for (ts, hw, lso, ms, bytes, want) in cases {
            let stats = segs(ts);
            let got = plan(&stats, &bounds(ts.len(), hw, lso), &cfg(ms, bytes), now);
            assert_eq!(
                got, want,
                "ts={ts:?} hw={hw} lso={lso} ms={ms} bytes={bytes}"
            );
        }
    }

    #[test]
    fn compact_only_logs_ignore_time_and_size_retention() {
        let stats = segs(&[1000, 1000, 1000]);
        let b = bounds(3, 300, 150);
        let compact_only = LogConfig {
            delete: false,
            compact: true,
            ..cfg(5000, 0)
        };
        // Only the segment wholly below the log start offset goes.
        assert_eq!(
            plan(&stats, &b, &compact_only, 10_000),
            Plan {
                by_start_offset: 1,
                ..Default::default()
            }
        );
        // compact,delete: both apply.
        let both = LogConfig {
            compact: true,
            ..compact_only
        };
        let both = LogConfig {
            delete: true,
            ..both
        };
        assert_eq!(plan(&stats, &b, &both, 10_000).by_time, 3);
    }

    #[test]
    fn empty_active_segment_is_never_deleted() {
        let mut stats = segs(&[1000, 1000]);
        stats[1].size = 0;
        let b = Bounds {
            log_start_offset: 0,
            log_end_offset: 100,
            high_watermark: 100,
        };
        assert_eq!(plan(&stats, &b, &cfg(5000, -1), 10_000).total(), 1);
    }
}
