//! One call as Python sees it: what arrived, and the [`Reply`] that answers it.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use bytes::Bytes;
use parking_lot::Mutex;
use tokio::sync::{oneshot, Notify};
use tokio_stream::Stream;
use tonic::metadata::{
    AsciiMetadataKey, AsciiMetadataValue, BinaryMetadataKey, BinaryMetadataValue, MetadataMap,
};
use tonic::{Code, Status};

use crate::error::ReplyError;
use crate::events::{CancelGuard, Event, EventQueue};

/// A metadata value: text, or bytes for keys ending in `-bin`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MetaValue {
    Text(String),
    Binary(Bytes),
}

/// A call to a registered method, as it arrived.
pub struct Call {
    pub id: u64,
    /// The full method path, `/package.Service/Method`.
    pub method: String,
    /// The client's metadata, without the protocol's own headers (`te`, `content-type`, `grpc-*`).
    pub metadata: Vec<(String, MetaValue)>,
    /// The client's deadline (`grpc-timeout`), counted from when the call arrived.
    pub timeout: Option<Duration>,
    pub peer: Option<SocketAddr>,
    /// The request message, still encoded.
    pub request: Bytes,
    pub reply: Reply,
}

/// The outcome of [`Reply::send`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sent {
    Sent,
    /// The channel is full (the client reads slower than we write): call `want_writable` and wait.
    Full,
    /// The call is over (the client went away, or it was finished): nothing more will be read.
    Closed,
}

/// How Python answers a call. Finishing twice is an error; dropping it unfinished answers INTERNAL.
pub struct Reply {
    kind: ReplyKind,
}

enum ReplyKind {
    Unary(Mutex<Option<oneshot::Sender<Result<Bytes, Status>>>>),
    Stream(Arc<StreamShared>),
}

/// A streaming call's messages between Python (which pushes) and the HTTP/2 stream (which pops).
///
/// Unlike a channel, a push does not wake the stream's task: the waker is set aside in [`Wakes`], and
/// Python wakes every stream it wrote to at once (`flush`), once per turn of its event loop. Waking a
/// sleeping thread costs more than relaying a chunk; under load this pays it once per batch.
pub(crate) struct StreamShared {
    id: u64,
    state: Mutex<StreamState>,
    queue: Arc<EventQueue>,
    wakes: Arc<Wakes>,
}

struct StreamState {
    messages: VecDeque<Bytes>,
    capacity: usize,
    /// The stream's task, waiting for a message.
    waker: Option<Waker>,
    /// Set by Python's finish (or an unfinished drop): delivered after the messages.
    end: Option<Status>,
    /// The HTTP/2 stream was dropped: the client went away.
    receiver_gone: bool,
    /// Python waits for room: tell it (`Event::Writable`) when a message is taken.
    want_writable: bool,
}

/// Wakers set aside by pushes, woken together by `flush` through one task on the runtime's thread.
///
/// Waking the runtime's thread from Python's is the dearest part of relaying a chunk (a system call, and
/// on a VM an inter-processor interrupt when that thread sleeps). So `flush` wakes it only when it is
/// parked: a runtime that is busy takes the pending wakers itself just before it would park
/// (`before_park`, the runtime's `on_thread_park` hook), i.e. as soon as it has written what it was
/// writing — chunks that arrive meanwhile go out together, and none waits for a timer.
///
/// No wake-up is lost: `flush` pushes its wakers, then reads `parked`; `before_park` sets `parked`, then
/// takes the wakers (both sequentially consistent). If `flush` read "not parked", its push came before
/// `before_park`'s store, so the take that follows sees it.
pub(crate) struct Wakes {
    pending: Mutex<Vec<Waker>>,
    notify: Notify,
    parked: AtomicBool,
}

