//! `tiergate._native`: a thin PyO3 layer over `tiergate-core`. Each file converts one core module's types;
//! errors are converted to Python exceptions in `errors.rs` only.

use pyo3::prelude::*;

mod breaker;
mod clock;
mod errors;
mod grpc_front;
mod limits;
mod rules;
mod sse_relay;
mod tokens;
mod vectors;

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    clock::register(m)?;
    tokens::register(m)?;
    rules::register(m)?;
    breaker::register(m)?;
    limits::register(m)?;
    grpc_front::register(m)?;
    vectors::register(m)?;
    sse_relay::register(m)?;
    Ok(())
}
