//! Bearer-token authentication of every RPC.

use tonic::{Request, Status, metadata::MetadataValue, service::Interceptor};

/// Checks `authorization: Bearer <token>` on every request when a token is set.
#[derive(Clone)]
pub struct BearerAuth {
    expected: Option<Vec<u8>>,
}

impl std::fmt::Debug for BearerAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BearerAuth").field("enabled", &self.expected.is_some()).finish()
    }
}

/// Compares without returning early, so the time taken says nothing of the token.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl BearerAuth {
    /// `None`: every request is accepted.
    pub fn new(token: Option<String>) -> Self {
        Self { expected: token.map(|t| format!("Bearer {}", t.trim()).into_bytes()) }
    }
}

impl Interceptor for BearerAuth {
    fn call(&mut self, req: Request<()>) -> Result<Request<()>, Status> {
        let Some(expected) = &self.expected else { return Ok(req) };
        match req.metadata().get("authorization").map(MetadataValue::as_bytes) {
            Some(got) if constant_time_eq(got, expected) => Ok(req),
            Some(_) => Err(Status::unauthenticated("invalid bearer token")),
            None => Err(Status::unauthenticated("missing `authorization: Bearer <token>`: pass --token-file")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(header: Option<&str>) -> Request<()> {
        let mut r = Request::new(());
        if let Some(h) = header {
            r.metadata_mut().insert("authorization", h.parse().expect("header"));
        }
        r
    }

    #[test]
    fn checks_the_token() {
        let mut a = BearerAuth::new(Some("s3cret\n".into()));
        assert!(a.call(with(Some("Bearer s3cret"))).is_ok());
        assert_eq!(a.call(with(Some("Bearer nope"))).expect_err("bad").code(), tonic::Code::Unauthenticated);
        assert_eq!(a.call(with(None)).expect_err("none").code(), tonic::Code::Unauthenticated);
        let mut open = BearerAuth::new(None);
        assert!(open.call(with(None)).is_ok());
    }
}
