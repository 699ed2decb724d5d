//! DNS answers received by pods: the names behind the addresses they connect to.
//!
//! The kernel copies the raw UDP payload of every packet from port 53 that a
//! socket receives; it is parsed here, defensively: a malformed or truncated
//! message is counted and skipped, never trusted and never a panic.

use std::net::IpAddr;

use hickory_proto::{
    op::{Message, MessageType, ResponseCode},
    rr::RData,
};
use mapper_ebpf_common::DnsEvent;
use serde::Serialize;

use crate::{
    attribution::CgroupInfo,
    flow::{Clock, ip_from},
};

/// One address a name resolved to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DnsAnswer {
    /// The owner name of the A/AAAA record (after any CNAME), without the trailing dot.
    pub name: String,
    pub ip: IpAddr,
    pub ttl: u32,
}

/// A DNS response as a pod received it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DnsRecord {
    /// Always `"dns"`.
    pub record: &'static str,
    pub node: String,
    /// The name that was asked for.
    pub query: String,
    pub answers: Vec<DnsAnswer>,
    /// The pod that received the answer.
    pub client_ip: Option<IpAddr>,
    /// The resolver that sent it.
    pub resolver_ip: Option<IpAddr>,
    /// Network namespace inode of the receiving socket.
    pub netns: u32,
    pub cgroup_id: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pod_uid: Option<String>,
    /// Unix milliseconds.
    pub ts: i64,
}

/// Why a captured DNS payload was skipped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DnsSkip {
    #[error("malformed DNS message")]
    Malformed,
    #[error("DNS message cut at the capture limit")]
    Truncated,
    #[error("not a response")]
    NotAResponse,
    #[error("response carries no addresses")]
    NoAddresses,
}

impl DnsSkip {
    /// Metric label.
    pub fn label(self) -> &'static str {
        match self {
            Self::Malformed => "malformed",
            Self::Truncated => "truncated",
            Self::NotAResponse => "not_a_response",
            Self::NoAddresses => "no_addresses",
        }
    }

    /// Whether this counts as a parse error (as opposed to a normal non-answer).
    pub fn is_error(self) -> bool {
        matches!(self, Self::Malformed | Self::Truncated)
    }
}

fn trim_dot(s: String) -> String {
    s.strip_suffix('.').map(str::to_string).unwrap_or(s)
}

/// Parses a DNS payload into (query, answers).
pub fn parse_answer(payload: &[u8], cut: bool) -> Result<(String, Vec<DnsAnswer>), DnsSkip> {
    let msg = Message::from_vec(payload).map_err(|_| if cut { DnsSkip::Truncated } else { DnsSkip::Malformed })?;
    if msg.metadata.message_type != MessageType::Response {
        return Err(DnsSkip::NotAResponse);
    }
    if msg.metadata.response_code != ResponseCode::NoError {
        return Err(DnsSkip::NoAddresses);
    }
    let query = msg.queries.first().map(|q| trim_dot(q.name().to_ascii())).unwrap_or_default();
    let answers: Vec<DnsAnswer> = msg
        .answers
        .iter()
        .filter_map(|rr| {
            let ip = match &rr.data {
                RData::A(a) => IpAddr::V4(a.0),
                RData::AAAA(a) => IpAddr::V6(a.0),
                _ => return None,
            };
            Some(DnsAnswer { name: trim_dot(rr.name.to_ascii()), ip, ttl: rr.ttl })
        })
        .collect();
    if answers.is_empty() {
        return Err(DnsSkip::NoAddresses);
    }
    Ok((query, answers))
}

impl DnsRecord {
    /// Parses a kernel DNS event.
    pub fn from_event(node: &str, ev: &DnsEvent, clock: &Clock, cgroup: Option<&CgroupInfo>) -> Result<Self, DnsSkip> {
        let cut = ev.payload_len as usize > ev.payload().len();
        let (query, answers) = parse_answer(ev.payload(), cut)?;
        Ok(Self {
            record: "dns",
            node: node.to_string(),
            query,
            answers,
            client_ip: ip_from(ev.family, &ev.dst_addr),
            resolver_ip: ip_from(ev.family, &ev.src_addr),
            netns: ev.netns,
            cgroup_id: ev.cgroup_id,
            pod_uid: cgroup.and_then(|c| c.pod.as_ref()).map(|p| p.pod_uid.clone()),
            ts: clock.unix_ms(ev.ts_ns),
        })
    }
}

#[cfg(test)]
mod tests;
