//! The maps a drain round reads and writes, behind a trait: [`KernelMaps`] over the pinned
//! aya maps, and (in tests) an in-memory fake, so the rounds' logic is tested without root.

use std::os::fd::{AsFd, OwnedFd};

use aya::maps::{Array, MapData, MapError, PerCpuArray};
use mapper_ebpf_common::{AgentState, FlowKey, FlowValue, Stat};

/// The two flow buffers, which of them the programs write to, their occupancy counters and
/// the kernel's loss counters. Buffers are 0 and 1; errors are the maps' own, named by the
/// caller.
pub trait FlowMaps {
    /// The buffer the programs write to now (`state.active`, 0 or 1).
    fn active(&self) -> Result<u32, MapError>;
    /// Points the programs at `buffer`.
    fn set_active(&mut self, buffer: u32) -> Result<(), MapError>;
    /// Every entry of `buffer`.
    fn entries(&self, buffer: u32) -> Result<Vec<(FlowKey, FlowValue)>, MapError>;
    /// Deletes `keys` from `buffer`; one that is already gone (the LRU evicted it) is no
    /// error. Tries every key; returns the indexes of those it could not delete and the
    /// first error.
    fn remove_all(&mut self, buffer: u32, keys: &[FlowKey]) -> (Vec<usize>, Option<MapError>);
    /// Entries the programs count as inserted into `buffer`.
    fn occupancy(&self, buffer: u32) -> Result<u64, MapError>;
    /// Sets what the programs count `buffer` as holding.
    fn set_occupancy(&mut self, buffer: u32, entries: u64) -> Result<(), MapError>;
    /// One loss counter, summed over CPUs.
    fn stat(&self, stat: Stat) -> Result<u64, MapError>;
}

/// [`FlowMaps`] over the loaded (or pinned) maps.
pub struct KernelMaps {
    /// The flow buffers' descriptors, for the batch commands aya has no binding for (their
    /// key and value sizes checked against [`FlowKey`] and [`FlowValue`] at load).
    pub(super) flow_fds: [OwnedFd; 2],
    pub(super) state: Array<MapData, AgentState>,
    pub(super) occupancy: Array<MapData, u64>,
    pub(super) stats: PerCpuArray<MapData, u64>,
}

impl std::fmt::Debug for KernelMaps {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KernelMaps").finish_non_exhaustive()
    }
}

impl FlowMaps for KernelMaps {
    fn active(&self) -> Result<u32, MapError> {
        Ok(self.state.get(&0, 0)?.active & 1)
    }

    fn set_active(&mut self, buffer: u32) -> Result<(), MapError> {
        self.state.set(0, AgentState { active: buffer, _pad0: 0 }, 0)
    }

    fn entries(&self, buffer: u32) -> Result<Vec<(FlowKey, FlowValue)>, MapError> {
        super::batch::lookup_all(self.flow_fds[buffer as usize].as_fd())
    }

    fn remove_all(&mut self, buffer: u32, keys: &[FlowKey]) -> (Vec<usize>, Option<MapError>) {
        super::batch::delete_all(self.flow_fds[buffer as usize].as_fd(), keys)
    }

    fn occupancy(&self, buffer: u32) -> Result<u64, MapError> {
        self.occupancy.get(&buffer, 0)
    }

    fn set_occupancy(&mut self, buffer: u32, entries: u64) -> Result<(), MapError> {
        self.occupancy.set(buffer, entries, 0)
    }

    fn stat(&self, stat: Stat) -> Result<u64, MapError> {
        Ok(self.stats.get(&(stat as u32), 0)?.iter().sum())
    }
}
