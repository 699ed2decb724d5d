//! The lab's cluster DNS: the `coredns` pod's server (A and AAAA for
//! `<svc>.<ns>.svc.cluster.local` and the scenario's external names, read from a records file
//! the lab rewrites every round), and the stub resolver a pod's libc would be (search list,
//! `ndots:5`, UDP).

use std::{
    collections::BTreeMap,
    io::{self, Read as _, Write as _},
    net::{IpAddr, SocketAddr, TcpListener, TcpStream, UdpSocket},
    path::{Path, PathBuf},
    str::FromStr,
    sync::{Arc, Mutex},
    time::{Duration, SystemTime},
};

use hickory_proto::{
    op::{Message, MessageType, OpCode, Query, ResponseCode},
    rr::{Name, RData, Record, RecordType, rdata},
};
use serde::{Deserialize, Serialize};

/// The cluster's DNS domain.
pub const CLUSTER_DOMAIN: &str = "cluster.local";

/// The addresses one name resolves to.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Addresses {
    #[serde(default)]
    pub a: Vec<IpAddr>,
    #[serde(default)]
    pub aaaa: Vec<IpAddr>,
}

/// Every name kube-dns answers (lower case, no trailing dot) → its addresses.
pub type Records = BTreeMap<String, Addresses>;

/// The search list of a pod in `namespace` (as kubelet writes its resolv.conf).
pub fn search_list(namespace: &str) -> Vec<String> {
    vec![format!("{namespace}.svc.{CLUSTER_DOMAIN}"), format!("svc.{CLUSTER_DOMAIN}"), CLUSTER_DOMAIN.to_string()]
}

/// Writes the records file whole (a server reading it never sees half of it).
pub fn write_records(path: &Path, records: &Records) -> io::Result<()> {
    crate::netns::write_whole(path, &serde_json::to_vec_pretty(records).map_err(io::Error::other)?)
}

/// The records file, re-read when it changes.
#[derive(Debug)]
struct Zone {
    path: PathBuf,
    seen: Option<SystemTime>,
    records: Records,
}

impl Zone {
    fn current(&mut self) -> &Records {
        let modified = std::fs::metadata(&self.path).and_then(|m| m.modified()).ok();
        if modified != self.seen
            && let Ok(bytes) = std::fs::read(&self.path)
            && let Ok(records) = serde_json::from_slice(&bytes)
        {
            self.records = records;
            self.seen = modified;
        }
        &self.records
    }
}

/// The answer to one query message (None: not a query we can parse).
fn answer(zone: &Mutex<Zone>, query: &[u8]) -> Option<Vec<u8>> {
    let q = Message::from_vec(query).ok()?;
    let mut resp = Message::new(q.metadata.id, MessageType::Response, OpCode::Query);
    resp.metadata.recursion_desired = q.metadata.recursion_desired;
    resp.metadata.recursion_available = true;
    resp.metadata.authoritative = true;
    let mut known = true;
    for query in &q.queries {
        resp.add_query(query.clone());
        let name = query.name().to_ascii().trim_end_matches('.').to_ascii_lowercase();
        let Ok(mut zone) = zone.lock() else { return None };
        let Some(addrs) = zone.current().get(&name).cloned() else {
            known = false;
            continue;
        };
        let list = match query.query_type() {
            RecordType::A => addrs.a,
            RecordType::AAAA => addrs.aaaa,
            _ => Vec::new(),
        };
        for ip in list {
            let data = match ip {
                IpAddr::V4(a) => RData::A(rdata::A(a)),
                IpAddr::V6(a) => RData::AAAA(rdata::AAAA(a)),
            };
            resp.add_answer(Record::from_rdata(query.name().clone(), 5, data));
        }
    }
    if !known {
        resp.metadata.response_code = ResponseCode::NXDomain;
    }
    resp.to_vec().ok()
}

/// Serves the records in `records_file` on every address of `listen`, over UDP and TCP, until
/// killed. Returns once every socket is bound (the caller then says "ready").
pub fn serve(listen: &[SocketAddr], records_file: &Path) -> io::Result<Vec<std::thread::JoinHandle<()>>> {
    let zone = Arc::new(Mutex::new(Zone { path: records_file.to_path_buf(), seen: None, records: Records::new() }));
    let mut handles = Vec::new();
    for addr in listen {
        let udp = UdpSocket::bind(addr)?;
        let tcp = TcpListener::bind(addr)?;
        let z = zone.clone();
        handles.push(std::thread::spawn(move || {
            let mut buf = [0u8; 1500];
            loop {
                let Ok((n, from)) = udp.recv_from(&mut buf) else { continue };
                if let Some(bytes) = answer(&z, &buf[..n]) {
                    let _ = udp.send_to(&bytes, from);
                }
            }
        }));
        let z = zone.clone();
        handles.push(std::thread::spawn(move || {
            for conn in tcp.incoming().flatten() {
                let _ = serve_tcp_conn(&z, conn);
            }
        }));
    }
    Ok(handles)
}

/// DNS over TCP: length-prefixed messages until the client closes.
fn serve_tcp_conn(zone: &Mutex<Zone>, mut conn: TcpStream) -> io::Result<()> {
    conn.set_read_timeout(Some(Duration::from_secs(2)))?;
    loop {
        let mut len = [0u8; 2];
        conn.read_exact(&mut len)?;
        let mut msg = vec![0u8; usize::from(u16::from_be_bytes(len))];
        conn.read_exact(&mut msg)?;
        let Some(bytes) = answer(zone, &msg) else { return Ok(()) };
        let n = u16::try_from(bytes.len()).map_err(io::Error::other)?;
        conn.write_all(&n.to_be_bytes())?;
        conn.write_all(&bytes)?;
    }
}

