//! Loading, attaching and pinning the kernel programs, and draining their maps.
//!
//! Everything lives under a bpffs directory named after the program object and
//! the map sizes (`<bpffs>/<tag>/maps/*`, `<bpffs>/<tag>/links/*`). Pinned links
//! keep the programs attached while the agent is down, and pinned maps keep
//! what they recorded, so a restarted agent finds both and drains what happened
//! meanwhile. A new version (another tag) attaches its own programs and then
//! removes the previous version's pins.
//!
//! The flow maps are double-buffered: the programs write to the buffer named
//! by `state.active`; a drain flips it, waits for programs already running to
//! finish, then reads and deletes the other buffer, which nothing writes to
//! any more — no increment is lost between a read and a delete. The rounds
//! reach the maps through [`FlowMaps`] ([`KernelMaps`] in the agent, an
//! in-memory fake in the tests of the round logic).

use std::{
    collections::HashMap,
    fs,
    hash::Hasher,
    io,
    os::fd::{AsFd, OwnedFd},
    path::{Path, PathBuf},
    thread,
    time::Duration,
};

use aya::{
    Ebpf, EbpfLoader,
    maps::{Array, HashMap as BpfHashMap, Map, MapData, MapError, PerCpuArray, RingBuf},
    programs::{
        BtfTracePoint, CgroupAttachMode, CgroupSkb, CgroupSkbAttachType, CgroupSockAddr, ProgramError,
        links::{FdLink, LinkError, PinnedLink},
    },
};
use mapper_ebpf::{maps, programs};
use mapper_ebpf_common::{FlowKey, FlowValue, Stat};
use tracing::{info, warn};

mod batch;
mod flow_maps;
pub use self::flow_maps::{FlowMaps, KernelMaps};

/// Sizes and places, all settable from the command line.
#[derive(Debug, Clone)]
pub struct CaptureConfig {
    /// Directory on a bpf filesystem under which programs and maps are pinned.
    pub bpffs: PathBuf,
    /// The cgroup2 root the cgroup programs attach to.
    pub cgroup_root: PathBuf,
    /// Distinct flows one buffer holds between two drains.
    pub flow_entries: u32,
    /// TCP connects in flight (between connect() and its outcome).
    pub socket_entries: u32,
    /// DNAT translations awaiting their connect's outcome.
    pub nat_entries: u32,
    /// Bytes of the DNS ring buffer (a power of two, at least one page).
    pub dns_ring_bytes: u32,
    /// Inode of the node's own network namespace, 0 when not known. Only
    /// clients in it tell a server end on this node who they are (their
    /// address is the node's, shared); with 0 every client does.
    pub host_netns: u32,
}

impl CaptureConfig {
    /// Defaults sized for a busy node: ~2 × 1.3 MiB of flow maps.
    pub fn new(bpffs: PathBuf, cgroup_root: PathBuf) -> Self {
        Self {
            bpffs,
            cgroup_root,
            flow_entries: 8192,
            socket_entries: 16384,
            nat_entries: 16384,
            dns_ring_bytes: 256 * 1024,
            host_netns: 0,
        }
    }

    /// Entries actually allocated per flow buffer: the LRU map may evict a
    /// little before it is full (free nodes sit in per-CPU lists), so it gets
    /// room beyond the logical capacity that the programs count against.
    fn flow_map_size(&self) -> u32 {
        let cpus = thread::available_parallelism().map_or(64, |n| n.get() as u32);
        self.flow_entries.saturating_add(cpus.saturating_mul(128))
    }

    /// The pin directory of this program object with these sizes.
    pub fn pin_dir(&self) -> PathBuf {
        // Everything set at load time: programs built with other settings are not resumed.
        let sizes = [self.flow_entries, self.socket_entries, self.nat_entries, self.dns_ring_bytes, self.host_netns];
        let mut h = fnv::FnvHasher::default();
        h.write(mapper_ebpf::OBJECT);
        for s in sizes {
            h.write(&s.to_le_bytes());
        }
        self.bpffs.join(format!("v-{:016x}", h.finish()))
    }
}

