"""RuleSet (rust/core/src/rules/ via rust/py/src/rules.rs): regex and keyword rules, spans, validators."""

from __future__ import annotations

import re
import threading

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tiergate._native import Rule, RuleError, RuleMatch, RuleSet, count_tokens

EMAIL = r"[\w.+-]+@[\w-]+\.[\w.-]+"
CARD = r"\b(?:\d[ -]?){11,18}\d\b"
IBAN = r"\b[A-Za-z]{2}\d{2}(?: ?[A-Za-z0-9]){11,30}\b"


def found(rules: RuleSet, text: str) -> list[tuple[str, str]]:
    """(rule id, matched substring) per match, so that spans are checked as Python str slices."""
    return [(m.rule_id, text[m.start : m.end]) for m in rules.scan(text)]


# -- regex rules ------------------------------------------------------------------------------------------


def test_every_match_of_every_rule_with_character_spans() -> None:
    rules = RuleSet(
        [Rule("email", regex=EMAIL), Rule("domain", regex=r"[a-z]+\.com"), Rule("num", regex=r"\d+")]
    )
    # Emoji and accents before the matches: 1 character in Python, up to 4 bytes in UTF-8.
    text = "😀 élan: ann@example.com, 🇩🇪 bob@corp.com 42"
    assert found(rules, text) == [
        ("email", "ann@example.com"),
        ("domain", "example.com"),
        ("email", "bob@corp.com"),
        ("domain", "corp.com"),
        ("num", "42"),
    ]
    first = rules.scan(text)[0]
    assert (first.rule_id, first.start, first.end) == ("email", 8, 23)


def test_scan_is_ordered_by_start_then_end_then_rule_order() -> None:
    rules = RuleSet([Rule("long", regex="abcd"), Rule("short", regex="ab"), Rule("word", keywords=["ab"])])
    assert [(m.start, m.end, m.rule_id) for m in rules.scan("ab abcd")] == [
        (0, 2, "short"),
        (0, 2, "word"),
        (3, 5, "short"),
        (3, 7, "long"),
    ]


@pytest.mark.parametrize(
    ("pattern", "case_insensitive", "text", "expected"),
    [
        ("secret", False, "secret SECRET Secret", ["secret"]),
        ("secret", True, "secret SECRET Secret", ["secret", "SECRET", "Secret"]),
        ("тайна", True, "ТАЙНА тайна", ["ТАЙНА", "тайна"]),
        ("(?i)key", False, "KEY", ["KEY"]),
        (r"\bcat\b", False, "cat concat cats cat", ["cat", "cat"]),
        ("foo|foobar", False, "foobar", ["foo"]),  # leftmost-first, like Python's re
        ("a+", False, "aaa baa", ["aaa", "aa"]),  # non-overlapping
    ],
)
def test_regex_semantics(pattern: str, case_insensitive: bool, text: str, expected: list[str]) -> None:
    rules = RuleSet([Rule("r", regex=pattern, case_insensitive=case_insensitive)])
    assert [matched for _, matched in found(rules, text)] == expected


# -- keyword rules ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("keywords", "case_insensitive", "text", "expected"),
    [
        (["hello"], False, "hello, othello! hello_world hellos (hello)", ["hello", "hello"]),
        (["hello"], False, "HELLO Hello", []),
        (["hello"], True, "HELLO Hello othello", ["HELLO", "Hello"]),
        (["hello world"], True, "say Hello World!", ["Hello World"]),
        (["c++"], False, "c++17, c++ and cc++", ["c++", "c++"]),
        (["@home"], False, "work@home", ["@home"]),
        (["new york", "york"], False, "new york, york, newyork", ["new york", "york"]),
        (["密码"], False, "我的密码是1234", ["密码"]),
        (["パスワード"], False, "パスワードを入力", ["パスワード"]),
        (["straße"], True, "STRASSE STRAẞE Straße", ["STRAẞE", "Straße"]),
        (["пароль"], True, "Пароль: ПАРОЛЬ, паролька", ["Пароль", "ПАРОЛЬ"]),
        (["café"], False, "café cafés", ["café"]),
    ],
)
def test_keywords_match_at_word_boundaries(
    keywords: list[str], case_insensitive: bool, text: str, expected: list[str]
) -> None:
    rules = RuleSet([Rule("kw", keywords=keywords, case_insensitive=case_insensitive)])
    assert [matched for _, matched in found(rules, text)] == expected


def test_rules_sharing_a_keyword_both_match() -> None:
    rules = RuleSet(
        [
            Rule("finance", keywords=["invoice", "iban"]),
            Rule("banking", keywords=["IBAN"], case_insensitive=True),
        ]
    )
    assert found(rules, "send the iban") == [("finance", "iban"), ("banking", "iban")]


