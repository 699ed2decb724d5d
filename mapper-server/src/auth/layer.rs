//! The check in front of a gRPC service, as a tower service: it runs before
//! the request reaches the handlers (which stay unaware of authentication) and
//! may await the TokenReview API, which a tonic `Interceptor` cannot.

use std::{
    convert::Infallible,
    sync::Arc,
    task::{Context, Poll},
};

use tonic::{
    body::Body,
    codegen::{BoxFuture, Service, http},
    server::NamedService,
    transport::server::TcpConnectInfo,
};

use super::{Authenticator, Role};

/// `inner`, reachable only by requests the authenticator accepts for `role`.
#[derive(Debug, Clone)]
pub struct Authenticated<S> {
    inner: S,
    auth: Arc<Authenticator>,
    role: Role,
}

impl<S> Authenticated<S> {
    pub fn new(inner: S, auth: Arc<Authenticator>, role: Role) -> Self {
        Self { inner, auth, role }
    }
}

impl<S: NamedService> NamedService for Authenticated<S> {
    const NAME: &'static str = S::NAME;
}

impl<S> Service<http::Request<Body>> for Authenticated<S>
where
    S: Service<http::Request<Body>, Response = http::Response<Body>, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<Body>) -> Self::Future {
        // The service that was polled ready serves this request; a clone takes its place.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let (auth, role) = (self.auth.clone(), self.role);
        Box::pin(async move {
            // What tonic's `Request::remote_addr()` reads, before the request becomes one.
            let peer = req.extensions().get::<TcpConnectInfo>().and_then(TcpConnectInfo::remote_addr);
            let authorization = req.headers().get(http::header::AUTHORIZATION).map(http::HeaderValue::as_bytes);
            match auth.check(role, authorization, peer).await {
                Ok(()) => inner.call(req).await,
                Err(refusal) => Ok(tonic::Status::from(refusal).into_http()),
            }
        })
    }
}
