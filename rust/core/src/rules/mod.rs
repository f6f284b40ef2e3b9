//! A compiled rule set: regex rules and keyword rules, matched together over one text. Used for PII /
//! sensitivity detection and task hints; compiled once per config load, then shared by every request
//! (`RuleSet` is `Send + Sync`).
//!
//! # Time
//!
//! Finding whether and where a pattern first matches is linear in the text. Stepping through *all*
//! matches is not always: the `regex` crate documents O(m * n^2) for iterating over the matches of a
//! pattern whose preferred alternative can fail late (`a*X|a` over a run of `a`s restarts its scan after
//! each short match). So the request path is linear for rules without a validator, and for validator rules
//! whose patterns do not have that shape; [`RuleSet::scan`] (every span, not on the request path) and a
//! validator rule written like `[0-9]*X|[0-9]{13}` are quadratic at worst. Every pattern of the default
//! pack is linear (checked on adversarial texts in `tests/property/test_rules_properties.py`).
//!
//! # How a text is scanned
//!
//! - **Regex rules** are compiled into one multi-pattern regex (`MatchKind::All`) that answers "which rules
//!   may match" in a single pass, and each on its own, run afterwards only for the rules that pass
//!   reported, to find their spans (and apply validators). In the single pass, word boundaries are left
//!   out of the patterns (see `without_word_boundaries`) so that it stays in the lazy DFA on non-ASCII
//!   text; the per-rule search is exact. The `regex` family guarantees each search time linear in the text
//!   (no backtracking engine), whatever the pattern: the bounded backtracker it may use remembers what it
//!   visited.
//! - The request path ([`RuleSet::matched`], [`RuleSet::analyze`]) needs ids only: a rule the single pass
//!   decides on its own (no word boundary, no validator) costs nothing more; others stop at their first
//!   accepted match.
//! - **Keyword rules** go into one Aho-Corasick automaton over every keyword of every rule, scanned once
//!   with overlapping matches so that rules sharing words all see them.
//!
//! # Semantics
//!
//! - A regex rule reports its non-overlapping leftmost-first matches, like Python's `re.finditer`. With a
//!   validator, a match that fails it is not a match, and gives way to the shorter matches at its start,
//!   then to the matches starting after its first character: `2024 4111 1111 1111 1111` still holds a
//!   card number. These second looks re-read text within a budget (a few times the text's length) that
//!   keeps the scan linear; once it is spent, the search goes on after a rejected match. A pattern that can
//!   match the empty string is rejected: an empty span says nothing about the text.
//! - A keyword rule reports each occurrence of one of its keywords at word boundaries: a keyword edge that
//!   is a word character (alphanumeric or `_`) must not touch a word character in the text, so `hello`
//!   does not match inside `othello`, while `c++` matches in `c++17`. Scripts written without spaces (Han,
//!   kana, Thai, Lao, Khmer, Myanmar) have no word boundaries to find, so their characters never block a
//!   match: `密码` matches inside `我的密码是`. Overlapping occurrences within one rule resolve
//!   leftmost-longest (`new york` wins over `york`).
//! - `case_insensitive` on a regex rule is Unicode simple case folding (`(?i)`). On a keyword rule whose
//!   keywords are all ASCII it is ASCII case folding, done in the automaton; a case-insensitive rule with a
//!   non-ASCII keyword (`Straße`, `пароль`) is compiled as an escaped regex alternation instead, so it gets
//!   full Unicode case folding too, with the same word-boundary rule.
//! - Offsets are byte offsets into the UTF-8 text, always on character boundaries.
//!
//! # Files
//!
//! This file compiles and runs rule sets; `keywords.rs` holds the keyword automaton and the word-boundary
//! rule, `validate.rs` the validators (Luhn, IBAN), `national_ids.rs` the national identifiers' checksums,
//! `ipv4.rs` what tells an address from a version string or a netmask, `pack.rs` the default rule pack
//! ([`DEFAULT_PACK`]: personal data and secrets, with stable ids that configs replace or disable).

mod ipv4;
mod keywords;
mod national_ids;
mod pack;
#[cfg(test)]
mod tests;
mod validate;

use std::collections::HashSet;

use regex_automata::meta::Regex;
use regex_automata::util::syntax;
use regex_automata::{Anchored, Input, MatchKind, PatternSet};

use crate::tokens::{Encoding, TokenCounter, TokenError};
use keywords::{at_word_edges, check_keywords, keyword_alternation, KeywordIndex};
pub use pack::{default_rules, PackRule, DEFAULT_PACK};
pub use validate::Validator;