def test_case_sensitive_keywords_stay_exact_next_to_folded_ones() -> None:
    rules = RuleSet(
        [Rule("exact", keywords=["API"]), Rule("folded", keywords=["token"], case_insensitive=True)]
    )
    assert found(rules, "api API TOKEN Token") == [("exact", "API"), ("folded", "TOKEN"), ("folded", "Token")]


# -- validators -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("4111 1111 1111 1111", ["4111 1111 1111 1111"]),
        ("4111-1111-1111-1111", ["4111-1111-1111-1111"]),
        ("4111 1111 1111 1112", []),  # checksum fails
        ("5555555555554444 and 378282246310005", ["5555555555554444", "378282246310005"]),
        ("order 1234567890123", []),
    ],
)
def test_luhn_validator(text: str, expected: list[str]) -> None:
    rules = RuleSet([Rule("card", regex=CARD, validator="luhn")])
    assert [matched for _, matched in found(rules, text)] == expected
    assert rules.matched_ids(text) == (["card"] if expected else [])


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("IBAN GB82 WEST 1234 5698 7654 32.", ["GB82 WEST 1234 5698 7654 32"]),
        ("de89370400440532013000", ["de89370400440532013000"]),
        ("FR1420041010050500013M02606", ["FR1420041010050500013M02606"]),
        ("DE89370400440532013001", []),  # one digit off
        ("XX00 1234 5678 9012 34", []),
    ],
)
def test_iban_validator(text: str, expected: list[str]) -> None:
    rules = RuleSet([Rule("iban", regex=IBAN, validator="iban")])
    assert [matched for _, matched in found(rules, text)] == expected


def test_without_validator_the_same_pattern_matches() -> None:
    rules = RuleSet([Rule("card", regex=CARD)])
    assert rules.matched_ids("4111 1111 1111 1112") == ["card"]


# -- errors -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (
            lambda: RuleSet([Rule("ok", regex="a"), Rule("broken", regex="(unclosed")]),
            r'rule "broken": invalid pattern',
        ),
        (lambda: RuleSet([Rule("empty", regex="x*")]), r'rule "empty": .*can match the empty string'),
        (lambda: RuleSet([Rule("look", regex="(?=a)a")]), r'rule "look": invalid pattern'),  # no look-around
        (
            lambda: RuleSet([Rule("twice", regex="a"), Rule("twice", keywords=["b"])]),
            r'rule "twice" is defined more',
        ),
        (lambda: RuleSet([Rule("none", keywords=[])]), r'rule "none": the keyword list is empty'),
        (lambda: RuleSet([Rule("blank", keywords=["a", ""])]), r'rule "blank": keyword 1 is empty'),
        (
            lambda: RuleSet([Rule("v", keywords=["a"], validator="luhn")]),
            r'rule "v": validators apply to regex',
        ),
        (lambda: RuleSet([Rule("", regex="a")]), r'rule "": the id is empty'),
        (
            lambda: Rule("both", regex="a", keywords=["b"]),
            r'rule "both": give exactly one of regex= and keywords=',
        ),
        (lambda: Rule("neither"), r'rule "neither": give exactly one of'),
        (
            lambda: Rule("ssn", regex=r"\d+", validator="ssn"),
            r"unknown validator \"ssn\"; known validators: luhn, iban, us_ssn, uk_nino, ",
        ),
    ],
)
def test_rule_errors_name_the_rule(make: object, message: str) -> None:
    assert callable(make)
    with pytest.raises(RuleError, match=message):
        make()


def test_rule_error_is_a_value_error() -> None:
    assert issubclass(RuleError, ValueError)


def test_keywords_must_be_a_list_not_a_string() -> None:
    # A str is a Sequence[str] of characters; taking it as one would silently match single letters.
    with pytest.raises(TypeError):
        Rule("kw", keywords="hello")


# -- the rest of the API ----------------------------------------------------------------------------------


def test_matched_ids_are_distinct_and_in_rule_order() -> None:
    rules = RuleSet([Rule("b", keywords=["beta"]), Rule("a", regex="alpha"), Rule("c", regex="gamma")])
    assert rules.matched_ids("alpha beta alpha beta") == ["b", "a"]
    assert rules.matched_ids("nothing") == []


@pytest.mark.parametrize("encoding", ["o200k_base", "cl100k_base"])
def test_analyze_is_token_count_and_matched_ids(encoding: str) -> None:
    rules = RuleSet(
        [
            Rule("email", regex=EMAIL),
            Rule("greeting", keywords=["hello"]),
            Rule("card", regex=CARD, validator="luhn"),
        ]
    )
    text = "Привет! hello, mail ann@example.com about 4111 1111 1111 1112 " * 40  # > 1 KB: GIL released
    assert rules.analyze(text, encoding) == (count_tokens(text, encoding), ["email", "greeting"])
    assert rules.analyze("x") == (1, [])


