//! The lab's workloads: servers that accept and answer, and clients that make
//! a counted number of connections, datagrams or DNS queries.

use std::{
    io,
    net::{IpAddr, SocketAddr, TcpListener, TcpStream, UdpSocket},
    str::FromStr,
    thread,
    time::Duration,
};

use hickory_proto::{
    op::{Message, MessageType, OpCode, Query},
    rr::{Name, RData, Record, RecordType, rdata},
};
use serde::Serialize;

/// What a client run did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct CallSummary {
    /// Connections established (UDP: datagrams sent; DNS: answers received).
    pub ok: u64,
    /// Attempts that failed.
    pub failed: u64,
}

/// Accepts connections forever and closes each at once: the lab's servers
/// exist to be connected to, and a server that keeps up with thousands of
/// connections per second must not spend a thread on each.
pub fn serve_tcp(listener: TcpListener) {
    deepen_backlog(&listener);
    for conn in listener.incoming() {
        drop(conn);
    }
}

/// std listens with a backlog of 128; a burst of clients overflows that and
/// waits out SYN retransmits. listen(2) again raises it.
fn deepen_backlog(listener: &TcpListener) {
    use std::os::fd::AsRawFd;
    // SAFETY: listen(2) on a socket we own.
    unsafe { libc::listen(listener.as_raw_fd(), 4096) };
}

/// Receives datagrams forever and answers each one (its own bytes back), as a DNS or statsd
/// server's peer expects an answer.
pub fn serve_udp(sock: UdpSocket) {
    let mut buf = [0u8; 2048];
    loop {
        let Ok((n, from)) = sock.recv_from(&mut buf) else { continue };
        let _ = sock.send_to(&buf[..n], from);
    }
}

/// Answers every A/AAAA query with `answer` (when of the asked family).
pub fn serve_dns(sock: UdpSocket, answer: IpAddr) {
    let mut buf = [0u8; 1500];
    loop {
        let Ok((n, from)) = sock.recv_from(&mut buf) else {
            continue;
        };
        let Ok(q) = Message::from_vec(&buf[..n]) else {
            continue;
        };
        let mut resp = Message::new(q.metadata.id, MessageType::Response, OpCode::Query);
        resp.metadata.recursion_desired = q.metadata.recursion_desired;
        resp.metadata.recursion_available = true;
        for query in &q.queries {
            resp.add_query(query.clone());
            let data = match (query.query_type(), answer) {
                (RecordType::A, IpAddr::V4(a)) => Some(RData::A(rdata::A(a))),
                (RecordType::AAAA, IpAddr::V6(a)) => Some(RData::AAAA(rdata::AAAA(a))),
                _ => None,
            };
            if let Some(d) = data {
                resp.add_answer(Record::from_rdata(query.name().clone(), 30, d));
            }
        }
        if let Ok(bytes) = resp.to_vec() {
            let _ = sock.send_to(&bytes, from);
        }
    }
}

/// Makes `count` TCP connections to `to`, one after the other; each is closed
/// by the client right after it is established.
pub fn call_tcp(to: SocketAddr, count: u64, interval: Duration, timeout: Duration) -> CallSummary {
    let mut s = CallSummary::default();
    for i in 0..count {
        if i > 0 && !interval.is_zero() {
            thread::sleep(interval);
        }
        match TcpStream::connect_timeout(&to, timeout) {
            Ok(c) => {
                s.ok += 1;
                close_with_reset(c);
            }
            Err(_) => s.failed += 1,
        }
    }
    s
}

/// Closes with an RST (SO_LINGER 0) so no TIME_WAIT is left behind: a lab
/// client making thousands of connections would otherwise run out of
/// ephemeral ports, and measure the kernel's search for a free one.
pub(crate) fn close_with_reset(c: TcpStream) {
    use std::os::fd::AsRawFd;
    let linger = libc::linger { l_onoff: 1, l_linger: 0 };
    // SAFETY: valid socket fd and a correctly sized linger struct.
    unsafe {
        libc::setsockopt(
            c.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&raw const linger).cast(),
            size_of::<libc::linger>() as libc::socklen_t,
        );
    }
    drop(c);
}

/// Sends `count` datagrams to `to` from one unconnected socket. With a `reply_timeout`, a
/// datagram counts as ok only when the server's reply arrives within it; without, when sent.
pub fn call_udp(to: SocketAddr, count: u64, reply_timeout: Option<Duration>) -> io::Result<CallSummary> {
    let bind: SocketAddr =
        if to.is_ipv6() { "[::]:0".parse() } else { "0.0.0.0:0".parse() }.map_err(io::Error::other)?;
    let sock = UdpSocket::bind(bind)?;
    if let Some(t) = reply_timeout {
        sock.set_read_timeout(Some(t.max(Duration::from_millis(1))))?;
    }
    let mut s = CallSummary::default();
    let mut buf = [0u8; 2048];
    for i in 0..count {
        let payload = format!("mapper-lab:{i}");
        if sock.send_to(payload.as_bytes(), to).is_err() {
            s.failed += 1;
            continue;
        }
        if reply_timeout.is_none() {
            s.ok += 1;
            continue;
        }
        // Replies to earlier datagrams that came late are skipped; an ICMP error or the
        // timeout fails this one.
        let replied = loop {
            match sock.recv_from(&mut buf) {
                Ok((n, _)) if &buf[..n] == payload.as_bytes() => break true,
                Ok(_) => continue,
                Err(_) => break false,
            }
        };
        if replied { s.ok += 1 } else { s.failed += 1 }
    }
    Ok(s)
}

