//! Network namespaces and cgroups made by a test or the lab, removed when
//! dropped (also when the test fails), and processes started inside them.

use std::{
    fs,
    io::{self, Write as _},
    os::{fd::AsRawFd, unix::process::CommandExt},
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
};

/// Why a lab step failed.
#[derive(Debug, thiserror::Error)]
pub enum LabError {
    #[error("`{command}` failed: {stderr}")]
    Command { command: String, stderr: String },
    #[error("cannot run `{command}` (is iproute2/iptables installed? run as root)")]
    Spawn {
        command: String,
        #[source]
        source: io::Error,
    },
    #[error("{path}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("no cgroup v2 hierarchy in /proc/mounts")]
    NoCgroup2,
}

fn describe(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    s
}

/// Runs a command to completion; fails with its stderr when it fails.
/// Writes `path` whole: to `.<name>.tmp` beside it, then renamed over it, so a process
/// polling the file never reads half of it.
pub fn write_whole(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = path.with_file_name(format!(".{name}.tmp"));
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)
}

pub fn run(cmd: &mut Command) -> Result<Output, LabError> {
    let command = describe(cmd);
    let out =
        cmd.stdin(Stdio::null()).output().map_err(|source| LabError::Spawn { command: command.clone(), source })?;
    if !out.status.success() {
        return Err(LabError::Command { command, stderr: String::from_utf8_lossy(&out.stderr).trim().to_string() });
    }
    Ok(out)
}

/// `ip <args>`.
pub fn ip(args: &[&str]) -> Result<Output, LabError> {
    run(Command::new("ip").args(args))
}

/// Whether a kernel test (`test`, for the message) can run here: root, a kernel with BTF and
/// iproute2. Otherwise the test is skipped with the reason printed, or fails when
/// `MAPPER_REQUIRE_BPF=1` (CI) says a skipped kernel test is a failure.
pub fn bpf_available(test: &str) -> bool {
    // SAFETY: geteuid has no preconditions.
    let reason = if unsafe { libc::geteuid() } != 0 {
        Some("not running as root")
    } else if !Path::new("/sys/kernel/btf/vmlinux").exists() {
        Some("kernel has no BTF")
    } else if Command::new("ip").arg("-V").output().is_err() {
        Some("iproute2 is not installed")
    } else {
        None
    };
    match reason {
        None => true,
        Some(r) if std::env::var("MAPPER_REQUIRE_BPF").as_deref() == Ok("1") => {
            panic!("{test}: needs root and BPF but {r} (MAPPER_REQUIRE_BPF=1)")
        }
        Some(r) => {
            eprintln!("SKIPPED {test}: {r} (set MAPPER_REQUIRE_BPF=1 to make this a failure)");
            false
        }
    }
}

/// A named network namespace (`ip netns add`), deleted on drop.
#[derive(Debug)]
pub struct Netns {
    name: String,
    keep: bool,
}

impl Netns {
    /// Creates `name`, replacing a leftover of the same name from a crashed run.
    pub fn create(name: &str) -> Result<Self, LabError> {
        if Path::new("/run/netns").join(name).exists() {
            let _ = ip(&["netns", "del", name]);
        }
        ip(&["netns", "add", name])?;
        let ns = Self { name: name.to_string(), keep: false };
        ns.exec(&["ip", "link", "set", "lo", "up"])?;
        Ok(ns)
    }

    /// A handle on an existing namespace that is left alone when dropped.
    pub fn attach(name: &str) -> Self {
        Self { name: name.to_string(), keep: true }
    }

    /// Leaves the namespace in place when dropped (the lab's `up`).
    pub fn keep(&mut self) {
        self.keep = true;
    }

    /// The namespace's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its bind mount (`/run/netns/<name>`).
    pub fn path(&self) -> PathBuf {
        Path::new("/run/netns").join(&self.name)
    }

    /// The namespace's inode: what the agent reports as `netns`.
    pub fn inode(&self) -> Result<u64, LabError> {
        use std::os::unix::fs::MetadataExt;
        let p = self.path();
        fs::metadata(&p).map(|m| m.ino()).map_err(|source| LabError::Io { path: p, source })
    }

    /// Runs `args` inside the namespace (`ip netns exec`) to completion.
    pub fn exec(&self, args: &[&str]) -> Result<Output, LabError> {
        run(Command::new("ip").args(["netns", "exec", &self.name]).args(args))
    }

