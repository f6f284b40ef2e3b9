//! `GrpcFront` and `GrpcCall`: the bindings of `tiergate_front` (the gRPC listener in Rust).
//!
//! The Python side (`tiergate/server/grpc_front.py`) watches `fileno()`, and when it is readable reads it
//! empty and calls `take_events()`. Every method here is short and keeps the GIL, except `start` and `stop`,
//! which bind, resolve and join a thread.

use std::os::fd::AsRawFd;
use std::time::Duration;

use bytes::Bytes;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyString};
use tiergate_front::{Call, Event, Front, FrontConfig, MetaValue, MethodKind, Sent, Tls};

use crate::errors::{front_error, reply_error, CallFinished};

/// The gRPC listener: HTTP/2, framing, health and reflection in Rust; calls handed to Python as events.
#[pyclass(frozen, name = "GrpcFront", module = "tiergate._native")]
pub(crate) struct PyGrpcFront {
    inner: Front,
}

/// (kind, call id, the call for kind 0).
type PyEvent = (u8, u64, Option<Py<PyGrpcCall>>);

const EVENT_CALL: u8 = 0;
const EVENT_CANCELLED: u8 = 1;
const EVENT_WRITABLE: u8 = 2;

#[pymethods]
impl PyGrpcFront {
    /// `methods`: (path, streams) pairs; `tls`: (cert PEM, key PEM); `token`: the bearer token every
    /// service but health requires; `max_streams_per_connection`: HTTP/2's concurrent-stream limit.
    #[new]
    #[allow(clippy::too_many_arguments)] // the Python constructor's keyword arguments, one each
    #[pyo3(signature = (address, methods, descriptor_set, max_message_bytes, stream_capacity = 64, tls = None, token = None, max_streams_per_connection = 1024))]
    fn new(
        py: Python<'_>,
        address: String,
        methods: Vec<(String, bool)>,
        descriptor_set: Vec<u8>,
        max_message_bytes: usize,
        stream_capacity: usize,
        tls: Option<(Vec<u8>, Vec<u8>)>,
        token: Option<String>,
        max_streams_per_connection: u32,
    ) -> PyResult<Self> {
        let config = FrontConfig {
            address,
            tls: tls.map(|(cert_pem, key_pem)| Tls { cert_pem, key_pem }),
            methods: methods
                .into_iter()
                .map(|(path, streams)| {
                    (
                        path,
                        if streams {
                            MethodKind::ServerStreaming
                        } else {
                            MethodKind::Unary
                        },
                    )
                })
                .collect(),
            descriptor_set,
            max_message_bytes,
            stream_capacity,
            token,
            max_streams_per_connection,
        };
        let inner = py.detach(|| Front::start(config)).map_err(front_error)?;
        Ok(Self { inner })
    }

    #[getter]
    fn port(&self) -> Option<u16> {
        self.inner.port()
    }

    /// The socket that becomes readable when events wait.
    fn fileno(&self) -> i32 {
        self.inner.wake_socket().as_raw_fd()
    }

    /// Every event queued: (kind, call id, call) with kind 0 a new call, 1 cancelled, 2 writable again.
    fn take_events(&self, py: Python<'_>) -> PyResult<Vec<PyEvent>> {
        self.inner
            .take_events()
            .into_iter()
            .map(|event| {
                Ok(match event {
                    Event::Call(call) => {
                        (EVENT_CALL, call.id, Some(Py::new(py, PyGrpcCall { call })?))
                    }
                    Event::Cancelled(id) => (EVENT_CANCELLED, id, None),
                    Event::Writable(id) => (EVENT_WRITABLE, id, None),
                })
            })
            .collect()
    }

    /// Sends on what streaming calls queued (and their ends) since the last flush: once per batch.
    fn flush(&self) {
        self.inner.flush();
    }

    fn set_health(&self, service: &str, serving: bool) {
        self.inner.set_health(service, serving);
    }

