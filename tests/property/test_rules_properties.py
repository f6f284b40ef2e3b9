"""RuleSet on generated rule sets and text: it compiles or raises RuleError, never panics, and what it
reports is true of the text.

- Any rule set (regex patterns from a grammar or raw text, keyword lists, validators) builds or fails with
  RuleError; a PyO3 PanicException (a BaseException) fails the test like any other exception.
- On any text (every code point, lone surrogates included): spans lie inside the text, each keyword match
  is one of its rule's keywords, each validated match passes its checksum, `matched_ids` agrees with
  `scan`, and `analyze` with both.
- On patterns and text where Python's `re` means the same thing, a rule's spans are exactly
  `re.finditer`'s (the module documentation promises that semantics).
- Linear time: the regex crate has no backtracking engine, and the retry budget bounds the second looks
  after rejected matches. Pathological patterns and texts of a megabyte finish well within the timeout,
  where a quadratic scan would take hours: a timeout is the failure mode, not a measured ratio.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, TypeVar

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from tests.property.hypothesis_profiles import property_settings
from tiergate._native import Rule, RuleError, RuleSet, count_tokens, default_rules

T = TypeVar("T")

# -- generated rules --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Spec:
    """A rule as generated, kept so that the test can judge what the rule set reports."""

    id: str
    regex: str | None = None
    keywords: tuple[str, ...] | None = None
    case_insensitive: bool = False
    validator: Literal["luhn", "iban"] | None = None

    def rule(self) -> Rule:
        keywords = list(self.keywords) if self.keywords is not None else None
        return Rule(
            self.id,
            regex=self.regex,
            keywords=keywords,
            case_insensitive=self.case_insensitive,
            validator=self.validator,
        )


# Characters that mean something in either syntax are escaped; `<` and `>` never are (`\<` is a word
# boundary in the regex crate and a literal in Python's re).
SPECIAL = set(r".+*?()|[]{}^$\#&-~")


def literal(c: str) -> str:
    return "\\" + c if c in SPECIAL else c


def pattern_grammar(alphabet: str, *, extras: list[str], max_quantified: int) -> st.SearchStrategy[str]:
    """Regexes over `alphabet`: literals, classes, `.`, the escapes in `extras`, groups, alternation and
    (lazy) repetition. Only single-character atoms are repeated, at most `max_quantified` of them per
    pattern, so that a backtracking engine (Python's re, the reference) stays polynomial."""
    chars = st.sampled_from(alphabet)
    member = st.one_of(
        chars.map(literal), st.tuples(chars, chars).map(lambda r: f"{literal(min(r))}-{literal(max(r))}")
    )
    char_class = st.tuples(st.booleans(), st.lists(member, min_size=1, max_size=4)).map(
        lambda c: "[" + ("^" if c[0] else "") + "".join(c[1]) + "]"
    )
    single = st.one_of(chars.map(literal), char_class, st.just("."), *(st.just(e) for e in extras))
    quantifier = st.tuples(
        st.sampled_from(["?", "*", "+", "{2}", "{1,3}", "{0,2}", "{2,}"]), st.sampled_from(["", "?"])
    ).map("".join)
    repeated = st.tuples(single, quantifier).map("".join)
    assertion = st.sampled_from(["^", r"\b", r"\B"])

    @st.composite
    def regex(draw: st.DrawFn) -> str:
        budget = [max_quantified]

        def item(depth: int) -> str:
            kind = draw(st.sampled_from(["single", "single", "repeated", "assertion", "group"]))
            if kind == "repeated" and budget[0] > 0:
                budget[0] -= 1
                return draw(repeated)
            if kind == "assertion":
                return draw(assertion)
            if kind == "group" and depth < 2:
                opening = draw(st.sampled_from(["(", "(?:"]))
                return opening + alternation(depth + 1) + ")"
            return str(draw(single))

        def alternation(depth: int) -> str:
            branches = draw(st.integers(1, 3))
            return "|".join(
                "".join(item(depth) for _ in range(draw(st.integers(1, 4)))) for _ in range(branches)
            )

        return alternation(0)

    return regex()


FULL_ESCAPES = [
    r"\d",
    r"\w",
    r"\s",
    r"\D",
    r"\W",
    r"\S",
    r"\p{L}",
    r"\pN",
    r"\P{Han}",
    r"[[:alpha:]]",
    r"\x41",
    r"\u{e9}",
]
FULL_ALPHABET = "abcAB019 @.-_<>éЖ中😀\u0301'"
GRAMMAR_PATTERNS = pattern_grammar(FULL_ALPHABET, extras=FULL_ESCAPES, max_quantified=4)
# Raw text is mostly not a valid pattern; flags, verbose mode and word-boundary forms are added on purpose.
RAW_PATTERNS = st.one_of(
    st.text(max_size=30),
    st.tuples(
        st.sampled_from(["", "(?i)", "(?x)", "(?s)", "(?m)", "(?U)", "(?-u)", "(?R)"]),
        GRAMMAR_PATTERNS,
        st.sampled_from(["", r"\b{start}", r"\b{end}", r"\<", r"\>", r"\b{3}", "$", r"\z", "(?<name>x)"]),
    ).map("".join),
    st.sampled_from([r.rule.regex or "" for r in default_rules()]),
)
PATTERNS = st.one_of(GRAMMAR_PATTERNS, RAW_PATTERNS)

KEYWORD = st.one_of(
    st.text(st.sampled_from(FULL_ALPHABET), min_size=1, max_size=8),
    st.text(max_size=6),  # the empty keyword is an error
    st.sampled_from(
        ["c++", "new york", "york", "密码", "Straße", "STRASSE", "пароль", "<пароль>", "a_b", "ß"]
    ),
)
IDS = st.one_of(st.from_regex(r"[a-z][a-z0-9_]{0,6}", fullmatch=True), st.text(min_size=1, max_size=8))


@st.composite
def specs(draw: st.DrawFn) -> Spec:
    rule_id = draw(IDS)
    case_insensitive = draw(st.booleans())
    if draw(st.booleans()):
        validator: Literal["luhn", "iban"] | None = draw(st.sampled_from([None, None, "luhn", "iban"]))
        return Spec(rule_id, regex=draw(PATTERNS), case_insensitive=case_insensitive, validator=validator)
    keywords = tuple(draw(st.lists(KEYWORD, max_size=5)))
    return Spec(rule_id, keywords=keywords, case_insensitive=case_insensitive)


RULE_SETS = st.lists(specs(), max_size=6)

# Text made of every code point, with runs of what the rules look for mixed in.
FRAGMENTS = st.sampled_from(
    ["4111 1111 1111 1111", "2024 4111-1111-1111-1111", "GB82 WEST 1234 5698 7654 32", "ann@example.com",
     "c++17", "new york", "密码是", "STRASSE", "straße", "<ПАРОЛЬ>", "abc", "AB01", "é", "\u0301", "😀", " ",
     "\n", "\r\n", "\x00", "\ud800", "\udc00\ud83d"]
)  # fmt: skip
TEXTS = st.lists(
    st.one_of(FRAGMENTS, st.text(st.characters(codec=None, exclude_categories=()), max_size=12)), max_size=20
).map("".join)


def compile_or_none(rules: list[Spec]) -> RuleSet | None:
    """The compiled rule set, or None when it is rejected, as it may be, with a RuleError."""
    try:
        return RuleSet([spec.rule() for spec in rules])
    except RuleError as exc:
        # Every error about one rule names it (Rust's `{:?}`, which leaves these ids as they are).
        message = str(exc)
        named = [spec.id for spec in rules if re.fullmatch(r"[a-z][a-z0-9_]*", spec.id)]
        if named and len(named) == len(rules) and "too large" not in message:
            assert any(f'"{rule_id}"' in message for rule_id in named), message
        return None


# -- what a reported match must satisfy -------------------------------------------------------------------


def luhn_ok(found: str) -> bool:
    digits = [int(c) for c in reversed(found) if c not in " -" and c in "0123456789"]
    if len(digits) != sum(1 for c in found if c not in " -") or not 12 <= len(digits) <= 19:
        return False
    total = sum(d if i % 2 == 0 else (d * 2 - 9 if d * 2 > 9 else d * 2) for i, d in enumerate(digits))
    return total % 10 == 0


def iban_ok(found: str) -> bool:
    compact = found.replace(" ", "").upper()
    if not (15 <= len(compact) <= 34 and compact.isascii() and compact.isalnum()):
        return False
    if not (compact[:2].isalpha() and compact[2:4].isdigit()):
        return False
    return int("".join(str(int(c, 36)) for c in compact[4:] + compact[:4])) % 97 == 1


def keyword_ok(spec: Spec, found: str) -> bool:
    assert spec.keywords is not None
    if not spec.case_insensitive:
        return found in spec.keywords
    if all(k.isascii() for k in spec.keywords):
        return found.lower() in {k.lower() for k in spec.keywords}
    # Non-ASCII, case-insensitive: Unicode simple case folding, as regex (?i) does it.
    return any(re.fullmatch(re.escape(k), found, re.IGNORECASE) for k in spec.keywords)


def has_surrogates(text: str) -> bool:
    return any("\ud800" <= c <= "\udfff" for c in text)


@property_settings(300)
@given(rules=RULE_SETS, texts=st.lists(TEXTS, min_size=1, max_size=3))
# Found by rust/fuzz: `<` and `>` in a keyword compiled as a regex became word boundaries.
@example(rules=[Spec("kw", keywords=("<пароль>",), case_insensitive=True)], texts=["<ПАРОЛЬ> пароль"])
def test_any_rule_set_compiles_or_is_a_rule_error_and_its_matches_are_true(
    rules: list[Spec], texts: list[str]
) -> None:
    ruleset = compile_or_none(rules)
    if ruleset is None:
        return
    by_id = {spec.id: spec for spec in rules}
    assert ruleset.rule_ids == [spec.id for spec in rules]
    for text in texts:
        matches = ruleset.scan(text)
        assert [m.start for m in matches] == sorted(m.start for m in matches)
        for m in matches:
            assert 0 <= m.start < m.end <= len(text), (m, len(text))
            spec = by_id[m.rule_id]
            found = text[m.start : m.end]
            if spec.keywords is not None:
                assert keyword_ok(spec, found), (spec, found)
            elif spec.validator == "luhn":
                assert luhn_ok(found), found
            elif spec.validator == "iban":
                assert iban_ok(found), found
        matched = ruleset.matched_ids(text)
        assert matched == [rule_id for rule_id in ruleset.rule_ids if rule_id in {m.rule_id for m in matches}]
        if not has_surrogates(text):
            # (`analyze` repairs surrogates as tiktoken does, UTF-16 pairs joined; `scan` keeps one
            # character per code point. Without surrogates both see the same text.)
            assert ruleset.analyze(text) == (count_tokens(text), matched)


@property_settings(100)
@given(
    rule_id=st.text(min_size=1, max_size=4),
    pattern=st.text(min_size=1, max_size=4),
    keyword=st.text(min_size=1, max_size=4),
    bad=st.sampled_from(["\ud800", "\udfff", "a\udc00b"]),
    where=st.sampled_from(["id", "regex", "keyword"]),
)
def test_surrogates_in_a_rule_are_a_unicode_error(
    rule_id: str, pattern: str, keyword: str, bad: str, where: str
) -> None:
    # A rule's strings cross into Rust as UTF-8, which a lone surrogate does not have: PyO3 raises
    # UnicodeEncodeError (a ValueError) before any Rust code runs.
    with pytest.raises(UnicodeEncodeError):
        if where == "id":
            Rule(rule_id + bad, regex=pattern)
        elif where == "regex":
            Rule(rule_id, regex=pattern + bad)
        else:
            Rule(rule_id, keywords=[keyword, bad])


# -- agreement with Python's re on generated patterns -----------------------------------------------------

# Over this alphabet the two engines agree on `\w`, `\d`, `\s`, `\b` and case folding (see also
# tests/unit/test_rules.py). `$` is left out: Python's also matches before a final newline.
REFERENCE_ALPHABET = "abcxyzABC013 @.-éü中😀\n"
REFERENCE_PATTERNS = pattern_grammar(
    REFERENCE_ALPHABET, extras=[r"\d", r"\w", r"\s", r"\W"], max_quantified=3
)


@property_settings(150)
@given(
    patterns=st.lists(st.tuples(REFERENCE_PATTERNS, st.booleans()), min_size=1, max_size=4),
    text=st.text(st.sampled_from(REFERENCE_ALPHABET), max_size=40),
)
def test_regex_spans_are_python_finditer_spans(patterns: list[tuple[str, bool]], text: str) -> None:
    expected: list[tuple[int, int, str]] = []
    rules = []
    for i, (pattern, case_insensitive) in enumerate(patterns):
        rule = Rule(f"r{i}", regex=pattern, case_insensitive=case_insensitive)
        try:
            RuleSet([rule])
        except RuleError as exc:
            # The grammar's patterns are valid; those that can match the empty string (say `a?` or `\b`)
            # are rejected, since an empty span says nothing about the text.
            assert "can match the empty string" in str(exc)
            continue
        rules.append(rule)
        compiled = re.compile(pattern, re.IGNORECASE if case_insensitive else 0)
        expected += [(m.start(), m.end(), f"r{i}") for m in compiled.finditer(text)]
    got = [(m.start, m.end, m.rule_id) for m in RuleSet(rules).scan(text)]
    assert sorted(got) == sorted(expected)


# -- linear time ------------------------------------------------------------------------------------------

MEGABYTE = 1 << 20

# (rule, text): each is exponential in a backtracking engine, or quadratic in a scan that re-searches after
# every rejected match without a budget.
PATHOLOGICAL = [
    pytest.param(Rule("nested", regex="(a*)*b"), "a" * MEGABYTE, id="(a*)*b"),
    pytest.param(Rule("overlap", regex="(x+x+)+y"), "x" * MEGABYTE, id="(x+x+)+y"),
    pytest.param(Rule("alternation", regex="^(a|aa|aaa)+$"), "a" * MEGABYTE + "!", id="^(a|aa|aaa)+$"),
    pytest.param(Rule("dotstar", regex="(.*a){12}z"), "a" * (MEGABYTE // 8), id="(.*a){12}z"),
    pytest.param(
        Rule("words", regex=r"\b(\w+\s?)*\b!"), "é " * (MEGABYTE // 4), id="unicode word boundaries"
    ),
    # Every candidate fails its checksum; each rejection re-reads up to 40 characters, within the budget.
    pytest.param(
        Rule("card_like", regex=r"[0-9][0-9 ]{11,40}", validator="luhn"),
        "1" * MEGABYTE,
        id="rejected by luhn",
    ),
    pytest.param(
        Rule("iban_like", regex=r"[A-Z]{2}[0-9]{2}[A-Z0-9 ]{11,40}", validator="iban"),
        "GB00" * (MEGABYTE // 4),
        id="rejected by iban",
    ),
    # Unbounded: the first match is the whole text, and each shorter one at its start is rejected in turn.
    pytest.param(
        Rule("card_run", regex=r"[0-9][0-9 ]{11,}", validator="luhn"), "1" * MEGABYTE, id="whole text by luhn"
    ),
    pytest.param(
        Rule("iban_run", regex=r"[A-Z]{2}[0-9]{2}[A-Z0-9 ]{11,}", validator="iban"),
        "GB00" * (MEGABYTE // 4),
        id="whole text by iban",
    ),
    # Case-insensitive non-ASCII keywords go through the regex path; their word edges fail almost everywhere.
    pytest.param(
        Rule("kw", keywords=["ÿa", "ÿaÿa", "Ÿ"], case_insensitive=True), "ÿa" * (MEGABYTE // 3), id="keywords"
    ),
    # Every position ends 32 keyword occurrences (reported overlapping, then all but the edges' rejected).
    pytest.param(
        Rule("many", keywords=["a" * n for n in range(1, 33)]), "a" * (MEGABYTE // 4), id="nested keywords"
    ),
]


def within(seconds: float, work: Callable[[], T]) -> T:
    """`work()`, which must return within `seconds`. It runs in a daemon thread, since a Rust call cannot be
    interrupted (SIGALRM, pytest-timeout's method, waits for it to return): a runaway scan is abandoned
    (and keeps a core busy until the process exits) instead of holding up the suite."""
    results: list[T] = []
    done = threading.Event()

    def run() -> None:
        try:
            results.append(work())
        finally:
            done.set()

    threading.Thread(target=run, daemon=True).start()
    assert done.wait(seconds), f"did not finish within {seconds} s"
    assert results, "raised an exception (see the thread's traceback above)"
    return results[0]


@pytest.mark.parametrize(("rule", "text"), PATHOLOGICAL)
def test_pathological_rules_scan_a_megabyte_in_linear_time(rule: Rule, text: str) -> None:
    # Linear: each takes well under a second in the release build (2-core dev machine). Quadratic: hours.
    rules = RuleSet([rule, *(r.rule for r in default_rules())])
    matches, matched = within(30, lambda: (rules.scan(text), rules.matched_ids(text)))
    assert all(0 <= m.start < m.end <= len(text) for m in matches)
    assert matched == [i for i in rules.rule_ids if i in {m.rule_id for m in matches}]


# `a*X|a` on `aaaa…`: every search for the next match reads to the end of the text to rule out the first
# alternative (leftmost-first), so finding all n matches reads n²/2 bytes. The regex crate documents this
# worst case for iterating over matches; `scan` iterates, and so does `matched_ids` past matches that a
# validator rejects. Measured: 64 KB takes 5 s, so 4 MB (max_request_bytes) would take about 6 hours.
# The texts are sized for about 4 s of quadratic work (linear: a millisecond or two), so that the
# abandoned thread does not hold a core for long.
QUADRATIC = [
    pytest.param(Rule("iterate", regex="a*X|a"), "a" * 50_000, "scan", id="scan"),
    pytest.param(
        Rule("rejects", regex="[0-9]*X|[0-9]{13}", validator="luhn"),
        "1" * 300_000,
        "matched_ids",
        id="matched",
    ),
]


@pytest.mark.xfail(
    strict=True,
    raises=AssertionError,
    reason="rust/core/src/rules: iterating over matches is O(n^2) for patterns whose preferred alternative "
    "can fail late (the regex crate's bound; documented in rules/mod.rs, the default pack is not affected)",
)
@pytest.mark.parametrize(("rule", "text", "method"), QUADRATIC)
def test_iterating_over_matches_is_linear(rule: Rule, text: str, method: str) -> None:
    rules = RuleSet([rule])
    within(0.5, lambda: getattr(rules, method)(text))
