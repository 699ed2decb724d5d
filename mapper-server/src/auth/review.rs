//! Kubernetes TokenReview of bearer tokens, with a bounded cache of verdicts
//! keyed by the token's SHA-256 (the tokens themselves are neither kept nor logged).

use std::{
    collections::HashMap,
    fmt,
    sync::Mutex,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use crate::errors::CallError;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec, TokenReviewStatus};
use kube::{Api, api::PostParams};
use tracing::{debug, info, warn};

use super::TokenReviewConfig;

/// Longest an accepted token is trusted without asking again (less when it expires sooner).
pub const POSITIVE_TTL: Duration = Duration::from_secs(60);
/// How long a refusal is remembered (a fixed ServiceAccount or binding is seen soon).
pub const NEGATIVE_TTL: Duration = Duration::from_secs(10);
/// Verdicts kept at most (one per agent token in use, so at least the node count).
pub const CACHE_CAPACITY: usize = 10_000;

/// What the API server said of a token, judged against the audience and the agents' identities.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Accepted { username: String },
    NotAuthenticated { error: Option<String> },
    WrongAudience { audiences: Vec<String> },
    NotAnAgent { username: String },
}

impl Verdict {
    /// Accepted only when authenticated, for `audience`, as one of `agents` (user names).
    pub fn judge(status: Option<&TokenReviewStatus>, audience: &str, agents: &[String]) -> Self {
        let Some(status) = status.filter(|s| s.authenticated == Some(true)) else {
            return Self::NotAuthenticated { error: status.and_then(|s| s.error.clone()).filter(|e| !e.is_empty()) };
        };
        let audiences = status.audiences.clone().unwrap_or_default();
        if !audiences.iter().any(|a| a == audience) {
            return Self::WrongAudience { audiences };
        }
        let username = status.user.as_ref().and_then(|u| u.username.clone()).unwrap_or_default();
        if agents.contains(&username) { Self::Accepted { username } } else { Self::NotAnAgent { username } }
    }

    /// The answer to the caller.
    pub fn to_result(&self, audience: &str) -> Result<(), CallError> {
        match self {
            Self::Accepted { .. } => Ok(()),
            Self::NotAuthenticated { error } => Err(CallError::TokenRefused { error: error.clone() }),
            Self::WrongAudience { audiences } => {
                Err(CallError::WrongAudience { audience: audience.to_owned(), audiences: audiences.clone() })
            }
            Self::NotAnAgent { username } => Err(CallError::NotAnAgent { username: username.clone() }),
        }
    }
}

/// SHA-256 of a token.
pub type TokenKey = [u8; 32];

/// Verdicts by token hash, each until its expiry; bounded.
#[derive(Debug)]
pub struct ReviewCache {
    entries: Mutex<HashMap<TokenKey, (Verdict, Instant)>>,
    capacity: usize,
}

impl ReviewCache {
    pub fn new(capacity: usize) -> Self {
        Self { entries: Mutex::new(HashMap::new()), capacity: capacity.max(1) }
    }

