//! The agent's loop: drain the flow buffers every interval, attribute each
//! local end, spool the flows and wake the reporter ([`crate::reporter`]),
//! and only then delete them from the kernel; read DNS answers as they arrive;
//! on shutdown, stop being ready, drain a last time and flush for a bounded time.

use std::{
    future::Future,
    io::{self, Write},
    net::SocketAddr,
    path::PathBuf,
    sync::{Arc, Mutex, atomic::Ordering},
    time::Duration,
};

use aya::maps::{MapData, RingBuf};
use mapper_ebpf_common::{DnsEvent, Stat};
use serde::Serialize;
use tokio::io::{Interest, unix::AsyncFd};
use tracing::{debug, error, info, warn};

use crate::{
    attribution::CgroupResolver,
    capture::{Capture, CaptureConfig, CaptureError, Drained, FlowMaps, KernelMaps},
    dns::DnsRecord,
    flow::{Clock, FlowRecord},
    metrics::Metrics,
    pending::Pending,
    preflight::{self, PreflightError},
    report,
    reporter::{open_pending, publish, start_reporter},
    spool::SpoolError,
    token::TokenFile,
};

/// How long a drain waits after switching buffers for programs still running
/// on the old one (they run for microseconds, with preemption disabled).
const GRACE: Duration = Duration::from_millis(2);

/// Where drained flows go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    /// Count them in metrics only.
    None,
    /// One JSON object per line on stdout.
    Jsonl,
}

/// Where and how to report to the central mapper.
#[derive(Debug, Clone)]
pub struct ReportConfig {
    /// `http://host:port` of mapper-server.
    pub url: String,
    /// Bearer token sent with every batch, re-read from its file before each send.
    pub token: Option<TokenFile>,
    /// Flows kept while the server is unreachable before batches are merged.
    pub max_pending_flows: usize,
    /// Where drained batches are kept until acknowledged (`None`: memory only,
    /// lost with the process).
    pub spool_dir: Option<PathBuf>,
}

/// Everything the agent needs to run.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// Report to the central mapper (`None`: output only).
    pub report: Option<ReportConfig>,
    /// The node's own network namespace (`/proc/self/ns/net` in a hostNetwork
    /// pod, `/proc/1/ns/net` on the host): flows whose local end is in it are
    /// marked host-network.
    pub host_netns: Option<std::path::PathBuf>,
    pub node_name: String,
    pub report_interval: Duration,
    pub output: Output,
    pub capture: CaptureConfig,
    pub metrics_listen: Option<SocketAddr>,
    /// Detach the programs and free the maps on exit (instead of leaving them
    /// pinned for the next agent).
    pub detach_on_exit: bool,
    /// Leave the capability check to the kernel (the load then fails with the
    /// kernel's own error when a capability is missing).
    pub skip_capability_check: bool,
    /// On shutdown, how long the last batches may take to be acknowledged
    /// before the agent exits, leaving them spooled.
    pub shutdown_flush: Duration,
    /// For tests: abort the process right after a batch with flows is
    /// spooled, before its flows are deleted from the kernel (the narrowest
    /// window a kill -9 can hit).
    pub crash_after_spool: bool,
}

