//! `SseRelay`: one streamed answer's server-sent events, decoded in Rust; plain text deltas go straight to
//! the client (a gRPC call's queue, or SSE bytes for the HTTP facade) without a Python object per chunk.
//!
//! The Python side (`providers/hosted_http.py` `EventStream`) feeds the body's bytes as they arrive, takes
//! the events the provider's parser must read with `next_event`, and in between lets `relay_grpc` /
//! `relay_sse` forward the run of plain text deltas at the front of the queue (`tiergate_core::relay`).

use bytes::Bytes;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyBytes;
use tiergate_core::relay::{encode, sse, Delta, Wire};
use tiergate_front::Sent;

use crate::errors::line_too_long;
use crate::grpc_front::PyGrpcCall;

/// The queue is empty: feed more bytes.
const EMPTY: u8 = 0;
/// The event at the front needs the provider's parser (`next_event`).
const PARSER: u8 = 1;
/// The client's queue is full: wait until it has room, then relay again.
const FULL: u8 = 2;
/// The client is gone.
const CLOSED: u8 = 3;

#[pyclass(name = "SseRelay", module = "tiergate._native")]
pub(crate) struct PySseRelay {
    decoder: sse::Decoder,
    /// Whose text deltas `relay_grpc` and `relay_sse` recognise.
    wire: Wire,
    /// The text relayed since the last `take_text`.
    text: String,
}

#[pymethods]
impl PySseRelay {
    /// `wire`: "openai" (the default) or "anthropic".
    #[new]
    #[pyo3(signature = (wire = "openai"))]
    fn new(wire: &str) -> PyResult<Self> {
        Ok(Self {
            decoder: sse::Decoder::new(),
            wire: wire_named(wire)?,
            text: String::new(),
        })
    }

    /// The wire whose plain text deltas are relayed: "openai" or "anthropic".
    #[getter]
    fn wire(&self) -> &'static str {
        self.wire.name()
    }

    #[setter]
    fn set_wire(&mut self, wire: &str) -> PyResult<()> {
        self.wire = wire_named(wire)?;
        Ok(())
    }

    /// Takes the next piece of the body; raises `LineTooLong` for a line past 8 MiB.
    fn feed(&mut self, data: &[u8]) -> PyResult<()> {
        self.decoder.feed(data).map_err(line_too_long)
    }

    /// Takes one line without its terminator.
    fn feed_line(&mut self, line: &str) {
        self.decoder.feed_line(line);
    }

    /// Completes the pending event (the end of the stream).
    fn flush(&mut self) {
        self.decoder.flush();
    }

    /// The oldest decoded event not taken yet, as (event, data).
    fn next_event(&mut self) -> Option<(String, String)> {
        self.decoder
            .ready()
            .pop_front()
            .map(|event| (event.event, event.data))
    }

    /// Forwards the plain text deltas at the front of the queue to `call` as `CompleteChunk`s.
    /// Returns 0 (queue empty), 1 (an event for the parser is at the front), 2 (the call's queue is full:
    /// the event stays), 3 (the call is over).
    fn relay_grpc(&mut self, call: &Bound<'_, PyGrpcCall>) -> PyResult<u8> {
        let call = call.get();
        loop {
            let Some(front) = self.decoder.ready().front() else {
                return Ok(EMPTY);
            };
            match self.wire.classify(&front.data) {
                Delta::Parser => return Ok(PARSER),
                Delta::Nothing => {}
                Delta::Text(text) => {
                    let mut message = Vec::with_capacity(text.len() + 6);
                    encode::complete_chunk(&text, &mut message);
                    match call.send_bytes(Bytes::from(message))? {
                        Sent::Sent => self.text.push_str(&text),
                        Sent::Full => return Ok(FULL),
                        Sent::Closed => return Ok(CLOSED),
                    }
                }
            }
            self.decoder.ready().pop_front();
        }
    }

    /// Forwards the plain text deltas at the front of the queue as SSE events, each `prefix`, the text as a
    /// JSON string, `suffix`. Returns (the events' bytes, 0 queue empty or 1 an event for the parser).
    fn relay_sse<'py>(
        &mut self,
        py: Python<'py>,
        prefix: &[u8],
        suffix: &[u8],
    ) -> (Bound<'py, PyBytes>, u8) {
        let mut out = Vec::new();
        let status = loop {
            let Some(front) = self.decoder.ready().front() else {
                break EMPTY;
            };
            match self.wire.classify(&front.data) {
                Delta::Parser => break PARSER,
                Delta::Nothing => {}
                Delta::Text(text) => {
                    encode::templated(prefix, &text, suffix, &mut out);
                    self.text.push_str(&text);
                }
            }
            self.decoder.ready().pop_front();
        };
        (PyBytes::new(py, &out), status)
    }

    /// The text relayed since the last call.
    fn take_text(&mut self) -> String {
        std::mem::take(&mut self.text)
    }
}

fn wire_named(name: &str) -> PyResult<Wire> {
    Wire::named(name).ok_or_else(|| PyValueError::new_err(format!("unknown stream wire {name:?}")))
}

pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PySseRelay>()?;
    m.add(
        "LineTooLong",
        m.py().get_type::<crate::errors::LineTooLong>(),
    )?;
    m.add("RELAY_EMPTY", EMPTY)?;
    m.add("RELAY_PARSER", PARSER)?;
    m.add("RELAY_FULL", FULL)?;
    m.add("RELAY_CLOSED", CLOSED)?;
    Ok(())
}