/// Why the capture could not be set up or read.
#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    #[error("invalid setting: map sizes must be at least 1")]
    EmptyMap,
    #[error("invalid setting: --dns-ring-bytes {bytes} must be a power of two of at least 4096")]
    DnsRingBytes { bytes: u32 },
    #[error("cannot prepare {path}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot load the kernel programs (is this kernel 5.8+ with BTF?)")]
    Load(#[source] aya::EbpfError),
    #[error("cannot read the kernel's BTF (/sys/kernel/btf/vmlinux)")]
    Btf(#[source] aya::BtfError),
    #[error("program {name} is missing from the object")]
    MissingProgram { name: &'static str },
    #[error("map {name} is missing from the object")]
    MissingMap { name: &'static str },
    #[error("cannot load or attach program {name}")]
    Program {
        name: &'static str,
        #[source]
        source: ProgramError,
    },
    #[error("cannot pin the link of program {name} at {path}")]
    Pin {
        name: &'static str,
        path: PathBuf,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("map {name}")]
    Map {
        name: &'static str,
        #[source]
        source: MapError,
    },
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> CaptureError + '_ {
    move |source| CaptureError::Io { path: path.to_path_buf(), source }
}

/// One program: its name in the object and where it attaches.
#[derive(Debug, Clone, Copy)]
enum Hook {
    /// A BTF-typed raw tracepoint (tp_btf): the program gets the tracepoint's
    /// own arguments (the struct sock, the sk_buff) and reads their fields with
    /// plain loads instead of helper calls.
    BtfTracePoint(&'static str),
    SockAddr,
    SkbIngress,
}

const HOOKS: &[(&str, Hook)] = &[
    (programs::SOCK_STATE, Hook::BtfTracePoint("inet_sock_set_state")),
    (programs::DEV_QUEUE, Hook::BtfTracePoint("net_dev_queue")),
    (programs::CONNECT4, Hook::SockAddr),
    (programs::CONNECT6, Hook::SockAddr),
    (programs::SENDMSG4, Hook::SockAddr),
    (programs::SENDMSG6, Hook::SockAddr),
    (programs::RECVMSG4, Hook::SockAddr),
    (programs::RECVMSG6, Hook::SockAddr),
    (programs::DNS_INGRESS, Hook::SkbIngress),
];

/// The loaded (or resumed) capture: typed handles on every map the agent reads
/// (those of the drain rounds through `M`).
pub struct Capture<M = KernelMaps> {
    pin_dir: PathBuf,
    resumed: bool,
    flow_capacity: u32,
    maps: M,
    dns: Option<RingBuf<MapData>>,
    /// Per buffer: the entries a clear could not delete, as they were when their counts were
    /// handed on, so that the next drain of that buffer hands on only what was added since.
    /// Bounded by the buffer's size (only keys read from it are kept).
    reported: [HashMap<FlowKey, Reported>; 2],
}

/// What of a kernel entry was already handed on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Reported {
    /// Tells this entry from a new one under the same key (evicted, then inserted again).
    first_seen_ns: u64,
    last_seen_ns: u64,
    established: u64,
    failed: u64,
}

impl Reported {
    fn of(v: &FlowValue) -> Self {
        Self {
            first_seen_ns: v.first_seen_ns,
            last_seen_ns: v.last_seen_ns,
            established: v.established,
            failed: v.failed,
        }
    }

    /// What `v` (the same entry, read again) holds beyond what was handed on; `None` when
    /// nothing was added.
    fn since(&self, v: &FlowValue) -> Option<FlowValue> {
        let established = v.established.saturating_sub(self.established);
        let failed = v.failed.saturating_sub(self.failed);
        // The new connections came after the last one handed on.
        (established > 0 || failed > 0).then(|| FlowValue {
            established,
            failed,
            first_seen_ns: self.last_seen_ns.max(v.first_seen_ns),
            ..*v
        })
    }
}

impl<M> std::fmt::Debug for Capture<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Capture")
            .field("pin_dir", &self.pin_dir)
            .field("resumed", &self.resumed)
            .finish_non_exhaustive()
    }
}

/// What one drain read.
#[derive(Debug, Default)]
pub struct Drained {
    /// Which buffer was read.
    pub buffer: u32,
    /// The flows to hand on: what the kernel counted since the last report of each. An entry
    /// a failed clear left behind is handed on only for what was added to it since.
    pub flows: Vec<(FlowKey, FlowValue)>,
    /// Every entry as the kernel holds it (deleted from the kernel once the caller calls
    /// [`Capture::clear`]; what a spool's fingerprints name).
    pub read: Vec<(FlowKey, FlowValue)>,
}

fn take_map(ebpf: &mut Ebpf, name: &'static str) -> Result<aya::maps::Map, CaptureError> {
    ebpf.take_map(name).ok_or(CaptureError::MissingMap { name })
}

/// A flow buffer's descriptor, once aya has checked that its keys and values are a
/// [`FlowKey`] and a [`FlowValue`] (what the batch commands copy).
fn flow_fd(ebpf: &mut Ebpf, name: &'static str) -> Result<OwnedFd, CaptureError> {
    let map = take_map(ebpf, name)?;
    typed(name, BpfHashMap::<_, FlowKey, FlowValue>::try_from(&map))?;
    let (Map::HashMap(data) | Map::LruHashMap(data)) = &map else {
        return Err(CaptureError::Map { name, source: MapError::InvalidMapType { map_type: 0 } });
    };
    data.fd().as_fd().try_clone_to_owned().map_err(|e| CaptureError::Map {
        name,
        source: MapError::SyscallError(aya::sys::SyscallError { call: "dup", io_error: e }),
    })
}

fn typed<T, E: Into<MapError>>(name: &'static str, r: Result<T, E>) -> Result<T, CaptureError> {
    r.map_err(|e| CaptureError::Map { name, source: e.into() })
}

impl Capture<KernelMaps> {
    /// Loads the programs, reusing pinned maps and links when this version is
    /// already attached (an agent restart), attaching and pinning otherwise.
    pub fn open(cfg: &CaptureConfig) -> Result<Self, CaptureError> {
        if cfg.flow_entries == 0 || cfg.socket_entries == 0 || cfg.nat_entries == 0 {
            return Err(CaptureError::EmptyMap);
        }
        if !cfg.dns_ring_bytes.is_power_of_two() || cfg.dns_ring_bytes < 4096 {
            return Err(CaptureError::DnsRingBytes { bytes: cfg.dns_ring_bytes });
        }
        let pin_dir = cfg.pin_dir();
        let map_dir = pin_dir.join("maps");
        let link_dir = pin_dir.join("links");
        fs::create_dir_all(&map_dir).map_err(io_err(&map_dir))?;
        fs::create_dir_all(&link_dir).map_err(io_err(&link_dir))?;

        let capacity = u64::from(cfg.flow_entries);
        let map_paths: Vec<(&str, PathBuf)> = maps::ALL.iter().map(|m| (*m, map_dir.join(m))).collect();
        let mut loader = EbpfLoader::new();
        loader
            .map_max_entries(maps::FLOWS_A, cfg.flow_map_size())
            .map_max_entries(maps::FLOWS_B, cfg.flow_map_size())
            .map_max_entries(maps::CONNECTING, cfg.socket_entries)
            .map_max_entries(maps::NAT, cfg.nat_entries)
            .map_max_entries(maps::DNS_EVENTS, cfg.dns_ring_bytes)
            .override_global(mapper_ebpf::FLOW_CAPACITY_GLOBAL, &capacity, true)
            .override_global(mapper_ebpf::HOST_NETNS_GLOBAL, &cfg.host_netns, true);
        for (name, path) in &map_paths {
            loader.map_pin_path(name, path.as_path());
        }
        let mut ebpf = loader.load(mapper_ebpf::OBJECT).map_err(CaptureError::Load)?;

        let pinned = HOOKS.iter().filter(|(name, _)| PinnedLink::from_pin(link_dir.join(name)).is_ok()).count();
        let resumed = pinned == HOOKS.len();
        if resumed {
            info!(pin_dir = %pin_dir.display(), "programs already attached by a previous agent: resuming");
        } else {
            if pinned > 0 {
                warn!(pinned, "partial set of pinned programs found (a crash while attaching?): attaching again");
            }
            Self::attach_all(&mut ebpf, cfg, &link_dir)?;
            info!(pin_dir = %pin_dir.display(), "programs attached and pinned");
        }
        remove_other_versions(&cfg.bpffs, &pin_dir);

        let flows_a = flow_fd(&mut ebpf, maps::FLOWS_A)?;
        let flows_b = flow_fd(&mut ebpf, maps::FLOWS_B)?;
        let state = typed(maps::STATE, Array::try_from(take_map(&mut ebpf, maps::STATE)?))?;
        let occupancy = typed(maps::OCCUPANCY, Array::try_from(take_map(&mut ebpf, maps::OCCUPANCY)?))?;
        let stats = typed(maps::STATS, PerCpuArray::try_from(take_map(&mut ebpf, maps::STATS)?))?;
        let dns = typed(maps::DNS_EVENTS, RingBuf::try_from(take_map(&mut ebpf, maps::DNS_EVENTS)?))?;
        // The programs stay attached through their pinned links; the loaded
        // copies that `ebpf` still holds are not needed any more.
        drop(ebpf);
        Ok(Self {
            pin_dir,
            resumed,
            flow_capacity: cfg.flow_entries,
            maps: KernelMaps { flow_fds: [flows_a, flows_b], state, occupancy, stats },
            dns: Some(dns),
            reported: Default::default(),
        })
    }

    fn attach_all(ebpf: &mut Ebpf, cfg: &CaptureConfig, link_dir: &Path) -> Result<(), CaptureError> {
        let cgroup = fs::File::open(&cfg.cgroup_root).map_err(io_err(&cfg.cgroup_root))?;
        let btf = &aya::Btf::from_sys_fs().map_err(CaptureError::Btf)?;
        for &(name, hook) in HOOKS {
            let path = link_dir.join(name);
            if path.exists() {
                fs::remove_file(&path).map_err(io_err(&path))?;
            }
            let prog = ebpf.program_mut(name).ok_or(CaptureError::MissingProgram { name })?;
            let perr = |source| CaptureError::Program { name, source };
            let pin_err = |source: Box<dyn std::error::Error + Send + Sync>| CaptureError::Pin {
                name,
                path: path.clone(),
                source,
            };
            let link: FdLink = match hook {
                Hook::BtfTracePoint(event) => {
                    let p: &mut BtfTracePoint = prog.try_into().map_err(perr)?;
                    p.load(event, btf).map_err(perr)?;
                    let id = p.attach().map_err(perr)?;
                    p.take_link(id).map_err(perr)?.into()
                }
                Hook::SockAddr => {
                    let p: &mut CgroupSockAddr = prog.try_into().map_err(perr)?;
                    p.load().map_err(perr)?;
                    let id = p.attach(cgroup.as_fd(), CgroupAttachMode::Single).map_err(perr)?;
                    p.take_link(id).map_err(perr)?.try_into().map_err(|e: LinkError| pin_err(e.into()))?
                }
                Hook::SkbIngress => {
                    let p: &mut CgroupSkb = prog.try_into().map_err(perr)?;
                    p.load().map_err(perr)?;
                    let id = p
                        .attach(cgroup.as_fd(), CgroupSkbAttachType::Ingress, CgroupAttachMode::Single)
                        .map_err(perr)?;
                    p.take_link(id).map_err(perr)?.try_into().map_err(|e: LinkError| pin_err(e.into()))?
                }
            };
            link.pin(&path).map_err(|e| pin_err(e.into()))?;
        }
        Ok(())
    }
}

impl<M: FlowMaps> Capture<M> {
    /// A capture over `maps` with nothing loaded (the round logic's tests).
    #[cfg(test)]
    pub(crate) fn over(maps: M, flow_capacity: u32) -> Self {
        Self { pin_dir: PathBuf::new(), resumed: false, flow_capacity, maps, dns: None, reported: Default::default() }
    }

    /// The maps the rounds use.
    #[cfg(test)]
    pub(crate) fn maps(&mut self) -> &mut M {
        &mut self.maps
    }

    /// Whether this agent found the programs already attached.
    pub fn resumed(&self) -> bool {
        self.resumed
    }

    /// Where the programs and maps are pinned.
    pub fn pin_dir(&self) -> &Path {
        &self.pin_dir
    }

    /// Flows one buffer holds before inserts count as overflow.
    pub fn flow_capacity(&self) -> u32 {
        self.flow_capacity
    }

    /// The DNS ring buffer, to be read by its own task.
    pub fn take_dns(&mut self) -> Option<RingBuf<MapData>> {
        self.dns.take()
    }

    /// Entries inserted into the buffer being written now.
    pub fn occupancy(&self) -> Result<u64, CaptureError> {
        let active = typed(maps::STATE, self.maps.active())?;
        typed(maps::OCCUPANCY, self.maps.occupancy(active))
    }

    /// The kernel's counters of what it could not record, summed over CPUs.
    /// They live in a pinned map, so they keep counting across agent restarts.
    pub fn kernel_stats(&self) -> Result<Vec<(Stat, u64)>, CaptureError> {
        Stat::ALL.iter().map(|&stat| Ok((stat, typed(maps::STATS, self.maps.stat(stat))?))).collect()
    }

    /// Whether both buffers are empty, as the programs count them (every entry they insert
    /// adds one to its buffer's occupancy; a clear resets it to what it left): then a drain
    /// would read nothing. An insert whose count is not yet added is read by the next drain.
    pub fn nothing_recorded(&self) -> Result<bool, CaptureError> {
        if self.reported.iter().any(|r| !r.is_empty()) {
            return Ok(false);
        }
        for buffer in [0, 1] {
            if typed(maps::OCCUPANCY, self.maps.occupancy(buffer))? != 0 {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Switches the programs to the other buffer, waits `grace` for programs
    /// already running on the old one, and reads everything the old one holds.
    pub fn drain(&mut self, grace: Duration) -> Result<Drained, CaptureError> {
        let old = typed(maps::STATE, self.maps.active())?;
        typed(maps::STATE, self.maps.set_active(1 - old))?;
        thread::sleep(grace);
        let name = buffer_name(old);
        let read = self.maps.entries(old).map_err(|source| CaptureError::Map { name, source })?;
        let reported = &self.reported[old as usize];
        let flows = if reported.is_empty() {
            read.clone()
        } else {
            read.iter()
                .filter_map(|(key, v)| match reported.get(key) {
                    Some(r) if r.first_seen_ns == v.first_seen_ns => r.since(v).map(|new| (*key, new)),
                    _ => Some((*key, *v)),
                })
                .collect()
        };
        Ok(Drained { buffer: old, flows, read })
    }

    /// Deletes what `drained` read, once it has been handed on. A delete that fails leaves
    /// its entry, and the counts it held, in the kernel: they are remembered as handed on, so
    /// the next drain of that buffer reports only what the programs add to it meanwhile.
    pub fn clear(&mut self, drained: &Drained) -> Result<(), CaptureError> {
        let buffer = drained.buffer;
        let name = buffer_name(buffer);
        let keys: Vec<FlowKey> = drained.read.iter().map(|(k, _)| *k).collect();
        let (failed, first_error) = self.maps.remove_all(buffer, &keys);
        let left = &mut self.reported[buffer as usize];
        left.clear();
        match first_error {
            None => typed(maps::OCCUPANCY, self.maps.set_occupancy(buffer, 0)),
            Some(source) => {
                let failed: std::collections::HashSet<usize> = failed.into_iter().collect();
                left.extend(
                    drained
                        .read
                        .iter()
                        .enumerate()
                        .filter(|(i, _)| failed.contains(i))
                        .map(|(_, (k, v))| (*k, Reported::of(v))),
                );
                // The programs count against what the buffer still holds.
                let _ = self.maps.set_occupancy(buffer, left.len() as u64);
                Err(CaptureError::Map { name, source })
            }
        }
    }
}

/// A fingerprint of one kernel entry as a drain read it: its key and its
/// counts and times (nanoseconds), so an entry that changed after the read, or
/// a new entry with the same key, does not match.
pub fn fingerprint(key: &FlowKey, value: &FlowValue) -> u64 {
    let k = key;
    let head = [k.direction, k.protocol, k.family, 0];
    let words = [
        u64::from(k.dst_port),
        u64::from(k.orig_dst_port),
        u64::from(k.netns),
        k.cgroup_id,
        u64::from(k.peer_netns),
        k.peer_cgroup_id,
        value.established,
        value.failed,
        value.first_seen_ns,
        value.last_seen_ns,
    ];
    let mut h = fnv::FnvHasher::default();
    for bytes in [&head[..], &k.src_addr, &k.dst_addr, &k.orig_dst_addr] {
        h.write(bytes);
    }
    for w in words {
        h.write(&w.to_le_bytes());
    }
    h.finish()
}

impl<M: FlowMaps> Capture<M> {
    /// Deletes, from the buffer the programs are not writing to, the entries
    /// an earlier agent had read and spooled but not yet deleted when it
    /// stopped (`spooled`: their fingerprints). Call before the first drain.
    /// Returns how many were deleted.
    pub fn remove_spooled(&mut self, spooled: &std::collections::HashSet<u64>) -> Result<usize, CaptureError> {
        if spooled.is_empty() {
            return Ok(0);
        }
        let active = typed(maps::STATE, self.maps.active())?;
        let idle = 1 - active;
        let name = buffer_name(idle);
        let entries = self.maps.entries(idle).map_err(|source| CaptureError::Map { name, source })?;
        let total = entries.len();
        let matching: Vec<FlowKey> =
            entries.iter().filter(|(k, v)| spooled.contains(&fingerprint(k, v))).map(|(k, _)| *k).collect();
        if let (_, Some(source)) = self.maps.remove_all(idle, &matching) {
            return Err(CaptureError::Map { name, source });
        }
        let removed = matching.len();
        // What the buffer holds now, so the programs count against the right
        // figure when they next write to it.
        typed(maps::OCCUPANCY, self.maps.set_occupancy(idle, (total - removed) as u64))?;
        Ok(removed)
    }
}

fn buffer_name(b: u32) -> &'static str {
    if b == 0 { maps::FLOWS_A } else { maps::FLOWS_B }
}

#[cfg(test)]
pub(crate) mod fake;
#[cfg(test)]
mod tests;

/// Removes pins of other program versions under `bpffs` (detaching them).
fn remove_other_versions(bpffs: &Path, keep: &Path) {
    let Ok(entries) = fs::read_dir(bpffs) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let is_version = path.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("v-"));
        if is_version && path != keep {
            warn!(old = %path.display(), "removing a previous version's programs; flows it recorded since its last drain are dropped");
            if let Err(e) = fs::remove_dir_all(&path) {
                warn!(old = %path.display(), error = %e, "cannot remove a previous version's pins");
            }
        }
    }
}

/// Detaches the programs and frees the maps of every version under `bpffs`.
pub fn remove_pins(bpffs: &Path) -> Result<(), CaptureError> {
    if bpffs.exists() {
        fs::remove_dir_all(bpffs).map_err(io_err(bpffs))?;
    }
    Ok(())
}
