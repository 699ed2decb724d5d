//! Running the real agent binary against real kernel traffic.

// Shared by several test binaries, each using part of it.
#![allow(dead_code)]

use std::{
    io::{BufRead, BufReader},
    path::{Path, PathBuf},
    process::{Child, ChildStderr, Command, Stdio},
    sync::{Arc, Mutex},
    thread::{self, JoinHandle},
    time::{Duration, Instant},
};

use serde_json::Value;

pub use mapper_lab::netns::bpf_available;

/// The `mapper-lab` binary, built beside the agent (`cargo build --workspace --bins`).
pub fn lab_bin() -> PathBuf {
    let p = Path::new(env!("CARGO_BIN_EXE_mapper-agent")).with_file_name("mapper-lab");
    assert!(
        p.exists(),
        "{} is missing: run `cargo build --workspace --bins` before the tests (scripts/test.sh does)",
        p.display()
    );
    p
}

/// `mapper-agent --output jsonl --no-report` pinned under `bpffs`, stdout and stderr piped.
pub fn agent_command(bpffs: &Path, extra: &[&str]) -> Command {
    let interval = if extra.contains(&"--report-interval") { &[][..] } else { &["--report-interval", "100ms"][..] };
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_mapper-agent"));
    cmd.args(["--output", "jsonl", "--no-report", "--node-name", "test-node"])
        .args(interval)
        .args(extra)
        .arg("--bpffs")
        .arg(bpffs)
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: i32,
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

/// Runs `cmd` (started by root) with exactly the capabilities `caps`, as a
/// container with `capabilities: {drop: [ALL], add: [...]}` runs, or as
/// `setpriv --bounding-set -all,+... --inh-caps -all --no-new-privs` does: every
/// other capability leaves the bounding set, the inheritable and ambient sets are
/// cleared, and exec then gives root a permitted and effective set equal to the
/// bounding set.
pub fn restrict_capabilities(cmd: &mut Command, caps: &[u32]) {
    use std::os::unix::process::CommandExt;
    let last: u32 = std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .expect("read cap_last_cap")
        .trim()
        .parse()
        .expect("cap_last_cap is a number");
    let drop: Vec<u32> = (0..=last).filter(|c| !caps.contains(c)).collect();
    // SAFETY: only async-signal-safe system calls (prctl, capget, capset) between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            let fail = || Err(std::io::Error::last_os_error());
            for &c in &drop {
                if libc::prctl(libc::PR_CAPBSET_DROP, libc::c_ulong::from(c), 0, 0, 0) != 0 {
                    return fail();
                }
            }
            if libc::prctl(libc::PR_CAP_AMBIENT, libc::PR_CAP_AMBIENT_CLEAR_ALL as libc::c_ulong, 0, 0, 0) != 0 {
                return fail();
            }
            let mut header = CapHeader { version: 0x2008_0522, pid: 0 };
            let mut data = [CapData::default(); 2];
            if libc::syscall(libc::SYS_capget, &mut header, data.as_mut_ptr()) != 0 {
                return fail();
            }
            for d in &mut data {
                d.inheritable = 0;
            }
            if libc::syscall(libc::SYS_capset, &mut header, data.as_ptr()) != 0 {
                return fail();
            }
            if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1 as libc::c_ulong, 0, 0, 0) != 0 {
                return fail();
            }
            Ok(())
        });
    }
}

/// A capability set as a bit mask (the format of `CapEff:` in /proc/PID/status).
pub fn cap_mask(caps: &[u32]) -> u64 {
    caps.iter().fold(0, |m, c| m | (1u64 << c))
}

/// The effective capabilities of process `pid`.
pub fn effective_capabilities(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read status");
    let hex = status.lines().find_map(|l| l.strip_prefix("CapEff:")).expect("CapEff line");
    u64::from_str_radix(hex.trim(), 16).expect("CapEff is hex")
}

/// Mounts bpffs when missing, as scripts/lib.sh does: an agent without
/// CAP_SYS_ADMIN cannot mount it (in a pod it gets the host's).
pub fn ensure_kernel_mounts() {
    mapper_agent::preflight::ensure_bpffs(Path::new("/sys/fs/bpf")).expect("mount bpffs");
}

