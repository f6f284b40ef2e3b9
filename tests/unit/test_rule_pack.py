"""The default rule pack (rust/core/src/rules/pack.rs via `tiergate._native.default_rules`), and what it does
to a request's sensitivity once a config has it (on by default)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.personal_data import WORDS, lookalikes, prose, secrets
from tiergate._native import DefaultRule, Rule, RuleSet, default_rules
from tiergate.analysis import Analyzer
from tiergate.config import parse, resolve
from tiergate.content import ImagePart, TextPart, Tool, ToolCall
from tiergate.request import Message, Request, Sensitivity

PACK_IDS = [
    "email",
    "phone",
    "phone_labelled",
    "payment_card",
    "iban",
    "ipv4",
    "ipv4_private",
    "ipv6",
    "us_ssn",
    "uk_nino",
    "fr_nir",
    "de_tax_id",
    "de_pension_number",
    "es_dni",
    "es_nie",
    "it_fiscal_code",
    "nl_bsn",
    "br_cpf",
    "br_cnpj",
    "in_aadhaar",
    "in_pan",
    "jp_my_number",
    "passport",
    "date_of_birth",
    "street_address",
    "openai_key",
    "anthropic_key",
    "aws_access_key",
    "github_token",
    "slack_token",
    "google_api_key",
    "stripe_key",
    "jwt",
    "private_key",
    "url_credentials",
]
PACK = RuleSet([r.rule for r in default_rules()])
RESTRICTED = Sensitivity.RESTRICTED


def found(text: str) -> list[tuple[str, str]]:
    return [(m.rule_id, text[m.start : m.end]) for m in PACK.scan(text)]


def test_pack_ids_descriptions_and_rules() -> None:
    pack = default_rules()
    assert [r.id for r in pack] == PACK_IDS
    assert PACK.rule_ids == PACK_IDS
    assert all(isinstance(r, DefaultRule) and r.description and r.rule.id == r.id for r in pack)
    by_id = {r.id: r.rule for r in pack}
    assert (by_id["payment_card"].validator, by_id["iban"].validator, by_id["email"].validator) == (
        "luhn",
        "iban",
        None,
    )
    assert all(isinstance(r.rule.regex, str) and r.rule.keywords is None for r in pack)
    assert repr(pack[0]) == "DefaultRule('email')"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Grüße, écris à zoë.müller@example.de 😀", [("email", "zoë.müller@example.de")]),
        ("Zoë: +44 20 7946 0958 📞", [("phone", "+44 20 7946 0958")]),
        ("Zahlung 2024 4111 1111 1111 1111 ✓", [("payment_card", "4111 1111 1111 1111")]),
        ("Überweisung an GB82 WEST 1234 5698 7654 32.", [("iban", "GB82 WEST 1234 5698 7654 32")]),
        # The digit groups inside an IBAN can read as a phone number too (both are restricted).
        (
            "Überweisung: DE89 3704 0044 0532 0130 00",
            [("iban", "DE89 3704 0044 0532 0130 00"), ("phone", "0044 0532 0130 00")],
        ),
        ("à 192.168.1.254 et 2001:db8::1:2", [("ipv4_private", "192.168.1.254"), ("ipv6", "2001:db8::1:2")]),
        ("サーバー147.65.255.182を使って", [("ipv4", "147.65.255.182")]),
        ("マイナンバーは1234 5678 9018です", [("jp_my_number", "1234 5678 9018")]),
        ("Geburtsdatum: 14.03.1961 ✓", [("date_of_birth", "Geburtsdatum: 14.03.1961")]),
        ("clé AKIAIOSFODNN7EXAMPLE…", [("aws_access_key", "AKIAIOSFODNN7EXAMPLE")]),
        ("→ -----BEGIN EC PRIVATE KEY-----\nb3Bl…", [("private_key", "-----BEGIN EC PRIVATE KEY-----")]),
    ],
)  # fmt: skip
def test_spans_are_character_offsets_in_non_ascii_text(text: str, expected: list[tuple[str, str]]) -> None:
    assert found(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "Order 4000123456789010 was refunded; ISBN 978-3-16-148410-0 and 9783161484100.",
        "Released v1.2.3 (1.0.0+20130313144700) on 2024-11-22T08:14:03Z; next 22.11.2024 08:14.",
        "Request 550e8400-e29b-41d4-a716-446655440000 took 12345 ms and cost $1,299.99.",
        "Bind to 127.0.0.1:8080 or 0.0.0.0; std::vector and a::b::c are C++.",
        "Use scikit-learn (sk-learn) and lodash@4.17.21; ping @support at 10:30.",
        "-----BEGIN PUBLIC KEY----- is fine to share, a private key is not.",
        "Upgrade to version 1.2.3.4 (or v10.0.0.1); netmask 255.255.255.0; ISBN 0-306-40615-2.",
        "Due 14/03/2024 for order 52998224725; the passport office opens at 9.",
    ],
)
def test_ordinary_text_matches_nothing(text: str) -> None:
    assert found(text) == []


def around(secret: str, before: str, after: str) -> str:
    return f"{before} {secret} {after}".strip()


@settings(max_examples=300, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(item=secrets(), before=prose(0, 8), after=prose(0, 8))
def test_personal_data_in_prose_is_found(item: tuple[str, str], before: str, after: str) -> None:
    rule_id, secret = item
    text = around(secret, before, after)
    start = text.index(secret)
    spans = [(m.start, m.end) for m in PACK.scan(text) if m.rule_id == rule_id]
    # The rule matches where the value is (a phone number may take a number that follows it along).
    assert any(s < start + len(secret) and start < e for s, e in spans), (rule_id, text, PACK.scan(text))
    assert rule_id in PACK.matched_ids(text)


@settings(max_examples=300, derandomize=True)
@given(lookalike=lookalikes(), before=prose(0, 8), after=prose(0, 8))
def test_lookalikes_in_prose_are_not_personal_data(lookalike: str, before: str, after: str) -> None:
    text = around(lookalike, before, after)
    assert PACK.matched_ids(text) == [], (text, found(text))


@settings(max_examples=200, derandomize=True)
@given(st.lists(st.sampled_from(WORDS), max_size=40).map(" ".join))
def test_the_prose_itself_is_clean(text: str) -> None:
    # What the canary test wraps personal data in must not be personal data itself.
    assert PACK.matched_ids(text) == []


def test_readme_lists_every_pack_rule() -> None:
    readme = (Path(__file__).parents[2] / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Sensitive data", 1)[1].split("\n## ", 1)[0]
    listed = re.findall(r"^\| `([a-z0-9_]+)` \|", section, flags=re.MULTILINE)
    assert listed == PACK_IDS
    # The section's example config works as it says.
    (example,) = re.findall(r"```yaml\n(.*?)```", section, flags=re.DOTALL)
    an = analyzer(**yaml.safe_load(example))
    assert sensitivity(an, "ann@example.com from 10.0.0.1, call +44 20 7946 0958") == (Sensitivity.PUBLIC, [])
    assert sensitivity(an, "ann@corp.example about ACC-12345678 and Bluebird") == (
        RESTRICTED,
        ["email", "account_number", "codename"],
    )


# -- the pack in a config ---------------------------------------------------------------------------------


def analyzer(**top: Any) -> Analyzer:
    data = {
        "models": {"local": {"provider": "llama_cpp", "path": "embedded"}},
        "routes": {"default": {"chain": ["local"]}},
        **top,
    }
    return Analyzer(resolve(parse(data), {}).rules)


def sensitivity(an: Analyzer, text: str) -> tuple[Sensitivity, list[str]]:
    analysis = an.analyze(Request(task="", messages=[Message("user", text)]))
    return analysis.sensitivity, analysis.matched_rules


@pytest.mark.parametrize(
    ("top", "text", "expected"),
    [
        ({}, "mail ann@example.com", (Sensitivity.RESTRICTED, ["email"])),
        ({}, "4111 1111 1111 1111, AKIAIOSFODNN7EXAMPLE", (RESTRICTED, ["payment_card", "aws_access_key"])),
        ({}, "what is the capital of France?", (Sensitivity.PUBLIC, [])),
        ({"default_rules": False}, "mail ann@example.com", (Sensitivity.PUBLIC, [])),
        ({"disabled_rules": ["email"]}, "ann@example.com from 10.0.0.1", (RESTRICTED, ["ipv4_private"])),
        (
            {"disabled_rules": ["email", "ipv4_private"]},
            "ann@example.com from 10.0.0.1",
            (Sensitivity.PUBLIC, []),
        ),
        # A config rule with a pack id replaces the pack rule: here, only company addresses are restricted.
        (
            {"rules": [{"id": "email", "regex": r"\b[\w.]+@corp\.example\b", "sensitivity": "restricted"}]},
            "mail ann@example.com",
            (Sensitivity.PUBLIC, []),
        ),
        (
            {"rules": [{"id": "email", "regex": r"\b[\w.]+@corp\.example\b", "sensitivity": "restricted"}]},
            "mail ann@corp.example",
            (Sensitivity.RESTRICTED, ["email"]),
        ),
        # ...or keeps the pattern and lowers the level.
        (
            {"rules": [{"id": "ipv4_private", "regex": r"\b10\.\d+\.\d+\.\d+\b", "sensitivity": "internal"}]},
            "from 10.0.0.1",
            (Sensitivity.INTERNAL, ["ipv4_private"]),
        ),
        # Own rules come after the pack's and add to it.
        (
            {"rules": [{"id": "codename", "keywords": ["bluebird"], "sensitivity": "restricted"}]},
            "project bluebird, ann@example.com",
            (Sensitivity.RESTRICTED, ["email", "codename"]),
        ),
    ],
)  # fmt: skip
def test_config_turns_the_pack_on_off_and_overrides_it(
    top: dict[str, Any], text: str, expected: tuple[Sensitivity, list[str]]
) -> None:
    assert sensitivity(analyzer(**top), text) == expected


def test_pack_rules_compile_as_config_rules() -> None:
    # What resolve() puts in `rules` for the pack is the pack, rule for rule.
    rules = resolve(
        parse(
            {"models": {"l": {"provider": "llama_cpp", "path": "x"}}, "routes": {"default": {"chain": ["l"]}}}
        ),
        {},
    ).rules
    assert [r.id for r in rules] == PACK_IDS
    assert all(r.sensitivity == "restricted" for r in rules)
    assert [
        Rule(r.id, regex=r.regex, case_insensitive=r.case_insensitive, validator=r.validator) for r in rules
    ] == [r.rule for r in default_rules()]


# -- every text part is scanned; images take the route's sensitivity -----------------------------------------

_CALL = ToolCall("c1", "lookup", '{"q": "x"}')


@pytest.mark.parametrize(
    ("request_", "expected"),
    [
        # Personal data only inside a tool result, tool-call arguments, or a tool's description.
        (
            Request(
                "",
                [
                    Message("user", "look it up"),
                    Message("assistant", "", tool_calls=[_CALL]),
                    Message("tool", '{"owner": "ann@example.com"}', tool_call_id="c1"),
                ],
            ),
            (RESTRICTED, ["email"], "rules"),
        ),
        (
            Request(
                "",
                [
                    Message("user", "hi"),
                    Message("assistant", "", tool_calls=[ToolCall("c", "send", '{"to": "ann@example.com"}')]),
                ],
            ),
            (RESTRICTED, ["email"], "rules"),
        ),
        (
            Request("", [Message("user", "hi")], tools=[Tool("t", "key AKIAIOSFODNN7EXAMPLE", "{}")]),
            (RESTRICTED, ["aws_access_key"], "rules"),
        ),
        # An image cannot be scanned: at least the route's image_sensitivity (internal by default).
        (
            Request(
                "",
                [
                    Message(
                        "user",
                        "what is it",
                        parts=[TextPart("what is it"), ImagePart(url="https://x.test/a.png")],
                    )
                ],
            ),
            (Sensitivity.INTERNAL, [], "images"),
        ),
    ],
)
def test_every_text_part_is_scanned(request_: Request, expected: tuple[Sensitivity, list[str], str]) -> None:
    analysis = analyzer().analyze(request_)
    assert (analysis.sensitivity, analysis.matched_rules, analysis.decided_by) == expected


def test_a_route_can_make_images_restricted() -> None:
    image = Message("user", "x", parts=[ImagePart(data=b"png", mime_type="image/png")])
    assert analyzer().analyze(Request("", [image]), "restricted").sensitivity == RESTRICTED
    assert analyzer().analyze(Request("", [image]), "public").sensitivity == Sensitivity.PUBLIC


@pytest.mark.xfail(strict=True, reason="a name alone needs a model; the rule pack has none (README)")
@pytest.mark.parametrize("text", ["Summarise the chart of Maria Rossi.", "Ask 佐藤花子 about it."])
def test_names_alone_are_not_caught_yet(text: str) -> None:
    assert PACK.matched_ids(text)


def test_the_issue_example_is_restricted() -> None:
    # Issue 14's example: its codice fiscale has a wrong check letter (M would be right); the date of birth
    # and the street address keep it on the device.
    text = (
        "Summarise the chart of Maria Rossi, born 14/03/1961, via Garibaldi 12, Milano, CF RSSMRA61C54F205X"
    )
    assert PACK.matched_ids(text) == ["date_of_birth", "street_address"]