/// What a rule looks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Pattern {
    /// A regular expression in the `regex` crate's syntax.
    Regex(String),
    /// Literal words or phrases, matched at word boundaries.
    Keywords(Vec<String>),
}

/// One rule as configured; [`RuleSet::new`] validates and compiles it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rule {
    pub id: String,
    pub pattern: Pattern,
    pub case_insensitive: bool,
    /// Only for regex rules.
    pub validator: Option<Validator>,
}

impl Rule {
    /// A case-sensitive regex rule without validator.
    pub fn regex(id: impl Into<String>, pattern: impl Into<String>) -> Self {
        Self {
            id: id.into(),
            pattern: Pattern::Regex(pattern.into()),
            case_insensitive: false,
            validator: None,
        }
    }

    /// A case-sensitive keyword rule.
    pub fn keywords<S: Into<String>>(
        id: impl Into<String>,
        keywords: impl IntoIterator<Item = S>,
    ) -> Self {
        Self {
            id: id.into(),
            pattern: Pattern::Keywords(keywords.into_iter().map(Into::into).collect()),
            case_insensitive: false,
            validator: None,
        }
    }

    /// The same rule with case-insensitive matching switched on or off.
    pub fn case_insensitive(self, yes: bool) -> Self {
        Self {
            case_insensitive: yes,
            ..self
        }
    }

    /// The same rule with a validator.
    pub fn validator(self, validator: Validator) -> Self {
        Self {
            validator: Some(validator),
            ..self
        }
    }
}

/// Why a rule set could not be built. Every variant about one rule names it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RuleError {
    #[error("rule {id:?}: invalid pattern: {reason}")]
    InvalidPattern { id: String, reason: String },
    #[error("rule {id:?}: {reason}")]
    Malformed { id: String, reason: String },
    #[error("rule {id:?} is defined more than once")]
    DuplicateId { id: String },
    /// Each rule compiles on its own, but all of them together exceed the engines' size limits.
    #[error("the rule set is too large to compile as a whole: {reason}")]
    TooLarge { reason: String },
}

/// One occurrence of one rule: `rule` indexes [`RuleSet::ids`]; `start..end` are byte offsets.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RuleMatch {
    pub start: usize,
    pub end: usize,
    pub rule: usize,
}

/// The per-request analysis: token count and which rules matched.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Analysis {
    pub tokens: usize,
    /// Indices into [`RuleSet::ids`], ascending, each once.
    pub matched: Vec<usize>,
}

/// Rules compiled once, matched together. See the module documentation for the exact semantics.
pub struct RuleSet {
    ids: Vec<String>,
    /// Rules answered by the regex engine, in rule order (keyword rules compiled as regexes included).
    regex_rules: Vec<RegexRule>,
    /// All of `regex_rules` as one pattern each, relaxed (see [`without_word_boundaries`]), for the
    /// "which may match anywhere" pass; `None` when there are no regex rules.
    any_regex: Option<Regex>,
    keywords: Option<KeywordIndex>,
}

/// A regex-side rule before compilation.
struct RegexSpec {
    rule: usize,
    pattern: String,
    case_insensitive: bool,
    validator: Option<Validator>,
    keyword_edges: bool,
}

struct RegexRule {
    rule: usize,
    regex: Regex,
    validator: Option<Validator>,
    /// Set for keyword rules compiled as regexes: their matches need the word-boundary check.
    keyword_edges: bool,
    /// Whether the combined pass alone decides that this rule matches: its pattern went in unrelaxed and
    /// nothing (validator, word edges) can reject a match afterwards.
    pass_decides: bool,
    /// The rule's pattern without word boundaries (see [`without_word_boundaries`]), when it had any.
    relaxed: Option<Regex>,
}

