//! Names behind external addresses, from the DNS answers agents saw, so an
//! edge to an address outside the cluster can be exported as an internet
//! target with its domain names.
//!
//! Bounded three ways: addresses remembered, names per address (the newest
//! kept), and time (an entry expires after its TTL, within a floor and a
//! ceiling, counted from when the server learnt it).

use std::{
    net::IpAddr,
    sync::atomic::{AtomicI64, Ordering},
};

use dashmap::DashMap;
use mapper_proto::v1 as pb;

use crate::ingest::{MAX_DNS_NAME_LEN, ip_from_bytes};

/// Addresses remembered at most (a bound on memory; beyond it new addresses
/// are not named until expired ones make room).
const MAX_ADDRESSES: usize = 200_000;

/// Names remembered per address at most; a new one pushes out the one learnt longest ago.
pub const MAX_NAMES_PER_ADDRESS: usize = 16;

/// However short its TTL, a name is kept this long: clients keep their connections
/// (and resolvers their answers) past the TTL, and flows arrive up to a report interval late.
pub const MIN_KEEP_MS: i64 = 10 * 60 * 1000;

/// However long its TTL, a name is forgotten after this long unless an answer renews it.
pub const MAX_KEEP_MS: i64 = 6 * 3600 * 1000;

/// How often, at most, a full cache looks for expired entries to make room.
const SWEEP_EVERY_MS: i64 = 60 * 1000;

/// One name of an address, and when it is forgotten (Unix ms).
#[derive(Debug, Clone)]
struct Name {
    name: String,
    expires_ms: i64,
}

/// ip → names it was the answer for.
#[derive(Debug, Default)]
pub struct DnsCache {
    names: DashMap<IpAddr, Vec<Name>>,
    last_sweep_ms: AtomicI64,
}

fn usable(name: &str) -> bool {
    !name.is_empty() && name.len() <= MAX_DNS_NAME_LEN
}

impl DnsCache {
    /// Remembers the addresses of one answer, learnt at `now_ms` (the server's clock). Names
    /// that are empty or longer than a DNS name can be are skipped (ingest refuses them first).
    pub fn record(&self, answer: &pb::DnsAnswer, now_ms: i64) {
        for a in &answer.answers {
            let Ok(Some(ip)) = ip_from_bytes(&a.ip) else { continue };
            let keep = (i64::from(a.ttl) * 1000).clamp(MIN_KEEP_MS, MAX_KEEP_MS);
            let expires_ms = now_ms.saturating_add(keep);
            let names = [answer.query.as_str(), a.name.as_str()];
            let names = names.iter().enumerate().filter(|&(i, n)| usable(n) && (i == 0 || *n != answer.query));
            let names: Vec<&str> = names.map(|(_, n)| *n).collect();
            if names.is_empty() {
                continue;
            }
            if self.names.len() >= MAX_ADDRESSES && !self.names.contains_key(&ip) {
                self.sweep(now_ms);
                if self.names.len() >= MAX_ADDRESSES {
                    continue;
                }
            }
            let mut entry = self.names.entry(ip).or_default();
            entry.retain(|n| n.expires_ms > now_ms);
            for name in names {
                // A name seen again is renewed and becomes the newest.
                if let Some(at) = entry.iter().position(|n| n.name == name) {
                    let old = entry.remove(at);
                    entry.push(Name { expires_ms: old.expires_ms.max(expires_ms), ..old });
                } else {
                    if entry.len() >= MAX_NAMES_PER_ADDRESS {
                        entry.remove(0);
                    }
                    entry.push(Name { name: name.to_owned(), expires_ms });
                }
            }
        }
    }

    /// Removes expired entries, at most once a minute.
    fn sweep(&self, now_ms: i64) {
        let last = self.last_sweep_ms.load(Ordering::Relaxed);
        if now_ms.saturating_sub(last) < SWEEP_EVERY_MS
            || self.last_sweep_ms.compare_exchange(last, now_ms, Ordering::AcqRel, Ordering::Relaxed).is_err()
        {
            return;
        }
        self.names.retain(|_, names| {
            names.retain(|n| n.expires_ms > now_ms);
            !names.is_empty()
        });
    }

