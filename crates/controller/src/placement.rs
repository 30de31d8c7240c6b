//! Replica placement: which brokers hold each new partition, decided by the active
//! controller before it proposes a creation record. A pure function of its inputs.
//!
//! The algorithm is Kafka's rack-aware round robin (`AdminUtils.assignReplicasToBrokers`
//! of ZooKeeper-mode Kafka; KRaft's `StripedReplicaPlacer` stripes across racks in the
//! same spirit with a random start): brokers are listed alternating between racks;
//! partition `p`'s leader is the broker `start + p` places along that list, so leaders
//! rotate evenly; its followers are found by walking on from the leader with a shift that
//! grows every full turn, skipping brokers on a rack that already has a replica until
//! every rack has one.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::image::{MetadataImage, PartitionAssignment};

/// A broker that may be given replicas: registered and unfenced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LiveBroker {
    pub id: i32,
    pub rack: Option<String>,
}

/// Why no placement exists; each maps to the Kafka error the request is answered with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlacementError {
    /// Kafka's INVALID_PARTITIONS.
    #[error("number of partitions must be larger than 0")]
    InvalidPartitions,
    /// Kafka's INVALID_REPLICATION_FACTOR.
    #[error("replication factor {requested} is invalid with {available} live brokers")]
    InvalidReplicationFactor { requested: u16, available: usize },
}

impl MetadataImage {
    /// The brokers placement may use: registered and unfenced, by id.
    pub fn live_brokers(&self) -> Vec<LiveBroker> {
        self.brokers()
            .filter(|b| !b.fenced)
            .map(|b| LiveBroker {
                id: b.id,
                rack: b.rack.clone(),
            })
            .collect()
    }
}

/// A per-topic seed derived from its name (64-bit FNV-1a), for callers that want the
/// striping to start at a topic-dependent but reproducible broker. FNV rather than std's
/// hasher because std's may change between Rust releases.
pub fn seed_for_topic(name: &str) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in name.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

/// Places `count` partitions numbered from `first_partition` (0 for a new topic, the
/// current count for CreatePartitions, so the rotation continues where it stopped) with
/// `replication_factor` replicas each on `brokers`. The same inputs always give the same
/// placement. Brokers without a rack count as one rack of their own.
pub fn place(
    brokers: &[LiveBroker],
    first_partition: u32,
    count: u32,
    replication_factor: u16,
    seed: u64,
) -> Result<Vec<PartitionAssignment>, PlacementError> {
    if count == 0 {
        return Err(PlacementError::InvalidPartitions);
    }
    let ring = rack_alternated(brokers);
    let n = ring.len();
    let rf = usize::from(replication_factor);
    if rf == 0 || rf > n {
        return Err(PlacementError::InvalidReplicationFactor {
            requested: replication_factor,
            available: n,
        });
    }
    let num_racks = ring.iter().map(|b| &b.1).collect::<BTreeSet<_>>().len();
    // Two independent halves of the seed: where the leaders start, and how far the
    // first follower sits from its leader (Kafka draws both at random).
    let n64 = n as u64;
    let start = (seed % n64) as usize;
    let initial_shift = ((seed >> 32) % n64) as usize;

    let mut placed = Vec::with_capacity(count as usize);
    for p in (first_partition as usize)..(first_partition as usize + count as usize) {
        let first = (start + p) % n;
        // The shift grows once per full turn of leaders, so the same leader does not get
        // the same followers on every turn.
        let shift = (initial_shift + p / n) * num_racks;
        let mut replicas = vec![ring[first].0];
        let mut racks = BTreeSet::from([&ring[first].1]);
        let mut k = 0;
        while replicas.len() < rf {
            // Each window of n - 1 steps visits every other broker once, and some broker
            // in it qualifies (rf <= n), so the fallback below is never reached; it keeps
            // the loop bounded without a panic path.
            let mut chosen = None;
            for _ in 0..n {
                let (id, rack) = &ring[follower_index(first, shift, k, n)];
                k += 1;
                let rack_ok = !racks.contains(rack) || racks.len() == num_racks;
                if rack_ok && !replicas.contains(id) {
                    chosen = Some((*id, rack));
                    break;
                }
            }
            let (id, rack) = match chosen {
                Some(c) => c,
                None => match ring.iter().find(|(id, _)| !replicas.contains(id)) {
                    Some((id, rack)) => (*id, rack),
                    None => break,
                },
            };
            replicas.push(id);
            racks.insert(rack);
        }
        placed.push(PartitionAssignment { replicas });
    }
    Ok(placed)
}