impl RuleSet {
    /// Validates and compiles `rules`.
    pub fn new(rules: Vec<Rule>) -> Result<Self, RuleError> {
        let mut ids = Vec::with_capacity(rules.len());
        let mut seen = HashSet::with_capacity(rules.len());
        let mut regex_specs = Vec::new();
        let mut keyword_rules = Vec::new();
        for (index, rule) in rules.into_iter().enumerate() {
            if rule.id.is_empty() {
                return Err(malformed(&rule.id, "the id is empty"));
            }
            if !seen.insert(rule.id.clone()) {
                return Err(RuleError::DuplicateId { id: rule.id });
            }
            match rule.pattern {
                Pattern::Regex(pattern) => regex_specs.push(RegexSpec {
                    rule: index,
                    pattern,
                    case_insensitive: rule.case_insensitive,
                    validator: rule.validator,
                    keyword_edges: false,
                }),
                Pattern::Keywords(words) => {
                    check_keywords(&rule.id, rule.validator, &words)?;
                    if rule.case_insensitive && !words.iter().all(|w| w.is_ascii()) {
                        regex_specs.push(RegexSpec {
                            rule: index,
                            pattern: keyword_alternation(&words),
                            case_insensitive: true,
                            validator: None,
                            keyword_edges: true,
                        });
                    } else {
                        keyword_rules.push((index, words, rule.case_insensitive));
                    }
                }
            }
            ids.push(rule.id);
        }

        // Each rule compiles on its own (for its spans) and, relaxed, into the combined pass.
        let id_of = |rule: usize| ids.get(rule).map_or("", String::as_str);
        let mut regex_rules = Vec::with_capacity(regex_specs.len());
        let mut relaxed_hirs = Vec::with_capacity(regex_specs.len());
        for spec in regex_specs {
            let id = id_of(spec.rule);
            let config = syntax::Config::new().case_insensitive(spec.case_insensitive);
            let hir = syntax::parse_with(&spec.pattern, &config)
                .map_err(|err| invalid_pattern(id, err.to_string()))?;
            if hir.properties().minimum_len() == Some(0) {
                return Err(invalid_pattern(
                    id,
                    "the pattern can match the empty string",
                ));
            }
            let regex = Regex::builder()
                .build_from_hir(&hir)
                .map_err(|err| invalid_pattern(id, err.to_string()))?;
            let relaxed_hir = without_word_boundaries(&spec.pattern)
                .and_then(|pattern| syntax::parse_with(&pattern, &config).ok());
            // A relaxed pattern that fails to build only costs speed: the rule then runs unrelaxed.
            let relaxed = relaxed_hir
                .as_ref()
                .and_then(|relaxed| Regex::builder().build_from_hir(relaxed).ok());
            let pass_decides =
                relaxed_hir.is_none() && spec.validator.is_none() && !spec.keyword_edges;
            relaxed_hirs.push(relaxed_hir.unwrap_or(hir));
            regex_rules.push(RegexRule {
                rule: spec.rule,
                regex,
                validator: spec.validator,
                keyword_edges: spec.keyword_edges,
                pass_decides,
                relaxed,
            });
        }
        let any_regex = if relaxed_hirs.is_empty() {
            None
        } else {
            let config = Regex::config()
                .match_kind(MatchKind::All)
                // Dozens of patterns make many DFA states, more on non-Latin text (8 MiB thrashed on the
                // ten-locale corpus of benches/bench_privacy.py: 400 µs per 1 KB instead of 45 µs); a bigger
                // cache keeps the lazy DFA from giving up and falling back to the much slower PikeVM. It is
                // allocated per thread on first use and grows with the states actually made.
                .hybrid_cache_capacity(32 << 20);
            let regex = Regex::builder()
                .configure(config)
                .build_many_from_hir(&relaxed_hirs)
                .map_err(|err| RuleError::TooLarge {
                    reason: err.to_string(),
                })?;
            Some(regex)
        };
        let keywords = KeywordIndex::new(keyword_rules)?;
        Ok(Self {
            ids,
            regex_rules,
            any_regex,
            keywords,
        })
    }

    /// The rule ids, in rule order; [`RuleMatch::rule`] and [`Analysis::matched`] index this.
    pub fn ids(&self) -> &[String] {
        &self.ids
    }

    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// Every match of every rule, ordered by start offset (then end offset, then rule order).
    pub fn scan(&self, text: &str) -> Vec<RuleMatch> {
        let mut found = Vec::new();
        for rule in self.regex_candidates(text) {
            found.extend(rule.matches(text));
        }
        if let Some(keywords) = &self.keywords {
            keywords.scan(text, &mut found);
        }
        found.sort_unstable();
        found
    }

    /// The indices of the rules that match `text`, ascending, each once. Cheaper than [`RuleSet::scan`]: a
    /// rule the single pass decides alone costs nothing more, others stop at their first accepted match.
    pub fn matched(&self, text: &str) -> Vec<usize> {
        let mut matched: Vec<usize> = self
            .regex_candidates(text)
            .filter(|rule| rule.pass_decides || rule.matches(text).next().is_some())
            .map(|rule| rule.rule)
            .collect();
        if let Some(keywords) = &self.keywords {
            let mut found = Vec::new();
            keywords.scan(text, &mut found);
            matched.extend(found.iter().map(|m| m.rule));
        }
        matched.sort_unstable();
        matched.dedup();
        matched
    }

