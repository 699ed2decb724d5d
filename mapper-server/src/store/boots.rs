//! Which batches of each agent boot were applied, so that only those are
//! answered `duplicate`.
//!
//! An agent numbers its batches 1, 2, 3… per boot and may deliver them out of
//! order (a spooled batch resent after newer ones were acknowledged). A boot's
//! record keeps the highest sequence below which every batch was applied (the
//! floor) and the applied sequences above it, at most [`MAX_APPLIED_ABOVE`]:
//! when that set is full the floor advances to its lowest member, so the
//! sequences of the oldest gap are then taken as applied (a batch that late is
//! answered `duplicate` and dropped). Each record also keeps when the boot was
//! last heard from, so boots gone quiet can be pruned.

use std::{collections::BTreeSet, fmt};

use serde::{Deserialize, Serialize};

/// Most applied sequences kept above a boot's floor.
pub const MAX_APPLIED_ABOVE: usize = 1024;

/// One agent boot: the node it runs on and its boot id. Kept as two fields
/// (and stored as a tuple key), so no node name and boot id can collide.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AgentBoot {
    pub node: String,
    pub boot_id: String,
}

impl AgentBoot {
    pub fn new(node: &str, boot_id: &str) -> Self {
        Self { node: node.to_owned(), boot_id: boot_id.to_owned() }
    }
}

/// For logs only: `node/boot_id` (not a key: it is ambiguous).
impl fmt::Display for AgentBoot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.node, self.boot_id)
    }
}

/// What is stored per boot.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BootRecord {
    /// Every sequence ≤ floor was applied (or given up, see the module doc).
    pub floor: u64,
    /// Applied sequences above the floor + 1 (never contains floor + 1).
    pub above: BTreeSet<u64>,
    /// When a batch of this boot last arrived (Unix ms).
    pub last_seen_ms: i64,
}

impl BootRecord {
    /// Whether `sequence` was applied.
    pub fn applied(&self, sequence: u64) -> bool {
        sequence <= self.floor || self.above.contains(&sequence)
    }

    /// Records `sequence` as applied.
    pub fn record(&mut self, sequence: u64) {
        if self.applied(sequence) {
            return;
        }
        self.above.insert(sequence);
        self.absorb();
        if self.above.len() > MAX_APPLIED_ABOVE {
            // The oldest gap is given up: the floor moves to the lowest applied sequence above it.
            if let Some(lowest) = self.above.pop_first() {
                self.floor = lowest;
                self.absorb();
            }
        }
    }

    fn absorb(&mut self) {
        while self.above.first() == Some(&(self.floor + 1)) {
            self.above.pop_first();
            self.floor += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn out_of_order_sequences_are_applied_once_each() {
        let mut r = BootRecord::default();
        for s in [1, 2, 5, 3] {
            assert!(!r.applied(s), "{s} not applied yet");
            r.record(s);
        }
        assert!(r.applied(1) && r.applied(2) && r.applied(3) && r.applied(5));
        assert!(!r.applied(4), "4 never arrived: it must not be taken as a duplicate");
        assert_eq!((r.floor, r.above.iter().copied().collect::<Vec<_>>()), (3, vec![5]));
        r.record(4);
        assert_eq!((r.floor, r.above.len()), (5, 0), "the gap filled, the floor catches up");
    }

    #[test]
    fn a_full_set_advances_the_floor_past_the_oldest_gap() {
        let mut r = BootRecord::default();
        r.record(1);
        // 2 never arrives; 3 ..= 3 + MAX applied.
        let top = 3 + MAX_APPLIED_ABOVE as u64;
        for s in 3..=top {
            r.record(s);
        }
        assert!(r.above.len() <= MAX_APPLIED_ABOVE, "bounded: {}", r.above.len());
        assert_eq!(r.floor, top, "the gap at 2 was given up and everything above it absorbed");
        assert!(r.applied(2), "a batch that late is answered duplicate (stated in the README)");
        assert!(!r.applied(top + 1));
    }
}
