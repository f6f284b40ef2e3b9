//! The queue from the tokio thread to the Python event loop, and its wake-up socket.
//!
//! The queue is woken once per batch: the first event pushed after Python's last `take` writes one byte to
//! a socket pair; Python watches the other end (`loop.add_reader`), reads it, and takes every event queued
//! by then. A busy loop thus pays one wake-up for many events.

use std::collections::VecDeque;
use std::io::{self, Write};
use std::os::unix::net::UnixStream;
use std::sync::Arc;

use parking_lot::Mutex;

use crate::call::Call;

/// What happened since Python last looked.
pub enum Event {
    /// A new call to a registered method.
    Call(Call),
    /// The call's client went away (reset the stream, hung up) or its deadline passed in tonic.
    Cancelled(u64),
    /// A streaming call whose channel was full has room again (Python asked with `want_writable`).
    Writable(u64),
}

struct State {
    events: VecDeque<Event>,
    notified: bool,
}

pub struct EventQueue {
    state: Mutex<State>,
    waker: UnixStream,
}

impl EventQueue {
    /// The queue, and the socket end Python watches.
    pub fn new() -> io::Result<(Arc<Self>, UnixStream)> {
        let (reader, waker) = UnixStream::pair()?;
        reader.set_nonblocking(true)?;
        waker.set_nonblocking(true)?;
        let queue = Self {
            state: Mutex::new(State {
                events: VecDeque::new(),
                notified: false,
            }),
            waker,
        };
        Ok((Arc::new(queue), reader))
    }

    pub fn push(&self, event: Event) {
        let mut state = self.state.lock();
        state.events.push_back(event);
        if !state.notified {
            state.notified = true;
            // One byte per batch, so the socket never fills. A failed write changes nothing we can act on:
            // WouldBlock means unread bytes are already waiting, and a closed reader means Python stopped
            // watching (the server is being stopped).
            if let Err(err) = (&self.waker).write(&[1]) {
                debug_assert!(
                    err.kind() == io::ErrorKind::WouldBlock
                        || err.kind() == io::ErrorKind::BrokenPipe,
                    "unexpected wake-up failure: {err}"
                );
            }
        }
    }

    /// Everything queued; the next push wakes Python again.
    pub fn take(&self) -> Vec<Event> {
        let mut state = self.state.lock();
        state.notified = false;
        state.events.drain(..).collect()
    }
}

/// Pushes `Event::Cancelled` when dropped armed: the future or stream it lives in was dropped by hyper
/// before the call finished (the client went away).
pub(crate) struct CancelGuard {
    id: u64,
    queue: Option<Arc<EventQueue>>,
}

impl CancelGuard {
    pub(crate) fn new(id: u64, queue: Arc<EventQueue>) -> Self {
        Self {
            id,
            queue: Some(queue),
        }
    }

    pub(crate) fn disarm(&mut self) {
        self.queue = None;
    }
}

impl Drop for CancelGuard {
    fn drop(&mut self) {
        if let Some(queue) = self.queue.take() {
            queue.push(Event::Cancelled(self.id));
        }
    }
}
