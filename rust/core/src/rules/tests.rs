//! The rule engine's behaviour, table by table.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

use super::*;

fn spans<'t>(set: &RuleSet, text: &'t str) -> Vec<(&'static str, &'t str)> {
    set.scan(text)
        .into_iter()
        .map(|m| {
            let id: &'static str = set.ids()[m.rule].clone().leak();
            (id, &text[m.start..m.end])
        })
        .collect()
}

fn one(rule: Rule, text: &str) -> Vec<String> {
    let set = RuleSet::new(vec![rule]).unwrap();
    spans(&set, text)
        .into_iter()
        .map(|(_, s)| s.to_owned())
        .collect()
}

#[test]
fn regex_rules_report_every_match_with_spans() {
    let set = RuleSet::new(vec![
        Rule::regex("email", r"[\w.+-]+@[\w-]+\.[\w.-]+"),
        Rule::regex("domain", r"[a-z]+\.com"),
        Rule::regex("phone", r"\+?\d[\d -]{7,}\d"),
    ])
    .unwrap();
    let text = "mail ann@example.com or bob@corp.com, call +44 20 7946 0958";
    assert_eq!(
        spans(&set, text),
        [
            ("email", "ann@example.com"),
            ("domain", "example.com"),
            ("email", "bob@corp.com"),
            ("domain", "corp.com"),
            ("phone", "+44 20 7946 0958"),
        ]
    );
    assert_eq!(set.matched(text), [0, 1, 2]);
    assert_eq!(set.matched("nothing to see"), Vec::<usize>::new());
}

#[test]
fn matches_are_ordered_by_start_then_end_then_rule() {
    let set = RuleSet::new(vec![
        Rule::regex("long", "abcd"),
        Rule::regex("short", "ab"),
        Rule::keywords("word", ["ab"]),
    ])
    .unwrap();
    let found: Vec<(usize, usize, usize)> = set
        .scan("ab abcd")
        .into_iter()
        .map(|m| (m.start, m.end, m.rule))
        .collect();
    assert_eq!(found, [(0, 2, 1), (0, 2, 2), (3, 5, 1), (3, 7, 0)]);
}

#[test]
fn case_insensitive_regex_folds_unicode() {
    let rule = Rule::regex("secret", "geheimnis|тайна").case_insensitive(true);
    assert_eq!(one(rule, "GEHEIMNIS und ТАЙНА"), ["GEHEIMNIS", "ТАЙНА"]);
    assert!(one(Rule::regex("secret", "geheimnis"), "GEHEIMNIS").is_empty());
}

#[test]
fn keywords_match_at_word_boundaries() {
    let cases: &[(&[&str], bool, &str, &[&str])] = &[
        (
            &["hello"],
            false,
            "hello, othello! hello_there hellos hello",
            &["hello", "hello"],
        ),
        (&["hello"], true, "HeLLo Othello", &["HeLLo"]),
        (&["hello"], false, "HELLO", &[]),
        (&["c++"], false, "use c++17 or c++", &["c++", "c++"]),
        (&["@home"], false, "work@home", &["@home"]),
        (
            &["new york", "york"],
            false,
            "new york, york, newyork",
            &["new york", "york"],
        ),
        (&["密码"], false, "我的密码是1234", &["密码"]),
        (&["pass"], false, "pass密码 passé", &["pass"]),
        (
            &["Straße"],
            true,
            "STRASSE strasse STRAẞE straße",
            &["STRAẞE", "straße"],
        ),
        (
            &["пароль"],
            true,
            "Пароль: ПАРОЛЬ, паролька",
            &["Пароль", "ПАРОЛЬ"],
        ),
        (&["naïve"], true, "NAÏVE naïvely", &["NAÏVE"]),
        // Found by rust/fuzz (rules): `<` and `>` were escaped into `\<` and `\>`, which regex-syntax
        // reads as word boundaries, so `<пароль>` matched a bare `пароль`.
        (&["<пароль>"], true, "<ПАРОЛЬ> пароль", &["<ПАРОЛЬ>"]),
        (
            &["ö!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~"],
            true,
            "Ö!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~",
            &["Ö!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~"],
        ),
    ];
    for &(words, case_insensitive, text, expected) in cases {
        let rule = Rule::keywords("kw", words.iter().copied()).case_insensitive(case_insensitive);
        assert_eq!(one(rule, text), expected, "{words:?} in {text:?}");
    }
}

#[test]
fn case_sensitive_keywords_stay_exact_next_to_folded_ones() {
    let set = RuleSet::new(vec![
        Rule::keywords("exact", ["API"]),
        Rule::keywords("folded", ["token"]).case_insensitive(true),
    ])
    .unwrap();
    assert_eq!(
        spans(&set, "api API TOKEN"),
        [("exact", "API"), ("folded", "TOKEN")]
    );
}