    /// The request path's one call: the token count of `text` in `encoding` and the rules that match it.
    pub fn analyze(&self, text: &str, encoding: Encoding) -> Result<Analysis, TokenError> {
        let tokens = TokenCounter::get(encoding)?.count(text);
        Ok(Analysis {
            tokens,
            matched: self.matched(text),
        })
    }

    /// The regex rules that may match somewhere in `text` according to the single multi-pattern pass
    /// (relaxed patterns, before validators and keyword edges), in rule order.
    fn regex_candidates<'s>(&'s self, text: &str) -> impl Iterator<Item = &'s RegexRule> + 's {
        let mut hits = PatternSet::new(self.regex_rules.len());
        if let Some(any) = &self.any_regex {
            any.which_overlapping_matches(&Input::new(text), &mut hits);
        }
        hits.iter()
            .filter_map(|pattern| self.regex_rules.get(pattern.as_usize()))
            .collect::<Vec<_>>()
            .into_iter()
    }
}

impl RegexRule {
    /// This rule's accepted matches in `text`, in order.
    fn matches<'a>(&'a self, text: &'a str) -> impl Iterator<Item = RuleMatch> + 'a {
        ExactMatches {
            rule: self,
            text,
            at: Some(0),
            retry_budget: RETRY_BUDGET_PER_BYTE
                .saturating_mul(text.len())
                .saturating_add(RETRY_BUDGET_MIN),
        }
        .map(|m| RuleMatch {
            start: m.start(),
            end: m.end(),
            rule: self.rule,
        })
    }

    /// Whether a match of the pattern counts: its validator and, for keyword rules, the word edges.
    fn accepts(&self, text: &str, m: &regex_automata::Match) -> bool {
        let accepted_by_validator = self
            .validator
            .is_none_or(|validator| validator.check_in(text, m.start(), m.end()));
        accepted_by_validator && (!self.keyword_edges || at_word_edges(text, m.start(), m.end()))
    }
}

/// Searching again after a rejected match may cover at most this many bytes per byte of text (plus
/// [`RETRY_BUDGET_MIN`]): beyond that, the search goes on after the rejected match, so the scan stays linear
/// in the text whatever the pattern.
const RETRY_BUDGET_PER_BYTE: usize = 4;
const RETRY_BUDGET_MIN: usize = 4096;

/// A rule's accepted matches: its leftmost-first matches like `Regex::find_iter`, except that a rejected
/// match (validator or keyword edges) is followed by the shorter matches at its start, longest first, and
/// then by a search from the next character after its start. So a valid card number still counts when a
/// year precedes it (`2024 4111 1111 1111 1111` first matches as a whole and fails Luhn), and an IBAN when
/// a four-digit number follows it (`BE68 5390 0754 7034 2024`). Those searches re-read text; once they
/// have used up the retry budget, a rejected match is skipped as a whole, as `find_iter` would.
///
/// Each search for the next match starts where the relaxed pattern (no word boundaries, always in the DFA)
/// finds its next match. Why that is exact: every match of the rule is also a match of the relaxed
/// pattern, so from any position the rule's leftmost match cannot start before the relaxed pattern's
/// leftmost one, and when the relaxed pattern finds nothing, neither can the rule. Look-around still sees
/// the text outside a search's span.
///
/// Why it matters: on non-ASCII text the lazy DFA cannot evaluate Unicode word boundaries, so the rule's
/// own regex runs in the bounded backtracker; this keeps it to the stretches where a match is plausible
/// instead of the whole text, in particular the fruitless search after the last match.
struct ExactMatches<'a> {
    rule: &'a RegexRule,
    text: &'a str,
    /// Where the next search starts; `None` once a search found nothing.
    at: Option<usize>,
    /// Bytes that searches after rejected matches may still re-read.
    retry_budget: usize,
}

impl Iterator for ExactMatches<'_> {
    type Item = regex_automata::Match;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let at = self.at.take()?;
            let found = self.search_from(at)?;
            if let Some(accepted) = self.accepted_or_shorter(found) {
                // Patterns that can match the empty string are rejected, so every match moves the search
                // on; if one ever did not, stopping beats looping (or handing `Input` an invalid span,
                // which panics).
                self.at = (accepted.end() > at).then_some(accepted.end());
                return Some(accepted);
            }
            let retry = next_char_boundary(self.text, found.start());
            let reread = found.end().saturating_sub(retry);
            self.at = if reread <= self.retry_budget {
                self.retry_budget -= reread;
                Some(retry)
            } else {
                (found.end() > at).then_some(found.end())
            };
        }
    }
}

