//! What the agent needs from the node, checked before anything is loaded, with
//! errors that say what to do: privileges, BTF, cgroup v2 and bpffs.

use std::{
    fs, io,
    path::{Path, PathBuf},
};

use tracing::info;

/// Why the agent cannot run on this node.
#[derive(Debug, thiserror::Error)]
pub enum PreflightError {
    #[error(
        "mapper-agent needs CAP_BPF, CAP_PERFMON and CAP_NET_ADMIN (or root) to load and attach its kernel \
         programs, and this process lacks {} (effective capabilities {effective:#x}). Run it as root, or in \
         Kubernetes give the container securityContext.capabilities.add: [BPF, PERFMON, NET_ADMIN] \
         (CAP_SYS_ADMIN stands in for all three, but grants far more)",
        missing.join(", ")
    )]
    MissingCapabilities { missing: Vec<&'static str>, effective: u64 },
    #[error(
        "the kernel exposes no BTF at {path}: mapper's programs are CO-RE and need a kernel built with \
         CONFIG_DEBUG_INFO_BTF=y (most distributions since 2020; kernel 5.8 or newer)"
    )]
    NoBtf { path: PathBuf },
    #[error(
        "no cgroup v2 hierarchy is mounted (looked for a cgroup2 line in /proc/mounts): mount one with \
         `mount -t cgroup2 none /sys/fs/cgroup`, or boot with systemd.unified_cgroup_hierarchy=1; \
         in a pod, mount the host's /sys/fs/cgroup"
    )]
    NoCgroup2,
    #[error("cannot read {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot mount {fstype} at {path}: {source}; mount it on the host (or mount the host's into the pod)")]
    Mount {
        fstype: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

const CAP_NET_ADMIN: u32 = 12;
const CAP_SYS_ADMIN: u32 = 21;
const CAP_PERFMON: u32 = 38;
const CAP_BPF: u32 = 39;

/// What the kernel checks, and where (measured on 6.18, the same since 5.8):
/// CAP_BPF to create the maps; CAP_PERFMON to load the tracepoint programs;
/// CAP_NET_ADMIN to load the cgroup sock_addr and cgroup_skb programs.
/// CAP_SYS_ADMIN passes all three checks.
const NEEDED: [(u32, &str); 3] = [(CAP_BPF, "CAP_BPF"), (CAP_PERFMON, "CAP_PERFMON"), (CAP_NET_ADMIN, "CAP_NET_ADMIN")];

/// Effective capability set of this process, from /proc/self/status.
pub fn effective_capabilities() -> Result<u64, PreflightError> {
    let path = Path::new("/proc/self/status");
    let status = fs::read_to_string(path).map_err(|source| PreflightError::Read { path: path.into(), source })?;
    Ok(parse_cap_eff(&status).unwrap_or(0))
}

fn parse_cap_eff(status: &str) -> Option<u64> {
    status.lines().find_map(|l| l.strip_prefix("CapEff:")).and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
}

fn has(caps: u64, cap: u32) -> bool {
    caps & (1u64 << cap) != 0
}

/// The needed capabilities `caps` lacks, by name.
fn missing_capabilities(caps: u64) -> Vec<&'static str> {
    if has(caps, CAP_SYS_ADMIN) {
        return Vec::new();
    }
    NEEDED.iter().filter(|(cap, _)| !has(caps, *cap)).map(|(_, name)| *name).collect()
}

/// Fails unless the process may load and attach BPF programs, naming what it lacks.
pub fn check_capabilities() -> Result<(), PreflightError> {
    let effective = effective_capabilities()?;
    let missing = missing_capabilities(effective);
    if missing.is_empty() { Ok(()) } else { Err(PreflightError::MissingCapabilities { missing, effective }) }
}

/// Lifts RLIMIT_MEMLOCK as far as this process may, and returns the soft limit it ends with
/// (`None`: unlimited). Kernels before 5.11 charge BPF maps to it (later ones to the memory
/// cgroup, where it changes nothing). Raising the hard limit takes CAP_SYS_RESOURCE; without
/// it the soft limit goes up to the hard one.
pub fn raise_memlock() -> Option<u64> {
    let unlimited = libc::rlimit { rlim_cur: libc::RLIM_INFINITY, rlim_max: libc::RLIM_INFINITY };
    // SAFETY: setrlimit/getrlimit read or write only the rlimit structs passed.
    unsafe {
        if libc::setrlimit(libc::RLIMIT_MEMLOCK, &unlimited) != 0 {
            let mut current = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
            if libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut current) == 0 {
                let raised = libc::rlimit { rlim_cur: current.rlim_max, rlim_max: current.rlim_max };
                libc::setrlimit(libc::RLIMIT_MEMLOCK, &raised);
            }
        }
        let mut now = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
        libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut now);
        (now.rlim_cur != libc::RLIM_INFINITY).then_some(now.rlim_cur)
    }
}

/// Fails unless the kernel has BTF (CO-RE relocation needs it).
pub fn check_btf() -> Result<(), PreflightError> {
    let path = PathBuf::from("/sys/kernel/btf/vmlinux");
    if path.exists() { Ok(()) } else { Err(PreflightError::NoBtf { path }) }
}

/// The cgroup2 mount point, from /proc/mounts (`/sys/fs/cgroup` on most nodes,
/// `/sys/fs/cgroup/unified` on hybrid layouts).
pub fn find_cgroup2_root() -> Result<PathBuf, PreflightError> {
    let path = Path::new("/proc/mounts");
    let mounts = fs::read_to_string(path).map_err(|source| PreflightError::Read { path: path.into(), source })?;
    cgroup2_from_mounts(&mounts).ok_or(PreflightError::NoCgroup2)
}

