//! What a request must get past before ingest works on it, so that memory and
//! descriptors stay bounded whatever the peers send:
//!
//! - a bound on open connections, connections that send nothing closed after an idle
//!   time, and accept errors (out of file descriptors) that back off instead of spinning;
//! - a bound on Report calls in progress, taken before the request body is read, and one
//!   on their bytes, taken once the gRPC frame's prefix has announced the request's size
//!   and before the rest is read: many small batches are worked on at once (and share a
//!   group commit), a few large ones at a time, and what is buffered and decoded stays
//!   bounded either way;
//! - a decoder that counts a request's flows and DNS answers in its bytes before
//!   decoding it, and answers undecodable input with INVALID_ARGUMENT (not retried).

use std::{
    convert::Infallible,
    io,
    net::SocketAddr,
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    task::{Context, Poll},
    time::Duration,
};

use mapper_proto::v1 as pb;
use prost::Message;
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::{TcpListener, TcpStream},
    sync::Semaphore,
};
use tonic::{
    Status,
    body::Body,
    codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder},
    codegen::{BoxFuture, Service, http},
    server::NamedService,
    transport::server::{Connected, TcpConnectInfo},
};
use tracing::{info, warn};

use crate::errors::CallError;
use crate::ingest::{
    IngestService, MAX_ADDRESSES_PER_ANSWER, MAX_BATCH_BYTES, MAX_DNS_ADDRESSES_PER_BATCH, MAX_DNS_PER_BATCH,
    MAX_FLOWS_PER_BATCH,
};

/// How the server guards itself.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Open gRPC connections at most; beyond, new ones are closed at once.
    pub max_connections: usize,
    /// A connection over which nothing arrives for this long is closed.
    pub idle_timeout: Duration,
    /// Report calls read, decoded and applied at once, server-wide (a cancelled call's batch
    /// counts until it is done with). The default is as many as one group commit takes
    /// ([`crate::commit::MAX_GROUP_BATCHES`]): the batches waiting while a group is written
    /// make the next group, and the fewer and larger the groups, the less the writer spends
    /// per flow (one fsync and one copy of each B-tree page changed, per group). What they
    /// hold is bounded by `report_bytes` whatever their number.
    pub max_concurrent_reports: usize,
    /// Bytes (as sent) of the Report requests read, decoded and applied at once, server-wide;
    /// a request larger than this is worked on alone.
    pub report_bytes: usize,
    /// How long a Report call waits for its turn before RESOURCE_EXHAUSTED (retried by the agent).
    pub report_queue_wait: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_connections: 2_048,
            idle_timeout: Duration::from_secs(300),
            max_concurrent_reports: crate::commit::MAX_GROUP_BATCHES,
            report_bytes: 64 << 20,
            report_queue_wait: Duration::from_secs(5),
        }
    }
}

// ------------------------------------------------------------------ decoding ---

/// Counts what a `ReportRequest`'s bytes hold, without allocating: refuses more flows,
/// DNS answers or addresses than a batch may carry before any is decoded.
pub fn precheck(buf: &[u8]) -> Result<(), String> {
    let (mut flows, mut answers, mut addresses) = (0usize, 0usize, 0usize);
    for field in Fields(buf) {
        let (number, value) = field?;
        match (number, value) {
            (4, Value::Bytes(_)) => {
                flows += 1;
                if flows > MAX_FLOWS_PER_BATCH {
                    return Err(format!("more than {MAX_FLOWS_PER_BATCH} flows in one batch"));
                }
            }
            (5, Value::Bytes(answer)) => {
                answers += 1;
                if answers > MAX_DNS_PER_BATCH {
                    return Err(format!("more than {MAX_DNS_PER_BATCH} DNS answers in one batch"));
                }
                let mut here = 0usize;
                for inner in Fields(answer) {
                    if let (2, Value::Bytes(_)) = inner? {
                        here += 1;
                        addresses += 1;
                    }
                }
                if here > MAX_ADDRESSES_PER_ANSWER {
                    return Err(format!(
                        "dns[{}].answers: {here} addresses in one answer, at most {MAX_ADDRESSES_PER_ANSWER}",
                        answers - 1
                    ));
                }
                if addresses > MAX_DNS_ADDRESSES_PER_BATCH {
                    return Err(format!("more than {MAX_DNS_ADDRESSES_PER_BATCH} DNS answer addresses in one batch"));
                }
            }
            _ => {}
        }
    }
    Ok(())
}