#[test]
fn rules_sharing_a_keyword_both_match() {
    let set = RuleSet::new(vec![
        Rule::keywords("finance", ["invoice", "iban"]),
        Rule::keywords("banking", ["iban"]),
    ])
    .unwrap();
    assert_eq!(
        spans(&set, "send the iban"),
        [("finance", "iban"), ("banking", "iban")]
    );
    assert_eq!(set.matched("send the iban"), [0, 1]);
}

#[test]
fn validators_reject_failed_matches() {
    let card = Rule::regex("card", r"\b(?:\d[ -]?){11,18}\d\b").validator(Validator::Luhn);
    assert_eq!(
        one(
            card,
            "4111 1111 1111 1111, 4111 1111 1111 1112, 5555-5555-5555-4444, 378282246310005"
        ),
        [
            "4111 1111 1111 1111",
            "5555-5555-5555-4444",
            "378282246310005"
        ]
    );
    let iban = Rule::regex("iban", r"\b[A-Za-z]{2}\d{2}(?: ?[A-Za-z0-9]){11,30}\b")
        .validator(Validator::Iban);
    assert_eq!(
        one(
            iban,
            "GB82 WEST 1234 5698 7654 32 / DE89370400440532013000 / DE89370400440532013001"
        ),
        ["GB82 WEST 1234 5698 7654 32", "DE89370400440532013000"]
    );
}

#[test]
fn a_rejected_match_gives_way_to_shorter_and_later_ones() {
    // Leftmost-first alone would take the year into the card number (and fail Luhn) or the next group into
    // the IBAN (and fail mod-97), and then skip the whole span.
    let card = Rule::regex("card", r"\b[0-9]{4}(?: [0-9]{4}){3}\b").validator(Validator::Luhn);
    assert_eq!(
        one(card, "paid 2024 4111 1111 1111 1111 ok"),
        ["4111 1111 1111 1111"]
    );
    let iban =
        Rule::regex("iban", r"\b[A-Z]{2}[0-9]{2}(?: [0-9]{4}){2,7}\b").validator(Validator::Iban);
    assert_eq!(
        one(iban, "BE68 5390 0754 7034 2024 and BE68 5390 0754 7035"),
        ["BE68 5390 0754 7034"]
    );
    // Matches that pass stay non-overlapping: after an accepted match the search goes on at its end.
    let digits = Rule::regex("digits", r"[0-9]{16}").validator(Validator::Luhn);
    assert_eq!(
        one(digits, "41111111111111114111111111111111"),
        ["4111111111111111", "4111111111111111"]
    );
}

#[test]
fn keyword_rules_compiled_as_regexes_agree_with_the_automaton() {
    // Case-insensitive non-ASCII keywords go through the regex engine, the others through Aho-Corasick:
    // both fall back to a shorter keyword when the longer one ends inside a word.
    for words in [["new yörk", "new"], ["new york", "new"]] {
        let rule = Rule::keywords("kw", words).case_insensitive(true);
        assert_eq!(
            one(rule, "NEW YORKER, new yörker"),
            ["NEW", "new"],
            "{words:?}"
        );
    }
}

#[test]
fn retries_after_rejected_matches_stay_linear() {
    // Every start in a long run of digit groups is a match that fails Luhn, with a shorter one inside: an
    // unbounded retry would re-read the text quadratically often.
    let set = RuleSet::new(vec![
        Rule::regex("card", r"[0-9](?:[0-9 ]*[0-9])?").validator(Validator::Luhn)
    ])
    .unwrap();
    let text = "1 ".repeat(200_000);
    // No clock: speed is the benchmarks' job; a quadratic retry loop would make this test run for minutes.
    assert!(set.matched(&text).is_empty());
    assert!(set.scan(&text).is_empty());
}