fn cgroup2_from_mounts(mounts: &str) -> Option<PathBuf> {
    mount_entries(mounts).find(|(_, fstype)| *fstype == "cgroup2").map(|(mnt, _)| PathBuf::from(mnt))
}

/// (mount point, filesystem type) of each line of a /proc/mounts table.
fn mount_entries(mounts: &str) -> impl Iterator<Item = (String, &str)> {
    mounts.lines().filter_map(|line| {
        let mut it = line.split_whitespace();
        let (_dev, mnt, fstype) = (it.next()?, it.next()?, it.next()?);
        Some((unescape_mount(mnt), fstype))
    })
}

/// /proc/mounts escapes spaces and the like as octal (`\040`).
fn unescape_mount(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 3 < b.len() && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c)) {
            let v = (b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0');
            out.push(char::from(v));
            i += 4;
        } else {
            out.push(char::from(b[i]));
            i += 1;
        }
    }
    out
}

fn is_mounted(path: &Path, fstype: &str) -> bool {
    fs::read_to_string("/proc/mounts")
        .is_ok_and(|m| mount_entries(&m).any(|(mnt, t)| t == fstype && path.to_str() == Some(mnt.as_str())))
}

fn mount(fstype: &'static str, path: &Path) -> Result<(), PreflightError> {
    let err = |source| PreflightError::Mount { fstype, path: path.into(), source };
    fs::create_dir_all(path).map_err(err)?;
    let c_path = std::ffi::CString::new(path.as_os_str().as_encoded_bytes())
        .map_err(|e| err(io::Error::new(io::ErrorKind::InvalidInput, e)))?;
    let c_type = std::ffi::CString::new(fstype).map_err(|e| err(io::Error::new(io::ErrorKind::InvalidInput, e)))?;
    // SAFETY: both strings are valid NUL-terminated C strings; no data pointer.
    let rc = unsafe { libc::mount(c"none".as_ptr(), c_path.as_ptr(), c_type.as_ptr(), 0, std::ptr::null()) };
    if rc == 0 { Ok(()) } else { Err(err(io::Error::last_os_error())) }
}

/// Mounts a bpf filesystem at `bpffs` when none is mounted there.
pub fn ensure_bpffs(bpffs: &Path) -> Result<(), PreflightError> {
    if is_mounted(bpffs, "bpf") {
        return Ok(());
    }
    info!(path = %bpffs.display(), "mounting bpffs");
    mount("bpf", bpffs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memlock_is_raised_to_the_hard_limit_at_least() {
        let mut before = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
        // SAFETY: getrlimit writes only the struct passed.
        unsafe { libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut before) };
        let soft = raise_memlock();
        let hard = (before.rlim_max != libc::RLIM_INFINITY).then_some(before.rlim_max);
        match (soft, hard) {
            (None, _) => {}
            (Some(soft), Some(hard)) => assert!(soft >= hard, "soft {soft} stayed below the hard limit {hard}"),
            (Some(soft), None) => panic!("soft limit {soft} with no hard limit"),
        }
    }

    #[test]
    fn finds_cgroup2_on_hybrid_and_unified_layouts() {
        let hybrid = "tmpfs /sys/fs/cgroup tmpfs rw 0 0\ncgroup /sys/fs/cgroup/cpu cgroup rw,cpu 0 0\ncgroup2 /sys/fs/cgroup/unified cgroup2 rw 0 0\n";
        assert_eq!(cgroup2_from_mounts(hybrid), Some(PathBuf::from("/sys/fs/cgroup/unified")));
        let unified = "cgroup2 /sys/fs/cgroup cgroup2 rw,nsdelegate 0 0\n";
        assert_eq!(cgroup2_from_mounts(unified), Some(PathBuf::from("/sys/fs/cgroup")));
        assert_eq!(cgroup2_from_mounts("proc /proc proc rw 0 0\n"), None);
        let escaped = "none /mnt/my\\040cgroup cgroup2 rw 0 0\n";
        assert_eq!(cgroup2_from_mounts(escaped), Some(PathBuf::from("/mnt/my cgroup")));
    }

    #[test]
    fn reads_effective_capabilities() {
        let status = "Name:\tx\nCapInh:\t0000000000000000\nCapEff:\t000001ffffffffff\n";
        let caps = parse_cap_eff(status).expect("CapEff parsed");
        assert!(has(caps, CAP_BPF) && has(caps, CAP_PERFMON) && has(caps, CAP_NET_ADMIN));
        assert_eq!(parse_cap_eff("CapEff:\t0000000000000000\n"), Some(0));
    }

    #[test]
    fn names_each_missing_capability() {
        let bit = |c: u32| 1u64 << c;
        let minimal = bit(CAP_BPF) | bit(CAP_PERFMON) | bit(CAP_NET_ADMIN);
        assert!(missing_capabilities(minimal).is_empty());
        assert!(missing_capabilities(bit(CAP_SYS_ADMIN)).is_empty(), "CAP_SYS_ADMIN passes every check");
        assert_eq!(missing_capabilities(minimal & !bit(CAP_PERFMON)), ["CAP_PERFMON"]);
        assert_eq!(missing_capabilities(bit(CAP_NET_ADMIN)), ["CAP_BPF", "CAP_PERFMON"]);
        let err = PreflightError::MissingCapabilities { missing: vec!["CAP_NET_ADMIN"], effective: 0 };
        let msg = err.to_string();
        assert!(
            msg.contains("lacks CAP_NET_ADMIN (effective capabilities 0x0)")
                && msg.contains("[BPF, PERFMON, NET_ADMIN]"),
            "{msg}"
        );
    }
}