enum Value<'a> {
    Scalar,
    Bytes(&'a [u8]),
}

/// The top-level fields of one protobuf message, as (field number, value).
struct Fields<'a>(&'a [u8]);

fn varint(buf: &mut &[u8]) -> Result<u64, String> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let (&b, rest) = buf.split_first().ok_or("truncated varint")?;
        *buf = rest;
        v |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Ok(v);
        }
    }
    Err("varint longer than 10 bytes".into())
}

impl<'a> Iterator for Fields<'a> {
    type Item = Result<(u64, Value<'a>), String>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.0.is_empty() {
            return None;
        }
        let mut field = || {
            let key = varint(&mut self.0)?;
            let (number, wire) = (key >> 3, key & 7);
            let skip = |buf: &mut &'a [u8], n: usize| match buf.split_at_checked(n) {
                Some((v, rest)) => {
                    *buf = rest;
                    Ok(v)
                }
                None => Err(format!("field {number}: {n} bytes announced, {} left", buf.len())),
            };
            let value = match wire {
                0 => varint(&mut self.0).map(|_| Value::Scalar)?,
                1 => skip(&mut self.0, 8).map(|_| Value::Scalar)?,
                2 => {
                    let n = usize::try_from(varint(&mut self.0)?).map_err(|_| "length past the address space")?;
                    Value::Bytes(skip(&mut self.0, n)?)
                }
                5 => skip(&mut self.0, 4).map(|_| Value::Scalar)?,
                w => return Err(format!("field {number}: wire type {w} is not used by this message")),
            };
            Ok((number, value))
        };
        let r = field();
        if r.is_err() {
            // One error ends the walk.
            self.0 = &[];
        }
        Some(r)
    }
}

/// prost for `ReportRequest`/`ReportResponse`, with [`precheck`] before decoding and
/// INVALID_ARGUMENT (tonic's own codec says INTERNAL) for bytes that do not decode.
#[derive(Debug, Clone, Copy, Default)]
pub struct ReportCodec;

#[derive(Debug, Clone, Copy, Default)]
pub struct ReportDecoder;

#[derive(Debug, Clone, Copy, Default)]
pub struct ReportEncoder;

impl Codec for ReportCodec {
    type Encode = pb::ReportResponse;
    type Decode = pb::ReportRequest;
    type Encoder = ReportEncoder;
    type Decoder = ReportDecoder;

    fn encoder(&mut self) -> Self::Encoder {
        ReportEncoder
    }

    fn decoder(&mut self) -> Self::Decoder {
        ReportDecoder
    }
}

impl Encoder for ReportEncoder {
    type Item = pb::ReportResponse;
    type Error = Status;

    fn encode(&mut self, item: Self::Item, dst: &mut EncodeBuf<'_>) -> Result<(), Self::Error> {
        item.encode(dst).map_err(|e| CallError::Encode(e).into())
    }
}

impl Decoder for ReportDecoder {
    type Item = pb::ReportRequest;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Self::Item>, Self::Error> {
        use prost::bytes::Buf;
        // tonic hands the whole message over in one contiguous buffer.
        precheck(src.chunk()).map_err(CallError::Undecodable)?;
        // Decoded from the message's bytes taken out of tonic's buffer (no copy): prost reads
        // `Bytes` in place, and takes each address out of it by reference before copying it,
        // where through the buffer every byte read is a call into it and, from a slice, each
        // address would be copied twice.
        let bytes = src.copy_to_bytes(src.remaining());
        let req = pb::ReportRequest::decode(bytes).map_err(CallError::Decode)?;
        Ok(Some(req))
    }
}

