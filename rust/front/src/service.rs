//! The `tiergate.v1.Tiergate` service as tonic sees it: any registered method path becomes a [`Call`] event.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use tonic::body::Body;
use tonic::codec::CompressionEncoding;
use tonic::metadata::KeyAndValueRef;
use tonic::server::{Grpc, NamedService};
use tonic::Status;

use crate::call::{unfinished, Call, MetaValue, Reply, ResponseStream, Wakes};
use crate::codec::RawCodec;
use crate::events::{CancelGuard, Event, EventQueue};

/// Whether a method answers once or streams.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MethodKind {
    Unary,
    ServerStreaming,
}

pub(crate) struct ServiceState {
    pub(crate) methods: HashMap<String, MethodKind>,
    pub(crate) queue: Arc<EventQueue>,
    pub(crate) next_id: AtomicU64,
    pub(crate) max_message_bytes: usize,
    pub(crate) stream_capacity: usize,
    pub(crate) wakes: Arc<Wakes>,
}

#[derive(Clone)]
pub(crate) struct TiergateService {
    state: Arc<ServiceState>,
}

impl TiergateService {
    pub(crate) fn new(state: ServiceState) -> Self {
        Self {
            state: Arc::new(state),
        }
    }
}

impl NamedService for TiergateService {
    const NAME: &'static str = "tiergate.v1.Tiergate";
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

impl tower_service::Service<http::Request<Body>> for TiergateService {
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        let state = Arc::clone(&self.state);
        Box::pin(async move {
            let path = request.uri().path().to_owned();
            // Compressed requests are read (as gRPC's own servers do); answers go out uncompressed.
            let mut grpc = Grpc::new(RawCodec)
                .max_decoding_message_size(state.max_message_bytes)
                .accept_compressed(CompressionEncoding::Gzip)
                .accept_compressed(CompressionEncoding::Deflate);
            let reached = Arc::new(AtomicBool::new(false));
            let handler = Handler {
                state: Arc::clone(&state),
                method: path.clone(),
                reached: Arc::clone(&reached),
            };
            let mut response = match state.methods.get(&path) {
                Some(MethodKind::Unary) => grpc.unary(handler, request).await,
                Some(MethodKind::ServerStreaming) => {
                    grpc.server_streaming(StreamHandler(handler), request).await
                }
                None => {
                    return Ok(Status::unimplemented(format!("unknown method {path}")).into_http())
                }
            };
            if !reached.load(Ordering::Acquire) {
                too_large_is_resource_exhausted(&mut response);
            }
            Ok(response)
        })
    }
}

/// tonic answers a request over the size limit with OUT_OF_RANGE; gRPC's own servers (and the spec's
/// status table) say RESOURCE_EXHAUSTED. Before the handler is reached, OUT_OF_RANGE can only be that.
fn too_large_is_resource_exhausted(response: &mut http::Response<Body>) {
    let headers = response.headers_mut();
    if headers
        .get("grpc-status")
        .is_some_and(|code| code.as_bytes() == b"11")
    {
        headers.insert("grpc-status", http::HeaderValue::from_static("8"));
    }
}

/// Turns one decoded request into a [`Call`] event.
struct Handler {
    state: Arc<ServiceState>,
    method: String,
    /// Set once the request decoded and reached the handler.
    reached: Arc<AtomicBool>,
}

impl Handler {
    fn call_from(
        &self,
        request: tonic::Request<Bytes>,
        reply: Reply,
        id: u64,
    ) -> Result<Call, Status> {
        self.reached.store(true, Ordering::Release);
        let peer = request.remote_addr();
        let (metadata, _, message) = request.into_parts();
        let mut pairs = Vec::new();
        let mut timeout = None;
        for entry in metadata.iter() {
            match entry {
                KeyAndValueRef::Ascii(key, value) => {
                    let key = key.as_str();
                    if key == "grpc-timeout" {
                        timeout =
                            Some(parse_timeout(value.as_encoded_bytes()).ok_or_else(|| {
                                Status::invalid_argument("malformed grpc-timeout header")
                            })?);
                        continue;
                    }
                    if is_protocol_header(key) {
                        continue;
                    }
                    let text = String::from_utf8_lossy(value.as_encoded_bytes()).into_owned();
                    pairs.push((key.to_owned(), MetaValue::Text(text)));
                }
                KeyAndValueRef::Binary(key, value) => {
                    let bytes = value.to_bytes().map_err(|_| {
                        Status::invalid_argument(format!(
                            "metadata {} is not valid base64",
                            key.as_str()
                        ))
                    })?;
                    pairs.push((key.as_str().to_owned(), MetaValue::Binary(bytes)));
                }
            }
        }
        Ok(Call {
            id,
            method: self.method.clone(),
            metadata: pairs,
            timeout,
            peer,
            request: message,
            reply,
        })
    }
}

