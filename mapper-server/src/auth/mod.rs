//! Who may call which service.
//!
//! Three ways in, checked before every RPC by [`layer::Authenticated`]:
//! - the static bearer token (`--token-file`): every RPC;
//! - a Kubernetes ServiceAccount token that the TokenReview API accepts for the
//!   configured audience, held by one of the agents' ServiceAccounts: Ingest only;
//! - a connection from a loopback address (`--allow-loopback-query`): Query only.
//!   In a cluster the CLI comes through a port-forward, which the kubelet opens
//!   on the pod's own loopback, so RBAC on `pods/portforward` in the server's
//!   namespace decides who reads the map; agents come over the pod IP.
//!
//! With neither a static token nor token review configured, every RPC is
//! accepted (a loopback listener, or `--insecure`).

pub mod layer;
pub mod review;

use std::{fmt, net::SocketAddr, str::FromStr};

use crate::errors::CallError;

pub use review::Reviewer;
use review::{ReviewCache, TokenKey};

/// Which service a request is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Agents reporting flows.
    Ingest,
    /// The CLI reading (or resetting) the map.
    Query,
}

/// A ServiceAccount, `NAMESPACE/NAME` on the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceAccount {
    pub namespace: String,
    pub name: String,
}

impl ServiceAccount {
    /// The user name the API server gives its tokens.
    pub fn username(&self) -> String {
        format!("system:serviceaccount:{}:{}", self.namespace, self.name)
    }
}

impl fmt::Display for ServiceAccount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// A malformed `NAMESPACE/NAME`.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{input:?} is not a ServiceAccount: expected NAMESPACE/NAME")]
pub struct ServiceAccountError {
    pub input: String,
}

impl FromStr for ServiceAccount {
    type Err = ServiceAccountError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let valid = |p: &str| !p.is_empty() && !p.contains([':', '/']) && !p.chars().any(char::is_whitespace);
        match s.trim().split_once('/') {
            Some((ns, name)) if valid(ns) && valid(name) => {
                Ok(Self { namespace: ns.to_string(), name: name.to_string() })
            }
            _ => Err(ServiceAccountError { input: s.to_string() }),
        }
    }
}

/// How tokens that are not the static token are checked: TokenReview through
/// this client, for this audience, and only these ServiceAccounts may report.
#[derive(Clone)]
pub struct TokenReviewConfig {
    pub client: kube::Client,
    pub audience: String,
    pub agents: Vec<ServiceAccount>,
}

impl fmt::Debug for TokenReviewConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenReviewConfig")
            .field("audience", &self.audience)
            .field("agents", &self.agents)
            .finish_non_exhaustive()
    }
}

/// Compares two digests without returning early: as both are of fixed length,
/// the time taken says nothing of the token, not even its length.
fn constant_time_eq(a: &TokenKey, b: &TokenKey) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Whether a peer address is loopback (an IPv4-mapped one too, on a dual-stack listener).
pub fn is_loopback(addr: &SocketAddr) -> bool {
    match addr {
        SocketAddr::V4(a) => a.ip().is_loopback(),
        SocketAddr::V6(a) => a.ip().to_canonical().is_loopback(),
    }
}

/// What to do with a request before any network call.
#[derive(Debug)]
enum Decision<'a> {
    Allow,
    Refuse(CallError),
    /// Ask the TokenReview API, through this reviewer, about this token.
    Review(&'a Reviewer, &'a str),
}

/// Checks every request against the configured ways in.
#[derive(Debug)]
pub struct Authenticator {
    /// The static token's SHA-256 (the token itself is not kept, so not printed either).
    static_token: Option<TokenKey>,
    reviewer: Option<Reviewer>,
    allow_loopback_query: bool,
}

impl Authenticator {
    /// `static_token`: accepted everywhere; `reviewer`: agents' tokens for
    /// Ingest; `allow_loopback_query`: Query from loopback without a token.
    pub fn new(static_token: Option<&str>, reviewer: Option<Reviewer>, allow_loopback_query: bool) -> Self {
        Self { static_token: static_token.map(|t| ReviewCache::key(t.trim())), reviewer, allow_loopback_query }
    }

    /// Whether any request can be refused.
    pub fn enabled(&self) -> bool {
        self.static_token.is_some() || self.reviewer.is_some()
    }

    fn decide<'a>(&'a self, role: Role, authorization: Option<&'a [u8]>, peer: Option<SocketAddr>) -> Decision<'a> {
        if !self.enabled() {
            return Decision::Allow;
        }
        // `None`: no header; `Some(None)`: a header that is not a bearer token.
        // The scheme is case-insensitive (RFC 9110, 11.1).
        let bearer = authorization.map(|h| {
            h.get(..7)
                .filter(|scheme| scheme.eq_ignore_ascii_case(b"bearer "))
                .and_then(|_| std::str::from_utf8(&h[7..]).ok())
                .map(str::trim)
                .filter(|t| !t.is_empty())
        });
        if let (Some(expected), Some(Some(token))) = (&self.static_token, bearer)
            && constant_time_eq(&ReviewCache::key(token), expected)
        {
            return Decision::Allow;
        }
        match role {
            Role::Query if self.allow_loopback_query && peer.as_ref().is_some_and(is_loopback) => Decision::Allow,
            Role::Query => Decision::Refuse(match (bearer, self.allow_loopback_query) {
                (None, true) => {
                    CallError::MissingToken { hint: "pass --token-file, or connect through a port-forward" }
                }
                (None, false) => CallError::MissingToken { hint: "pass --token-file" },
                (Some(_), _) => CallError::InvalidQueryToken,
            }),
            Role::Ingest => match (bearer, &self.reviewer) {
                (None, _) => Decision::Refuse(CallError::MissingToken { hint: "pass --token-file" }),
                (Some(None), _) => Decision::Refuse(CallError::NotBearer),
                (Some(Some(token)), Some(reviewer)) => Decision::Review(reviewer, token),
                (Some(Some(_)), None) => Decision::Refuse(CallError::InvalidToken),
            },
        }
    }

    /// Accepts or refuses a request for `role` carrying the `authorization`
    /// header value, from `peer`. A token review that cannot be done is
    /// `Unavailable`, so agents keep their flows and retry.
    pub async fn check(
        &self,
        role: Role,
        authorization: Option<&[u8]>,
        peer: Option<SocketAddr>,
    ) -> Result<(), CallError> {
        match self.decide(role, authorization, peer) {
            Decision::Allow => Ok(()),
            Decision::Refuse(status) => Err(status),
            Decision::Review(reviewer, token) => reviewer.check(token).await,
        }
    }
}

#[cfg(test)]
mod tests;