// ------------------------------------------------------------------ the service ---

/// A Report call's turn and the room for its bytes: given back when the last copy goes, which
/// ingest holds until the batch is applied or refused (not only until the call ends: a call
/// cancelled by its deadline or its peer leaves its batch to be finished, and the batch still
/// counts against both bounds until it is).
#[derive(Debug, Clone)]
pub struct Turn {
    _held: Arc<(tokio::sync::OwnedSemaphorePermit, tokio::sync::OwnedSemaphorePermit)>,
}

/// The Ingest service behind a server-wide bound on Report calls in progress, decoded
/// with [`ReportCodec`] up to [`MAX_BATCH_BYTES`].
#[derive(Debug, Clone)]
pub struct IngestEndpoint {
    service: Arc<IngestService>,
    permits: Arc<Semaphore>,
    max: usize,
    /// One permit per byte of the budget (tokio's semaphore counts up to `usize::MAX >> 3`).
    bytes: Arc<Semaphore>,
    budget: usize,
    wait: Duration,
}

impl IngestEndpoint {
    pub fn new(service: IngestService, limits: &Limits) -> Self {
        let budget = report_budget(limits);
        Self {
            service: Arc::new(service),
            permits: Arc::new(Semaphore::new(limits.max_concurrent_reports.max(1))),
            max: limits.max_concurrent_reports.max(1),
            bytes: Arc::new(Semaphore::new(budget)),
            budget,
            wait: limits.report_queue_wait,
        }
    }
}

/// A size as flags give it: a number of bytes, or one with a unit (`64MiB`, `512KiB`, `1GiB`;
/// `KB`, `MB`, `GB` are powers of 1000). Units are case-insensitive.
pub fn parse_bytes(text: &str) -> Result<usize, String> {
    let t = text.trim();
    let digits = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (number, unit) = t.split_at(digits);
    let n: u64 = number.parse().map_err(|_| format!("{text:?}: expected a size such as 64MiB or 1048576"))?;
    let factor: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kib" => 1 << 10,
        "mib" => 1 << 20,
        "gib" => 1 << 30,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        u => return Err(format!("{text:?}: unknown unit {u:?} (B, KiB, MiB, GiB, KB, MB, GB)")),
    };
    n.checked_mul(factor).and_then(|b| usize::try_from(b).ok()).ok_or_else(|| format!("{text:?}: too large"))
}

/// The byte budget as the semaphore holds it: at least one byte, at most what one
/// acquisition can take.
fn report_budget(limits: &Limits) -> usize {
    limits.report_bytes.clamp(1, u32::MAX as usize)
}

/// The size a gRPC request's first frame announces (its 5-byte prefix: a compression flag
/// and a big-endian length), read before the rest of the body; the request is handed back
/// whole. A body shorter than the prefix announces 0 (tonic then says what is wrong).
async fn announced_size(req: http::Request<Body>) -> Result<(http::Request<Body>, usize), Status> {
    use http_body_util::BodyExt;
    let (parts, mut body) = req.into_parts();
    let mut read = Vec::new();
    let mut prefix = Vec::with_capacity(5);
    while prefix.len() < 5 {
        let Some(frame) = body.frame().await else { break };
        let frame = frame?;
        if let Some(data) = frame.data_ref() {
            prefix.extend(data.iter().take(5 - prefix.len()));
        }
        read.push(frame);
    }
    let size = match prefix[..] {
        [_, a, b, c, d] => u32::from_be_bytes([a, b, c, d]) as usize,
        _ => 0,
    };
    let rest = http_body_util::BodyStream::new(body);
    let whole = futures::StreamExt::chain(futures::stream::iter(read.into_iter().map(Ok::<_, Status>)), rest);
    Ok((http::Request::from_parts(parts, Body::new(http_body_util::StreamBody::new(whole))), size))
}