#[test]
fn errors_name_the_rule() {
    let cases: Vec<(Vec<Rule>, RuleError)> = vec![
        (
            vec![Rule::regex("ok", "a"), Rule::regex("broken", "(unclosed")],
            RuleError::InvalidPattern {
                id: "broken".into(),
                reason: String::new(),
            },
        ),
        (
            vec![Rule::regex("empty", "x*")],
            RuleError::InvalidPattern {
                id: "empty".into(),
                reason: "the pattern can match the empty string".into(),
            },
        ),
        (
            vec![Rule::regex("twice", "a"), Rule::keywords("twice", ["b"])],
            RuleError::DuplicateId { id: "twice".into() },
        ),
        (
            vec![Rule::keywords("none", Vec::<String>::new())],
            RuleError::Malformed {
                id: "none".into(),
                reason: "the keyword list is empty".into(),
            },
        ),
        (
            vec![Rule::keywords("blank", ["a", ""])],
            RuleError::Malformed {
                id: "blank".into(),
                reason: "keyword 1 is empty".into(),
            },
        ),
        (
            vec![Rule::keywords("checked", ["a"]).validator(Validator::Luhn)],
            RuleError::Malformed {
                id: "checked".into(),
                reason: "validators apply to regex rules only".into(),
            },
        ),
        (
            vec![Rule::regex("", "a")],
            RuleError::Malformed {
                id: String::new(),
                reason: "the id is empty".into(),
            },
        ),
    ];
    for (rules, expected) in cases {
        let err = RuleSet::new(rules).err().unwrap();
        match (&err, &expected) {
            // The parser's message is its own; only the rule id and the variant are ours.
            (
                RuleError::InvalidPattern { id, .. },
                RuleError::InvalidPattern { id: want, reason },
            ) if reason.is_empty() => {
                assert_eq!(id, want);
                assert!(err
                    .to_string()
                    .starts_with(&format!("rule {want:?}: invalid pattern: ")));
            }
            _ => assert_eq!(err, expected),
        }
    }
}

#[test]
fn matching_is_linear_on_patterns_that_make_backtrackers_explode() {
    // `(x+x+)+y` takes exponential time in a backtracking engine on a long run of x without y.
    let set = RuleSet::new(vec![
        Rule::regex("evil", "(x+x+)+y"),
        Rule::regex("also", "(a|aa)+$"),
    ])
    .unwrap();
    let text = format!("{}{}!", "x".repeat(50_000), "a".repeat(50_000));
    let started = std::time::Instant::now();
    assert!(set.scan(&text).is_empty());
    assert!(started.elapsed().as_secs() < 5);
}

#[test]
fn offsets_are_byte_offsets_on_char_boundaries() {
    let set = RuleSet::new(vec![
        Rule::regex("digits", r"\d+"),
        Rule::keywords("kw", ["café"]),
    ])
    .unwrap();
    let text = "ünïcödé 42 café 😀7";
    for m in set.scan(text) {
        assert!(text.is_char_boundary(m.start) && text.is_char_boundary(m.end));
    }
    assert_eq!(
        spans(&set, text),
        [("digits", "42"), ("kw", "café"), ("digits", "7")]
    );
}

#[test]
fn analyze_counts_tokens_and_lists_matched_rules() {
    let set = RuleSet::new(vec![
        Rule::regex("email", r"\S+@\S+"),
        Rule::keywords("greeting", ["hello"]),
        Rule::regex("card", r"\d{16}").validator(Validator::Luhn),
    ])
    .unwrap();
    let text = "hello, write to ann@example.com about 4111111111111112";
    let analysis = set.analyze(text, Encoding::O200kBase).unwrap();
    assert_eq!(analysis.matched, [0, 1]);
    assert_eq!(
        analysis.tokens,
        crate::tokens::count_tokens(text, Encoding::O200kBase).unwrap()
    );
}

#[test]
fn word_boundaries_are_relaxed_only_for_the_single_pass() {
    let cases: &[(&str, Option<&str>)] = &[
        (r"\bcat\b", Some("(?:)cat(?:)")),
        (r"a\Bb", Some("a(?:)b")),
        (r"\<word\>", Some("(?:)word(?:)")),
        (r"\b{start}x\b{end-half}", Some("(?:)x(?:)")),
        (r"\b{3}a", Some("(?:){3}a")),
        (r"\\b", None),
        (r"\d+\.\d+", None),
        (r"(?-u:\b)x", Some("(?-u:(?:))x")),
    ];
    for &(pattern, expected) in cases {
        assert_eq!(
            without_word_boundaries(pattern).as_deref(),
            expected,
            "{pattern}"
        );
    }
    // The relaxed pass says `cat` may match in "concat"; the exact rule decides it does not.
    let set = RuleSet::new(vec![
        Rule::regex("cat", r"\bcat\b"),
        Rule::regex("plain", "dog"),
    ])
    .unwrap();
    assert_eq!(set.matched("concat dog"), [1]);
    assert_eq!(set.matched("é cat"), [0]);
    assert!(set.scan("concatenate").is_empty());
}

#[test]
fn an_empty_rule_set_matches_nothing() {
    let set = RuleSet::new(Vec::new()).unwrap();
    assert!(set.is_empty());
    assert!(set.scan("anything").is_empty());
    assert!(set.matched("anything").is_empty());
}

#[test]
fn rule_set_is_shareable_across_threads() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<RuleSet>();
    let set = RuleSet::new(vec![
        Rule::regex("n", r"\d+"),
        Rule::keywords("w", ["word"]),
    ])
    .unwrap();
    std::thread::scope(|scope| {
        for i in 0..4 {
            let set = &set;
            scope.spawn(move || assert_eq!(set.scan(&format!("word {i}")).len(), 2));
        }
    });
}
