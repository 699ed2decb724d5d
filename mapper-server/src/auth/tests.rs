use std::{
    net::SocketAddr,
    time::{Duration, Instant, UNIX_EPOCH},
};

use k8s_openapi::api::authentication::v1::{TokenReviewStatus, UserInfo};
use tonic::Code;

use super::{
    review::{CACHE_CAPACITY, NEGATIVE_TTL, POSITIVE_TTL, ReviewCache, Verdict, cache_ttl, token_expiry},
    *,
};

const LOOPBACK: &str = "127.0.0.1:5000";
const POD_IP: &str = "10.244.1.7:5000";

fn peer(s: &str) -> Option<SocketAddr> {
    Some(s.parse().expect("socket address"))
}

fn code(d: Decision<'_>) -> Result<Option<String>, Code> {
    match d {
        Decision::Allow => Ok(None),
        Decision::Review(_, t) => Ok(Some(t.to_string())),
        Decision::Refuse(s) => Err(s.code()),
    }
}

/// A reviewer that is never called here (`decide` only says when to review).
fn reviewer() -> Reviewer {
    let client = kube::Client::try_from(kube::Config::new("http://127.0.0.1:1".parse().expect("url"))).expect("client");
    Reviewer::new(TokenReviewConfig {
        client,
        audience: "mapper".into(),
        agents: vec!["mapper-system/mapper-agent".parse().expect("sa")],
    })
}

#[tokio::test]
async fn static_token_only() {
    let a = Authenticator::new(Some("s3cret\n"), None, false);
    for role in [Role::Ingest, Role::Query] {
        assert!(matches!(code(a.decide(role, Some(b"Bearer s3cret"), peer(POD_IP))), Ok(None)));
        for scheme in [&b"bearer s3cret"[..], b"BEARER s3cret"] {
            assert!(
                matches!(code(a.decide(role, Some(scheme), peer(POD_IP))), Ok(None)),
                "the scheme is case-insensitive"
            );
        }
        for wrong in [&b"Bearer nope"[..], b"Bearer s3cre", b"Bearer s3cret2", b"Bearer S3cret"] {
            assert_eq!(code(a.decide(role, Some(wrong), peer(POD_IP))), Err(Code::Unauthenticated));
        }
        assert_eq!(code(a.decide(role, None, peer(LOOPBACK))), Err(Code::Unauthenticated));
        assert_eq!(code(a.decide(role, Some(b"Basic czNjcmV0"), peer(POD_IP))), Err(Code::Unauthenticated));
    }
    let debug = format!("{a:?}");
    assert!(!debug.contains("s3cret") && !debug.contains(&format!("{:?}", b"s3cret")), "the token in {debug}");
    let open = Authenticator::new(None, None, false);
    assert!(!open.enabled());
    assert!(open.check(Role::Ingest, None, peer(POD_IP)).await.is_ok(), "no authentication configured");
}

#[tokio::test]
async fn agents_are_reviewed_for_ingest_only() {
    let a = Authenticator::new(Some("s3cret"), Some(reviewer()), false);
    assert_eq!(code(a.decide(Role::Ingest, Some(b"Bearer agent.jwt"), peer(POD_IP))), Ok(Some("agent.jwt".into())));
    assert_eq!(code(a.decide(Role::Ingest, Some(b"Bearer s3cret"), peer(POD_IP))), Ok(None), "static token");
    assert_eq!(code(a.decide(Role::Ingest, None, peer(LOOPBACK))), Err(Code::Unauthenticated));
    assert_eq!(code(a.decide(Role::Ingest, Some(b"Bearer "), peer(POD_IP))), Err(Code::Unauthenticated));
    // Agents' tokens do not read the map, and are not even reviewed for it.
    assert_eq!(code(a.decide(Role::Query, Some(b"Bearer agent.jwt"), peer(POD_IP))), Err(Code::Unauthenticated));
    let status = a.check(Role::Query, None, peer(LOOPBACK)).await.expect_err("loopback query without the flag");
    assert!(status.to_string().contains("--token-file"), "{status:?}");
}

#[tokio::test]
async fn loopback_query_needs_the_flag_and_a_loopback_peer() {
    let a = Authenticator::new(None, Some(reviewer()), true);
    for p in [LOOPBACK, "[::1]:5000", "[::ffff:127.0.0.1]:5000"] {
        assert!(a.check(Role::Query, None, peer(p)).await.is_ok(), "query from {p}");
    }
    for p in [Some(POD_IP), Some("[fd00::2]:5000"), None] {
        let status = a.check(Role::Query, None, p.and_then(peer)).await.expect_err("non-loopback query");
        assert_eq!(status.code(), Code::Unauthenticated);
        assert!(status.to_string().contains("port-forward"), "{status:?}");
    }
    // Loopback is no way in for agents.
    assert_eq!(code(a.decide(Role::Ingest, None, peer(LOOPBACK))), Err(Code::Unauthenticated));
}