impl NamedService for IngestEndpoint {
    const NAME: &'static str = pb::ingest_server::SERVICE_NAME;
}

struct ReportCall(Arc<IngestService>);

impl tonic::server::UnaryService<pb::ReportRequest> for ReportCall {
    type Response = pb::ReportResponse;
    type Future = BoxFuture<tonic::Response<Self::Response>, Status>;

    fn call(&mut self, request: tonic::Request<pb::ReportRequest>) -> Self::Future {
        let inner = self.0.clone();
        Box::pin(async move { <IngestService as pb::ingest_server::Ingest>::report(&inner, request).await })
    }
}

impl Service<http::Request<Body>> for IngestEndpoint {
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<Body>) -> Self::Future {
        let (service, permits, max, wait) = (self.service.clone(), self.permits.clone(), self.max, self.wait);
        let (bytes, budget) = (self.bytes.clone(), self.budget);
        Box::pin(async move {
            if req.uri().path() != "/mapper.v1.Ingest/Report" {
                return Ok(Status::from(CallError::NoMethod(req.uri().path().to_owned())).into_http());
            }
            let started = tokio::time::Instant::now();
            let busy = |e: CallError| {
                service.metrics.batches.get_or_create(&[("result", "busy")]).inc();
                Ok(Status::from(e).into_http())
            };
            // The turn is taken before the body is read: only this many requests are
            // buffered at once, however many arrive.
            let Ok(Ok(permit)) = tokio::time::timeout(wait, permits.acquire_owned()).await else {
                return busy(CallError::Busy { max, wait });
            };
            // Then room for its bytes, before the rest of them is read.
            let (mut req, size) = match announced_size(req).await {
                Ok(r) => r,
                Err(status) => return Ok(status.into_http()),
            };
            let room = u32::try_from(size.clamp(1, budget)).unwrap_or(u32::MAX);
            let left = wait.saturating_sub(started.elapsed());
            let Ok(Ok(room)) = tokio::time::timeout(left, bytes.acquire_many_owned(room)).await else {
                return busy(CallError::BusyBytes { bytes: size, budget, wait });
            };
            // The turn goes with the request: ingest keeps it until the batch is done with,
            // even when the call is cancelled first.
            req.extensions_mut().insert(Turn { _held: Arc::new((permit, room)) });
            let mut grpc =
                tonic::server::Grpc::new(ReportCodec).apply_max_message_size_config(Some(MAX_BATCH_BYTES), None);
            Ok(grpc.unary(ReportCall(service), req).await)
        })
    }
}

// ------------------------------------------------------------------ connections ---

/// The accepted connections, at most `limits.max_connections` open at once: beyond, a new
/// connection is closed as soon as it is accepted. Accept errors never end the stream: one
/// that is the listener's (out of file descriptors) is logged once and retried with a growing
/// pause, so the server neither spins nor stops accepting for good.
pub fn incoming(listener: TcpListener, limits: Limits) -> impl futures::Stream<Item = Result<Conn, Infallible>> + Send {
    let accept = Accept { listener, open: Arc::new(AtomicUsize::new(0)), limits, refused: 0, failing: false };
    futures::stream::unfold(accept, |mut a| async move {
        let conn = a.next().await;
        Some((Ok(conn), a))
    })
}

struct Accept {
    listener: TcpListener,
    open: Arc<AtomicUsize>,
    limits: Limits,
    /// Connections closed at once because too many were open, since the last log line.
    refused: u64,
    /// The last accept failed for lack of resources.
    failing: bool,
}

/// Pauses after a failed accept: from 10 ms, doubling, up to 1 s.
const FIRST_PAUSE: Duration = Duration::from_millis(10);
const MAX_PAUSE: Duration = Duration::from_secs(1);

