//! `Rule`, `RuleSet`, `RuleMatch`, `RuleError` and the default pack (`default_rules`, `DefaultRule`) over
//! `tiergate_core::rules`.
//!
//! Core reports byte offsets into UTF-8; Python indexes `str` by character, so spans are converted here,
//! in one walk over the text per call, before they cross the boundary.

use std::borrow::Cow;

use pyo3::intern;
use pyo3::prelude::*;
use pyo3::pyclass::CompareOp;
use pyo3::types::{PyBytes, PyString};
use tiergate_core::rules::{self as core, Pattern, Validator};
use tiergate_core::tokens::TokenCounter;

use crate::errors::{self, RuleError};
use crate::tokens::{self, DETACH_MIN_BYTES};

/// One rule: a regex pattern or a keyword list (exactly one of them).
#[pyclass(module = "tiergate._native", frozen, eq)]
#[derive(PartialEq)]
pub(crate) struct Rule {
    rule: core::Rule,
}

#[pymethods]
impl Rule {
    #[new]
    #[pyo3(signature = (id, *, regex = None, keywords = None, case_insensitive = false, validator = None))]
    fn new(
        id: String,
        regex: Option<String>,
        keywords: Option<Vec<String>>,
        case_insensitive: bool,
        validator: Option<&str>,
    ) -> PyResult<Self> {
        let pattern = match (regex, keywords) {
            (Some(regex), None) => Pattern::Regex(regex),
            (None, Some(keywords)) => Pattern::Keywords(keywords),
            _ => {
                return Err(RuleError::new_err(format!(
                    "rule {id:?}: give exactly one of regex= and keywords="
                )))
            }
        };
        let validator = validator
            .map(Validator::from_name)
            .transpose()
            .map_err(|reason| RuleError::new_err(format!("rule {id:?}: {reason}")))?;
        Ok(Self {
            rule: core::Rule {
                id,
                pattern,
                case_insensitive,
                validator,
            },
        })
    }

    #[getter]
    fn id(&self) -> &str {
        &self.rule.id
    }

    #[getter]
    fn regex(&self) -> Option<&str> {
        match &self.rule.pattern {
            Pattern::Regex(regex) => Some(regex),
            Pattern::Keywords(_) => None,
        }
    }

    #[getter]
    fn keywords(&self) -> Option<Vec<String>> {
        match &self.rule.pattern {
            Pattern::Regex(_) => None,
            Pattern::Keywords(words) => Some(words.clone()),
        }
    }

    #[getter]
    fn case_insensitive(&self) -> bool {
        self.rule.case_insensitive
    }

    #[getter]
    fn validator(&self) -> Option<&'static str> {
        self.rule.validator.map(Validator::name)
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        let rule = &self.rule;
        let pattern = match &rule.pattern {
            Pattern::Regex(regex) => format!("regex={}", py_repr(py, regex)?),
            Pattern::Keywords(words) => format!("keywords={}", words.into_pyobject(py)?.repr()?),
        };
        let mut repr = format!("Rule({}, {pattern}", py_repr(py, &rule.id)?);
        if rule.case_insensitive {
            repr.push_str(", case_insensitive=True");
        }
        if let Some(validator) = rule.validator {
            repr.push_str(&format!(", validator={}", py_repr(py, validator.name())?));
        }
        repr.push(')');
        Ok(repr)
    }
}

fn py_repr(py: Python<'_>, text: &str) -> PyResult<String> {
    Ok(PyString::new(py, text).repr()?.to_string())
}

/// One rule of the default pack: its stable id, what it matches, and the rule itself.
#[pyclass(module = "tiergate._native", frozen)]
pub(crate) struct DefaultRule {
    pack: &'static core::PackRule,
}

#[pymethods]
impl DefaultRule {
    #[getter]
    fn id(&self) -> &'static str {
        self.pack.id
    }

    #[getter]
    fn description(&self) -> &'static str {
        self.pack.description
    }

    #[getter]
    fn rule(&self) -> Rule {
        Rule {
            rule: self.pack.rule(),
        }
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        Ok(format!("DefaultRule({})", py_repr(py, self.pack.id)?))
    }
}