/// Why the agent stopped.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error(transparent)]
    Preflight(#[from] PreflightError),
    #[error(transparent)]
    Capture(#[from] CaptureError),
    #[error("cannot write to stdout")]
    Stdout(#[source] io::Error),
    #[error("invalid --mapper-url {url:?}: {problem}")]
    BadUrl { url: String, problem: String },
    #[error("cannot wait on the DNS ring buffer")]
    Dns(#[source] io::Error),
    #[error(transparent)]
    Spool(#[from] SpoolError),
    #[error("cannot serve metrics on {addr}")]
    Metrics {
        addr: SocketAddr,
        #[source]
        source: io::Error,
    },
}

/// Writes records as JSON lines, flushing once per batch.
fn write_jsonl<T: Serialize>(records: &[T]) -> Result<(), AgentError> {
    let stdout = io::stdout();
    let mut out = io::BufWriter::new(stdout.lock());
    for r in records {
        serde_json::to_writer(&mut out, r).map_err(|e| AgentError::Stdout(e.into()))?;
        out.write_all(b"\n").map_err(AgentError::Stdout)?;
    }
    out.flush().map_err(AgentError::Stdout)
}

/// An error and its causes, outermost first ("map flows_a: BPF_MAP_LOOKUP_BATCH failed: ...").
fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        out.push_str(": ");
        out.push_str(&c.to_string());
        cause = c.source();
    }
    out
}

/// Checks the node, then loads (or resumes) the capture.
pub fn start_capture(cfg: &CaptureConfig, check_capabilities: bool) -> Result<Capture, AgentError> {
    if check_capabilities {
        preflight::check_capabilities()?;
    }
    preflight::check_btf()?;
    match preflight::raise_memlock() {
        None => debug!("RLIMIT_MEMLOCK unlimited"),
        Some(bytes) => debug!(bytes, "RLIMIT_MEMLOCK (matters before kernel 5.11; CAP_SYS_RESOURCE lifts it)"),
    }
    preflight::ensure_bpffs(&bpffs_mount_point(&cfg.bpffs))?;
    Ok(Capture::open(cfg)?)
}

/// The inode number of a network namespace file (what the kernel programs record as `netns`).
fn netns_inode(path: &std::path::Path) -> io::Result<u32> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).map(|m| m.ino() as u32)
}

/// The bpffs mount point above a pin directory (`/sys/fs/bpf` for the default).
fn bpffs_mount_point(pin: &std::path::Path) -> std::path::PathBuf {
    pin.ancestors()
        .find(|p| p.ends_with("sys/fs/bpf"))
        .map(std::path::Path::to_path_buf)
        .unwrap_or_else(|| pin.to_path_buf())
}

/// One drain round after another, over the capture's maps (`M`: the kernel's, or a fake in
/// the tests of the round).
struct Drainer<M = KernelMaps> {
    node: String,
    capture: Capture<M>,
    cgroups: Arc<Mutex<CgroupResolver>>,
    metrics: Arc<Metrics>,
    output: Output,
    kernel_seen: Vec<(Stat, u64)>,
    pending: Option<Arc<Mutex<Pending>>>,
    /// Wakes the reporter when a drain queued a batch.
    wake: Option<Arc<tokio::sync::Notify>>,
    dns_out: Arc<Mutex<Vec<mapper_proto::v1::DnsAnswer>>>,
    host_netns: Option<u32>,
    crash_after_spool: bool,
    local_servers: crate::flow::LocalServers,
}

impl<M: FlowMaps> Drainer<M> {
    /// One round: drain, attribute, output, spool, then delete from the kernel.
    fn round(&mut self) -> Result<usize, AgentError> {
        // Nothing recorded since the last drain (the programs count every new entry): no
        // flip, no wait, no read; DNS answers waiting still go.
        let idle = self.capture.nothing_recorded()?;
        let drained = if idle { Drained::default() } else { self.capture.drain(GRACE)? };
        let clock = Clock::now();
        let mut records = Vec::with_capacity(drained.flows.len());
        {
            let mut cg = self.cgroups.lock().unwrap_or_else(|p| p.into_inner());
            cg.prepare(drained.flows.iter().flat_map(|(k, _)| [k.cgroup_id, k.peer_cgroup_id]));
            for (key, val) in &drained.flows {
                let info = cg.get(key.cgroup_id);
                let peer = cg.get(key.peer_cgroup_id);
                if let Some(r) = FlowRecord::from_kernel(&self.node, key, val, &clock, info, peer) {
                    records.push(r);
                }
            }
        }
        self.local_servers.apply(&mut records);
        if self.output == Output::Jsonl {
            write_jsonl(&records)?;
        }
        if let Some(p) = &self.pending {
            let flows = records.iter().map(|r| report::flow_to_pb(r, self.host_netns)).collect();
            let kernel = drained.read.iter().map(|(k, v)| crate::capture::fingerprint(k, v)).collect();
            let dns = std::mem::take(&mut *self.dns_out.lock().unwrap_or_else(|p| p.into_inner()));
            let mut p = p.lock().unwrap_or_else(|p| p.into_inner());
            let pushed = p.push(flows, dns.clone(), kernel);
            publish(&self.metrics, &p);
            drop(p);
            if let Err(e) = pushed {
                // Not safe on disk: the flows stay in the kernel for the next
                // drain, and the DNS answers go back in line.
                let mut out = self.dns_out.lock().unwrap_or_else(|p| p.into_inner());
                let later = std::mem::replace(&mut *out, dns);
                let room = report::MAX_PENDING_DNS.saturating_sub(out.len());
                out.extend(later.into_iter().take(room));
                return Err(e.into());
            }
            if let Some(w) = &self.wake {
                w.notify_one();
            }
            if self.crash_after_spool && !records.is_empty() {
                error!("--crash-after-spool: aborting between spooling a drain and deleting it from the kernel");
                std::process::abort();
            }
        }
        // Handed on: counted, whatever the clear below does (a key it cannot delete is
        // remembered as reported, and only what is added to it later counts again).
        for r in &records {
            self.metrics.flows_drained.get_or_create(&[("direction", r.direction.as_str())]).inc();
            self.metrics
                .connections
                .get_or_create(&[("direction", r.direction.as_str()), ("outcome", "established")])
                .inc_by(r.count);
            self.metrics
                .connections
                .get_or_create(&[("direction", r.direction.as_str()), ("outcome", "failed")])
                .inc_by(r.failed);
        }
        // Only now, with the flows safe in the spool, are they removed from the kernel.
        if !idle {
            self.capture.clear(&drained)?;
        }
        // The kernel's counters and occupancy are read by the loop's one-second ticker.
        self.metrics.drains.inc();
        Ok(records.len())
    }