impl ExactMatches<'_> {
    /// The rule's leftmost-first match at or after `at`.
    fn search_from(&self, at: usize) -> Option<regex_automata::Match> {
        let end = self.text.len();
        let from = match &self.rule.relaxed {
            Some(relaxed) => relaxed
                .search(&Input::new(self.text).span(at..end))?
                .start(),
            None => at,
        };
        self.rule
            .regex
            .search(&Input::new(self.text).span(from..end))
    }

    /// `found` if the rule accepts it, else the longest shorter match at the same start that it accepts
    /// (while the retry budget lasts).
    fn accepted_or_shorter(
        &mut self,
        found: regex_automata::Match,
    ) -> Option<regex_automata::Match> {
        let mut candidate = found;
        loop {
            if self.rule.accepts(self.text, &candidate) {
                return Some(candidate);
            }
            // Anchored at the same start, in a span that ends before the rejected match did: the
            // pattern's preferred match among the shorter ones.
            let end = prev_char_boundary(self.text, candidate.end());
            if end <= candidate.start() || end - candidate.start() > self.retry_budget {
                return None;
            }
            self.retry_budget -= end - candidate.start();
            let input = Input::new(self.text)
                .span(candidate.start()..end)
                .anchored(Anchored::Yes);
            candidate = self.rule.regex.search(&input)?;
        }
    }
}

/// The first character boundary after `at` (or the end of `text`).
fn next_char_boundary(text: &str, at: usize) -> usize {
    (at + 1..text.len())
        .find(|&i| text.is_char_boundary(i))
        .unwrap_or(text.len())
}

/// The last character boundary before `at` (or 0).
fn prev_char_boundary(text: &str, at: usize) -> usize {
    (1..at)
        .rev()
        .find(|&i| text.is_char_boundary(i))
        .unwrap_or(0)
}

/// `pattern` with every word-boundary assertion (`\b`, `\B`, `\b{start}` and the like, `\<`, `\>`)
/// replaced by an empty group, or `None` when it has none. Removing a zero-width condition can only admit
/// more matches, so the result is a superset of `pattern`: good enough to learn which rules may match.
///
/// Why: the lazy DFA supports Unicode word boundaries only on ASCII text. On any non-ASCII byte (an accent,
/// an emoji, a typographic dash) it gives up and the whole multi-pattern pass reruns in the PikeVM, about
/// 50x slower. Without boundaries the pass stays in the DFA; the exact per-rule regex then confirms the
/// few rules it reports. The empty group `(?:)` rather than nothing keeps a following repetition (`\b{3}`,
/// `\b+`) attached to an empty match instead of to the previous item.
///
/// Escapes are read pairwise so `\\b` (a backslash, then `b`) is left alone. `\b` cannot occur inside a
/// character class of a pattern that compiled (regex-syntax rejects it there); inside an `(?x)` comment
/// the replacement is harmless.
fn without_word_boundaries(pattern: &str) -> Option<String> {
    const EMPTY: &str = "(?:)";
    let mut out = String::with_capacity(pattern.len() + 8);
    let mut changed = false;
    let mut chars = pattern.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('b') => {
                changed = true;
                out.push_str(EMPTY);
                // `\b{start}`, `\b{end}`, `\b{start-half}`, `\b{end-half}` are one assertion; `\b{3}` is a
                // repetition of `\b` and keeps its braces.
                let rest: String = chars.clone().take(12).collect();
                for special in ["{start}", "{end}", "{start-half}", "{end-half}"] {
                    if rest.starts_with(special) {
                        for _ in 0..special.len() {
                            chars.next();
                        }
                        break;
                    }
                }
            }
            Some('B' | '<' | '>') => {
                changed = true;
                out.push_str(EMPTY);
            }
            Some(other) => {
                out.push('\\');
                out.push(other);
            }
            None => out.push('\\'),
        }
    }
    changed.then_some(out)
}

fn malformed(id: &str, reason: impl Into<String>) -> RuleError {
    RuleError::Malformed {
        id: id.to_owned(),
        reason: reason.into(),
    }
}

fn invalid_pattern(id: &str, reason: impl Into<String>) -> RuleError {
    RuleError::InvalidPattern {
        id: id.to_owned(),
        reason: reason.into(),
    }
}