/// Whether an accept error is the listener's or the process's (no descriptor, no memory),
/// rather than one connection's (reset before it was accepted).
fn lacks_resources(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc_errno::EMFILE | libc_errno::ENFILE | libc_errno::ENOBUFS | libc_errno::ENOMEM))
}

/// The errno values [`lacks_resources`] looks for (Linux's).
mod libc_errno {
    pub const ENOMEM: i32 = 12;
    pub const ENFILE: i32 = 23;
    pub const EMFILE: i32 = 24;
    pub const ENOBUFS: i32 = 105;
}

impl Accept {
    async fn next(&mut self) -> Conn {
        let mut pause = FIRST_PAUSE;
        loop {
            match self.listener.accept().await {
                Ok((stream, peer)) => {
                    if self.failing {
                        self.failing = false;
                        info!("accepting connections again");
                    }
                    pause = FIRST_PAUSE;
                    if self.open.load(Ordering::Acquire) >= self.limits.max_connections {
                        if self.refused == 0 {
                            warn!(%peer, max = self.limits.max_connections, "too many open connections; closing new ones until some close");
                        }
                        self.refused += 1;
                        drop(stream);
                        continue;
                    }
                    if self.refused > 0 {
                        info!(
                            closed = self.refused,
                            "connections accepted again after some were closed at once for lack of room"
                        );
                        self.refused = 0;
                    }
                    return Conn::new(stream, peer, self.open.clone(), self.limits.idle_timeout);
                }
                Err(e) if lacks_resources(&e) => {
                    if !self.failing {
                        self.failing = true;
                        warn!(error = %e, "cannot accept connections (out of file descriptors or memory); retrying with a pause up to 1 s");
                    }
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(MAX_PAUSE);
                }
                // One connection's trouble (reset before it was accepted): the next one.
                Err(_) => {}
            }
        }
    }
}

/// One accepted connection: counted while open, closed when nothing arrives over it for the
/// idle timeout (a peer that answers the server's HTTP/2 pings is not idle).
pub struct Conn {
    stream: TcpStream,
    info: TcpConnectInfo,
    open: Arc<AtomicUsize>,
    idle_timeout: Duration,
    idle: Pin<Box<tokio::time::Sleep>>,
}

impl std::fmt::Debug for Conn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Conn").field("peer", &self.info.remote_addr).finish_non_exhaustive()
    }
}

impl Conn {
    fn new(stream: TcpStream, peer: SocketAddr, open: Arc<AtomicUsize>, idle_timeout: Duration) -> Self {
        open.fetch_add(1, Ordering::AcqRel);
        let _ = stream.set_nodelay(true);
        let info = TcpConnectInfo { local_addr: stream.local_addr().ok(), remote_addr: Some(peer) };
        Self { stream, info, open, idle_timeout, idle: Box::pin(tokio::time::sleep(idle_timeout)) }
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.open.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Connected for Conn {
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.info.clone()
    }
}

impl AsyncRead for Conn {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        match Pin::new(&mut self.stream).poll_read(cx, buf) {
            Poll::Ready(r) => {
                if buf.filled().len() > before {
                    let deadline = tokio::time::Instant::now() + self.idle_timeout;
                    self.idle.as_mut().reset(deadline);
                }
                Poll::Ready(r)
            }
            Poll::Pending => match self.idle.as_mut().poll(cx) {
                Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("nothing received for {:?}", self.idle_timeout),
                ))),
                Poll::Pending => Poll::Pending,
            },
        }
    }
}

impl AsyncWrite for Conn {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_with_their_units() {
        assert_eq!(parse_bytes("64MiB"), Ok(64 << 20));
        assert_eq!(parse_bytes("512 kib"), Ok(512 << 10));
        assert_eq!(parse_bytes("1048576"), Ok(1 << 20));
        assert_eq!(parse_bytes("2GB"), Ok(2_000_000_000));
        assert_eq!(parse_bytes("64XB"), Err("\"64XB\": unknown unit \"xb\" (B, KiB, MiB, GiB, KB, MB, GB)".into()));
        assert!(parse_bytes("MiB").expect_err("no number").contains("expected a size"));
        assert!(parse_bytes("99999999999999GiB").expect_err("overflow").contains("too large"));
    }