/// What resolving one name did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Resolution {
    /// The names asked, in order (search list first, as with `ndots:5`).
    pub queries: Vec<String>,
    /// The addresses of the first name that had any.
    pub addresses: Vec<IpAddr>,
}

/// Resolves `name` (A, or AAAA when `v6`) through `server` as a pod's libc does: with fewer
/// than 5 dots, each search domain first, then the name as given; the first answer wins.
pub fn resolve(server: SocketAddr, name: &str, search: &[String], v6: bool) -> io::Result<Resolution> {
    let bind: SocketAddr = if server.is_ipv6() { "[::]:0" } else { "0.0.0.0:0" }.parse().map_err(io::Error::other)?;
    let absolute = name.ends_with('.');
    let name = name.trim_end_matches('.');
    let mut candidates: Vec<String> = Vec::new();
    if !absolute && name.matches('.').count() < 5 {
        candidates.extend(search.iter().map(|d| format!("{name}.{d}")));
    }
    candidates.push(name.to_string());
    let mut out = Resolution::default();
    for (i, candidate) in candidates.iter().enumerate() {
        let qname = Name::from_str(&format!("{candidate}.")).map_err(io::Error::other)?;
        let mut q = Message::new(0x4d00 | i as u16, MessageType::Query, OpCode::Query);
        q.metadata.recursion_desired = true;
        q.add_query(Query::query(qname, if v6 { RecordType::AAAA } else { RecordType::A }));
        let bytes = q.to_vec().map_err(io::Error::other)?;
        // A connected socket per query, as glibc uses.
        let sock = UdpSocket::bind(bind)?;
        sock.connect(server)?;
        sock.set_read_timeout(Some(Duration::from_secs(2)))?;
        out.queries.push(candidate.clone());
        let mut reply = None;
        for _attempt in 0..2 {
            sock.send(&bytes)?;
            let mut buf = [0u8; 1500];
            if let Ok(n) = sock.recv(&mut buf) {
                reply = Message::from_vec(&buf[..n]).ok();
                break;
            }
        }
        let Some(reply) = reply else {
            return Err(io::Error::new(io::ErrorKind::TimedOut, format!("no answer from {server} for {candidate}")));
        };
        let addrs: Vec<IpAddr> = reply
            .answers
            .iter()
            .filter_map(|r| match &r.data {
                RData::A(a) => Some(IpAddr::V4(a.0)),
                RData::AAAA(a) => Some(IpAddr::V6(a.0)),
                _ => None,
            })
            .collect();
        if !addrs.is_empty() {
            out.addresses = addrs;
            return Ok(out);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_the_records_through_the_search_list_on_loopback() {
        let dir = std::env::temp_dir().join(format!("mapper-lab-dns-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("mkdir");
        let file = dir.join("dns.json");
        let ip = |s: &str| s.parse::<IpAddr>().expect("ip");
        let mut records = Records::new();
        records.insert(
            "ledger.team3.svc.cluster.local".into(),
            Addresses { a: vec![ip("10.96.100.10")], aaaa: vec![ip("fd00:96:100::10")] },
        );
        records.insert("api.example.com".into(), Addresses { a: vec![ip("203.0.113.10")], aaaa: vec![] });
        write_records(&file, &records).expect("write records");
        let port = 20_000 + (std::process::id() % 20_000) as u16;
        let server: SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
        serve(&[server], &file).expect("serve");
        let search = search_list("team1");
        let r = resolve(server, "ledger.team3", &search, false).expect("resolve");
        assert_eq!(r.queries, vec!["ledger.team3.team1.svc.cluster.local", "ledger.team3.svc.cluster.local"]);
        assert_eq!(r.addresses, vec![ip("10.96.100.10")]);
        let r = resolve(server, "ledger.team3", &search, true).expect("resolve AAAA");
        assert_eq!(r.addresses, vec![ip("fd00:96:100::10")]);
        let r = resolve(server, "api.example.com", &search, false).expect("resolve external");
        assert_eq!((r.queries.len(), r.addresses.clone()), (4, vec![ip("203.0.113.10")]), "{r:?}");
        let r = resolve(server, "nothing.example.com", &search, false).expect("resolve unknown");
        assert!(r.addresses.is_empty(), "{r:?}");
        // The records follow the file (kube-dns follows the endpoints).
        records.insert("new.team3.svc.cluster.local".into(), Addresses { a: vec![ip("10.96.100.11")], aaaa: vec![] });
        std::thread::sleep(Duration::from_millis(20));
        write_records(&file, &records).expect("rewrite records");
        let r = resolve(server, "new.team3.svc.cluster.local.", &search, false).expect("resolve new");
        assert_eq!((r.queries.len(), r.addresses), (1, vec![ip("10.96.100.11")]));
        // Over TCP too.
        let mut conn = TcpStream::connect(server).expect("tcp");
        let mut q = Message::new(7, MessageType::Query, OpCode::Query);
        q.add_query(Query::query(Name::from_str("api.example.com.").expect("name"), RecordType::A));
        let bytes = q.to_vec().expect("encode");
        conn.write_all(&(bytes.len() as u16).to_be_bytes()).expect("write");
        conn.write_all(&bytes).expect("write");
        let mut len = [0u8; 2];
        conn.read_exact(&mut len).expect("read");
        let mut msg = vec![0u8; usize::from(u16::from_be_bytes(len))];
        conn.read_exact(&mut msg).expect("read");
        assert_eq!(Message::from_vec(&msg).expect("decode").answers.len(), 1);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
