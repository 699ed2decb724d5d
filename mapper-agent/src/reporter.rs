//! The reporter: the task that sends the resend buffer's batches to
//! mapper-server, one at a time and in order, woken by every drain; and how
//! the buffer is opened from the spool at start.

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use mapper_report::{Backoff, SendOutcome};
use tracing::{debug, error, info, warn};

use crate::{
    agent::{AgentError, ReportConfig},
    metrics::Metrics,
    pending::Pending,
    report,
    spool::Spool,
    token::TokenFile,
};

/// How long a starting agent waits for the spool's lock (held by an agent still stopping).
const SPOOL_LOCK_WAIT: Duration = Duration::from_secs(15);

/// Whether the server turned a batch away for now while up: its cluster state
/// has not synced yet, or is older than the batch's flows ("…; retry shortly").
fn is_deferral(status: &tonic::Status) -> bool {
    status.code() == tonic::Code::Unavailable && status.message().ends_with("retry shortly")
}

/// A gRPC code as a metric label.
fn code_name(code: tonic::Code) -> &'static str {
    match code {
        tonic::Code::InvalidArgument => "invalid_argument",
        tonic::Code::OutOfRange => "out_of_range",
        tonic::Code::FailedPrecondition => "failed_precondition",
        _ => "other",
    }
}

/// Publishes the resend buffer's and spool's figures.
pub(crate) fn publish(metrics: &Metrics, p: &Pending) {
    metrics.pending_batches.set(p.len() as i64);
    metrics.pending_flows.set(p.flows() as i64);
    if p.spool_dir().is_some() {
        metrics.spool_batches.set(p.len() as i64);
        metrics.spool_bytes.set(p.bytes() as i64);
    }
    // Merges, drops and write errors happen in push(): bring the counters up to date.
    let catch_up =
        |c: &prometheus_client::metrics::counter::Counter, total: u64| c.inc_by(total.saturating_sub(c.get()));
    catch_up(&metrics.merges, p.merges);
    catch_up(&metrics.spool_merged_batches, p.merged_batches);
    catch_up(&metrics.flows_dropped, p.dropped);
    catch_up(&metrics.spool_write_errors, p.write_errors);
}

/// The task that sends pending batches, and how to reach it.
pub(crate) struct Reporter {
    pub(crate) wake: Arc<tokio::sync::Notify>,
    /// The last send failed (the server is unreachable or refusing for now).
    pub(crate) failing: Arc<AtomicBool>,
    pub(crate) task: tokio::task::JoinHandle<()>,
}