fn status(authenticated: bool, username: &str, audiences: &[&str]) -> TokenReviewStatus {
    TokenReviewStatus {
        authenticated: Some(authenticated),
        audiences: Some(audiences.iter().map(ToString::to_string).collect()),
        user: Some(UserInfo { username: Some(username.into()), ..UserInfo::default() }),
        error: None,
    }
}

#[test]
fn verdicts() {
    let agent = "system:serviceaccount:mapper-system:mapper-agent".to_string();
    let agents = std::slice::from_ref(&agent);
    assert_eq!(
        Verdict::judge(Some(&status(true, &agent, &["mapper"])), "mapper", agents),
        Verdict::Accepted { username: agent.clone() }
    );
    let other = Verdict::judge(Some(&status(true, "system:serviceaccount:default:x", &["mapper"])), "mapper", agents);
    assert!(matches!(&other, Verdict::NotAnAgent { username } if username == "system:serviceaccount:default:x"));
    let aud = Verdict::judge(Some(&status(true, &agent, &["https://kubernetes.default.svc"])), "mapper", agents);
    assert!(matches!(aud, Verdict::WrongAudience { .. }));
    let no_aud = TokenReviewStatus { audiences: None, ..status(true, &agent, &[]) };
    assert!(matches!(Verdict::judge(Some(&no_aud), "mapper", agents), Verdict::WrongAudience { .. }));
    let mut refused = status(false, "", &[]);
    refused.error = Some("token has expired".into());
    let v = Verdict::judge(Some(&refused), "mapper", agents);
    assert_eq!(v, Verdict::NotAuthenticated { error: Some("token has expired".into()) });
    assert!(v.to_result("mapper").expect_err("refused").to_string().contains("token has expired"));
    assert!(matches!(Verdict::judge(None, "mapper", agents), Verdict::NotAuthenticated { error: None }));
    for v in [other, Verdict::WrongAudience { audiences: vec![] }] {
        assert_eq!(v.to_result("mapper").expect_err("refused").code(), Code::Unauthenticated);
    }
}

#[test]
fn service_accounts_parse() {
    let sa: ServiceAccount = "mapper-system/mapper-agent".parse().expect("valid");
    assert_eq!(sa.username(), "system:serviceaccount:mapper-system:mapper-agent");
    for bad in ["mapper-agent", "/x", "ns/", "a/b/c", "a:b/c", "a b/c"] {
        assert!(bad.parse::<ServiceAccount>().is_err(), "{bad} accepted");
    }
}

#[test]
fn cache_expires_and_stays_bounded() {
    let cache = ReviewCache::new(2);
    let t0 = Instant::now();
    let ok = Verdict::Accepted { username: "a".into() };
    let (k1, k2, k3) = (ReviewCache::key("one"), ReviewCache::key("two"), ReviewCache::key("three"));
    assert_ne!(k1, k2);
    cache.insert(k1, ok.clone(), t0 + Duration::from_secs(60), t0);
    cache.insert(k2, Verdict::NotAuthenticated { error: None }, t0 + Duration::from_secs(10), t0);
    assert_eq!(cache.get(&k1, t0 + Duration::from_secs(5)), Some(ok.clone()));
    assert!(cache.get(&k2, t0 + Duration::from_secs(5)).is_some());
    // Full: the entry closest to expiry makes room.
    cache.insert(k3, ok.clone(), t0 + Duration::from_secs(60), t0 + Duration::from_secs(5));
    assert_eq!(cache.len(), 2);
    assert!(cache.get(&k2, t0 + Duration::from_secs(5)).is_none(), "the soonest to expire was evicted");
    assert!(cache.get(&k1, t0 + Duration::from_secs(5)).is_some());
    // Expired entries are not answered, and go.
    assert!(cache.get(&k1, t0 + Duration::from_secs(61)).is_none());
    assert_eq!(cache.len(), 1);
    const { assert!(CACHE_CAPACITY >= 5_000, "room for an agent token per node of a large cluster") };
}

/// A JWT with these claims (unsigned: only the expiry is read).
fn jwt(claims: &str) -> String {
    use base64::Engine as _;
    format!("eyJhbGciOiJSUzI1NiJ9.{}.c2ln", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(claims))
}

#[test]
fn accepted_tokens_are_trusted_no_longer_than_they_live() {
    let now = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
    let ok = Verdict::Accepted { username: "a".into() };
    let soon = jwt(r#"{"aud":["mapper"],"exp":1800000025,"sub":"system:serviceaccount:a:b"}"#);
    assert_eq!(token_expiry(&soon), Some(UNIX_EPOCH + Duration::from_secs(1_800_000_025)));
    assert_eq!(cache_ttl(&ok, &soon, now), Duration::from_secs(25));
    let later = jwt(r#"{"exp":1800003600}"#);
    assert_eq!(cache_ttl(&ok, &later, now), POSITIVE_TTL);
    assert_eq!(cache_ttl(&ok, &jwt(r#"{"exp":1799999999}"#), now), Duration::ZERO, "expired: not cached");
    assert_eq!(cache_ttl(&ok, "not-a-jwt", now), POSITIVE_TTL);
    assert_eq!(cache_ttl(&Verdict::NotAuthenticated { error: None }, &later, now), NEGATIVE_TTL);
}