/// The default rule pack (personal data and secrets), in pack order.
#[pyfunction]
fn default_rules() -> Vec<DefaultRule> {
    core::DEFAULT_PACK
        .iter()
        .map(|pack| DefaultRule { pack })
        .collect()
}

/// One occurrence of one rule; `start`/`end` are character offsets into the scanned `str`.
#[pyclass(module = "tiergate._native", frozen)]
pub(crate) struct RuleMatch {
    #[pyo3(get)]
    rule_id: Py<PyString>,
    #[pyo3(get)]
    start: usize,
    #[pyo3(get)]
    end: usize,
}

#[pymethods]
impl RuleMatch {
    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        Ok(format!(
            "RuleMatch(rule_id={}, start={}, end={})",
            self.rule_id.bind(py).repr()?,
            self.start,
            self.end
        ))
    }

    fn __richcmp__(&self, other: &Bound<'_, PyAny>, op: CompareOp) -> PyResult<Py<PyAny>> {
        let py = other.py();
        let Ok(other) = other.cast::<RuleMatch>() else {
            return Ok(py.NotImplemented());
        };
        let other = other.get();
        let equal = self.start == other.start
            && self.end == other.end
            && PyAnyMethods::eq(self.rule_id.bind(py).as_any(), other.rule_id.bind(py))?;
        match op {
            CompareOp::Eq => Ok(equal.into_pyobject(py)?.to_owned().into_any().unbind()),
            CompareOp::Ne => Ok((!equal).into_pyobject(py)?.to_owned().into_any().unbind()),
            _ => Ok(py.NotImplemented()),
        }
    }

    fn __hash__(&self, py: Python<'_>) -> PyResult<isize> {
        (self.rule_id.clone_ref(py), self.start, self.end)
            .into_pyobject(py)?
            .hash()
    }
}

/// Rules compiled once and matched in one pass over the text (time linear in the text).
#[pyclass(module = "tiergate._native", frozen)]
pub(crate) struct RuleSet {
    rules: core::RuleSet,
    /// The ids as Python strings, made once, so matches share them instead of allocating per match.
    ids: Vec<Py<PyString>>,
}

#[pymethods]
impl RuleSet {
    #[new]
    fn new(py: Python<'_>, rules: Vec<PyRef<'_, Rule>>) -> PyResult<Self> {
        let rules: Vec<core::Rule> = rules.iter().map(|rule| rule.rule.clone()).collect();
        // Compiling dozens of patterns takes milliseconds: let other threads run meanwhile.
        let rules = py
            .detach(|| core::RuleSet::new(rules))
            .map_err(errors::rule_error)?;
        let ids = rules
            .ids()
            .iter()
            .map(|id| PyString::intern(py, id).unbind())
            .collect();
        Ok(Self { rules, ids })
    }

    fn __len__(&self) -> usize {
        self.rules.len()
    }

    #[getter]
    fn rule_ids(&self, py: Python<'_>) -> Vec<Py<PyString>> {
        self.ids.iter().map(|id| id.clone_ref(py)).collect()
    }

    /// Every match of every rule, ordered by start offset.
    fn scan(&self, py: Python<'_>, text: &Bound<'_, PyString>) -> PyResult<Vec<RuleMatch>> {
        let text = span_text(text)?;
        let text: &str = &text;
        let scan = || {
            let mut found = self.rules.scan(text);
            to_char_offsets(text, &mut found);
            found
        };
        let found = if text.len() < DETACH_MIN_BYTES {
            scan()
        } else {
            py.detach(scan)
        };
        Ok(found
            .into_iter()
            .map(|m| RuleMatch {
                rule_id: self.id(py, m.rule),
                start: m.start,
                end: m.end,
            })
            .collect())
    }

    /// The distinct ids of the rules that match, in rule order.
    fn matched_ids(
        &self,
        py: Python<'_>,
        text: &Bound<'_, PyString>,
    ) -> PyResult<Vec<Py<PyString>>> {
        let text = span_text(text)?;
        let text: &str = &text;
        let matched = if text.len() < DETACH_MIN_BYTES {
            self.rules.matched(text)
        } else {
            py.detach(|| self.rules.matched(text))
        };
        Ok(matched.into_iter().map(|rule| self.id(py, rule)).collect())
    }