/// Starts the task that sends pending batches, in order, one at a time. It
/// sleeps until a drain queues a batch; while the server is unreachable it
/// retries with a backoff capped at `max_retry_delay`.
pub(crate) fn start_reporter(
    rc: &ReportConfig,
    pending: Arc<Mutex<Pending>>,
    metrics: Arc<Metrics>,
    max_retry_delay: Duration,
) -> Result<Reporter, AgentError> {
    let channel = tonic::transport::Channel::from_shared(rc.url.clone())
        .map_err(|e| AgentError::BadUrl { url: rc.url.clone(), problem: e.to_string() })?
        .connect_timeout(Duration::from_secs(5))
        .connect_lazy();
    let mut client = mapper_proto::v1::ingest_client::IngestClient::new(channel);
    let wake = Arc::new(tokio::sync::Notify::new());
    let failing = Arc::new(AtomicBool::new(false));
    let (notified, failed) = (wake.clone(), failing.clone());
    let mut token = rc.token.clone();
    let url = rc.url.clone();
    let task = tokio::spawn(async move {
        let mut backoff = Backoff::capped(max_retry_delay);
        // A batch the server defers (its cluster state is behind the flows, by up to one
        // poll of its source) goes again after 200 ms, then 400, 800…, capped like the
        // rest: each attempt is a whole request, so few attempts cover the wait.
        let mut deferral = Backoff::capped(max_retry_delay);
        loop {
            let batch = pending.lock().unwrap_or_else(|p| p.into_inner()).front_mut().map(|b| {
                let resend = b.sent;
                let from_spool = b.resumed && !b.attempted;
                b.sent = true;
                b.attempted = true;
                let mut req = b.request();
                let cut = mapper_report::fit_dns(&mut req);
                if cut > 0 {
                    debug!(sequence = req.sequence, answers = cut, "DNS answers past the server's bounds left out");
                }
                (req, resend, from_spool)
            });
            let Some((req, resend, from_spool)) = batch else {
                tokio::select! {
                    () = notified.notified() => {}
                    () = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
                continue;
            };
            if resend {
                metrics.resends.inc();
            }
            if from_spool {
                metrics.spool_resent_batches.inc();
            }
            let token = token.as_mut().map(TokenFile::current);
            let (boot_id, sequence) = (req.boot_id.clone(), req.sequence);
            match mapper_report::send(&mut client, token, req, Duration::from_secs(30)).await {
                SendOutcome::Acked { duplicate } => {
                    if failed.swap(false, Ordering::AcqRel) {
                        info!(%url, "mapper-server reachable again");
                    }
                    backoff.reset();
                    deferral.reset();
                    metrics.batches_acked.inc();
                    if duplicate {
                        debug!(%boot_id, sequence, "server had this batch already");
                    }
                    let mut p = pending.lock().unwrap_or_else(|p| p.into_inner());
                    tokio::task::block_in_place(|| p.acked());
                    publish(&metrics, &p);
                }
                SendOutcome::Rejected(status) => {
                    deferral.reset();
                    metrics.batches_rejected.get_or_create(&[("code", code_name(status.code()))]).inc();
                    let mut p = pending.lock().unwrap_or_else(|p| p.into_inner());
                    let dir = p.spool_dir().map(|d| d.join(report::REJECTED_DIR));
                    let kept = match (&dir, p.front_mut()) {
                        (Some(dir), Some(b)) => {
                            Some(tokio::task::block_in_place(|| report::set_aside(dir, &b.request())))
                        }
                        _ => None,
                    };
                    match kept {
                        Some(Ok(path)) => error!(%boot_id, sequence, code = ?status.code(), message = status.message(),
                            file = %path.display(), "mapper-server rejected a batch; set aside, not sent again"),
                        Some(Err(e)) => {
                            metrics.rejected_write_errors.inc();
                            error!(%boot_id, sequence, code = ?status.code(), message = status.message(), error = %e,
                                "mapper-server rejected a batch and it cannot be set aside; dropping it");
                        }
                        None => error!(%boot_id, sequence, code = ?status.code(), message = status.message(),
                            "mapper-server rejected a batch; dropping it (no spool directory to set it aside in)"),
                    }
                    tokio::task::block_in_place(|| p.acked());
                    publish(&metrics, &p);
                }
                SendOutcome::Retry(status) if is_deferral(&status) => {
                    // The server is up but asks for a moment (its cluster state is
                    // older than the batch's flows): no outage, no warning.
                    let delay = deferral.next_delay();
                    debug!(sequence, message = status.message(), retry_in = ?delay, "mapper-server defers the batch");
                    tokio::time::sleep(delay).await;
                }
                SendOutcome::Retry(status) => {
                    let delay = backoff.next_delay();
                    if !failed.swap(true, Ordering::AcqRel) {
                        warn!(%url, code = ?status.code(), message = status.message(), "cannot report to mapper-server; keeping the flows spooled and retrying");
                    } else {
                        debug!(code = ?status.code(), retry_in = ?delay, "report failed again");
                    }
                    tokio::time::sleep(delay).await;
                }
            }
        }
    });
    Ok(Reporter { wake, failing, task })
}

/// Opens the spool (or not) and builds the resend buffer from what it holds.
pub(crate) fn open_pending(
    rc: &ReportConfig,
    node: &str,
    boot_id: &str,
    metrics: &Metrics,
) -> Result<Pending, AgentError> {
    let Some(dir) = &rc.spool_dir else {
        return Ok(Pending::new(node, boot_id, rc.max_pending_flows));
    };
    let (spool, loaded) = tokio::task::block_in_place(|| Spool::open(dir, SPOOL_LOCK_WAIT))?;
    metrics.spool_loaded_batches.inc_by(loaded.batches.len() as u64);
    metrics.spool_corrupt_files.inc_by(loaded.corrupt);
    let p = Pending::with_spool(node, boot_id, rc.max_pending_flows, spool, loaded.batches);
    publish(metrics, &p);
    Ok(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_deferral_is_told_from_an_outage() {
        // The messages mapper-server's ingest gives when it asks for a moment.
        for m in [
            "the cluster state has not synced yet; retry shortly",
            "the cluster state is 12 ms older than the newest flow; retry shortly",
        ] {
            assert!(is_deferral(&tonic::Status::unavailable(m)), "{m}");
        }
        assert!(!is_deferral(&tonic::Status::unavailable("tcp connect error")));
        assert!(!is_deferral(&tonic::Status::internal("cannot store the batch; retry shortly")));
    }
}
