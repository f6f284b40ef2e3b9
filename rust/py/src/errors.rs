//! The one place where `tiergate-core` errors become Python exceptions.
//!
//! ```text
//! ValueError
//!  ├── RuleError        a rule does not compile or is malformed (the message names the rule id)
//!  ├── LineTooLong  an event-stream line without an end past 8 MiB (a provider's stream)
//!  └── (plain)          unknown encoding (the message names the known ones); vectors of the wrong size
//! RuntimeError          an encoding failed to initialise (a bug in tiergate, never the caller's input)
//!  └── CallFinished     a gRPC call was answered twice (its client already has an answer)
//! OSError               the gRPC listener cannot bind its address
//! ```

use pyo3::create_exception;
use pyo3::exceptions::{PyOSError, PyRuntimeError, PyValueError};
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

create_exception!(
    tiergate._native,
    LineTooLong,
    PyValueError,
    "An event-stream line grew past 8 MiB without ending: not a stream a provider would send."
);

/// A stream's line too long -> `LineTooLong`.
pub(crate) fn line_too_long(err: tiergate_core::relay::sse::LineTooLong) -> PyErr {
    LineTooLong::new_err(err.to_string())
}

create_exception!(
    tiergate._native,
    CallFinished,
    PyRuntimeError,
    "A gRPC call was already finished: its client has its answer."
);

/// Answering a finished call -> `CallFinished`; any other misuse of a reply (a bug) -> `RuntimeError`.
pub(crate) fn reply_error(err: tiergate_front::ReplyError) -> PyErr {
    match err {
        tiergate_front::ReplyError::Finished => CallFinished::new_err(err.to_string()),
        _ => PyRuntimeError::new_err(err.to_string()),
    }
}

/// Listening fails -> `OSError`; a malformed address or TLS files -> `ValueError`; the rest -> `RuntimeError`.
pub(crate) fn front_error(err: tiergate_front::FrontError) -> PyErr {
    use tiergate_front::FrontError;
    match err {
        FrontError::Listen { .. } | FrontError::Runtime(_) => PyOSError::new_err(err.to_string()),
        FrontError::Address(_) | FrontError::Tls(_) => PyValueError::new_err(err.to_string()),
        FrontError::Reflection(_) | FrontError::Serve(_) | FrontError::Panicked => {
            PyRuntimeError::new_err(err.to_string())
        }
    }
}

/// Vectors that are not whole float32 rows of the query's width -> `ValueError`.
pub(crate) fn vector_error(err: tiergate_core::vectors::VectorError) -> PyErr {
    PyValueError::new_err(err.to_string())
}