    /// One call for the request path: (token count, matched rule ids in rule order).
    #[pyo3(signature = (text, encoding = "o200k_base"))]
    fn analyze(
        &self,
        py: Python<'_>,
        text: &Bound<'_, PyString>,
        encoding: &str,
    ) -> PyResult<(usize, Vec<Py<PyString>>)> {
        // Rules see the same text as the token count; only ids come back, so no offsets need mapping.
        let text = tokens::tiktoken_text(text)?;
        let text: &str = &text;
        let counter: &TokenCounter = tokens::counter(py, encoding)?;
        let analyze = || (counter.count(text), self.rules.matched(text));
        let (count, matched) = if text.len() < DETACH_MIN_BYTES {
            analyze()
        } else {
            py.detach(analyze)
        };
        let ids = matched.into_iter().map(|rule| self.id(py, rule)).collect();
        Ok((count, ids))
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        Ok(format!(
            "RuleSet({})",
            self.rule_ids(py).into_pyobject(py)?.repr()?
        ))
    }
}

impl RuleSet {
    fn id(&self, py: Python<'_>, rule: usize) -> Py<PyString> {
        match self.ids.get(rule) {
            Some(id) => id.clone_ref(py),
            // Core only reports indices of its own rules; an empty id beats a panic if that ever broke.
            None => PyString::intern(py, "").unbind(),
        }
    }
}

/// The text rules scan: the `str`'s own UTF-8 (borrowed) when it has one. A `str` holding surrogate code
/// points has none; each of them then becomes U+FFFD, one character for one code point, so that character
/// offsets still index the caller's `str`. (UTF-32 keeps every code point separate, where UTF-16 would
/// merge a surrogate pair into one.)
fn span_text<'a>(text: &'a Bound<'_, PyString>) -> PyResult<Cow<'a, str>> {
    if let Ok(utf8) = text.to_str() {
        return Ok(Cow::Borrowed(utf8));
    }
    let py = text.py();
    let utf32 = text.call_method1(intern!(py, "encode"), ("utf-32-le", "surrogatepass"))?;
    let utf32 = utf32.cast::<PyBytes>()?.as_bytes();
    Ok(Cow::Owned(
        utf32
            .chunks_exact(4)
            .map(|unit| {
                let code = u32::from_le_bytes([unit[0], unit[1], unit[2], unit[3]]);
                char::from_u32(code).unwrap_or(char::REPLACEMENT_CHARACTER)
            })
            .collect(),
    ))
}

/// Rewrites byte offsets into character offsets (Python `str` indices), in place. ASCII text needs
/// nothing; otherwise the offsets are visited in ascending order, counting the characters in between.
fn to_char_offsets(text: &str, found: &mut [core::RuleMatch]) {
    if found.is_empty() || text.is_ascii() {
        return;
    }
    let mut offsets: Vec<usize> = found.iter().flat_map(|m| [m.start, m.end]).collect();
    offsets.sort_unstable();
    offsets.dedup();
    let bytes = text.as_bytes();
    let mut chars_before = Vec::with_capacity(offsets.len());
    let (mut byte, mut chars) = (0, 0);
    for &offset in &offsets {
        // A character starts at every byte that is not a UTF-8 continuation byte (0b10xx_xxxx).
        chars += bytes.get(byte..offset).map_or(0, |span| {
            span.iter().filter(|&&b| (b as i8) >= -0x40).count()
        });
        byte = offset;
        chars_before.push(chars);
    }
    let char_offset = |byte: usize| {
        offsets
            .binary_search(&byte)
            .ok()
            .and_then(|i| chars_before.get(i).copied())
            .unwrap_or(0)
    };
    for m in found.iter_mut() {
        m.start = char_offset(m.start);
        m.end = char_offset(m.end);
    }
}

pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Rule>()?;
    m.add_class::<DefaultRule>()?;
    m.add_function(wrap_pyfunction!(default_rules, m)?)?;
    m.add_class::<RuleMatch>()?;
    m.add_class::<RuleSet>()?;
    m.add("RuleError", m.py().get_type::<RuleError>())?;
    Ok(())
}