    /// Stops accepting, gives answered calls `grace_s` to flush, then closes every connection.
    fn stop(&self, py: Python<'_>, grace_s: f64) -> PyResult<()> {
        let grace = Duration::try_from_secs_f64(grace_s)
            .map_err(|_| PyValueError::new_err("grace_s must be a finite number >= 0"))?;
        py.detach(|| self.inner.stop(grace)).map_err(front_error)
    }
}

/// One call: what arrived, and how to answer it.
#[pyclass(frozen, name = "GrpcCall", module = "tiergate._native")]
pub(crate) struct PyGrpcCall {
    call: Call,
}

impl PyGrpcCall {
    /// Queues a message of a streaming call (the relay's way in, without a Python bytes object).
    pub(crate) fn send_bytes(&self, message: Bytes) -> PyResult<Sent> {
        self.call.reply.send(message).map_err(reply_error)
    }
}

fn meta_to_py(py: Python<'_>, value: &MetaValue) -> Py<PyAny> {
    match value {
        MetaValue::Text(text) => PyString::new(py, text).into_any().unbind(),
        MetaValue::Binary(bytes) => PyBytes::new(py, bytes).into_any().unbind(),
    }
}

#[pymethods]
impl PyGrpcCall {
    #[getter]
    fn id(&self) -> u64 {
        self.call.id
    }

    #[getter]
    fn method(&self) -> &str {
        &self.call.method
    }

    #[getter]
    fn streaming(&self) -> bool {
        self.call.reply.is_streaming()
    }

    /// The client's deadline in seconds from the call's arrival, or None.
    #[getter]
    fn timeout(&self) -> Option<f64> {
        self.call.timeout.map(|timeout| timeout.as_secs_f64())
    }

    #[getter]
    fn peer(&self) -> Option<String> {
        self.call.peer.map(|peer| peer.to_string())
    }

    #[getter]
    fn request<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &self.call.request)
    }

    /// (key, value) pairs: str values, bytes for keys ending in `-bin`.
    #[getter]
    fn metadata(&self, py: Python<'_>) -> Vec<(String, Py<PyAny>)> {
        self.call
            .metadata
            .iter()
            .map(|(key, value)| (key.clone(), meta_to_py(py, value)))
            .collect()
    }

    /// Queues a message of a streaming call: 0 sent, 1 full (call `want_writable`), 2 the call is over.
    fn send(&self, message: &[u8]) -> PyResult<u8> {
        let sent = self.send_bytes(Bytes::copy_from_slice(message))?;
        Ok(match sent {
            Sent::Sent => 0,
            Sent::Full => 1,
            Sent::Closed => 2,
        })
    }

    /// After a full `send`: True if there is room now; else a "writable" event will come.
    fn want_writable(&self) -> bool {
        self.call.reply.want_writable()
    }

    /// Status OK: a unary call with its answer, a streaming call with None.
    #[pyo3(signature = (message = None))]
    fn finish_ok(&self, message: Option<&[u8]>) -> PyResult<()> {
        self.call
            .reply
            .finish_ok(message.map(Bytes::copy_from_slice))
            .map_err(reply_error)
    }

    /// An error status with its message and trailers ((key, str) or (key ending in -bin, bytes)).
    fn finish_error(
        &self,
        code: i32,
        message: &str,
        trailers: Vec<(String, Bound<'_, PyAny>)>,
    ) -> PyResult<()> {
        let mut pairs = Vec::with_capacity(trailers.len());
        for (key, value) in trailers {
            let value = if let Ok(bytes) = value.cast::<PyBytes>() {
                MetaValue::Binary(Bytes::copy_from_slice(bytes.as_bytes()))
            } else {
                MetaValue::Text(value.extract::<String>()?)
            };
            pairs.push((key, value));
        }
        self.call
            .reply
            .finish_error(code, message, pairs)
            .map_err(reply_error)
    }
}

pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyGrpcFront>()?;
    m.add_class::<PyGrpcCall>()?;
    m.add("CallFinished", m.py().get_type::<CallFinished>())?;
    Ok(())
}
