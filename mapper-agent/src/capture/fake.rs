//! An in-memory [`FlowMaps`] that behaves as the kernel side does: the programs' writes go
//! to the active buffer and count in its occupancy, a missing key is `KeyNotFound` on a
//! lookup (as aya reports it) and no error on a delete (as [`FlowMaps::remove`] promises),
//! and any operation can be made to fail from its n-th call on.

use std::{cell::Cell, collections::HashMap, io};

use aya::{maps::MapError, sys::SyscallError};
use mapper_ebpf_common::{FlowKey, FlowValue, Stat};

use super::flow_maps::FlowMaps;

/// An operation of [`FlowMaps`], to make fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Op {
    Active,
    SetActive,
    Keys,
    Get,
    Remove,
    Occupancy,
    SetOccupancy,
    Stat,
}

/// The fake kernel maps.
#[derive(Debug, Default)]
pub(crate) struct FakeMaps {
    pub(crate) flows: [HashMap<FlowKey, FlowValue>; 2],
    pub(crate) active: u32,
    pub(crate) occupancy: [u64; 2],
    pub(crate) stats: HashMap<u32, u64>,
    /// `(op, n)`: calls of `op` fail from its n-th (0-based) on.
    pub(crate) fail: Option<(Op, usize)>,
    calls: Cell<[usize; 8]>,
}

fn syscall(call: &'static str, errno: i32) -> MapError {
    MapError::SyscallError(SyscallError { call, io_error: io::Error::from_raw_os_error(errno) })
}

impl FakeMaps {
    /// What a program does for one connection of `key`: add to its entry in the active
    /// buffer, counting a new entry in that buffer's occupancy.
    pub(crate) fn record(&mut self, key: FlowKey, established: u64) {
        let buffer = (self.active & 1) as usize;
        let fresh = !self.flows[buffer].contains_key(&key);
        let v = self.flows[buffer].entry(key).or_default();
        v.established += established;
        if fresh {
            self.occupancy[buffer] += 1;
        }
    }

    /// Every entry of `buffer`, as (key, established).
    pub(crate) fn entries(&self, buffer: u32) -> Vec<(FlowKey, u64)> {
        self.flows[buffer as usize].iter().map(|(k, v)| (*k, v.established)).collect()
    }

    fn call(&self, op: Op) -> Result<(), MapError> {
        let mut calls = self.calls.get();
        let n = calls[op as usize];
        calls[op as usize] += 1;
        self.calls.set(calls);
        match self.fail {
            Some((failing, from)) if failing == op && n >= from => Err(syscall("fake", libc::EIO)),
            _ => Ok(()),
        }
    }
}

impl FlowMaps for FakeMaps {
    fn active(&self) -> Result<u32, MapError> {
        self.call(Op::Active)?;
        Ok(self.active & 1)
    }

    fn set_active(&mut self, buffer: u32) -> Result<(), MapError> {
        self.call(Op::SetActive)?;
        self.active = buffer;
        Ok(())
    }

    fn keys(&self, buffer: u32) -> Result<Vec<FlowKey>, MapError> {
        self.call(Op::Keys)?;
        Ok(self.flows[buffer as usize].keys().copied().collect())
    }

    fn get(&self, buffer: u32, key: &FlowKey) -> Result<FlowValue, MapError> {
        self.call(Op::Get)?;
        self.flows[buffer as usize].get(key).copied().ok_or(MapError::KeyNotFound)
    }

    fn remove(&mut self, buffer: u32, key: &FlowKey) -> Result<(), MapError> {
        self.call(Op::Remove)?;
        self.flows[buffer as usize].remove(key);
        Ok(())
    }

    fn occupancy(&self, buffer: u32) -> Result<u64, MapError> {
        self.call(Op::Occupancy)?;
        Ok(self.occupancy[buffer as usize])
    }

    fn set_occupancy(&mut self, buffer: u32, entries: u64) -> Result<(), MapError> {
        self.call(Op::SetOccupancy)?;
        self.occupancy[buffer as usize] = entries;
        Ok(())
    }

    fn stat(&self, stat: Stat) -> Result<u64, MapError> {
        self.call(Op::Stat)?;
        Ok(self.stats.get(&(stat as u32)).copied().unwrap_or(0))
    }
}