impl Wakes {
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(Self {
            pending: Mutex::new(Vec::new()),
            notify: Notify::new(),
            parked: AtomicBool::new(true),
        })
    }

    fn defer(&self, waker: Waker) {
        self.pending.lock().push(waker);
    }

    /// Wakes every stream written to since the last flush: at most one wake-up of the runtime's thread.
    pub(crate) fn flush(&self) {
        if self.parked.load(Ordering::SeqCst) && !self.pending.lock().is_empty() {
            self.notify.notify_one();
        }
    }

    /// The runtime's thread is about to park: wake what is pending (then it does not park, and comes back
    /// here when it is idle again).
    pub(crate) fn before_park(&self) {
        self.parked.store(true, Ordering::SeqCst);
        if self.wake_pending() {
            self.parked.store(false, Ordering::SeqCst);
        }
    }

    /// Wakes the streams written to since the last time; whether there were any.
    fn wake_pending(&self) -> bool {
        let wakers = std::mem::take(&mut *self.pending.lock());
        let any = !wakers.is_empty();
        for waker in wakers {
            waker.wake();
        }
        any
    }

    /// The runtime's thread woke up.
    pub(crate) fn after_unpark(&self) {
        self.parked.store(false, Ordering::SeqCst);
    }

    /// Runs on the runtime's thread for the server's life.
    pub(crate) async fn pump(self: Arc<Self>) {
        loop {
            self.notify.notified().await;
            self.wake_pending();
        }
    }
}

const UNFINISHED: &str = "the handler ended without an answer";

impl Reply {
    pub(crate) fn unary() -> (Self, oneshot::Receiver<Result<Bytes, Status>>) {
        let (tx, rx) = oneshot::channel();
        let reply = Self {
            kind: ReplyKind::Unary(Mutex::new(Some(tx))),
        };
        (reply, rx)
    }

    pub(crate) fn stream(
        id: u64,
        queue: Arc<EventQueue>,
        wakes: Arc<Wakes>,
        capacity: usize,
    ) -> (Self, ResponseStream) {
        let shared = Arc::new(StreamShared {
            id,
            state: Mutex::new(StreamState {
                messages: VecDeque::new(),
                capacity: capacity.max(1),
                waker: None,
                end: None,
                receiver_gone: false,
                want_writable: false,
            }),
            queue: Arc::clone(&queue),
            wakes,
        });
        let stream = ResponseStream {
            shared: Arc::clone(&shared),
            guard: CancelGuard::new(id, queue),
            done: false,
        };
        (
            Self {
                kind: ReplyKind::Stream(shared),
            },
            stream,
        )
    }

    pub fn is_streaming(&self) -> bool {
        matches!(self.kind, ReplyKind::Stream(_))
    }

    /// Queues one message of a streaming call, without waiting (it leaves at the next `flush`).
    pub fn send(&self, message: Bytes) -> Result<Sent, ReplyError> {
        let ReplyKind::Stream(shared) = &self.kind else {
            return Err(ReplyError::NotStreaming);
        };
        let mut state = shared.state.lock();
        if state.end.is_some() {
            return Err(ReplyError::Finished);
        }
        if state.receiver_gone {
            return Ok(Sent::Closed);
        }
        if state.messages.len() >= state.capacity {
            return Ok(Sent::Full);
        }
        state.messages.push_back(message);
        if let Some(waker) = state.waker.take() {
            shared.wakes.defer(waker);
        }
        Ok(Sent::Sent)
    }

    /// After `Sent::Full`: asks for an `Event::Writable` when the stream has room. Returns true when it
    /// has room already (or the call is over), in which case no event comes.
    pub fn want_writable(&self) -> bool {
        let ReplyKind::Stream(shared) = &self.kind else {
            return true;
        };
        let mut state = shared.state.lock();
        let room =
            state.receiver_gone || state.end.is_some() || state.messages.len() < state.capacity;
        state.want_writable = !room;
        room
    }