    #[tokio::test]
    async fn a_request_s_size_is_read_from_its_prefix_and_the_body_kept_whole() {
        use http_body_util::BodyExt;
        let message = b"\0\0\0\x01\x2cpayload".to_vec();
        // The prefix arrives split over frames, as a peer may send it.
        let frames: Vec<Result<http_body::Frame<prost::bytes::Bytes>, Status>> =
            [&message[..2], &message[2..4], &message[4..]]
                .iter()
                .map(|c| Ok(http_body::Frame::data(c.to_vec().into())))
                .collect();
        let body = Body::new(http_body_util::StreamBody::new(futures::stream::iter(frames)));
        let (req, size) = announced_size(http::Request::new(body)).await.expect("read");
        assert_eq!(size, 300);
        let whole = req.into_body().collect().await.expect("body").to_bytes();
        assert_eq!(&whole[..], &message[..]);
        // Shorter than a prefix: nothing announced, nothing lost.
        let short = Body::new(http_body_util::Full::new(prost::bytes::Bytes::from_static(b"\0\0")));
        let (req, size) = announced_size(http::Request::new(short)).await.expect("read");
        assert_eq!(size, 0);
        assert_eq!(&req.into_body().collect().await.expect("body").to_bytes()[..], b"\0\0");
    }

    fn encode(r: &pb::ReportRequest) -> Vec<u8> {
        r.encode_to_vec()
    }

    #[test]
    fn precheck_counts_before_decoding() {
        let ok = pb::ReportRequest {
            node: "n".into(),
            flows: vec![pb::Flow::default(); 3],
            dns: vec![pb::DnsAnswer { answers: vec![pb::DnsAddress::default(); 2], ..Default::default() }],
            ..Default::default()
        };
        precheck(&encode(&ok)).expect("a small batch");
        let many = pb::ReportRequest { flows: vec![pb::Flow::default(); MAX_FLOWS_PER_BATCH + 1], ..ok.clone() };
        assert_eq!(precheck(&encode(&many)).expect_err("too many"), "more than 100000 flows in one batch");
        let wide = pb::DnsAnswer {
            answers: vec![pb::DnsAddress::default(); MAX_ADDRESSES_PER_ANSWER + 1],
            ..Default::default()
        };
        let b = pb::ReportRequest { dns: vec![wide], ..ok.clone() };
        assert!(precheck(&encode(&b)).expect_err("wide").starts_with("dns[0].answers: 65 addresses"));
        let b = pb::ReportRequest { dns: vec![pb::DnsAnswer::default(); MAX_DNS_PER_BATCH + 1], ..ok };
        assert!(precheck(&encode(&b)).is_err());
    }

    #[test]
    fn garbage_is_refused_without_panicking() {
        assert!(
            precheck(&[0x22, 0xff, 0xff, 0xff, 0xff, 0x0f]).expect_err("length past the end").contains("announced")
        );
        assert!(precheck(&[0xff; 11]).is_err());
        assert!(precheck(&[0x0b]).expect_err("group").contains("wire type 3"));
        // Every prefix of a valid request, and every byte flipped, ends or errs, never panics.
        let valid = encode(&pb::ReportRequest {
            node: "node".into(),
            flows: vec![pb::Flow { comm: "curl".into(), ..Default::default() }],
            dns: vec![pb::DnsAnswer { answers: vec![pb::DnsAddress::default()], ..Default::default() }],
            ..Default::default()
        });
        for n in 0..valid.len() {
            let _ = precheck(&valid[..n]);
            let mut flipped = valid.clone();
            flipped[n] ^= 0xff;
            let _ = precheck(&flipped);
        }
    }
}
