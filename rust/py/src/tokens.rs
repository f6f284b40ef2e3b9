//! `count_tokens` and `ENCODINGS`: exact tiktoken-compatible counts from `tiergate_core::tokens`.

use std::borrow::Cow;

use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyString, PyTuple};
use tiergate_core::tokens::{Encoding, TokenCounter};

use crate::errors;

/// Texts shorter than this many UTF-8 bytes are processed without releasing the GIL. Releasing and
/// re-taking it measured 40-300 ns on the 2-core dev machines (1023- vs 1024-byte texts, alternated),
/// against about 1 us to count 16 bytes and 18 us to count 1 KB: below 1 KB the GIL is held for under
/// ~20 us, shorter than a switch interval, and the release would cost up to a third of a tiny call.
pub(crate) const DETACH_MIN_BYTES: usize = 1024;

/// The loaded counter of `name`; a first load runs with the GIL released, since it takes milliseconds.
pub(crate) fn counter(py: Python<'_>, name: &str) -> PyResult<&'static TokenCounter> {
    let encoding = Encoding::from_name(name).map_err(errors::token_error)?;
    let counter = if TokenCounter::is_loaded(encoding) {
        TokenCounter::get(encoding)
    } else {
        py.detach(|| TokenCounter::get(encoding))
    };
    counter.map_err(errors::token_error)
}

/// The UTF-8 text tiktoken counts for `text`: the `str`'s own UTF-8 (borrowed, no copy) when it has one.
/// A `str` holding surrogate code points has none; tiktoken then round-trips it through UTF-16 (pairs join
/// into one character, lone ones become U+FFFD) and counts that, so the same is done here.
pub(crate) fn tiktoken_text<'a>(text: &'a Bound<'_, PyString>) -> PyResult<Cow<'a, str>> {
    if let Ok(utf8) = text.to_str() {
        return Ok(Cow::Borrowed(utf8));
    }
    let py = text.py();
    let repaired = text
        .call_method1(intern!(py, "encode"), ("utf-16", "surrogatepass"))?
        .call_method1(intern!(py, "decode"), ("utf-16", "replace"))?;
    Ok(Cow::Owned(repaired.extract()?))
}

/// Exact token count, identical to tiktoken's `len(encode_ordinary(text))`.
#[pyfunction]
#[pyo3(signature = (text, encoding = "o200k_base"))]
fn count_tokens(py: Python<'_>, text: &Bound<'_, PyString>, encoding: &str) -> PyResult<usize> {
    let text = tiktoken_text(text)?;
    let text: &str = &text;
    let counter = counter(py, encoding)?;
    if text.len() < DETACH_MIN_BYTES {
        Ok(counter.count(text))
    } else {
        Ok(py.detach(|| counter.count(text)))
    }
}

pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let names = Encoding::ALL.map(Encoding::name);
    m.add("ENCODINGS", PyTuple::new(m.py(), names)?)?;
    m.add_function(wrap_pyfunction!(count_tokens, m)?)?;
    Ok(())
}
