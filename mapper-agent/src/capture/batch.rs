//! The flow buffers read and cleared with the kernel's batch map commands
//! (`BPF_MAP_LOOKUP_BATCH`, `BPF_MAP_DELETE_BATCH`, Linux 5.6; the agent needs 5.8): a drain
//! of n entries costs a few system calls instead of 3n + 1 (next key, lookup and delete of
//! each). aya 0.14 has no binding for them, so this is the bpf(2) call itself.

use std::{io, mem, os::fd::AsRawFd, os::fd::BorrowedFd};

use aya::maps::MapError;

/// `enum bpf_cmd` values of the batch commands (stable uapi).
const BPF_MAP_LOOKUP_BATCH: libc::c_long = 24;
const BPF_MAP_DELETE_BATCH: libc::c_long = 27;

/// Entries fetched per lookup call: one call for what a busy drain usually holds, and a
/// buffer small enough (~35 KB for the flow maps) to allocate on every drain.
const CHUNK: usize = 256;

/// `union bpf_attr`'s `batch` member (include/uapi/linux/bpf.h).
#[repr(C)]
#[derive(Default)]
struct BatchAttr {
    in_batch: u64,
    out_batch: u64,
    keys: u64,
    values: u64,
    count: u32,
    map_fd: u32,
    elem_flags: u64,
    flags: u64,
}

fn bpf(cmd: libc::c_long, attr: &mut BatchAttr) -> io::Result<()> {
    // SAFETY: `attr` is a valid, initialised `bpf_attr` prefix of the size passed; the
    // pointers it carries are set by the callers to buffers that outlive the call and are
    // at least `count` elements of the map's key and value sizes.
    let rc = unsafe { libc::syscall(libc::SYS_bpf, cmd, attr as *mut BatchAttr, mem::size_of::<BatchAttr>()) };
    if rc < 0 { Err(io::Error::last_os_error()) } else { Ok(()) }
}

fn syscall_error(call: &'static str, io_error: io::Error) -> MapError {
    MapError::SyscallError(aya::sys::SyscallError { call, io_error })
}

/// Every entry of the hash map `fd`, whose keys are `K` and values `V` (both plain data of
/// exactly the map's key and value sizes: the caller's typed aya map checked them).
pub(super) fn lookup_all<K: Copy + Default, V: Copy + Default>(fd: BorrowedFd<'_>) -> Result<Vec<(K, V)>, MapError> {
    let mut out = Vec::new();
    let mut chunk = CHUNK;
    let mut keys = vec![K::default(); chunk];
    let mut values = vec![V::default(); chunk];
    // The hash map's batch position is a bucket index.
    let (mut token_in, mut token_out) = (0u32, 0u32);
    let mut first = true;
    loop {
        let mut attr = BatchAttr {
            in_batch: if first { 0 } else { &raw mut token_in as u64 },
            out_batch: &raw mut token_out as u64,
            map_fd: fd.as_raw_fd() as u32,
            keys: keys.as_mut_ptr() as u64,
            values: values.as_mut_ptr() as u64,
            count: chunk as u32,
            ..Default::default()
        };
        let r = bpf(BPF_MAP_LOOKUP_BATCH, &mut attr);
        let got = (attr.count as usize).min(chunk);
        match r {
            Ok(()) => {}
            // The end of the map: what this call returned is the last of it.
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
                out.extend(keys[..got].iter().copied().zip(values[..got].iter().copied()));
                return Ok(out);
            }
            // One bucket holds more entries than the buffer: a larger one.
            Err(e) if e.raw_os_error() == Some(libc::ENOSPC) && chunk < 1 << 20 => {
                chunk *= 2;
                keys = vec![K::default(); chunk];
                values = vec![V::default(); chunk];
                continue;
            }
            Err(e) => return Err(syscall_error("BPF_MAP_LOOKUP_BATCH", e)),
        }
        out.extend(keys[..got].iter().copied().zip(values[..got].iter().copied()));
        token_in = token_out;
        first = false;
    }
}

/// Deletes `keys` from the hash map `fd`. A key already gone is no error. Returns the
/// indexes of the keys that could not be deleted, and the first error.
pub(super) fn delete_all<K: Copy>(fd: BorrowedFd<'_>, keys: &[K]) -> (Vec<usize>, Option<MapError>) {
    let mut failed = Vec::new();
    let mut first_error = None;
    let mut at = 0;
    while at < keys.len() {
        let rest = &keys[at..];
        let mut attr = BatchAttr {
            map_fd: fd.as_raw_fd() as u32,
            keys: rest.as_ptr() as u64,
            count: rest.len().min(u32::MAX as usize) as u32,
            ..Default::default()
        };
        let r = bpf(BPF_MAP_DELETE_BATCH, &mut attr);
        // The kernel deletes in order and stops at the first key it cannot delete,
        // `count` telling how many it did.
        let done = (attr.count as usize).min(rest.len());
        match r {
            Ok(()) => at = keys.len(),
            Err(e) => {
                let stuck = at + done;
                if stuck >= keys.len() {
                    // Every key was handled; the error came after.
                    first_error.get_or_insert_with(|| syscall_error("BPF_MAP_DELETE_BATCH", e));
                    break;
                }
                if e.raw_os_error() != Some(libc::ENOENT) {
                    failed.push(stuck);
                    first_error.get_or_insert_with(|| syscall_error("BPF_MAP_DELETE_BATCH", e));
                }
                at = stuck + 1;
            }
        }
    }
    (failed, first_error)
}