    /// A command that will start inside this namespace and, when given, in
    /// `cgroup` (a cgroup v2 directory), as kubelet places a pod's processes.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>, cgroup: Option<&Path>) -> Result<Command, LabError> {
        let ns_path = self.path();
        let ns_file = fs::File::open(&ns_path).map_err(|source| LabError::Io { path: ns_path, source })?;
        let procs = match cgroup {
            Some(dir) => {
                let p = dir.join("cgroup.procs");
                Some(fs::OpenOptions::new().write(true).open(&p).map_err(|source| LabError::Io { path: p, source })?)
            }
            None => None,
        };
        let mut cmd = Command::new(program);
        // SAFETY: between fork and exec the closure only makes two raw system
        // calls on file descriptors opened beforehand (no allocation, no locks).
        unsafe {
            cmd.pre_exec(move || {
                if let Some(f) = &procs
                    && libc::write(f.as_raw_fd(), b"0".as_ptr().cast(), 1) != 1
                {
                    return Err(io::Error::last_os_error());
                }
                if libc::setns(ns_file.as_raw_fd(), libc::CLONE_NEWNET) != 0 {
                    return Err(io::Error::last_os_error());
                }
                // Its own session: a lab server outlives the `up` that started it.
                libc::setsid();
                Ok(())
            });
        }
        Ok(cmd)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        if !self.keep {
            let _ = ip(&["netns", "del", &self.name]);
        }
    }
}

/// The cgroup2 mount point, from /proc/mounts.
pub fn cgroup2_root() -> Result<PathBuf, LabError> {
    let mounts =
        fs::read_to_string("/proc/mounts").map_err(|source| LabError::Io { path: "/proc/mounts".into(), source })?;
    mounts
        .lines()
        .find_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() > 2 && f[2] == "cgroup2").then(|| PathBuf::from(f[1]))
        })
        .ok_or(LabError::NoCgroup2)
}

/// A cgroup v2 subtree, removed (deepest first) on drop once its processes
/// have been killed.
#[derive(Debug)]
pub struct CgroupTree {
    base: PathBuf,
    keep: bool,
}

impl CgroupTree {
    /// Creates `<cgroup2 root>/<name>`.
    pub fn create(name: &str) -> Result<Self, LabError> {
        let base = cgroup2_root()?.join(name);
        if base.exists() {
            remove_cgroup_tree(&base);
        }
        fs::create_dir_all(&base).map_err(|source| LabError::Io { path: base.clone(), source })?;
        Ok(Self { base, keep: false })
    }

    /// A handle on an existing tree that is left alone when dropped.
    pub fn attach(base: PathBuf) -> Self {
        Self { base, keep: true }
    }

    /// Leaves the tree in place when dropped (the lab's `up`).
    pub fn keep(&mut self) {
        self.keep = true;
    }

    /// Creates (if needed) and returns `<base>/<rel>`.
    pub fn dir(&self, rel: &str) -> Result<PathBuf, LabError> {
        let p = self.base.join(rel.trim_start_matches('/'));
        fs::create_dir_all(&p).map_err(|source| LabError::Io { path: p.clone(), source })?;
        Ok(p)
    }

    /// The subtree's root.
    pub fn base(&self) -> &Path {
        &self.base
    }
}

/// Kills every process in a cgroup subtree and removes its directories.
pub fn remove_cgroup_tree(base: &Path) {
    let mut dirs = Vec::new();
    let mut stack = vec![base.to_path_buf()];
    while let Some(d) = stack.pop() {
        if let Ok(entries) = fs::read_dir(&d) {
            for e in entries.flatten() {
                if e.file_type().is_ok_and(|t| t.is_dir()) {
                    stack.push(e.path());
                }
            }
        }
        dirs.push(d);
    }
    for d in &dirs {
        // cgroup.kill (5.14+) kills the whole subtree at once.
        let _ = fs::OpenOptions::new().write(true).open(d.join("cgroup.kill")).and_then(|mut f| f.write_all(b"1"));
    }
    for d in dirs.iter().rev() {
        for _ in 0..50 {
            if fs::remove_dir(d).is_ok() || !d.exists() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }
}

impl Drop for CgroupTree {
    fn drop(&mut self) {
        if !self.keep {
            remove_cgroup_tree(&self.base);
        }
    }
}

/// A child process killed on drop.
#[derive(Debug)]
pub struct Proc(pub Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
