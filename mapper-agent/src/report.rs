//! Reporting drained flows to the central mapper: the wire form of flows and
//! DNS answers, and where rejected batches are set aside. One send, the
//! server's bounds and the backoff between retries are [`mapper_report`]'s;
//! what waits to be sent, and how it survives the agent, is [`crate::pending`]
//! and [`crate::spool`].

use mapper_ebpf_common::{Direction, Protocol};
use mapper_proto::v1 as pb;

/// A new random boot id for this agent process.
pub fn boot_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/uuid").map(|s| s.trim().to_string()).unwrap_or_else(|_| {
        let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
        format!("{:x}-{:x}", std::process::id(), t)
    })
}

/// DNS answers kept for the next report (they are hints for naming external addresses, so
/// beyond this many the oldest are the ones kept and the rest dropped): as many as one
/// report may carry.
pub const MAX_PENDING_DNS: usize = mapper_report::SERVER_MAX_DNS_PER_BATCH;

fn ip_bytes(ip: Option<std::net::IpAddr>) -> Vec<u8> {
    ip.map(mapper_proto::addr::to_bytes).unwrap_or_default()
}

/// A drained flow on the wire.
pub fn flow_to_pb(r: &crate::flow::FlowRecord, host_netns: Option<u32>) -> pb::Flow {
    let host_network = host_netns == Some(r.netns);
    let peer_host_network = r.peer.as_ref().is_some_and(|p| host_netns == Some(p.netns));
    pb::Flow {
        direction: match r.direction {
            Direction::Connect => pb::Direction::Connect,
            Direction::Accept => pb::Direction::Accept,
            Direction::Udp => pb::Direction::Udp,
        } as i32,
        protocol: match r.protocol {
            Protocol::Tcp => pb::Protocol::Tcp,
            Protocol::Udp => pb::Protocol::Udp,
        } as i32,
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

#[cfg(test)]
mod tests {
    use super::*;

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
            let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_800_000_000 + s);
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
}
