//! The report client's pure parts: fitting DNS answers, which refusals are final, backoff.

use super::*;

#[test]
fn dns_answers_are_fitted_to_the_server_s_bounds() {
    let answer = |query: &str, names: &[&str]| pb::DnsAnswer {
        query: query.into(),
        answers: names.iter().map(|n| pb::DnsAddress { name: (*n).into(), ip: vec![192, 0, 2, 1], ttl: 1 }).collect(),
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
    for c in [Code::ResourceExhausted, Code::Unavailable, Code::Unauthenticated, Code::Internal, Code::DeadlineExceeded]
    {
        assert!(!is_rejection(c), "{c:?} must be retried");
    }
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