/// The index of the `k`-th follower candidate of the leader at `first`: never the leader
/// itself, and consecutive `k` visit the other `n - 1` brokers in turn.
fn follower_index(first: usize, shift: usize, k: usize, n: usize) -> usize {
    let others = (n - 1).max(1);
    (first + 1 + (shift + k) % others) % n
}

/// The brokers ordered so that consecutive ones sit on different racks where possible:
/// the first broker of each rack, then the second of each, and so on (racks and brokers
/// within a rack in sorted order, duplicates dropped).
fn rack_alternated(brokers: &[LiveBroker]) -> Vec<(i32, Option<String>)> {
    let mut by_rack: BTreeMap<&Option<String>, BTreeSet<i32>> = BTreeMap::new();
    let mut seen = BTreeSet::new();
    for b in brokers {
        if seen.insert(b.id) {
            by_rack.entry(&b.rack).or_default().insert(b.id);
        }
    }
    let mut lists: Vec<(&Option<String>, Vec<i32>)> = by_rack
        .into_iter()
        .map(|(rack, ids)| (rack, ids.into_iter().collect()))
        .collect();
    let longest = lists.iter().map(|(_, ids)| ids.len()).max().unwrap_or(0);
    let mut ring = Vec::with_capacity(seen.len());
    for i in 0..longest {
        for (rack, ids) in &mut lists {
            if let Some(id) = ids.get(i) {
                ring.push((*id, (*rack).clone()));
            }
        }
    }
    ring
}

#[cfg(test)]
mod tests {
    use super::*;

    fn brokers(specs: &[(i32, Option<&str>)]) -> Vec<LiveBroker> {
        specs
            .iter()
            .map(|(id, rack)| LiveBroker {
                id: *id,
                rack: rack.map(str::to_string),
            })
            .collect()
    }

    fn no_racks(n: i32) -> Vec<LiveBroker> {
        (1..=n).map(|id| LiveBroker { id, rack: None }).collect()
    }

    fn counts(placed: &[PartitionAssignment], leaders_only: bool) -> BTreeMap<i32, usize> {
        let mut counts = BTreeMap::new();
        for p in placed {
            let take = if leaders_only { 1 } else { p.replicas.len() };
            for id in &p.replicas[..take] {
                *counts.entry(*id).or_insert(0) += 1;
            }
        }
        counts
    }

    fn spread(counts: &BTreeMap<i32, usize>) -> usize {
        let max = counts.values().max().copied().unwrap_or(0);
        let min = counts.values().min().copied().unwrap_or(0);
        max - min
    }

    #[test]
    fn errors_follow_kafka() {
        let cases: &[(Vec<LiveBroker>, u32, u16, PlacementError)] = &[
            (no_racks(3), 0, 1, PlacementError::InvalidPartitions),
            (
                no_racks(3),
                1,
                4,
                PlacementError::InvalidReplicationFactor {
                    requested: 4,
                    available: 3,
                },
            ),
            (
                no_racks(3),
                1,
                0,
                PlacementError::InvalidReplicationFactor {
                    requested: 0,
                    available: 3,
                },
            ),
            (
                Vec::new(),
                1,
                1,
                PlacementError::InvalidReplicationFactor {
                    requested: 1,
                    available: 0,
                },
            ),
            // A broker listed twice is one broker.
            (
                brokers(&[(1, None), (1, None)]),
                1,
                2,
                PlacementError::InvalidReplicationFactor {
                    requested: 2,
                    available: 1,
                },
            ),
        ];
        for (live, count, rf, expected) in cases {
            assert_eq!(place(live, 0, *count, *rf, 7).as_ref(), Err(expected));
        }
    }