    /// The cache key of a token.
    pub fn key(token: &str) -> TokenKey {
        let digest = ring::digest::digest(&ring::digest::SHA256, token.as_bytes());
        let mut key = [0u8; 32];
        key.copy_from_slice(digest.as_ref());
        key
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<TokenKey, (Verdict, Instant)>> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The verdict on `key`, unless it has expired by `now`.
    pub fn get(&self, key: &TokenKey, now: Instant) -> Option<Verdict> {
        let mut entries = self.lock();
        match entries.get(key) {
            Some((v, expires)) if *expires > now => Some(v.clone()),
            Some(_) => {
                entries.remove(key);
                None
            }
            None => None,
        }
    }

    /// Remembers a verdict until `expires`; when full, expired entries go
    /// first, then the one closest to expiry.
    pub fn insert(&self, key: TokenKey, verdict: Verdict, expires: Instant, now: Instant) {
        let mut entries = self.lock();
        if entries.len() >= self.capacity && !entries.contains_key(&key) {
            entries.retain(|_, (_, e)| *e > now);
            if entries.len() >= self.capacity
                && let Some(soonest) = entries.iter().min_by_key(|(_, (_, e))| *e).map(|(k, _)| *k)
            {
                entries.remove(&soonest);
            }
        }
        entries.insert(key, (verdict, expires));
    }

    /// Verdicts held (expired ones included until they are met or evicted).
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The `exp` claim of a JWT, read without checking the signature: only used
/// to trust an already reviewed token no longer than it lives.
pub fn token_expiry(token: &str) -> Option<SystemTime> {
    let mut parts = token.split('.');
    let (_header, payload, _sig) = (parts.next()?, parts.next()?, parts.next()?);
    let payload = URL_SAFE_NO_PAD.decode(payload.trim_end_matches('=')).ok()?;
    let claims: serde_json::Value = serde_json::from_slice(&payload).ok()?;
    Some(UNIX_EPOCH + Duration::from_secs(claims.get("exp")?.as_u64()?))
}

/// How long to remember a verdict on `token`.
pub fn cache_ttl(verdict: &Verdict, token: &str, now: SystemTime) -> Duration {
    match verdict {
        Verdict::Accepted { .. } => match token_expiry(token) {
            Some(exp) => exp.duration_since(now).unwrap_or(Duration::ZERO).min(POSITIVE_TTL),
            None => POSITIVE_TTL,
        },
        _ => NEGATIVE_TTL,
    }
}

/// Reviews agents' tokens through the API server, remembering verdicts.
pub struct Reviewer {
    api: Api<TokenReview>,
    audience: String,
    /// User names of the agents' ServiceAccounts.
    agents: Vec<String>,
    cache: ReviewCache,
}

impl fmt::Debug for Reviewer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Reviewer")
            .field("audience", &self.audience)
            .field("agents", &self.agents)
            .field("cached", &self.cache.len())
            .finish_non_exhaustive()
    }
}

impl Reviewer {
    pub fn new(cfg: TokenReviewConfig) -> Self {
        Self {
            api: Api::all(cfg.client),
            agents: cfg.agents.iter().map(super::ServiceAccount::username).collect(),
            audience: cfg.audience,
            cache: ReviewCache::new(CACHE_CAPACITY),
        }
    }

    /// Accepts `token` if it belongs to an agent; asks the API server unless a
    /// verdict is cached. An API failure is `Unavailable` and is not cached.
    pub async fn check(&self, token: &str) -> Result<(), CallError> {
        let key = ReviewCache::key(token);
        if let Some(v) = self.cache.get(&key, Instant::now()) {
            return v.to_result(&self.audience);
        }
        let verdict = self.review(token).await?;
        match &verdict {
            Verdict::Accepted { username } => debug!(%username, "agent token accepted"),
            refused => info!(verdict = ?refused, "bearer token refused after review"),
        }
        let ttl = cache_ttl(&verdict, token, SystemTime::now());
        if !ttl.is_zero() {
            let now = Instant::now();
            self.cache.insert(key, verdict.clone(), now + ttl, now);
        }
        verdict.to_result(&self.audience)
    }

    async fn review(&self, token: &str) -> Result<Verdict, CallError> {
        let review = TokenReview {
            spec: TokenReviewSpec { token: Some(token.to_string()), audiences: Some(vec![self.audience.clone()]) },
            ..TokenReview::default()
        };
        match self.api.create(&PostParams::default(), &review).await {
            Ok(r) => Ok(Verdict::judge(r.status.as_ref(), &self.audience, &self.agents)),
            Err(e) => {
                warn!(error = %e, "TokenReview request failed: agents are told to retry");
                Err(CallError::ReviewFailed(e))
            }
        }
    }
}
