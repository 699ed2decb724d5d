//! Names behind external addresses, from the DNS answers agents saw, so an
//! edge to an address outside the cluster can be exported as an internet
//! target with its domain names.

use std::{collections::BTreeSet, net::IpAddr};

use dashmap::DashMap;
use mapper_proto::v1 as pb;

use crate::ingest::ip_from_bytes;

/// Addresses remembered at most (a bound on memory; beyond it new addresses
/// are not remembered).
const MAX_ADDRESSES: usize = 200_000;

/// ip → names it was the answer for.
#[derive(Debug, Default)]
pub struct DnsCache {
    names: DashMap<IpAddr, BTreeSet<String>>,
}

impl DnsCache {
    /// Remembers the addresses of one answer.
    pub fn record(&self, answer: &pb::DnsAnswer) {
        for a in &answer.answers {
            let Ok(Some(ip)) = ip_from_bytes(&a.ip) else { continue };
            if self.names.len() >= MAX_ADDRESSES && !self.names.contains_key(&ip) {
                continue;
            }
            let mut set = self.names.entry(ip).or_default();
            set.insert(answer.query.clone());
            if a.name != answer.query {
                set.insert(a.name.clone());
            }
        }
    }

    /// Names seen for `ip`, sorted.
    pub fn names(&self, ip: IpAddr) -> Vec<String> {
        self.names.get(&ip).map(|s| s.iter().cloned().collect()).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembers_query_and_cname_target() {
        let c = DnsCache::default();
        c.record(&pb::DnsAnswer {
            query: "api.example.com".into(),
            answers: vec![pb::DnsAddress { name: "edge.example.net".into(), ip: vec![192, 0, 2, 7], ttl: 30 }],
            ..Default::default()
        });
        assert_eq!(c.names("192.0.2.7".parse().expect("ip")), vec!["api.example.com", "edge.example.net"]);
        assert!(c.names("192.0.2.8".parse().expect("ip")).is_empty());
    }
}
