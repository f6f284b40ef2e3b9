//! TODO(errors)
use pyo3::prelude::*;