/// Runs `cmd` to completion, killing it after `timeout`; `None` if it was still running.
pub fn output_within(mut cmd: Command, timeout: Duration) -> Option<std::process::Output> {
    let mut child = cmd.spawn().expect("spawn");
    let start = Instant::now();
    while child.try_wait().expect("try_wait").is_none() {
        if start.elapsed() > timeout {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        thread::sleep(Duration::from_millis(50));
    }
    Some(child.wait_with_output().expect("output"))
}

/// A running agent whose JSON lines are collected.
pub struct Agent {
    child: Option<Child>,
    lines: Arc<Mutex<Vec<Value>>>,
    reader: Option<JoinHandle<()>>,
    log: Log,
    pub bpffs: PathBuf,
    keep_pins: bool,
}

/// A child's stderr, collected as it comes.
#[derive(Debug, Clone, Default)]
pub struct Log(Arc<Mutex<String>>);

impl Log {
    /// Collects `stderr` from now on.
    pub fn collect(stderr: ChildStderr) -> Self {
        let log = Self::default();
        let sink = log.0.clone();
        thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let mut l = sink.lock().unwrap_or_else(|p| p.into_inner());
                l.push_str(&line);
                l.push('\n');
            }
        });
        log
    }

    /// What was logged so far.
    pub fn text(&self) -> String {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Waits until `needle` was logged; panics with the log after `timeout`.
    pub fn wait_for(&self, needle: &str, timeout: Duration, what: &str) {
        let start = Instant::now();
        while !self.text().contains(needle) {
            assert!(
                start.elapsed() < timeout,
                "{what} did not log {needle:?} within {timeout:?}; its log:\n{}",
                self.text()
            );
            thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Agent {
    /// Starts `mapper-agent --output jsonl` pinned under its own bpffs path and
    /// waits until its programs are attached.
    pub fn start(name: &str) -> Self {
        let bpffs = PathBuf::from(format!("/sys/fs/bpf/mapper-test-{}-{name}", std::process::id()));
        Self::start_at(bpffs)
    }

    /// Same, at a given pin path (to resume what another agent left).
    pub fn start_at(bpffs: PathBuf) -> Self {
        Self::start_with(bpffs, &[])
    }

    /// Same, with extra flags.
    pub fn start_with(bpffs: PathBuf, extra: &[&str]) -> Self {
        Self::spawn(agent_command(&bpffs, extra), bpffs)
    }

    /// Same, with exactly the capabilities `caps` (see [`restrict_capabilities`]).
    pub fn start_with_capabilities(bpffs: PathBuf, extra: &[&str], caps: &[u32]) -> Self {
        let mut cmd = agent_command(&bpffs, extra);
        restrict_capabilities(&mut cmd, caps);
        Self::spawn(cmd, bpffs)
    }

    fn spawn(mut cmd: Command, bpffs: PathBuf) -> Self {
        let mut child = cmd.spawn().expect("spawn mapper-agent");
        let log = Log::collect(child.stderr.take().expect("stderr"));
        let lines = Arc::new(Mutex::new(Vec::new()));
        let out = child.stdout.take().expect("stdout");
        let sink = lines.clone();
        let reader = thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                let v: Value = serde_json::from_str(&line)
                    .unwrap_or_else(|e| panic!("agent printed a line that is not JSON ({e}): {line}"));
                sink.lock().unwrap_or_else(|p| p.into_inner()).push(v);
            }
        });
        let agent = Self { child: Some(child), lines, reader: Some(reader), log, bpffs, keep_pins: false };
        agent.wait_log("agent running", Duration::from_secs(30));
        agent
    }

    /// The agent's process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// The agent's stderr so far.
    pub fn log(&self) -> String {
        self.log.text()
    }

    fn wait_log(&self, needle: &str, timeout: Duration) {
        self.log.wait_for(needle, timeout, "agent");
    }

    fn finish(mut self, signal: i32) -> Vec<Value> {
        let mut child = self.child.take().expect("running");
        // SAFETY: plain kill(2) on our own child.
        unsafe { libc::kill(child.id() as i32, signal) };
        let status = child.wait().expect("wait agent");
        if let Some(r) = self.reader.take() {
            r.join().expect("reader thread");
        }
        if signal == libc::SIGTERM {
            assert!(status.success(), "agent exited with {status}; its log:\n{}", self.log());
        }
        std::mem::take(&mut *self.lines.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// SIGTERM: the agent drains one last time and exits (pins are removed by Drop).
    pub fn stop(self) -> Vec<Value> {
        self.finish(libc::SIGTERM)
    }

    /// SIGKILL: no last drain; pins stay for the next agent.
    pub fn kill(mut self) -> Vec<Value> {
        self.keep_pins = true;
        self.finish(libc::SIGKILL)
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        // Detaches the programs this agent pinned, unless the next agent is to
        // resume them.
        if !self.keep_pins {
            let _ = std::fs::remove_dir_all(&self.bpffs);
        }
    }
}

/// Flow lines matching every (field, value) given.
pub fn flows<'a>(lines: &'a [Value], filter: &[(&str, Value)]) -> Vec<&'a Value> {
    lines.iter().filter(|l| l["record"] == "flow" && filter.iter().all(|(k, v)| &l[*k] == v)).collect()
}

/// Sum of a numeric field over lines.
pub fn sum(lines: &[&Value], field: &str) -> u64 {
    lines.iter().map(|l| l[field].as_u64().unwrap_or(0)).sum()
}

/// Runs `mapper-lab call` to completion and returns its summary.
pub fn call(mut cmd: Command, args: &[&str]) -> Value {
    // A loaded CI machine can be slow to resolve a fresh namespace's neighbours.
    let out = cmd
        .arg("call")
        .args(["--timeout", "5s"])
        .args(args)
        .stderr(Stdio::inherit())
        .output()
        .expect("run mapper-lab call");
    assert!(out.status.success(), "mapper-lab call {args:?} failed: {out:?}");
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("call summary not JSON ({e}): {:?}", out.stdout))
}

/// Starts `mapper-lab serve` and waits until it is listening.
pub fn serve(mut cmd: Command, args: &[&str]) -> mapper_lab::netns::Proc {
    let mut child = cmd
        .arg("serve")
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn mapper-lab serve");
    let mut first = String::new();
    BufReader::new(child.stdout.take().expect("stdout")).read_line(&mut first).expect("read ready");
    assert_eq!(first.trim(), "ready", "mapper-lab serve {args:?} did not start");
    mapper_lab::netns::Proc(child)
}

/// `GET path` from an HTTP/1.0 endpoint: the whole answer, or `None` when it cannot be had.
pub fn http_get(addr: &str, path: &str) -> Option<String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    Some(out)
}

/// The value of the first metric line of `text` that starts with `name_and_labels` (0 if none).
pub fn metric_in(text: &str, name_and_labels: &str) -> u64 {
    text.lines()
        .find(|l| l.starts_with(name_and_labels))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse::<f64>().ok())
        .map_or(0, |v| v as u64)
}
