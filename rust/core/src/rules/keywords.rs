//! Keyword rules: one Aho-Corasick automaton over every keyword of every rule, and the word-boundary rule
//! keyword matches must pass (see the parent module's documentation for the semantics).

use aho_corasick::{AhoCorasick, MatchKind as KeywordMatchKind};

use super::{malformed, RuleError, RuleMatch, Validator};

pub(super) struct KeywordIndex {
    automaton: AhoCorasick,
    /// Per automaton pattern: the rule it belongs to and whether the match must equal the keyword's bytes
    /// exactly (the automaton folds ASCII case whenever any rule asked for it).
    patterns: Vec<KeywordPattern>,
}

struct KeywordPattern {
    rule: usize,
    exact: Option<Box<[u8]>>,
}

impl KeywordIndex {
    pub(super) fn new(rules: Vec<(usize, Vec<String>, bool)>) -> Result<Option<Self>, RuleError> {
        if rules.is_empty() {
            return Ok(None);
        }
        let fold_ascii = rules
            .iter()
            .any(|(_, _, case_insensitive)| *case_insensitive);
        let mut words = Vec::new();
        let mut patterns = Vec::new();
        for (rule, keywords, case_insensitive) in rules {
            for word in keywords {
                let exact = (fold_ascii && !case_insensitive).then(|| word.as_bytes().into());
                patterns.push(KeywordPattern { rule, exact });
                words.push(word);
            }
        }
        let automaton = AhoCorasick::builder()
            // Standard semantics is what overlapping search needs: every rule sees every occurrence.
            .match_kind(KeywordMatchKind::Standard)
            .ascii_case_insensitive(fold_ascii)
            .build(&words)
            .map_err(|err| RuleError::TooLarge {
                reason: err.to_string(),
            })?;
        Ok(Some(Self {
            automaton,
            patterns,
        }))
    }

    /// Appends the accepted keyword matches: per rule leftmost-longest and non-overlapping.
    pub(super) fn scan(&self, text: &str, found: &mut Vec<RuleMatch>) {
        let bytes = text.as_bytes();
        let first = found.len();
        for m in self.automaton.find_overlapping_iter(text) {
            let Some(pattern) = self.patterns.get(m.pattern().as_usize()) else {
                continue;
            };
            if let Some(exact) = &pattern.exact {
                if bytes.get(m.range()) != Some(&exact[..]) {
                    continue;
                }
            }
            if at_word_edges(text, m.start(), m.end()) {
                found.push(RuleMatch {
                    start: m.start(),
                    end: m.end(),
                    rule: pattern.rule,
                });
            }
        }
        let ours = found.split_off(first);
        found.extend(leftmost_longest(ours));
    }
}

/// Keeps, per rule, the leftmost-longest non-overlapping matches of `candidates`.
fn leftmost_longest(mut candidates: Vec<RuleMatch>) -> Vec<RuleMatch> {
    candidates.sort_unstable_by_key(|m| (m.rule, m.start, std::cmp::Reverse(m.end)));
    let mut kept: Vec<RuleMatch> = Vec::with_capacity(candidates.len());
    for m in candidates {
        match kept.last() {
            Some(last) if last.rule == m.rule && m.start < last.end => {}
            _ => kept.push(m),
        }
    }
    kept
}

pub(super) fn check_keywords(
    id: &str,
    validator: Option<Validator>,
    words: &[String],
) -> Result<(), RuleError> {
    if validator.is_some() {
        return Err(malformed(id, "validators apply to regex rules only"));
    }
    if words.is_empty() {
        return Err(malformed(id, "the keyword list is empty"));
    }
    if let Some(position) = words.iter().position(|w| w.is_empty()) {
        return Err(malformed(id, format!("keyword {position} is empty")));
    }
    Ok(())
}

/// The characters regex-syntax gives a meaning (as `regex_syntax::is_meta_character` lists them, `#` for
/// verbose mode and `&`, `-`, `~` for class set operations included).
const REGEX_META: &str = r"\.+*?()|[]{}^$#&-~";

/// `(?:kw1|kw2|...)` with every keyword escaped, longest first so that leftmost-first finds the longest
/// keyword at a position, as the Aho-Corasick path does.
pub(super) fn keyword_alternation(words: &[String]) -> String {
    let mut words: Vec<&String> = words.iter().collect();
    words.sort_by_key(|w| std::cmp::Reverse(w.len()));
    let mut pattern = String::from("(?:");
    for (i, word) in words.into_iter().enumerate() {
        if i > 0 {
            pattern.push('|');
        }
        for c in word.chars() {
            // Only meta characters: an escape is not always literal (`\<` and `\>` are word boundaries in
            // regex-syntax). Escaping whitespace keeps it literal even if someone later turns on verbose mode.
            if REGEX_META.contains(c) || c.is_ascii_whitespace() {
                pattern.push('\\');
            }
            pattern.push(c);
        }
    }
    pattern.push(')');
    pattern
}

/// Whether the match `start..end` stands at word boundaries (see the module documentation).
pub(super) fn at_word_edges(text: &str, start: usize, end: usize) -> bool {
    let (Some(before), Some(found), Some(after)) =
        (text.get(..start), text.get(start..end), text.get(end..))
    else {
        return false;
    };
    let blocks = |inner: Option<char>, outer: Option<char>| match (inner, outer) {
        (Some(inner), Some(outer)) => is_spaced_word_char(inner) && is_spaced_word_char(outer),
        _ => false,
    };
    !blocks(found.chars().next(), before.chars().next_back())
        && !blocks(found.chars().next_back(), after.chars().next())
}

/// A word character of a script that separates words with spaces.
fn is_spaced_word_char(c: char) -> bool {
    (c.is_alphanumeric() || c == '_') && !is_unspaced_script(c)
}

/// Scripts written without spaces between words, where "word boundary" has no meaning.
fn is_unspaced_script(c: char) -> bool {
    matches!(c,
        '\u{0E00}'..='\u{0EFF}'     // Thai, Lao
        | '\u{1000}'..='\u{109F}'   // Myanmar
        | '\u{1780}'..='\u{17FF}'   // Khmer
        | '\u{3040}'..='\u{30FF}'   // Hiragana, Katakana
        | '\u{31F0}'..='\u{31FF}'   // Katakana phonetic extensions
        | '\u{3400}'..='\u{4DBF}'   // CJK extension A
        | '\u{4E00}'..='\u{9FFF}'   // CJK unified ideographs
        | '\u{F900}'..='\u{FAFF}'   // CJK compatibility ideographs
        | '\u{FF66}'..='\u{FF9F}'   // half-width katakana
        | '\u{20000}'..='\u{3FFFF}' // CJK extensions B and later
    )
}
