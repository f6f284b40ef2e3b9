//! The one place where `tiergate-core` errors become Python exceptions.
//!
//! ```text
//! ValueError
//!  ├── RuleError        a rule does not compile or is malformed (the message names the rule id)
//!  └── (plain)          unknown encoding (the message names the known ones); vectors of the wrong size
//! RuntimeError          an encoding failed to initialise (a bug in tiergate, never the caller's input)
//! ```

use pyo3::create_exception;
use pyo3::exceptions::{PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use tiergate_core::tokens::TokenError;

create_exception!(
    tiergate._native,
    RuleError,
    PyValueError,
    "A rule does not compile or is malformed; the message names the rule id."
);

/// Unknown encoding -> `ValueError`; a failed initialisation -> `RuntimeError`.
pub(crate) fn token_error(err: TokenError) -> PyErr {
    match err {
        TokenError::UnknownEncoding { .. } => PyValueError::new_err(err.to_string()),
        TokenError::Init { .. } => PyRuntimeError::new_err(err.to_string()),
    }
}

/// Every rule-set error -> `RuleError`; its message names the rule.
pub(crate) fn rule_error(err: tiergate_core::rules::RuleError) -> PyErr {
    RuleError::new_err(err.to_string())
}

/// Vectors that are not whole float32 rows of the query's width -> `ValueError`.
pub(crate) fn vector_error(err: tiergate_core::vectors::VectorError) -> PyErr {
    PyValueError::new_err(err.to_string())
}