    /// Ends the call with status OK: a unary call with its message, a streaming one with none.
    pub fn finish_ok(&self, message: Option<Bytes>) -> Result<(), ReplyError> {
        match (&self.kind, message) {
            (ReplyKind::Unary(tx), Some(message)) => {
                let tx = tx.lock().take().ok_or(ReplyError::Finished)?;
                // A send error means the client is gone; there is nobody left to tell.
                drop(tx.send(Ok(message)));
                Ok(())
            }
            (ReplyKind::Unary(_), None) => Err(ReplyError::MissingMessage),
            (ReplyKind::Stream(shared), None) => shared.end_with(Status::ok("")),
            (ReplyKind::Stream(_), Some(_)) => Err(ReplyError::UnexpectedMessage),
        }
    }

    /// Ends the call with an error status and its trailers.
    pub fn finish_error(
        &self,
        code: i32,
        message: &str,
        trailers: Vec<(String, MetaValue)>,
    ) -> Result<(), ReplyError> {
        let status = Status::with_metadata(Code::from_i32(code), message, metadata_map(trailers)?);
        match &self.kind {
            ReplyKind::Unary(tx) => {
                let tx = tx.lock().take().ok_or(ReplyError::Finished)?;
                drop(tx.send(Err(status)));
                Ok(())
            }
            ReplyKind::Stream(shared) => shared.end_with(status),
        }
    }
}

impl StreamShared {
    fn end_with(&self, status: Status) -> Result<(), ReplyError> {
        let mut state = self.state.lock();
        if state.end.is_some() {
            return Err(ReplyError::Finished);
        }
        state.end = Some(status);
        if let Some(waker) = state.waker.take() {
            self.wakes.defer(waker);
        }
        Ok(())
    }
}

impl Drop for Reply {
    fn drop(&mut self) {
        // Unfinished: a unary call's receiver sees its sender dropped (the service answers INTERNAL); a
        // stream gets INTERNAL after its messages, woken now (no flush may follow a dropped reply).
        if let ReplyKind::Stream(shared) = &self.kind {
            let mut state = shared.state.lock();
            if state.end.is_none() {
                state.end = Some(Status::internal(UNFINISHED));
                if let Some(waker) = state.waker.take() {
                    drop(state);
                    waker.wake();
                }
            }
        }
    }
}

pub(crate) fn unfinished() -> Status {
    Status::internal(UNFINISHED)
}

fn metadata_map(trailers: Vec<(String, MetaValue)>) -> Result<MetadataMap, ReplyError> {
    let mut map = MetadataMap::new();
    for (key, value) in trailers {
        let bad = || ReplyError::Trailer(key.clone());
        match value {
            MetaValue::Binary(bytes) => {
                let name = BinaryMetadataKey::from_bytes(key.as_bytes()).map_err(|_| bad())?;
                map.append_bin(name, BinaryMetadataValue::from_bytes(&bytes));
            }
            MetaValue::Text(text) => {
                if key.ends_with("-bin") {
                    return Err(bad());
                }
                let name = AsciiMetadataKey::from_bytes(key.as_bytes()).map_err(|_| bad())?;
                let value = AsciiMetadataValue::try_from(text.as_str()).map_err(|_| bad())?;
                map.append(name, value);
            }
        }
    }
    Ok(map)
}

/// The HTTP/2 response body of a streaming call: the messages Python sends, then its final status.
pub(crate) struct ResponseStream {
    shared: Arc<StreamShared>,
    guard: CancelGuard,
    done: bool,
}

impl Stream for ResponseStream {
    type Item = Result<Bytes, Status>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if this.done {
            return Poll::Ready(None);
        }
        let mut state = this.shared.state.lock();
        if let Some(message) = state.messages.pop_front() {
            let writable = state.want_writable;
            state.want_writable = false;
            drop(state);
            if writable {
                this.shared.queue.push(Event::Writable(this.shared.id));
            }
            return Poll::Ready(Some(Ok(message)));
        }
        if let Some(status) = state.end.take() {
            drop(state);
            this.done = true;
            this.guard.disarm();
            return Poll::Ready(if status.code() == Code::Ok {
                None
            } else {
                Some(Err(status))
            });
        }
        state.waker = Some(cx.waker().clone());
        Poll::Pending
    }
}