/// Asks `server` for `name` (A, or AAAA when `v6`) `count` times over a
/// connected UDP socket, as resolvers do.
pub fn call_dns(server: SocketAddr, name: &str, v6: bool, count: u64) -> io::Result<CallSummary> {
    let bind: SocketAddr =
        if server.is_ipv6() { "[::]:0".parse() } else { "0.0.0.0:0".parse() }.map_err(io::Error::other)?;
    let sock = UdpSocket::bind(bind)?;
    sock.connect(server)?;
    sock.set_read_timeout(Some(Duration::from_secs(2)))?;
    let qname = Name::from_str(name).map_err(io::Error::other)?;
    let mut s = CallSummary::default();
    for i in 0..count {
        let mut q = Message::new(i as u16, MessageType::Query, OpCode::Query);
        q.metadata.recursion_desired = true;
        q.add_query(Query::query(qname.clone(), if v6 { RecordType::AAAA } else { RecordType::A }));
        let bytes = q.to_vec().map_err(io::Error::other)?;
        sock.send(&bytes)?;
        let mut buf = [0u8; 1500];
        match sock.recv(&mut buf) {
            Ok(n) if Message::from_vec(&buf[..n]).is_ok_and(|m| !m.answers.is_empty()) => s.ok += 1,
            _ => s.failed += 1,
        }
    }
    Ok(s)
}

/// `HOST:PORT` (`10.96.0.10:53`, `[fd00::1]:80`, `ledger.team3:80`) → host (brackets
/// removed) and port.
pub fn split_host_port(to: &str) -> Result<(String, u16), String> {
    let (host, port) = to.rsplit_once(':').ok_or_else(|| format!("{to:?}: expected HOST:PORT"))?;
    let port = port.parse().map_err(|_| format!("{to:?}: port {port:?} is not a number"))?;
    let host = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
    if host.is_empty() {
        return Err(format!("{to:?}: no host"));
    }
    Ok((host.to_string(), port))
}

/// What `mapper-lab call` prints: the summary, the address called, and the names asked.
#[derive(Debug, Clone, Default, Serialize)]
pub struct CallReport {
    #[serde(flatten)]
    pub summary: CallSummary,
    /// The address connected to (after resolving, when the host was a name).
    pub address: String,
    /// The names asked of the DNS server, in order, when the host was a name.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub dns_queries: Vec<String>,
}

/// How a name in `--to` is resolved.
#[derive(Debug, Clone)]
pub struct Resolver {
    pub nameserver: SocketAddr,
    pub search: Vec<String>,
    pub v6: bool,
}

/// The address to call: `host` itself when it is an IP, else what `resolver` answers (the
/// first address). None when the name did not resolve.
pub fn target(host: &str, port: u16, resolver: &Resolver, report: &mut CallReport) -> Option<SocketAddr> {
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Some(SocketAddr::new(ip, port));
    }
    match crate::dns::resolve(resolver.nameserver, host, &resolver.search, resolver.v6) {
        Ok(r) => {
            report.dns_queries = r.queries;
            r.addresses.first().map(|ip| SocketAddr::new(*ip, port))
        }
        Err(e) => {
            eprintln!("mapper-lab call: resolving {host} through {}: {e}", resolver.nameserver);
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_and_udp_replies() {
        assert_eq!(split_host_port("10.96.0.10:53"), Ok(("10.96.0.10".into(), 53)));
        assert_eq!(split_host_port("[fd00::1]:80"), Ok(("fd00::1".into(), 80)));
        assert_eq!(split_host_port("ledger.team3:80"), Ok(("ledger.team3".into(), 80)));
        assert!(split_host_port("ledger").is_err() && split_host_port(":80").is_err());
        assert!(split_host_port("x:http").is_err_and(|e| e.contains("port \"http\"")));
        // A UDP server answers every datagram; the client counts only answered ones.
        let server = UdpSocket::bind("127.0.0.1:0").expect("bind");
        let addr = server.local_addr().expect("addr");
        thread::spawn(move || serve_udp(server));
        let s = call_udp(addr, 3, Some(Duration::from_secs(1))).expect("call");
        assert_eq!(s, CallSummary { ok: 3, failed: 0 });
        let silent = UdpSocket::bind("127.0.0.1:0").expect("bind");
        let s = call_udp(silent.local_addr().expect("addr"), 2, Some(Duration::from_millis(50))).expect("call");
        assert_eq!(s, CallSummary { ok: 0, failed: 2 });
        // Without a reply timeout, a datagram sent is ok (as before).
        assert_eq!(call_udp(silent.local_addr().expect("addr"), 1, None).expect("call").ok, 1);
    }
}