def test_analyze_with_unknown_encoding_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="o200k_base, cl100k_base"):
        RuleSet([]).analyze("text", "r50k_base")


def test_rule_set_introspection() -> None:
    rules = RuleSet([Rule("email", regex=EMAIL), Rule("greeting", keywords=["hello"], case_insensitive=True)])
    assert len(rules) == 2
    assert rules.rule_ids == ["email", "greeting"]
    assert Rule("greeting", keywords=["hello"]).id == "greeting"
    assert (
        repr(Rule("g", keywords=["hi"], case_insensitive=True))
        == "Rule('g', keywords=['hi'], case_insensitive=True)"
    )
    assert repr(Rule("c", regex=r"\d", validator="luhn")) == "Rule('c', regex='\\\\d', validator='luhn')"
    match = rules.scan("hello")[0]
    assert repr(match) == "RuleMatch(rule_id='greeting', start=0, end=5)"
    assert match == rules.scan("hello")[0]
    assert match != rules.scan(" hello")[0]
    assert len({match, rules.scan("hello")[0]}) == 1
    assert isinstance(match, RuleMatch)


def test_rule_attributes_read_back_what_was_given() -> None:
    card = Rule("card", regex=CARD, validator="luhn")
    words = Rule("greeting", keywords=["hello", "hi"], case_insensitive=True)
    assert (card.regex, card.keywords, card.case_insensitive, card.validator) == (CARD, None, False, "luhn")
    assert (words.regex, words.keywords, words.case_insensitive) == (None, ["hello", "hi"], True)
    assert words.validator is None


def test_empty_rule_set_matches_nothing() -> None:
    rules = RuleSet([])
    assert len(rules) == 0
    assert rules.scan("anything") == []
    assert rules.matched_ids("anything") == []


def test_surrogates_keep_character_offsets() -> None:
    # A str with surrogate code points has no UTF-8 form; each becomes U+FFFD for matching, one for one.
    rules = RuleSet([Rule("num", regex=r"\d+")])
    text = "\ud800 12 \ud83d\ude00 345"
    assert found(rules, text) == [("num", "12"), ("num", "345")]


def test_scans_agree_across_threads() -> None:
    rules = RuleSet([Rule("email", regex=EMAIL), Rule("num", regex=r"\d+"), Rule("kw", keywords=["ann"])])
    text = "ann@example.com 42 " * 200
    expected = rules.scan(text)
    results: dict[int, list[RuleMatch]] = {}

    def work(worker: int) -> None:
        results[worker] = rules.scan(text)

    threads = [threading.Thread(target=work, args=(worker,)) for worker in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == {worker: expected for worker in range(4)}


def test_pathological_patterns_run_in_linear_time() -> None:
    # Each of these takes exponential time in a backtracking engine such as Python's re on this text.
    rules = RuleSet([Rule("evil", regex="(x+x+)+y"), Rule("alt", regex="(a|aa)+$")])
    assert rules.scan("x" * 50_000 + "a" * 50_000 + "!") == []


# -- agreement with Python's re ---------------------------------------------------------------------------

# Patterns whose meaning is the same in Python's re and in the regex crate (leftmost-first alternation,
# greedy repetition, Unicode word boundaries over this alphabet), so re.finditer is an independent
# reference for the spans. The word-boundary ones exercise the relaxed first pass and the exact search
# that follows it, on ASCII and non-ASCII text alike.
REFERENCE_PATTERNS = [
    r"[0-9]+",
    r"ab|abc|b",
    r"[a-c]+@[a-c]+\.c",
    r"é+|ü",
    r"[A-Z][a-z]*",
    r"x[^x]{2}",
    r"\b[a-c]+\b",
    r"\bx\w*",
    r"\w+\b@",
    r"\B[0-3]+",
]
ALPHABET = st.sampled_from(list("abcxyzABC0123 @.éü😀中\n"))


@settings(max_examples=200, deadline=None)
@given(text=st.lists(ALPHABET, max_size=80).map("".join))
def test_spans_agree_with_python_re(text: str) -> None:
    rules = RuleSet([Rule(f"p{i}", regex=pattern) for i, pattern in enumerate(REFERENCE_PATTERNS)])
    expected = sorted(
        (m.start(), m.end(), i)
        for i, pattern in enumerate(REFERENCE_PATTERNS)
        for m in re.finditer(pattern, text)
    )
    got = [(m.start, m.end, int(m.rule_id[1:])) for m in rules.scan(text)]
    assert got == expected