impl Drop for ResponseStream {
    fn drop(&mut self) {
        let mut state = self.shared.state.lock();
        state.receiver_gone = true;
        state.messages.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::future::poll_fn;

    fn queue() -> Arc<EventQueue> {
        match EventQueue::new() {
            Ok((queue, _reader)) => queue,
            Err(err) => unreachable!("socket pair: {err}"),
        }
    }

    async fn next(stream: &mut ResponseStream) -> Option<Result<Bytes, Status>> {
        poll_fn(|cx| Pin::new(&mut *stream).poll_next(cx)).await
    }

    #[tokio::test]
    async fn a_stream_delivers_its_messages_then_its_error_status_with_trailers() {
        let (reply, mut stream) = Reply::stream(7, queue(), Wakes::new(), 4);
        assert_eq!(reply.send(Bytes::from_static(b"one")), Ok(Sent::Sent));
        let trailers = vec![
            (
                "tiergate-error-kind".to_owned(),
                MetaValue::Text("timeout".to_owned()),
            ),
            (
                "tiergate-decision-bin".to_owned(),
                MetaValue::Binary(Bytes::from_static(&[0, 1, 2])),
            ),
        ];
        assert_eq!(reply.finish_error(4, "too slow", trailers), Ok(()));
        assert_eq!(
            next(&mut stream).await.map(|m| m.ok()),
            Some(Some(Bytes::from_static(b"one")))
        );
        let status = match next(&mut stream).await {
            Some(Err(status)) => status,
            other => unreachable!("expected the status, got {other:?}"),
        };
        assert_eq!(
            (status.code(), status.message()),
            (Code::DeadlineExceeded, "too slow")
        );
        assert_eq!(
            status
                .metadata()
                .get("tiergate-error-kind")
                .map(|v| v.as_encoded_bytes()),
            Some(&b"timeout"[..])
        );
        assert_eq!(
            status
                .metadata()
                .get_bin("tiergate-decision-bin")
                .and_then(|v| v.to_bytes().ok()),
            Some(Bytes::from_static(&[0, 1, 2]))
        );
        assert!(next(&mut stream).await.is_none());
    }

    #[tokio::test]
    async fn a_full_stream_says_so_and_wakes_the_writer_when_read() {
        let events = queue();
        let (reply, mut stream) = Reply::stream(3, Arc::clone(&events), Wakes::new(), 1);
        assert_eq!(reply.send(Bytes::from_static(b"a")), Ok(Sent::Sent));
        assert_eq!(reply.send(Bytes::from_static(b"b")), Ok(Sent::Full));
        assert!(!reply.want_writable(), "no room until the stream is read");
        assert!(next(&mut stream).await.is_some());
        let woken: Vec<u64> = events
            .take()
            .into_iter()
            .filter_map(|e| match e {
                Event::Writable(id) => Some(id),
                _ => None,
            })
            .collect();
        assert_eq!(woken, vec![3]);
        assert_eq!(reply.send(Bytes::from_static(b"b")), Ok(Sent::Sent));
    }

    #[tokio::test]
    async fn a_stream_whose_client_left_is_closed_and_reports_the_cancellation() {
        let events = queue();
        let (reply, stream) = Reply::stream(9, Arc::clone(&events), Wakes::new(), 4);
        drop(stream); // hyper drops the body when the client resets the stream
        assert_eq!(reply.send(Bytes::from_static(b"x")), Ok(Sent::Closed));
        assert!(events
            .take()
            .iter()
            .any(|e| matches!(e, Event::Cancelled(9))));
    }

    #[tokio::test]
    async fn a_finished_call_cannot_be_answered_again_and_an_unfinished_one_ends_internal() {
        let (reply, mut stream) = Reply::stream(1, queue(), Wakes::new(), 4);
        assert_eq!(reply.finish_ok(None), Ok(()));
        assert_eq!(reply.finish_ok(None), Err(ReplyError::Finished));
        assert_eq!(reply.send(Bytes::new()), Err(ReplyError::Finished));
        assert!(
            next(&mut stream).await.is_none(),
            "status OK: the stream just ends"
        );

        let (reply, mut stream) = Reply::stream(2, queue(), Wakes::new(), 4);
        drop(reply);
        match next(&mut stream).await {
            Some(Err(status)) => assert_eq!(status.code(), Code::Internal),
            other => unreachable!("expected INTERNAL, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn unary_replies_take_exactly_one_message() {
        let (reply, answer) = Reply::unary();
        assert_eq!(reply.send(Bytes::new()), Err(ReplyError::NotStreaming));
        assert_eq!(reply.finish_ok(None), Err(ReplyError::MissingMessage));
        assert_eq!(reply.finish_ok(Some(Bytes::from_static(b"ok"))), Ok(()));
        assert_eq!(
            reply.finish_ok(Some(Bytes::new())),
            Err(ReplyError::Finished)
        );
        assert!(matches!(answer.await, Ok(Ok(message)) if message == Bytes::from_static(b"ok")));
    }

    #[tokio::test]
    async fn a_waiting_stream_hears_of_a_message_at_the_flush() {
        let wakes = Wakes::new();
        tokio::spawn(Arc::clone(&wakes).pump());
        let (reply, mut stream) = Reply::stream(5, queue(), Arc::clone(&wakes), 4);
        let reader = tokio::spawn(async move { next(&mut stream).await.and_then(Result::ok) });
        tokio::task::yield_now().await; // the reader is now waiting
        assert_eq!(reply.send(Bytes::from_static(b"hi")), Ok(Sent::Sent));
        assert_eq!(
            wakes.pending.lock().len(),
            1,
            "the wake waits for the flush"
        );
        wakes.flush();
        assert!(matches!(reader.await, Ok(Some(message)) if message == Bytes::from_static(b"hi")));
    }

    /// Counts its wake-ups.
    struct Counted(std::sync::atomic::AtomicUsize);

    impl std::task::Wake for Counted {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn a_busy_runtime_takes_the_pending_wakes_before_it_parks() {
        let wakes = Wakes::new();
        let counted = Arc::new(Counted(std::sync::atomic::AtomicUsize::new(0)));
        wakes.after_unpark(); // the runtime's thread is running
        wakes.defer(Waker::from(Arc::clone(&counted)));
        wakes.flush();
        assert_eq!(
            counted.0.load(Ordering::SeqCst),
            0,
            "no wake-up while the runtime is busy"
        );
        assert!(!wakes.parked.load(Ordering::SeqCst));
        wakes.before_park(); // idle now: it takes the pending wakers instead of parking
        assert_eq!(counted.0.load(Ordering::SeqCst), 1);
        assert!(
            !wakes.parked.load(Ordering::SeqCst),
            "it woke a task, so it does not park"
        );
        wakes.before_park(); // nothing pending: it parks, and the next flush must wake it
        assert!(wakes.parked.load(Ordering::SeqCst));
    }

    #[tokio::test]
    async fn a_parked_runtime_is_woken_by_the_flush() {
        let wakes = Wakes::new();
        let counted = Arc::new(Counted(std::sync::atomic::AtomicUsize::new(0)));
        tokio::spawn(Arc::clone(&wakes).pump());
        tokio::task::yield_now().await; // the pump waits
        wakes.before_park();
        wakes.defer(Waker::from(Arc::clone(&counted)));
        wakes.flush();
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        assert_eq!(counted.0.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn trailers_with_bad_keys_are_refused() {
        let (reply, _answer) = Reply::unary();
        let bad = vec![("Not A Key".to_owned(), MetaValue::Text("v".to_owned()))];
        assert!(matches!(
            reply.finish_error(13, "x", bad),
            Err(ReplyError::Trailer(_))
        ));
        let text_on_bin = vec![("x-bin".to_owned(), MetaValue::Text("v".to_owned()))];
        assert!(matches!(
            reply.finish_error(13, "x", text_on_bin),
            Err(ReplyError::Trailer(_))
        ));
    }
}
