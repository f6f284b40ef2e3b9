//! `ManualClock`: the test clock, shared with the breakers and limits it is handed to.
//!
//! Like every class in this crate's breaker/limits files, its methods take microseconds, so they keep the GIL:
//! detaching and re-attaching costs more than the call itself.

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use tiergate_core::clock::{Clock, ClockError, ManualClock};

fn to_py_err(err: ClockError) -> PyErr {
    PyValueError::new_err(err.to_string())
}

/// A clock that only moves when told to: for table-testing breakers and limits.
#[pyclass(frozen, name = "ManualClock", module = "tiergate._native")]
pub(crate) struct PyManualClock {
    inner: ManualClock,
}

#[pymethods]
impl PyManualClock {
    #[new]
    #[pyo3(signature = (start_ms = 0.0))]
    fn new(start_ms: f64) -> PyResult<Self> {
        Ok(Self {
            inner: ManualClock::new(start_ms).map_err(to_py_err)?,
        })
    }

    fn now_ms(&self) -> f64 {
        self.inner.now_ms()
    }

    fn advance(&self, ms: f64) -> PyResult<()> {
        self.inner.advance(ms).map_err(to_py_err)
    }

    fn set(&self, ms: f64) -> PyResult<()> {
        self.inner.set(ms).map_err(to_py_err)
    }

    fn __repr__(&self) -> String {
        format!("ManualClock({:?})", self.inner.now_ms())
    }
}

/// The clock a breaker or limit reads: the given manual clock (shared, not copied), or the system's.
pub(crate) fn clock_from(clock: Option<&Bound<'_, PyManualClock>>) -> Clock {
    match clock {
        Some(clock) => Clock::Manual(clock.get().inner.clone()),
        None => Clock::System,
    }
}

pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyManualClock>()
}
