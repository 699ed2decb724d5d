//! Reporting drained flows to the central mapper: the wire form of flows and
//! DNS answers, one send, the backoff between retries. What waits to be sent,
//! and how it survives the agent, is [`crate::pending`] and [`crate::spool`].

use std::time::Duration;

use mapper_proto::v1::{self as pb, ingest_client::IngestClient};
use tonic::{Code, Request, transport::Channel};

pub use crate::pending::Batch;

/// A new random boot id for this agent process.
pub fn boot_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/uuid").map(|s| s.trim().to_string()).unwrap_or_else(|_| {
        let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
        format!("{:x}-{:x}", std::process::id(), t)
    })
}

/// DNS answers kept for the next report (they are hints for naming external addresses, so
/// beyond this many the oldest are the ones kept and the rest dropped).
pub const MAX_PENDING_DNS: usize = 10_000;

fn ip_bytes(ip: Option<std::net::IpAddr>) -> Vec<u8> {
    ip.map(mapper_proto::addr::to_bytes).unwrap_or_default()
}

/// A drained flow on the wire.
pub fn flow_to_pb(r: &crate::flow::FlowRecord, host_netns: Option<u32>) -> pb::Flow {
    let host_network = host_netns == Some(r.netns);
    let peer_host_network = r.peer.as_ref().is_some_and(|p| host_netns == Some(p.netns));
    pb::Flow {
        direction: match r.direction {
            "connect" => pb::Direction::Connect,
            "accept" => pb::Direction::Accept,
            _ => pb::Direction::Udp,
        } as i32,
        protocol: if r.protocol == "tcp" { pb::Protocol::Tcp } else { pb::Protocol::Udp } as i32,
        src_ip: ip_bytes(r.src_ip),
        dst_ip: ip_bytes(r.dst_ip),
        dst_port: u32::from(r.dst_port),
        original_dst_ip: ip_bytes(r.original_dst_ip),
        original_dst_port: r.original_dst_port.map_or(0, u32::from),
        count: r.count,
        failed: r.failed,
        netns: r.netns,
        cgroup_id: r.cgroup_id,
        pod_uid: r.pod_uid.clone().unwrap_or_default(),
        container_id: r.container_id.clone().unwrap_or_default(),
        comm: r.comm.clone(),
        first_seen_ms: r.first_seen,
        last_seen_ms: r.last_seen,
        host_network,
        node_process: host_network && r.cgroup_path.is_some() && r.pod_uid.is_none(),
        peer_on_node: r.peer.is_some(),
        peer_pod_uid: r.peer.as_ref().and_then(|p| p.pod_uid.clone()).unwrap_or_default(),
        peer_host_network,
        peer_node_process: peer_host_network
            && r.peer.as_ref().is_some_and(|p| p.cgroup_path.is_some() && p.pod_uid.is_none()),
    }
}

/// A DNS answer on the wire.
pub fn dns_to_pb(d: &crate::dns::DnsRecord) -> pb::DnsAnswer {
    pb::DnsAnswer {
        query: d.query.clone(),
        answers: d
            .answers
            .iter()
            .map(|a| pb::DnsAddress { name: a.name.clone(), ip: ip_bytes(Some(a.ip)), ttl: a.ttl })
            .collect(),
        client_ip: ip_bytes(d.client_ip),
        pod_uid: d.pod_uid.clone().unwrap_or_default(),
        ts_ms: d.ts,
    }
}

/// mapper-server's bounds on a batch's DNS answers (its `ingest` module; a test there checks
/// they agree): the longest name, addresses per answer, addresses per batch.
pub const SERVER_MAX_DNS_NAME_LEN: usize = 253;
/// mapper-server's bound on the flows of one batch.
pub const SERVER_MAX_FLOWS_PER_BATCH: usize = 100_000;
pub const SERVER_MAX_ADDRESSES_PER_ANSWER: usize = 64;
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
    Acked { duplicate: bool },
    /// The server refused the batch as invalid: retrying cannot help (see [`is_rejection`]).
    Rejected(tonic::Status),
    /// The server could not be reached or could not take it now: retry later.
    Retry(tonic::Status),
}

/// Sends one batch as `node`/`boot_id` (tests send a batch under other names).
pub async fn send(
    client: &mut IngestClient<Channel>,
    token: Option<&str>,
    node: &str,
    boot_id: &str,
    batch: &Batch,
    timeout: Duration,
) -> SendOutcome {
    let req = pb::ReportRequest { node: node.to_string(), boot_id: boot_id.to_string(), ..batch.request() };
    send_request(client, token, req, timeout).await
}

