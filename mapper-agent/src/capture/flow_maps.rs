//! The maps a drain round reads and writes, behind a trait: [`KernelMaps`] over the pinned
//! aya maps, and (in tests) an in-memory fake, so the rounds' logic is tested without root.

use aya::maps::{Array, HashMap, MapData, MapError, PerCpuArray};
use mapper_ebpf_common::{AgentState, FlowKey, FlowValue, Stat};

/// The two flow buffers, which of them the programs write to, their occupancy counters and
/// the kernel's loss counters. Buffers are 0 and 1; errors are the maps' own, named by the
/// caller.
pub trait FlowMaps {
    /// The buffer the programs write to now (`state.active`, 0 or 1).
    fn active(&self) -> Result<u32, MapError>;
    /// Points the programs at `buffer`.
    fn set_active(&mut self, buffer: u32) -> Result<(), MapError>;
    /// Every key in `buffer`.
    fn keys(&self, buffer: u32) -> Result<Vec<FlowKey>, MapError>;
    /// One entry of `buffer` ([`MapError::KeyNotFound`] when it is not there).
    fn get(&self, buffer: u32, key: &FlowKey) -> Result<FlowValue, MapError>;
    /// Deletes one entry of `buffer`; one that is already gone (the LRU evicted it) is no error.
    fn remove(&mut self, buffer: u32, key: &FlowKey) -> Result<(), MapError>;
    /// Entries the programs count as inserted into `buffer`.
    fn occupancy(&self, buffer: u32) -> Result<u64, MapError>;
    /// Sets what the programs count `buffer` as holding.
    fn set_occupancy(&mut self, buffer: u32, entries: u64) -> Result<(), MapError>;
    /// One loss counter, summed over CPUs.
    fn stat(&self, stat: Stat) -> Result<u64, MapError>;
}

/// [`FlowMaps`] over the loaded (or pinned) maps.
pub struct KernelMaps {
    pub(super) flows: [HashMap<MapData, FlowKey, FlowValue>; 2],
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

    fn keys(&self, buffer: u32) -> Result<Vec<FlowKey>, MapError> {
        self.flows[buffer as usize].keys().collect()
    }

    fn get(&self, buffer: u32, key: &FlowKey) -> Result<FlowValue, MapError> {
        self.flows[buffer as usize].get(key, 0)
    }

    fn remove(&mut self, buffer: u32, key: &FlowKey) -> Result<(), MapError> {
        match self.flows[buffer as usize].remove(key) {
            // aya reports a missing key as the syscall's ENOENT, not as KeyNotFound.
            Err(MapError::SyscallError(e)) if e.io_error.raw_os_error() == Some(libc::ENOENT) => Ok(()),
            other => other,
        }
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
