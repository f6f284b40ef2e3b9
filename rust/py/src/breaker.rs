//! `CircuitBreaker`: the binding of `tiergate_core::breaker`.
//!
//! The GIL is kept on purpose: every call here is a few dozen nanoseconds under a short mutex, and detaching
//! from the interpreter and re-attaching would cost more than the call. Holding it is also what lets a
//! `try_acquire()` + `record()` round trip from Python stay well under a microsecond.

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyTuple};
use tiergate_core::breaker::{
    BreakerConfig, BreakerError, BreakerState, CircuitBreaker, MAX_WINDOW,
};

use crate::clock::{clock_from, PyManualClock};

fn to_py_err(err: BreakerError) -> PyErr {
    PyValueError::new_err(err.to_string())
}

/// A Python int to a count, with the core's message when it does not fit (rather than PyO3's OverflowError
/// for a negative number).
fn count(name: &'static str, value: i64, max: u32) -> PyResult<u32> {
    u32::try_from(value).map_err(|_| {
        to_py_err(BreakerError::InvalidCount {
            name,
            min: 1,
            max: u64::from(max),
            value: i128::from(value),
        })
    })
}

/// resilience4j-style breaker over a count-based sliding window.
#[pyclass(frozen, name = "CircuitBreaker", module = "tiergate._native")]
pub(crate) struct PyCircuitBreaker {
    inner: CircuitBreaker,
}

#[pymethods]
impl PyCircuitBreaker {
    #[new]
    #[pyo3(signature = (
        *,
        failure_rate = 50.0,
        slow_call_rate = 100.0,
        slow_call_ms = 10_000.0,
        window = 20,
        min_calls = 5,
        open_ms = 30_000.0,
        half_open_calls = 2,
        clock = None,
    ))]
    #[allow(clippy::too_many_arguments)] // mirrors the keyword-only Python constructor
    fn new(
        failure_rate: f64,
        slow_call_rate: f64,
        slow_call_ms: f64,
        window: i64,
        min_calls: i64,
        open_ms: f64,
        half_open_calls: i64,
        clock: Option<&Bound<'_, PyManualClock>>,
    ) -> PyResult<Self> {
        let config = BreakerConfig {
            failure_rate,
            slow_call_rate,
            slow_call_ms,
            window: count("window", window, MAX_WINDOW)?,
            min_calls: count("min_calls", min_calls, u32::MAX)?,
            open_ms,
            half_open_calls: count("half_open_calls", half_open_calls, u32::MAX)?,
        };
        let inner = CircuitBreaker::new(&config, clock_from(clock)).map_err(to_py_err)?;
        Ok(Self { inner })
    }

    fn try_acquire(&self) -> bool {
        self.inner.try_acquire()
    }

    fn record(&self, success: bool, duration_ms: f64) -> PyResult<()> {
        self.inner.record(success, duration_ms).map_err(to_py_err)
    }

    fn release(&self) {
        self.inner.release();
    }

    #[getter]
    fn state(&self) -> &'static str {
        self.inner.state().as_str()
    }

    fn metrics<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let metrics = self.inner.metrics();
        let dict = PyDict::new(py);
        dict.set_item("failure_rate", metrics.failure_rate)?;
        dict.set_item("slow_call_rate", metrics.slow_call_rate)?;
        dict.set_item("calls", metrics.calls)?;
        dict.set_item("failed", metrics.failed)?;
        dict.set_item("slow", metrics.slow)?;
        Ok(dict)
    }

    fn reset(&self) {
        self.inner.reset();
    }

    fn __repr__(&self) -> String {
        format!("<CircuitBreaker state={}>", self.inner.state().as_str())
    }
}

pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    // The stub's `BreakerState` alias exists at runtime too, so that importing it outside `TYPE_CHECKING`
    // works and stubtest can hold the stub to it. It is spelled as the Union of one-value Literals that it
    // means, because that is how mypy reads `Literal["closed", "open", "half_open"]` and so what stubtest
    // expects to find at runtime.
    let typing = m.py().import("typing")?;
    let literal = typing.getattr("Literal")?;
    let states = [
        BreakerState::Closed,
        BreakerState::Open,
        BreakerState::HalfOpen,
    ]
    .into_iter()
    .map(|state| literal.get_item(state.as_str()))
    .collect::<PyResult<Vec<_>>>()?;
    let alias = typing
        .getattr("Union")?
        .get_item(PyTuple::new(m.py(), states)?)?;
    m.add("BreakerState", alias)?;
    m.add_class::<PyCircuitBreaker>()
}
