//! The client side of mapper's Ingest protocol, as the node agent speaks it: one report
//! sent and what became of it ([`send`], [`SendOutcome`]), which refusals are final
//! ([`is_rejection`]), the server's bounds on a report and how DNS answers are fitted to
//! them ([`fit_dns`]), and the backoff between retries ([`Backoff`]).
//!
//! No aya and no kernel object: what waits to be sent and how it survives the agent (the
//! resend buffer, the spool) is the agent's (`mapper_agent::pending`, `mapper_agent::spool`);
//! mapper-server's tests and benches send their reports through this crate.
#![forbid(unsafe_code)]

use std::time::Duration;

use mapper_proto::v1::{self as pb, ingest_client::IngestClient};
use tonic::{Code, Request, transport::Channel};

/// mapper-server's bounds on a report (its `ingest` module; a test there checks they agree):
/// the longest DNS name.
pub const SERVER_MAX_DNS_NAME_LEN: usize = 253;
/// mapper-server's bound on the flows of one report.
pub const SERVER_MAX_FLOWS_PER_BATCH: usize = 100_000;
/// mapper-server's bound on the DNS answers of one report.
pub const SERVER_MAX_DNS_PER_BATCH: usize = 10_000;
/// mapper-server's bound on the addresses of one DNS answer.
pub const SERVER_MAX_ADDRESSES_PER_ANSWER: usize = 64;
/// mapper-server's bound on the DNS addresses of one report, all answers together.
pub const SERVER_MAX_DNS_ADDRESSES_PER_BATCH: usize = 20_000;

/// Makes a report's DNS answers fit the server's bounds, so that a hint never gets a batch of
/// flows refused: a name the server could not take is left out (an answer whose query is one
/// goes entirely), an answer keeps its first 64 addresses, and once the batch holds 20 000
/// addresses the remaining answers go. Returns how many answers were left out or cut.
pub fn fit_dns(req: &mut pb::ReportRequest) -> usize {
    let fits = |n: &str| n.len() <= SERVER_MAX_DNS_NAME_LEN;
    let before = req.dns.len();
    let mut cut = 0;
    let mut total = 0usize;
    req.dns.retain_mut(|d| {
        if !fits(&d.query) || total >= SERVER_MAX_DNS_ADDRESSES_PER_BATCH {
            return false;
        }
        let n = d.answers.len();
        d.answers.retain(|a| fits(&a.name));
        d.answers.truncate(SERVER_MAX_ADDRESSES_PER_ANSWER.min(SERVER_MAX_DNS_ADDRESSES_PER_BATCH - total));
        if d.answers.len() < n {
            cut += 1;
        }
        total += d.answers.len();
        true
    });
    before - req.dns.len() + cut
}

/// What became of one send attempt.
#[derive(Debug)]
pub enum SendOutcome {
    /// Acknowledged (possibly as a duplicate).
    Acked {
        /// The server had applied this (node, boot id, sequence) already.
        duplicate: bool,
    },
    /// The server refused the batch as invalid: retrying cannot help (see [`is_rejection`]).
    Rejected(tonic::Status),
    /// The server could not be reached or could not take it now: retry later.
    Retry(tonic::Status),
}

/// Sends one report (under the node, boot id and sequence it carries), with `token` as its
/// bearer token, waiting at most `timeout` for the answer.
pub async fn send(
    client: &mut IngestClient<Channel>,
    token: Option<&str>,
    req: pb::ReportRequest,
    timeout: Duration,
) -> SendOutcome {
    let mut req = Request::new(req);
    req.set_timeout(timeout);
    if let Some(t) = token
        && let Ok(v) = format!("Bearer {t}").parse()
    {
        req.metadata_mut().insert("authorization", v);
    }
    outcome(client.report(req).await.map(tonic::Response::into_inner))
}

/// What the server's answer to a Report call means for the batch: acknowledged, refused for
/// good, or to be sent again.
pub fn outcome(answer: Result<pb::ReportResponse, tonic::Status>) -> SendOutcome {
    match answer {
        Ok(r) => SendOutcome::Acked { duplicate: r.duplicate },
        Err(s) if is_rejection(s.code()) => SendOutcome::Rejected(s),
        Err(s) => SendOutcome::Retry(s),
    }
}

/// Whether the server's answer says the batch itself is wrong, so that sending it again can
/// only be refused again: INVALID_ARGUMENT (a field out of bounds, bytes that do not decode),
/// OUT_OF_RANGE (a request over the size limit), FAILED_PRECONDITION. Every other code is
/// retried: RESOURCE_EXHAUSTED above all, which the server answers when too many reports are
/// in progress, and UNAVAILABLE, UNAUTHENTICATED (a token being renewed), INTERNAL (a store
/// that cannot write for now).
pub fn is_rejection(code: Code) -> bool {
    matches!(code, Code::InvalidArgument | Code::OutOfRange | Code::FailedPrecondition)
}

/// Exponential backoff between retries, from 200 ms up to a cap (30 s by default).
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    current: Duration,
    max: Duration,
}

const FIRST_RETRY: Duration = Duration::from_millis(200);

impl Default for Backoff {
    fn default() -> Self {
        Self::capped(Duration::from_secs(30))
    }
}

impl Backoff {
    /// Doubling from 200 ms up to `max` (at least 200 ms).
    pub fn capped(max: Duration) -> Self {
        Self { current: FIRST_RETRY, max: max.max(FIRST_RETRY) }
    }

    /// The next delay (doubling, capped).
    pub fn next_delay(&mut self) -> Duration {
        let d = self.current;
        self.current = (self.current * 2).min(self.max);
        d
    }

    /// After a success.
    pub fn reset(&mut self) {
        self.current = FIRST_RETRY;
    }
}

#[cfg(test)]
mod tests;
