//! An in-memory [`FlowMaps`] that behaves as the kernel side does: the programs' writes go
//! to the active buffer and count in its occupancy, a missing key is no error on a delete
//! (as [`FlowMaps::remove_all`] promises), and any operation can be made to fail from its
//! n-th call on (a delete: from its n-th key on).

use std::{cell::Cell, collections::HashMap, io};

use aya::{maps::MapError, sys::SyscallError};
use mapper_ebpf_common::{FlowKey, FlowValue, Stat};

use super::flow_maps::FlowMaps;

/// An operation of [`FlowMaps`], to make fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Op {
    Active,
    SetActive,
    Entries,
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
    calls: Cell<[usize; 7]>,
    clock: u64,
}

fn syscall(call: &'static str, errno: i32) -> MapError {
    MapError::SyscallError(SyscallError { call, io_error: io::Error::from_raw_os_error(errno) })
}

impl FakeMaps {
    /// What a program does for one connection of `key`: add to its entry in the active
    /// buffer, counting a new entry in that buffer's occupancy.
    /// Each call is one nanosecond after the one before (`first_seen_ns` tells entries apart).
    pub(crate) fn record(&mut self, key: FlowKey, established: u64) {
        self.clock += 1;
        let now = self.clock;
        let buffer = (self.active & 1) as usize;
        let fresh = !self.flows[buffer].contains_key(&key);
        let v = self.flows[buffer].entry(key).or_insert(FlowValue { first_seen_ns: now, ..Default::default() });
        v.established += established;
        v.last_seen_ns = now;
        if fresh {
            self.occupancy[buffer] += 1;
        }
    }

    /// Every entry of `buffer`, as (key, established).
    pub(crate) fn counts(&self, buffer: u32) -> Vec<(FlowKey, u64)> {
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

    fn entries(&self, buffer: u32) -> Result<Vec<(FlowKey, FlowValue)>, MapError> {
        self.call(Op::Entries)?;
        Ok(self.flows[buffer as usize].iter().map(|(k, v)| (*k, *v)).collect())
    }

    /// Each key is one call of [`Op::Remove`]: `fail: (Remove, n)` fails the n-th key on.
    fn remove_all(&mut self, buffer: u32, keys: &[FlowKey]) -> (Vec<usize>, Option<MapError>) {
        let mut failed = Vec::new();
        let mut first = None;
        for (i, key) in keys.iter().enumerate() {
            match self.call(Op::Remove) {
                Ok(()) => {
                    self.flows[buffer as usize].remove(key);
                }
                Err(e) => {
                    failed.push(i);
                    first.get_or_insert(e);
                }
            }
        }
        (failed, first)
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
