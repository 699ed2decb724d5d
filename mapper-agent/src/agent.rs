//! The agent's loop: drain the flow buffers every interval, attribute each
//! local end, hand the flows on; read DNS answers as they arrive.

use std::{
    future::Future,
    io::{self, Write},
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::Duration,
};

use aya::maps::{MapData, RingBuf};
use mapper_ebpf::{DnsEvent, Stat};
use serde::Serialize;
use tokio::io::{Interest, unix::AsyncFd};
use tracing::{debug, error, info, warn};

use crate::{
    attribution::CgroupResolver,
    capture::{Capture, CaptureConfig, CaptureError},
    dns::DnsRecord,
    flow::{Clock, FlowRecord},
    metrics::Metrics,
    preflight::{self, PreflightError},
    report::{self, Backoff, Pending, SendOutcome},
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
    preflight::ensure_tracefs()?;
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

struct Drainer {
    node: String,
    capture: Capture,
    cgroups: Arc<Mutex<CgroupResolver>>,
    metrics: Arc<Metrics>,
    output: Output,
    kernel_seen: Vec<(Stat, u64)>,
    pending: Option<Arc<Mutex<Pending>>>,
    dns_out: Arc<Mutex<Vec<mapper_proto::v1::DnsAnswer>>>,
    host_netns: Option<u32>,
    local_servers: crate::flow::LocalServers,
}

impl Drainer {
    /// One round: drain, attribute, output, then delete from the kernel.
    fn round(&mut self) -> Result<usize, AgentError> {
        let drained = self.capture.drain(GRACE)?;
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
            let dns = std::mem::take(&mut *self.dns_out.lock().unwrap_or_else(|p| p.into_inner()));
            let mut p = p.lock().unwrap_or_else(|p| p.into_inner());
            p.push(flows, dns);
            self.metrics.pending_batches.set(p.len() as i64);
            self.metrics.pending_flows.set(p.flows() as i64);
            // Merges and drops happen in push(), while the server is away: count them now.
            self.metrics.merges.inc_by(p.merges.saturating_sub(self.metrics.merges.get()));
            self.metrics.flows_dropped.inc_by(p.dropped.saturating_sub(self.metrics.flows_dropped.get()));
        }
        // Only now, with the flows handed on, are they removed from the kernel.
        self.capture.clear(&drained)?;
        for r in &records {
            self.metrics.flows_drained.get_or_create(&[("direction", r.direction)]).inc();
            self.metrics
                .connections
                .get_or_create(&[("direction", r.direction), ("outcome", "established")])
                .inc_by(r.count);
            self.metrics
                .connections
                .get_or_create(&[("direction", r.direction), ("outcome", "failed")])
                .inc_by(r.failed);
        }
        self.update_kernel_metrics();
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

/// Starts the task that sends pending batches, in order, one at a time.
fn start_reporter(
    rc: ReportConfig,
    node: String,
    pending: Arc<Mutex<Pending>>,
    metrics: Arc<Metrics>,
) -> Result<(Arc<tokio::sync::Notify>, tokio::task::JoinHandle<()>), AgentError> {
    let channel = tonic::transport::Channel::from_shared(rc.url.clone())
        .map_err(|e| AgentError::BadUrl { url: rc.url.clone(), problem: e.to_string() })?
        .connect_timeout(Duration::from_secs(5))
        .connect_lazy();
    let mut client = mapper_proto::v1::ingest_client::IngestClient::new(channel);
    let boot_id = report::boot_id();
    info!(url = %rc.url, %boot_id, "reporting to mapper-server");
    let notify = Arc::new(tokio::sync::Notify::new());
    let wake = notify.clone();
    let mut token = rc.token.clone();
    let task = tokio::spawn(async move {
        let mut backoff = Backoff::default();
        let mut failing = false;
        loop {
            let batch = pending.lock().unwrap_or_else(|p| p.into_inner()).front_mut().map(|b| {
                let resend = b.sent;
                b.sent = true;
                (b.clone(), resend)
            });
            let Some((batch, resend)) = batch else {
                tokio::select! {
                    () = wake.notified() => {}
                    () = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
                continue;
            };
            if resend {
                metrics.resends.inc();
            }
            let token = token.as_mut().map(TokenFile::current);
            match report::send(&mut client, token, &node, &boot_id, &batch, Duration::from_secs(30)).await {
                SendOutcome::Acked { duplicate } => {
                    if failing {
                        info!(url = %rc.url, "mapper-server reachable again");
                        failing = false;
                    }
                    backoff.reset();
                    metrics.batches_acked.inc();
                    if duplicate {
                        debug!(sequence = batch.sequence, "server had this batch already");
                    }
                    let mut p = pending.lock().unwrap_or_else(|p| p.into_inner());
                    p.acked();
                    metrics.pending_batches.set(p.len() as i64);
                    metrics.pending_flows.set(p.flows() as i64);
                }
                SendOutcome::Rejected(status) => {
                    error!(sequence = batch.sequence, code = ?status.code(), message = status.message(), "mapper-server rejected a batch; dropping it");
                    metrics.batches_rejected.inc();
                    pending.lock().unwrap_or_else(|p| p.into_inner()).acked();
                }
                SendOutcome::Retry(status) => {
                    let delay = backoff.next_delay();
                    if !failing {
                        warn!(url = %rc.url, code = ?status.code(), message = status.message(), "cannot report to mapper-server; keeping the flows and retrying");
                        failing = true;
                    } else {
                        debug!(code = ?status.code(), retry_in = ?delay, "report failed again");
                    }
                    tokio::time::sleep(delay).await;
                }
            }
        }
    });
    Ok((notify, task))
}

/// Runs the agent until `shutdown` resolves, then drains one last time.
pub async fn run(cfg: AgentConfig, shutdown: impl Future<Output = ()>) -> Result<(), AgentError> {
    let metrics = Arc::new(Metrics::default());
    if let Some(addr) = cfg.metrics_listen {
        // Bound here, once, so a taken port fails the start with a clear error.
        let listener =
            tokio::net::TcpListener::bind(addr).await.map_err(|source| AgentError::Metrics { addr, source })?;
        let health: Arc<dyn mapper_telemetry::Health> = metrics.clone();
        tokio::spawn(async move {
            if let Err(e) = mapper_telemetry::serve(listener, health).await {
                error!(%addr, error = %e, "metrics endpoint failed");
            }
        });
    }

    let mut capture = start_capture(&cfg.capture, !cfg.skip_capability_check)?;
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
    let pending = cfg.report.as_ref().map(|r| Arc::new(Mutex::new(Pending::new(r.max_pending_flows))));
    let reporter = match (&cfg.report, &pending) {
        (Some(rc), Some(p)) => Some(start_reporter(rc.clone(), cfg.node_name.clone(), p.clone(), metrics.clone())?),
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
        dns_out,
        host_netns,
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
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = ticker.tick() => {
                match tokio::task::block_in_place(|| drainer.round()) {
                    Ok(n) => debug!(flows = n, "drained"),
                    Err(AgentError::Stdout(e)) => return Err(AgentError::Stdout(e)),
                    Err(e) => {
                        drainer.metrics.drain_errors.inc();
                        error!(error = %e, "drain failed; will retry next interval");
                    }
                }
            }
            _ = stats_ticker.tick() => drainer.update_kernel_metrics(),
            () = &mut shutdown => break,
        }
    }

    info!("shutting down: last drain");
    if cfg.detach_on_exit {
        // Detach first so nothing is written after the last drain.
        let pin_dir = drainer.capture.pin_dir().join("links");
        if let Err(e) = std::fs::remove_dir_all(&pin_dir) {
            warn!(path = %pin_dir.display(), error = %e, "cannot detach programs");
        }
    }
    // Both buffers: the one being written and whatever a crash left in the other.
    for _ in 0..2 {
        tokio::task::block_in_place(|| drainer.round())?;
    }
    if let Some(t) = dns_task {
        t.abort();
    }
    if let Some((notify, task)) = reporter {
        // Give the reporter a few seconds to hand the last batches on.
        notify.notify_one();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while drainer.pending.as_ref().is_some_and(|p| !p.lock().unwrap_or_else(|p| p.into_inner()).is_empty())
            && tokio::time::Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let left = drainer.pending.as_ref().map_or(0, |p| p.lock().unwrap_or_else(|p| p.into_inner()).flows());
        if left > 0 {
            warn!(flows = left, "exiting with flows the server has not acknowledged");
        }
        task.abort();
    }
    if cfg.detach_on_exit {
        crate::capture::remove_pins(drainer.capture.pin_dir())?;
        info!("programs detached and maps freed");
    } else {
        info!(pin_dir = %drainer.capture.pin_dir().display(), "programs left attached: the next agent resumes from here");
    }
    Ok(())
}
