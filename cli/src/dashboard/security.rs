//! Who may read the dashboard: a request must name the random token in its path
//! (`/<token>/…`), come with a `Host` that is this machine by address or `localhost` on the
//! dashboard's port (a DNS-rebinding page's requests carry its own name), and, when the browser
//! says where it comes from (`Origin`, `Sec-Fetch-Site`), come from the dashboard's own page.
//!
//! Other local users do not know the token (it is printed only to the user who started the
//! dashboard); other sites' pages cannot read the answers (no CORS headers, and their
//! requests are refused before any work is done).

use std::fmt;
use std::net::IpAddr;

use axum::http::{HeaderMap, header};

/// The length of the token in bytes (64 hex digits in the URL).
const TOKEN_BYTES: usize = 32;

/// The checks for one dashboard: its token and its port.
#[derive(Clone)]
pub struct Guard {
    token: String,
    port: u16,
}

impl fmt::Debug for Guard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Guard").field("token", &"<redacted>").field("port", &self.port).finish()
    }
}

/// Why a request was refused (each answered 403, with this as the body).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// No `Host`, or one that is not this machine on the dashboard's port.
    #[error("forbidden: the Host header must be localhost or an IP address, with the dashboard's port")]
    Host,
    /// An `Origin` other than the dashboard's own.
    #[error("forbidden: cross-origin requests are refused")]
    Origin,
    /// `Sec-Fetch-Site` says another site sent it.
    #[error("forbidden: requests from other sites are refused")]
    FetchSite,
    /// The path does not start with the token.
    #[error("forbidden: the URL lacks the dashboard's token (use the URL `mapper dashboard` printed)")]
    Token,
}

/// Why no token could be made.
#[derive(Debug, thiserror::Error)]
#[error("cannot draw a random token from the system's random number generator")]
pub struct TokenError;

impl Guard {
    /// A guard with a fresh random token for a dashboard on `port`.
    pub fn random(port: u16) -> Result<Self, TokenError> {
        use ring::rand::{SecureRandom, SystemRandom};
        let mut bytes = [0u8; TOKEN_BYTES];
        SystemRandom::new().fill(&mut bytes).map_err(|_| TokenError)?;
        let token = bytes.iter().map(|b| format!("{b:02x}")).collect();
        Ok(Self { token, port })
    }

    /// A guard with a given token (tests).
    pub fn with_token(token: &str, port: u16) -> Self {
        Self { token: token.to_owned(), port }
    }

    /// The token (the first segment of every path).
    pub fn token(&self) -> &str {
        &self.token
    }

    /// Checks a request; on success returns its path after the token (`/`, `/api/map`).
    pub fn check<'p>(&self, headers: &HeaderMap, path: &'p str) -> Result<&'p str, Refusal> {
        let host = headers.get(header::HOST).and_then(|h| h.to_str().ok()).ok_or(Refusal::Host)?;
        if !self.host_is_local(host) {
            return Err(Refusal::Host);
        }
        if let Some(origin) = headers.get(header::ORIGIN) {
            let same = origin.to_str().ok().is_some_and(|o| o.eq_ignore_ascii_case(&format!("http://{host}")));
            if !same {
                return Err(Refusal::Origin);
            }
        }
        if let Some(site) = headers.get("sec-fetch-site") {
            // `none`: the user opened the URL (typed, a bookmark, the browser started with it).
            if !matches!(site.to_str(), Ok("same-origin" | "none")) {
                return Err(Refusal::FetchSite);
            }
        }
        let rest = path.strip_prefix('/').ok_or(Refusal::Token)?;
        let (first, rest) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        if !constant_time_eq(first.as_bytes(), self.token.as_bytes()) {
            return Err(Refusal::Token);
        }
        Ok(if rest.is_empty() { "/" } else { rest })
    }

    /// `localhost`, or an IP address (v6 in brackets), followed by this dashboard's port (or
    /// no port when it is 80). A name other than localhost is what DNS rebinding needs.
    fn host_is_local(&self, host: &str) -> bool {
        let (name, port) = match host.rsplit_once(':') {
            Some((name, port)) if !name.ends_with(':') && (!name.starts_with('[') || name.ends_with(']')) => {
                (name, port.parse::<u16>().ok())
            }
            _ => (host, Some(80)),
        };
        if port != Some(self.port) {
            return false;
        }
        let name = name.strip_prefix('[').and_then(|n| n.strip_suffix(']')).unwrap_or(name);
        name.eq_ignore_ascii_case("localhost") || name.parse::<IpAddr>().is_ok()
    }
}