    fn update_kernel_metrics(&mut self) {
        if let Ok(occ) = self.capture.occupancy() {
            self.metrics.flow_map_entries.set(occ as i64);
        }
        match self.capture.kernel_stats() {
            Ok(now) => {
                for (stat, value) in &now {
                    let before = self.kernel_seen.iter().find(|(s, _)| s == stat).map_or(0, |(_, v)| *v);
                    let label = stat.label();
                    let c = self.metrics.kernel_drops.get_or_create(&[("cause", label)]);
                    if *value > before {
                        c.inc_by(value - before);
                        if *stat != Stat::ConnectUntracked && *stat != Stat::DnsTruncated {
                            warn!(cause = label, lost = value - before, "the kernel could not record everything");
                        }
                    }
                }
                self.kernel_seen = now;
            }
            Err(e) => warn!(error = %e, "cannot read kernel counters"),
        }
    }
}

async fn read_dns(
    ring: RingBuf<MapData>,
    node: String,
    cgroups: Arc<Mutex<CgroupResolver>>,
    metrics: Arc<Metrics>,
    output: Output,
    dns_out: Option<Arc<Mutex<Vec<mapper_proto::v1::DnsAnswer>>>>,
) -> Result<(), AgentError> {
    // SAFETY: the ring buffer owns its file descriptor and keeps it open, unchanged,
    // for as long as the AsyncFd owns the ring buffer.
    let mut fd =
        unsafe { AsyncFd::register_with_interest(ring, Interest::READABLE) }.map_err(|e| AgentError::Dns(e.into()))?;
    loop {
        let mut guard = fd.readable_mut().await.map_err(AgentError::Dns)?;
        let clock = Clock::now();
        let mut records = Vec::new();
        {
            let ring = guard.get_inner_mut();
            while let Some(item) = ring.next() {
                let Some(ev) = DnsEvent::from_bytes(&item) else {
                    metrics.dns_skipped.get_or_create(&[("reason", "short_event")]).inc();
                    continue;
                };
                let info = cgroups.lock().unwrap_or_else(|p| p.into_inner()).resolve(ev.cgroup_id).cloned();
                match DnsRecord::from_event(&node, &ev, &clock, info.as_ref()) {
                    Ok(r) => {
                        metrics.dns_answers.inc();
                        records.push(r);
                    }
                    Err(skip) => {
                        if skip.is_error() {
                            debug!(reason = skip.label(), netns = ev.netns, "DNS payload skipped");
                        }
                        metrics.dns_skipped.get_or_create(&[("reason", skip.label())]).inc();
                    }
                }
            }
        }
        guard.clear_ready();
        if output == Output::Jsonl && !records.is_empty() {
            write_jsonl(&records)?;
        }
        if let Some(out) = &dns_out {
            let mut out = out.lock().unwrap_or_else(|p| p.into_inner());
            // Bounded: DNS answers are hints for naming external addresses.
            let room = report::MAX_PENDING_DNS.saturating_sub(out.len());
            out.extend(records.iter().take(room).map(report::dns_to_pb));
        }
    }
}

