//! Arbitrary rule sets compile or fail with a `RuleError`, and what they report about arbitrary text holds.
//!
//! Rules are regexes (arbitrary strings, or patterns of the default pack), keyword lists, or either with
//! a validator and case folding. Compiling may fail; panicking may not. On the text, every match lies
//! inside it on character boundaries and names an existing rule, `scan` is ordered, keyword matches are
//! keywords, validated matches pass their validator (checksums, context), and `matched` (the request path, which takes
//! shortcuts) names exactly the rules `scan` found.

#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use tiergate_core::rules::{Pattern, Rule, RuleSet, Validator, DEFAULT_PACK};

#[derive(Arbitrary, Debug)]
struct Case {
    rules: Vec<RuleSpec>,
    text: String,
}

#[derive(Arbitrary, Debug)]
struct RuleSpec {
    id: String,
    matcher: Matcher,
    case_insensitive: bool,
    /// An index into `Validator::ALL` (modulo its length).
    validator: Option<u8>,
}

#[derive(Arbitrary, Debug)]
enum Matcher {
    Regex(String),
    Keywords(Vec<String>),
    /// A pattern of the default pack (index modulo its length), for realistic automata.
    Pack(u8),
}

impl RuleSpec {
    fn rule(&self) -> Rule {
        let (pattern, pack_validator) = match &self.matcher {
            Matcher::Regex(regex) => (Pattern::Regex(regex.clone()), None),
            Matcher::Keywords(words) => (Pattern::Keywords(words.clone()), None),
            Matcher::Pack(index) => {
                let pack = &DEFAULT_PACK[usize::from(*index) % DEFAULT_PACK.len()];
                (Pattern::Regex(pack.pattern.to_owned()), pack.validator)
            }
        };
        Rule {
            id: self.id.clone(),
            pattern,
            case_insensitive: self.case_insensitive,
            validator: self
                .validator
                .map(|i| Validator::ALL[usize::from(i) % Validator::ALL.len()])
                .or(pack_validator),
        }
    }
}

/// Whether `found` is one of the rule's keywords, as the rule compares them.
fn is_keyword(rule: &Rule, found: &str) -> bool {
    let Pattern::Keywords(words) = &rule.pattern else {
        return true;
    };
    words.iter().any(|word| {
        if !rule.case_insensitive {
            word == found
        } else if words.iter().all(|w| w.is_ascii()) {
            word.eq_ignore_ascii_case(found)
        } else {
            // Unicode simple case folding (the regex path): at least the same number of characters.
            word.chars().count() == found.chars().count()
        }
    })
}

fuzz_target!(|case: Case| {
    // A handful of rules is enough to combine the engines; more only slows each run.
    let rules: Vec<Rule> = case.rules.iter().take(6).map(RuleSpec::rule).collect();
    let Ok(set) = RuleSet::new(rules.clone()) else {
        return;
    };
    let text = case.text.as_str();
    let found = set.scan(text);
    for pair in found.windows(2) {
        assert!(pair[0] <= pair[1], "scan is not ordered: {pair:?}");
    }
    for m in &found {
        assert!(
            m.start < m.end && m.end <= text.len(),
            "{m:?} outside {} bytes",
            text.len()
        );
        assert!(
            text.is_char_boundary(m.start) && text.is_char_boundary(m.end),
            "{m:?} splits a character"
        );
        let rule = rules
            .get(m.rule)
            .unwrap_or_else(|| panic!("{m:?} names no rule"));
        let span = &text[m.start..m.end];
        assert!(is_keyword(rule, span), "{span:?} is no keyword of {rule:?}");
        if let (Pattern::Regex(_), Some(validator)) = (&rule.pattern, rule.validator) {
            assert!(
                validator.check_in(text, m.start, m.end),
                "{span:?} fails {validator:?}"
            );
            // Context only ever rejects: what passes in context passes alone.
            assert!(validator.check(span), "{span:?} fails {validator:?} alone");
        }
    }
    let mut from_scan: Vec<usize> = found.iter().map(|m| m.rule).collect();
    from_scan.sort_unstable();
    from_scan.dedup();
    assert_eq!(
        set.matched(text),
        from_scan,
        "matched and scan disagree on {text:?}"
    );
});