/// Equality that takes as long whatever the first differing byte.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    const TOKEN: &str = "0123456789abcdef";

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, HeaderValue::from_static(value));
        }
        map
    }

    #[test]
    fn the_token_is_random_and_long() {
        let a = Guard::random(8090).unwrap_or_else(|e| panic!("{e}"));
        let b = Guard::random(8090).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(a.token().len(), 64);
        assert_ne!(a.token(), b.token());
        assert!(!format!("{a:?}").contains(a.token()), "the token is not in Debug output");
    }

    #[test]
    fn requests_with_the_token_and_a_local_host_pass() {
        let guard = Guard::with_token(TOKEN, 8090);
        let ok = |host: &'static str, path| guard.check(&headers(&[("host", host)]), path);
        assert_eq!(ok("127.0.0.1:8090", "/0123456789abcdef/"), Ok("/"));
        assert_eq!(ok("localhost:8090", "/0123456789abcdef"), Ok("/"));
        assert_eq!(ok("[::1]:8090", "/0123456789abcdef/api/map"), Ok("/api/map"));
        assert_eq!(ok("192.168.1.5:8090", "/0123456789abcdef/app.js"), Ok("/app.js"));
        assert_eq!(
            Guard::with_token(TOKEN, 80).check(&headers(&[("host", "127.0.0.1")]), "/0123456789abcdef/"),
            Ok("/")
        );
        let same_origin = headers(&[
            ("host", "127.0.0.1:8090"),
            ("origin", "http://127.0.0.1:8090"),
            ("sec-fetch-site", "same-origin"),
        ]);
        assert_eq!(guard.check(&same_origin, "/0123456789abcdef/api/audit"), Ok("/api/audit"));
    }

    #[test]
    fn a_missing_or_wrong_token_is_refused() {
        let guard = Guard::with_token(TOKEN, 8090);
        let local = headers(&[("host", "127.0.0.1:8090")]);
        for path in ["/", "/api/map", "/0123456789abcdeF/", "/0123456789abcde/", "/0123456789abcdef0/", ""] {
            assert_eq!(guard.check(&local, path), Err(Refusal::Token), "{path}");
        }
    }

    #[test]
    fn foreign_hosts_are_refused() {
        let guard = Guard::with_token(TOKEN, 8090);
        for host in
            ["evil.example:8090", "127.0.0.1:8091", "127.0.0.1", "localhost.evil.example:8090", "[::1]", ":8090"]
        {
            let h = headers(&[("host", host)]);
            assert_eq!(guard.check(&h, "/0123456789abcdef/"), Err(Refusal::Host), "{host}");
        }
        assert_eq!(guard.check(&HeaderMap::new(), "/0123456789abcdef/"), Err(Refusal::Host), "no Host");
    }

    #[test]
    fn foreign_origins_and_sites_are_refused() {
        let guard = Guard::with_token(TOKEN, 8090);
        for origin in ["http://evil.example", "http://127.0.0.1:8091", "null", "https://127.0.0.1:8090"] {
            let h = headers(&[("host", "127.0.0.1:8090"), ("origin", origin)]);
            assert_eq!(guard.check(&h, "/0123456789abcdef/api/map"), Err(Refusal::Origin), "{origin}");
        }
        for site in ["cross-site", "same-site"] {
            let h = headers(&[("host", "127.0.0.1:8090"), ("sec-fetch-site", site)]);
            assert_eq!(guard.check(&h, "/0123456789abcdef/api/map"), Err(Refusal::FetchSite), "{site}");
        }
    }
}