    /// Names seen for `ip` and not expired at `now_ms`, sorted.
    pub fn names(&self, ip: IpAddr, now_ms: i64) -> Vec<String> {
        let mut out: Vec<String> = self
            .names
            .get(&ip)
            .map(|s| s.iter().filter(|n| n.expires_ms > now_ms).map(|n| n.name.clone()).collect())
            .unwrap_or_default();
        out.sort();
        out
    }

    /// Addresses remembered (expired ones included until a sweep or a new answer drops them).
    pub fn len(&self) -> usize {
        self.names.len()
    }

    /// Whether no address is remembered.
    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_800_000_000_000;

    fn answer(query: &str, name: &str, ip: [u8; 4], ttl: u32) -> pb::DnsAnswer {
        pb::DnsAnswer {
            query: query.into(),
            answers: vec![pb::DnsAddress { name: name.into(), ip: ip.to_vec(), ttl }],
            ..Default::default()
        }
    }

    #[test]
    fn remembers_query_and_cname_target() {
        let c = DnsCache::default();
        c.record(&answer("api.example.com", "edge.example.net", [192, 0, 2, 7], 30), NOW);
        assert_eq!(c.names("192.0.2.7".parse().expect("ip"), NOW), vec!["api.example.com", "edge.example.net"]);
        assert!(c.names("192.0.2.8".parse().expect("ip"), NOW).is_empty());
    }

    #[test]
    fn names_per_address_are_bounded_keeping_the_newest() {
        let c = DnsCache::default();
        let ip = "192.0.2.9".parse().expect("ip");
        for i in 0..1_000 {
            let n = format!("n{i:04}.example.com");
            c.record(&answer(&n, &n, [192, 0, 2, 9], 300), NOW + i);
        }
        let names = c.names(ip, NOW + 1_000);
        let want: Vec<String> =
            (1_000 - MAX_NAMES_PER_ADDRESS..1_000).map(|i| format!("n{i:04}.example.com")).collect();
        assert_eq!(names, want);
        // A name seen again is the newest: the next new one pushes out another.
        c.record(&answer(&want[0], &want[0], [192, 0, 2, 9], 300), NOW + 2_000);
        c.record(&answer("new.example.com", "new.example.com", [192, 0, 2, 9], 300), NOW + 2_001);
        let names = c.names(ip, NOW + 2_002);
        assert!(names.contains(&want[0]) && !names.contains(&want[1]) && names.len() == MAX_NAMES_PER_ADDRESS);
    }

    #[test]
    fn entries_expire_by_ttl_within_floor_and_ceiling() {
        let c = DnsCache::default();
        let ip = "192.0.2.10".parse().expect("ip");
        c.record(&answer("short.example.com", "short.example.com", [192, 0, 2, 10], 1), NOW);
        c.record(&answer("long.example.com", "long.example.com", [192, 0, 2, 10], u32::MAX), NOW);
        c.record(&answer("hour.example.com", "hour.example.com", [192, 0, 2, 10], 3600), NOW);
        assert_eq!(c.names(ip, NOW + MIN_KEEP_MS - 1).len(), 3, "the floor keeps a 1 s TTL for 10 min");
        assert_eq!(c.names(ip, NOW + MIN_KEEP_MS), vec!["hour.example.com", "long.example.com"]);
        assert_eq!(c.names(ip, NOW + 3_600_000), vec!["long.example.com"]);
        assert!(c.names(ip, NOW + MAX_KEEP_MS).is_empty(), "the ceiling bounds a huge TTL");
        // Expired entries leave the cache when it needs the room.
        c.sweep(NOW + MAX_KEEP_MS);
        assert!(c.is_empty());
    }

    #[test]
    fn unusable_names_are_skipped() {
        let c = DnsCache::default();
        let long = "a".repeat(MAX_DNS_NAME_LEN + 1);
        c.record(&answer(&long, "", [192, 0, 2, 11], 30), NOW);
        assert!(c.is_empty());
        c.record(&answer(&long, "ok.example.com", [192, 0, 2, 11], 30), NOW);
        assert_eq!(c.names("192.0.2.11".parse().expect("ip"), NOW), vec!["ok.example.com"]);
    }
}