/// Sends one report (the reporter builds it from its batch, the one copy it needs).
pub async fn send_request(
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
    match client.report(req).await {
        Ok(r) => SendOutcome::Acked { duplicate: r.get_ref().duplicate },
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

/// How many rejected batches `rejected/` keeps, and how many bytes they may take: the newest
/// are kept, for a person to read (`protoc --decode mapper.v1.ReportRequest`).
pub const REJECTED_KEEP_FILES: usize = 16;
pub const REJECTED_KEEP_BYTES: u64 = 64 * 1024 * 1024;

/// The directory under the spool where rejected batches are set aside.
pub const REJECTED_DIR: &str = "rejected";

/// Writes `req` (protobuf, as sent) to `dir` as `<boot id>.<sequence>.pb`, then removes the
/// oldest files there beyond [`REJECTED_KEEP_FILES`] or [`REJECTED_KEEP_BYTES`] (the one just
/// written always stays). Returns the file written.
pub fn set_aside(dir: &std::path::Path, req: &pb::ReportRequest) -> std::io::Result<std::path::PathBuf> {
    use prost::Message;
    std::fs::create_dir_all(dir)?;
    // The boot id comes from a spool file: only safe characters make the name.
    let boot: String = req.boot_id.chars().filter(|c| c.is_ascii_alphanumeric() || *c == '-').take(64).collect();
    let name = format!("{boot}.{}.pb", req.sequence);
    let path = dir.join(&name);
    let tmp = dir.join(format!(".{name}.tmp"));
    std::fs::write(&tmp, req.encode_to_vec())?;
    std::fs::rename(&tmp, &path)?;
    let mut files: Vec<(std::time::SystemTime, u64, std::path::PathBuf)> = std::fs::read_dir(dir)?
        .filter_map(Result::ok)
        .filter(|e| e.path().extension().is_some_and(|x| x == "pb") && e.path() != path)
        .filter_map(|e| e.metadata().ok().map(|m| (m.modified().unwrap_or(std::time::UNIX_EPOCH), m.len(), e.path())))
        .collect();
    // Newest first; the file just written counts first.
    files.sort_by_key(|f| std::cmp::Reverse(f.0));
    let mut bytes = std::fs::metadata(&path)?.len();
    let mut kept = 1;
    for (_, len, p) in files {
        if kept < REJECTED_KEEP_FILES && bytes + len <= REJECTED_KEEP_BYTES {
            kept += 1;
            bytes += len;
        } else {
            std::fs::remove_file(&p)?;
        }
    }
    Ok(path)
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
mod tests {
    use super::*;

    #[test]
    fn dns_answers_are_fitted_to_the_server_s_bounds() {
        let answer = |query: &str, names: &[&str]| pb::DnsAnswer {
            query: query.into(),
            answers: names
                .iter()
                .map(|n| pb::DnsAddress { name: (*n).into(), ip: vec![192, 0, 2, 1], ttl: 1 })
                .collect(),
            ..Default::default()
        };
        let long = "x".repeat(254);
        let mut req = pb::ReportRequest {
            dns: vec![answer("a.example.com", &["a.example.com"]), answer(&long, &["b"]), answer("c", &["c", &long])],
            ..Default::default()
        };
        assert_eq!(fit_dns(&mut req), 2);
        assert_eq!(req.dns, vec![answer("a.example.com", &["a.example.com"]), answer("c", &["c"])]);
        let wide = answer("w", &["w"; 100]);
        let mut req = pb::ReportRequest { dns: vec![wide; 1_000], ..Default::default() };
        fit_dns(&mut req);
        assert!(req.dns.iter().all(|d| d.answers.len() <= SERVER_MAX_ADDRESSES_PER_ANSWER));
        let total: usize = req.dns.iter().map(|d| d.answers.len()).sum();
        assert_eq!(total, SERVER_MAX_DNS_ADDRESSES_PER_BATCH);
    }

    #[test]
    fn only_a_batch_s_own_faults_are_rejections() {
        for c in [Code::InvalidArgument, Code::OutOfRange, Code::FailedPrecondition] {
            assert!(is_rejection(c), "{c:?}");
        }
        for c in
            [Code::ResourceExhausted, Code::Unavailable, Code::Unauthenticated, Code::Internal, Code::DeadlineExceeded]
        {
            assert!(!is_rejection(c), "{c:?} must be retried");
        }
    }

    #[test]
    fn rejected_batches_are_kept_bounded_newest_first() {
        use prost::Message;
        let dir = tempfile::tempdir().expect("tempdir");
        let rejected = dir.path().join(REJECTED_DIR);
        let req = |sequence| pb::ReportRequest {
            node: "n".into(),
            boot_id: "../../etc/x".into(),
            sequence,
            flows: vec![pb::Flow { comm: "curl".into(), ..Default::default() }],
            dns: vec![],
        };
        for s in 1..=40 {
            let p = set_aside(&rejected, &req(s)).expect("set aside");
            assert_eq!(p.parent(), Some(rejected.as_path()), "the file stays in rejected/");
            // Distinct modification times, so that "newest" is well defined.
            let t = std::time::UNIX_EPOCH + Duration::from_secs(1_800_000_000 + s);
            std::fs::File::options().write(true).open(&p).and_then(|f| f.set_modified(t)).expect("mtime");
        }
        let mut names: Vec<String> = std::fs::read_dir(&rejected)
            .expect("read")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        let mut want: Vec<String> = (25..=40).map(|s| format!("etcx.{s}.pb")).collect();
        want.sort();
        assert_eq!(names, want);
        let back =
            pb::ReportRequest::decode(&*std::fs::read(rejected.join("etcx.40.pb")).expect("read")).expect("decode");
        assert_eq!(back, req(40));
    }

    #[test]
    fn backoff_doubles_and_caps() {
        let mut b = Backoff::default();
        assert_eq!(b.next_delay(), Duration::from_millis(200));
        assert_eq!(b.next_delay(), Duration::from_millis(400));
        for _ in 0..20 {
            b.next_delay();
        }
        assert_eq!(b.next_delay(), Duration::from_secs(30));
        b.reset();
        assert_eq!(b.next_delay(), Duration::from_millis(200));
        let mut b = Backoff::capped(Duration::from_millis(500));
        assert_eq!([b.next_delay(), b.next_delay(), b.next_delay()].map(|d| d.as_millis()), [200, 400, 500]);
    }
}
