//! `nearest_vector`: the binding of `tiergate_core::vectors::nearest`.

use pyo3::prelude::*;
use pyo3::types::PyBytes;

use crate::errors;

/// Blocks of rows smaller than this many bytes are scanned without releasing the GIL: scanning 64 KiB
/// (about 40 rows of 384 float32 values) takes microseconds, the order of a release and re-take.
const DETACH_MIN_BYTES: usize = 64 * 1024;

/// The index and dot product of the row of `rows` nearest to `query` (float32 little-endian bytes), or
/// None when `rows` is empty.
#[pyfunction]
fn nearest_vector(
    py: Python<'_>,
    query: &Bound<'_, PyBytes>,
    rows: &Bound<'_, PyBytes>,
) -> PyResult<Option<(usize, f32)>> {
    let (query, rows) = (query.as_bytes(), rows.as_bytes());
    let found = if rows.len() < DETACH_MIN_BYTES {
        tiergate_core::vectors::nearest(query, rows)
    } else {
        py.detach(|| tiergate_core::vectors::nearest(query, rows))
    };
    found.map_err(errors::vector_error)
}

pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(nearest_vector, m)?)?;
    Ok(())
}