    #[test]
    fn replicas_are_distinct_and_leaders_even() {
        // (brokers, partitions, replication factor)
        let cases = [
            (no_racks(1), 10, 1),
            (no_racks(3), 100, 3),
            (no_racks(5), 101, 2),
            (no_racks(6), 1000, 3),
            (
                brokers(&[
                    (1, Some("a")),
                    (2, Some("a")),
                    (3, Some("b")),
                    (4, Some("c")),
                ]),
                99,
                3,
            ),
        ];
        for (live, count, rf) in cases {
            for seed in [0, 1, 42, u64::MAX, seed_for_topic("orders")] {
                let placed = place(&live, 0, count, rf, seed).unwrap_or_default();
                assert_eq!(placed.len(), count as usize);
                for p in &placed {
                    assert_eq!(p.replicas.len(), usize::from(rf));
                    let distinct: BTreeSet<_> = p.replicas.iter().collect();
                    assert_eq!(distinct.len(), p.replicas.len(), "{p:?}");
                }
                let leaders = counts(&placed, true);
                assert_eq!(leaders.len(), live.len().min(count as usize));
                assert!(spread(&leaders) <= 1, "leaders {leaders:?}");
            }
        }
    }

    #[test]
    fn replicas_spread_evenly_without_racks() {
        // Over whole turns of leaders and shifts every broker holds the same number.
        for n in [3, 4, 5] {
            let count = (n * (n - 1) * 4) as u32;
            let placed = place(&no_racks(n), 0, count, 3, 9).unwrap_or_default();
            let all = counts(&placed, false);
            assert_eq!(all.len(), n as usize);
            assert_eq!(spread(&all), 0, "n={n}: {all:?}");
        }
    }

    #[test]
    fn replicas_cover_as_many_racks_as_possible() {
        let live = brokers(&[
            (1, Some("a")),
            (2, Some("a")),
            (3, Some("a")),
            (4, Some("b")),
            (5, Some("b")),
            (6, Some("c")),
        ]);
        let rack = |id: i32| {
            live.iter()
                .find(|b| b.id == id)
                .and_then(|b| b.rack.clone())
        };
        // (replication factor, distinct racks expected per partition)
        for (rf, racks) in [(2, 2), (3, 3), (4, 3), (6, 3)] {
            for seed in 0..20 {
                let placed = place(&live, 0, 60, rf, seed).unwrap_or_default();
                assert_eq!(placed.len(), 60);
                for p in &placed {
                    let distinct: BTreeSet<_> = p.replicas.iter().map(|id| rack(*id)).collect();
                    assert_eq!(distinct.len(), racks, "rf {rf} seed {seed}: {p:?}");
                }
                assert!(spread(&counts(&placed, true)) <= 1);
            }
        }
    }

    #[test]
    fn placement_is_deterministic_for_a_seed() {
        let live = no_racks(5);
        let a = place(&live, 0, 20, 3, 1234);
        let b = place(&live, 0, 20, 3, 1234);
        assert_eq!(a, b);
        // Input order does not matter: brokers are sorted first.
        let mut reversed = live.clone();
        reversed.reverse();
        assert_eq!(place(&reversed, 0, 20, 3, 1234), a);
        // Different seeds start the rotation elsewhere.
        let leaders = |seed| {
            place(&live, 0, 1, 1, seed)
                .unwrap_or_default()
                .first()
                .map(|p| p.replicas[0])
        };
        let starts: BTreeSet<_> = (0..5).map(leaders).collect();
        assert_eq!(starts.len(), 5);
        assert_eq!(seed_for_topic("orders"), seed_for_topic("orders"));
        assert_ne!(seed_for_topic("orders"), seed_for_topic("payments"));
    }

    #[test]
    fn added_partitions_continue_the_rotation() {
        let live = no_racks(4);
        let whole = place(&live, 0, 8, 2, 5).unwrap_or_default();
        let mut split = place(&live, 0, 3, 2, 5).unwrap_or_default();
        split.extend(place(&live, 3, 5, 2, 5).unwrap_or_default());
        assert_eq!(split, whole);
    }
}