fn is_protocol_header(key: &str) -> bool {
    matches!(key, "te" | "content-type") || key.starts_with("grpc-")
}

/// `grpc-timeout`: up to 8 digits and a unit (H, M, S, m, u, n).
fn parse_timeout(value: &[u8]) -> Option<Duration> {
    let (&unit, digits) = value.split_last()?;
    if digits.is_empty() || digits.len() > 8 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let amount: u64 = std::str::from_utf8(digits).ok()?.parse().ok()?;
    Some(match unit {
        b'H' => Duration::from_secs(amount * 3600),
        b'M' => Duration::from_secs(amount * 60),
        b'S' => Duration::from_secs(amount),
        b'm' => Duration::from_millis(amount),
        b'u' => Duration::from_micros(amount),
        b'n' => Duration::from_nanos(amount),
        _ => return None,
    })
}

impl tower_service::Service<tonic::Request<Bytes>> for Handler {
    type Response = tonic::Response<Bytes>;
    type Error = Status;
    type Future = BoxFuture<Result<tonic::Response<Bytes>, Status>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Status>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: tonic::Request<Bytes>) -> Self::Future {
        let id = self.state.next_id.fetch_add(1, Ordering::Relaxed);
        let (reply, answer) = Reply::unary();
        let queued = self
            .call_from(request, reply, id)
            .map(|call| self.state.queue.push(Event::Call(call)));
        let queue = Arc::clone(&self.state.queue);
        Box::pin(async move {
            queued?;
            // Dropped before the answer (the client went away): Python hears of it and cancels the handler.
            let mut guard = CancelGuard::new(id, queue);
            let answer = answer.await;
            guard.disarm();
            match answer {
                Ok(Ok(message)) => Ok(tonic::Response::new(message)),
                Ok(Err(status)) => Err(status),
                Err(_) => Err(unfinished()),
            }
        })
    }
}

/// The same handler for a streaming method (a separate type: tonic picks the shape by the trait).
struct StreamHandler(Handler);

impl tower_service::Service<tonic::Request<Bytes>> for StreamHandler {
    type Response = tonic::Response<ResponseStream>;
    type Error = Status;
    type Future = BoxFuture<Result<tonic::Response<ResponseStream>, Status>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Status>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: tonic::Request<Bytes>) -> Self::Future {
        let state = &self.0.state;
        let id = state.next_id.fetch_add(1, Ordering::Relaxed);
        let (reply, stream) = Reply::stream(
            id,
            Arc::clone(&state.queue),
            Arc::clone(&state.wakes),
            state.stream_capacity,
        );
        let result = self.0.call_from(request, reply, id).map(|call| {
            state.queue.push(Event::Call(call));
            tonic::Response::new(stream)
        });
        Box::pin(async move { result })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_timeout_units() {
        assert_eq!(parse_timeout(b"100m"), Some(Duration::from_millis(100)));
        assert_eq!(parse_timeout(b"2S"), Some(Duration::from_secs(2)));
        assert_eq!(parse_timeout(b"1H"), Some(Duration::from_secs(3600)));
        assert_eq!(parse_timeout(b"5n"), Some(Duration::from_nanos(5)));
        assert_eq!(
            parse_timeout(b"99999999u"),
            Some(Duration::from_micros(99_999_999))
        );
    }

    #[test]
    fn grpc_timeout_malformed() {
        for bad in [
            &b""[..],
            b"m",
            b"100",
            b"100x",
            b"123456789m",
            b"-1m",
            b"1.5S",
        ] {
            assert_eq!(
                parse_timeout(bad),
                None,
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }
}
