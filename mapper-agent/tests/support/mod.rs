//! Running the real agent binary against real kernel traffic.

use std::{
    io::{BufRead, BufReader},
    path::{Path, PathBuf},
    process::{Child, ChildStderr, Command, Stdio},
    sync::{Arc, Mutex},
    thread::{self, JoinHandle},
    time::{Duration, Instant},
};

use serde_json::Value;

/// Whether this test can touch the kernel. With `MAPPER_REQUIRE_BPF=1` (CI) a
/// missing requirement fails the test; otherwise it is skipped with the reason.
pub fn bpf_available(test: &str) -> bool {
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

/// A running agent whose JSON lines are collected.
pub struct Agent {
    child: Option<Child>,
    lines: Arc<Mutex<Vec<Value>>>,
    reader: Option<JoinHandle<()>>,
    log: Arc<Mutex<String>>,
    pub bpffs: PathBuf,
    keep_pins: bool,
}

fn collect_stderr(stderr: ChildStderr, log: Arc<Mutex<String>>) {
    thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let mut l = log.lock().unwrap_or_else(|p| p.into_inner());
            l.push_str(&line);
            l.push('\n');
        }
    });
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
        let interval = if extra.contains(&"--report-interval") { &[][..] } else { &["--report-interval", "100ms"][..] };
        let mut child = Command::new(env!("CARGO_BIN_EXE_mapper-agent"))
            .args(["--output", "jsonl", "--no-report", "--node-name", "test-node"])
            .args(interval)
            .args(extra)
            .arg("--bpffs")
            .arg(&bpffs)
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn mapper-agent");
        let log = Arc::new(Mutex::new(String::new()));
        collect_stderr(child.stderr.take().expect("stderr"), log.clone());
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

    /// The agent's stderr so far.
    pub fn log(&self) -> String {
        self.log.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn wait_log(&self, needle: &str, timeout: Duration) {
        let start = Instant::now();
        while !self.log().contains(needle) {
            assert!(
                start.elapsed() < timeout,
                "agent did not log {needle:?} within {timeout:?}; its log:\n{}",
                self.log()
            );
            thread::sleep(Duration::from_millis(50));
        }
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