/// Runs the agent until `shutdown` resolves, then drains one last time.
pub async fn run(cfg: AgentConfig, shutdown: impl Future<Output = ()>) -> Result<(), AgentError> {
    // Poll the shutdown future once now: a signal future installs its handlers
    // when first polled, and a SIGTERM that came before (the agent says it is
    // running before its loop starts) would otherwise kill it, with no last drain.
    let mut shutdown = std::pin::pin!(shutdown);
    let mut stopping = shutdown.as_mut().poll(&mut std::task::Context::from_waker(std::task::Waker::noop())).is_ready();
    let metrics = Arc::new(Metrics::default());
    let metrics_task = match cfg.metrics_listen {
        Some(addr) => {
            // Bound here, once, so a taken port fails the start with a clear error.
            let listener =
                tokio::net::TcpListener::bind(addr).await.map_err(|source| AgentError::Metrics { addr, source })?;
            let health: Arc<dyn mapper_telemetry::Health> = metrics.clone();
            Some(tokio::spawn(async move {
                if let Err(e) = mapper_telemetry::serve(listener, health).await {
                    error!(%addr, error = %e, "metrics endpoint failed");
                }
            }))
        }
        None => None,
    };

    let host_netns = cfg.host_netns.as_deref().and_then(|p| match netns_inode(p) {
        Ok(ino) => Some(ino),
        Err(e) => {
            let hint = if e.kind() == io::ErrorKind::PermissionDenied {
                "another process's namespace needs ptrace access (CAP_SYS_PTRACE when that process has more \
                 capabilities); in a pod, mount the node's /proc/1/ns/net as a hostPath file and give its mount \
                 path (the Helm chart does), or run with hostNetwork: true and --host-netns /proc/self/ns/net"
            } else {
                "in a pod, mount the node's /proc/1/ns/net as a hostPath file and give its mount path (the Helm \
                 chart does), or run with hostNetwork: true and --host-netns /proc/self/ns/net"
            };
            warn!(path = %p.display(), error = %e, hint, "cannot read the node's network namespace: flows will not be marked host-network");
            None
        }
    });
    // The programs are told the node's namespace: only its clients share an address.
    let capture_cfg = CaptureConfig { host_netns: host_netns.unwrap_or(0), ..cfg.capture.clone() };
    let mut capture = start_capture(&capture_cfg, !cfg.skip_capability_check)?;
    metrics.resumed.set(i64::from(capture.resumed()));
    metrics.flow_map_capacity.set(i64::from(capture.flow_capacity()));
    let cgroups = Arc::new(Mutex::new(CgroupResolver::new(&cfg.capture.cgroup_root)));
    cgroups.lock().unwrap_or_else(|p| p.into_inner()).rescan();

    let dns_out = Arc::new(Mutex::new(Vec::new()));
    let reporting = cfg.report.is_some();
    let dns_task = capture.take_dns().map(|ring| {
        let out = reporting.then(|| dns_out.clone());
        tokio::spawn(read_dns(ring, cfg.node_name.clone(), cgroups.clone(), metrics.clone(), cfg.output, out))
    });
    let boot_id = report::boot_id();
    let pending = match &cfg.report {
        Some(rc) => {
            let mut p = open_pending(rc, &cfg.node_name, &boot_id, &metrics)?;
            // An agent killed between spooling a drain and deleting it from the
            // kernel left those entries in the idle buffer: delete them now,
            // before a drain would count them a second time.
            let leftovers = tokio::task::block_in_place(|| capture.remove_spooled(&p.kernel_fingerprints()))?;
            if leftovers > 0 {
                metrics.spool_kernel_leftovers.inc_by(leftovers as u64);
                info!(entries = leftovers, "deleted kernel entries an earlier agent had spooled but not yet deleted");
            }
            p.enforce_bound();
            publish(&metrics, &p);
            Some(Arc::new(Mutex::new(p)))
        }
        None => None,
    };
    let reporter = match (&cfg.report, &pending) {
        (Some(rc), Some(p)) => {
            info!(url = %rc.url, %boot_id, spool = ?rc.spool_dir, "reporting to mapper-server");
            Some(start_reporter(rc, p.clone(), metrics.clone(), cfg.report_interval)?)
        }
        _ => None,
    };

    let mut drainer = Drainer {
        node: cfg.node_name.clone(),
        capture,
        cgroups,
        metrics: metrics.clone(),
        output: cfg.output,
        kernel_seen: Vec::new(),
        pending,
        wake: reporter.as_ref().map(|r| r.wake.clone()),
        dns_out,
        host_netns,
        crash_after_spool: cfg.crash_after_spool,
        local_servers: crate::flow::LocalServers::default(),
    };
    drainer.update_kernel_metrics();
    metrics.set_ready();
    info!(
        node = %cfg.node_name,
        interval = %humantime::format_duration(cfg.report_interval),
        pin_dir = %drainer.capture.pin_dir().display(),
        resumed = drainer.capture.resumed(),
        host_netns = ?drainer.host_netns,
        "agent running"
    );

    // Kernel counters and occupancy are refreshed every second, whatever the
    // report interval, so /metrics is live.
    let mut stats_ticker = tokio::time::interval(Duration::from_secs(1));
    let mut ticker = tokio::time::interval(cfg.report_interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticker.tick().await;
    while !stopping {
        tokio::select! {
            _ = ticker.tick() => {
                match tokio::task::block_in_place(|| drainer.round()) {
                    Ok(n) => debug!(flows = n, "drained"),
                    Err(AgentError::Stdout(e)) => return Err(AgentError::Stdout(e)),
                    Err(e) => {
                        drainer.metrics.drain_errors.inc();
                        error!(error = %chain(&e), "drain failed; the flows stay in the kernel, retrying next interval");
                    }
                }
            }
            _ = stats_ticker.tick() => drainer.update_kernel_metrics(),
            () = shutdown.as_mut() => stopping = true,
        }
    }

    // Stop being an agent to the outside first: not ready, metrics port
    // closed (a successor can bind it at once), then the last drains.
    metrics.set_not_ready();
    if let Some(t) = metrics_task {
        t.abort();
        let _ = t.await;
    }
    info!("shutting down: not ready, metrics endpoint closed; last drain");
    if cfg.detach_on_exit {
        // Detach first so nothing is written after the last drain.
        let pin_dir = drainer.capture.pin_dir().join("links");
        if let Err(e) = std::fs::remove_dir_all(&pin_dir) {
            warn!(path = %pin_dir.display(), error = %e, "cannot detach programs");
        }
    }
    // Both buffers: the one being written and whatever a crash left in the other.
    for _ in 0..2 {
        match tokio::task::block_in_place(|| drainer.round()) {
            Ok(_) => {}
            Err(AgentError::Stdout(e)) => return Err(AgentError::Stdout(e)),
            Err(e) => error!(error = %chain(&e), "last drain failed; those flows stay in the kernel"),
        }
    }
    if let Some(t) = dns_task {
        t.abort();
    }
    if let (Some(r), Some(pending)) = (reporter, &drainer.pending) {
        // A bounded flush while the server answers; whatever it has not
        // acknowledged by then stays spooled for the next agent.
        r.wake.notify_one();
        let deadline = tokio::time::Instant::now() + cfg.shutdown_flush;
        let started = tokio::time::Instant::now();
        while !pending.lock().unwrap_or_else(|p| p.into_inner()).is_empty()
            && !r.failing.load(Ordering::Acquire)
            && tokio::time::Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        r.task.abort();
        let _ = r.task.await;
        let p = pending.lock().unwrap_or_else(|p| p.into_inner());
        let waited = started.elapsed();
        match p.spool_dir() {
            _ if p.is_empty() => info!(?waited, "every batch acknowledged"),
            Some(dir) => warn!(
                batches = p.len(),
                flows = p.flows(),
                bytes = p.bytes(),
                spool = %dir.display(),
                ?waited,
                "batches the server has not acknowledged stay spooled: the next agent resends them"
            ),
            None => warn!(
                batches = p.len(),
                flows = p.flows(),
                "exiting with flows the server has not acknowledged (no spool: they are lost)"
            ),
        }
    }
    if cfg.detach_on_exit {
        crate::capture::remove_pins(drainer.capture.pin_dir())?;
        info!("programs detached and maps freed");
    } else {
        info!(pin_dir = %drainer.capture.pin_dir().display(), "programs left attached: the next agent resumes from here");
    }
    Ok(())
}

#[cfg(test)]
mod tests;
