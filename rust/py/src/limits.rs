//! `TokenBucket` and `BudgetCounter`: the bindings of `tiergate_core::limits`.
//!
//! The GIL is kept on purpose: each call is a short mutex section with a little arithmetic, cheaper than
//! detaching from the interpreter and re-attaching.

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use tiergate_core::limits::{BudgetCounter, BudgetPeriod, LimitError, TokenBucket};

use crate::clock::{clock_from, PyManualClock};

fn to_py_err(err: LimitError) -> PyErr {
    PyValueError::new_err(err.to_string())
}

/// Token bucket: holds up to `capacity`, refills at `refill_per_sec`.
#[pyclass(frozen, name = "TokenBucket", module = "tiergate._native")]
pub(crate) struct PyTokenBucket {
    inner: TokenBucket,
}

#[pymethods]
impl PyTokenBucket {
    #[new]
    #[pyo3(signature = (capacity, refill_per_sec, clock = None))]
    fn new(
        capacity: f64,
        refill_per_sec: f64,
        clock: Option<&Bound<'_, PyManualClock>>,
    ) -> PyResult<Self> {
        let inner =
            TokenBucket::new(capacity, refill_per_sec, clock_from(clock)).map_err(to_py_err)?;
        Ok(Self { inner })
    }

    #[pyo3(signature = (amount = 1.0))]
    fn try_take(&self, amount: f64) -> PyResult<bool> {
        self.inner.try_take(amount).map_err(to_py_err)
    }

    fn available(&self) -> f64 {
        self.inner.available()
    }

    #[pyo3(signature = (amount = 1.0))]
    fn retry_after_ms(&self, amount: f64) -> PyResult<f64> {
        self.inner.retry_after_ms(amount).map_err(to_py_err)
    }
}

/// Spend against a limit in a calendar period (UTC day or month) that resets itself.
#[pyclass(frozen, name = "BudgetCounter", module = "tiergate._native")]
pub(crate) struct PyBudgetCounter {
    inner: BudgetCounter,
}

#[pymethods]
impl PyBudgetCounter {
    #[new]
    #[pyo3(signature = (limit, period = "day", clock = None))]
    fn new(limit: f64, period: &str, clock: Option<&Bound<'_, PyManualClock>>) -> PyResult<Self> {
        let period: BudgetPeriod = period.parse().map_err(to_py_err)?;
        let inner = BudgetCounter::new(limit, period, clock_from(clock)).map_err(to_py_err)?;
        Ok(Self { inner })
    }

    fn try_reserve(&self, amount: f64) -> PyResult<bool> {
        self.inner.try_reserve(amount).map_err(to_py_err)
    }

    fn settle(&self, reserved: f64, actual: f64) -> PyResult<()> {
        self.inner.settle(reserved, actual).map_err(to_py_err)
    }

    fn spent(&self) -> f64 {
        self.inner.spent()
    }

    fn remaining(&self) -> f64 {
        self.inner.remaining()
    }
}

pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyTokenBucket>()?;
    m.add_class::<PyBudgetCounter>()
}
