use super::*;

/// A response for `name` with one A record (via a CNAME when `cname` is set).
pub(crate) fn response(name: &str, ip: [u8; 4], cname: Option<&str>) -> Vec<u8> {
    fn qname(out: &mut Vec<u8>, name: &str) {
        for label in name.split('.') {
            out.push(label.len() as u8);
            out.extend_from_slice(label.as_bytes());
        }
        out.push(0);
    }
    let mut m = vec![0x12, 0x34, 0x81, 0x80, 0, 1, 0, if cname.is_some() { 2 } else { 1 }, 0, 0, 0, 0];
    qname(&mut m, name);
    m.extend_from_slice(&[0, 1, 0, 1]);
    let a_owner: Vec<u8> = if let Some(target) = cname {
        m.extend_from_slice(&[0xc0, 12, 0, 5, 0, 1, 0, 0, 0, 60]);
        let mut t = Vec::new();
        qname(&mut t, target);
        m.extend_from_slice(&(t.len() as u16).to_be_bytes());
        let at = m.len() as u16;
        m.extend_from_slice(&t);
        vec![0xc0 | (at >> 8) as u8, at as u8]
    } else {
        vec![0xc0, 12]
    };
    m.extend_from_slice(&a_owner);
    m.extend_from_slice(&[0, 1, 0, 1, 0, 0, 1, 44, 0, 4]);
    m.extend_from_slice(&ip);
    m
}

#[test]
fn parses_an_a_answer() {
    let (q, a) =
        parse_answer(&response("ledger.team3.svc.cluster.local", [10, 96, 0, 10], None), false).expect("parsed");
    assert_eq!(q, "ledger.team3.svc.cluster.local");
    assert_eq!(a, vec![DnsAnswer { name: q.clone(), ip: "10.96.0.10".parse().expect("ip"), ttl: 300 }]);
}

#[test]
fn follows_cname_owner() {
    let (q, a) =
        parse_answer(&response("api.example.com", [192, 0, 2, 7], Some("edge.example.net")), false).expect("parsed");
    assert_eq!(q, "api.example.com");
    assert_eq!(a[0].name, "edge.example.net");
}

#[test]
fn malformed_and_truncated_are_skipped_not_panics() {
    let good = response("a.b", [1, 2, 3, 4], None);
    for cut in 0..good.len() {
        let r = parse_answer(&good[..cut], true);
        assert!(r.is_err(), "a message cut at {cut} bytes parsed");
    }
    assert_eq!(parse_answer(&[0xff; 40], false).expect_err("garbage parsed"), DnsSkip::Malformed);
    // Pseudo-random garbage: must never panic.
    let mut x: u32 = 0x1234_5678;
    for len in 0..600 {
        let buf: Vec<u8> = (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                x as u8
            })
            .collect();
        let _ = parse_answer(&buf, false);
    }
}

#[test]
fn queries_are_not_answers() {
    let mut q = response("a.b", [1, 2, 3, 4], None);
    q[2] = 0x01; // QR = 0
    assert_eq!(parse_answer(&q, false).expect_err("query parsed"), DnsSkip::NotAResponse);
}
