"""50 rules over 8 KB of text: tiergate's RuleSet against a Python `re` loop doing the same work.

    python benches/bench_rules.py            # or: make bench BENCH=rules

The rules are what a sensitivity config holds: 25 PII / secret regexes (two with validators: Luhn for card
numbers, mod-97 for IBANs) and 25 keyword lists (medical, legal, HR, finance, task hints; some of them
case-insensitive). The text is support tickets, chat, logs and code with a few PII items among them, drawn
with a fixed seed. "The same work" is every match of every rule with its span: the `re` loop runs each rule's
compiled pattern with `finditer` (keywords as one `\\b(?:...)\\b` alternation per rule, longest first) and
applies the same validators; both results are checked equal before anything is timed. Two texts are
measured: the plain one, and the same with accented words and emoji mixed in (non-ASCII text takes other
paths in the regex engine). Each figure is the median over REPEATS timed runs after a warm-up. Results go to
benches/results/bench_rules.md and are printed.

A second table times the request-path call with the default rule pack (personal data and secrets, what every
config compiles unless `default_rules: false`) on 1 KB prompts: `RuleSet.analyze()` (token count + matched
ids) and `matched_ids()` alone.
"""

from __future__ import annotations

import random
import re
import statistics
import sys
import time
from collections.abc import Callable

import harness

from tiergate._native import Rule, RuleSet, default_rules

TARGET_RATIO = 10.0
TEXT_BYTES = 8 * 1024
PROMPT_BYTES = 1024
REPEATS = 9
RUN_NS = 300_000_000
SEED = 7

# (id, pattern, case_insensitive, validator)
REGEX_RULES: list[tuple[str, str, bool, str | None]] = [
    ("email", r"\b[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}\b", False, None),
    ("phone_e164", r"\+[1-9][0-9]{7,14}\b", False, None),
    ("phone_us", r"\(?\b[2-9][0-9]{2}\)?[-. ][2-9][0-9]{2}[-. ][0-9]{4}\b", False, None),
    ("ssn_us", r"\b[0-9]{3}-[0-9]{2}-[0-9]{4}\b", False, None),
    ("card_number", r"\b(?:[0-9][ -]?){12,18}[0-9]\b", False, "luhn"),
    ("iban", r"\b[A-Z]{2}[0-9]{2}(?: ?[A-Z0-9]){11,30}\b", False, "iban"),
    ("ipv4", r"\b(?:(?:25[0-5]|2[0-4][0-9]|1?[0-9]?[0-9])\.){3}[0-9]{1,3}\b", False, None),
    ("ipv6", r"\b(?:[0-9a-fA-F]{1,4}:){7}[0-9a-fA-F]{1,4}\b", False, None),
    ("mac_address", r"\b(?:[0-9A-Fa-f]{2}[:-]){5}[0-9A-Fa-f]{2}\b", False, None),
    ("aws_access_key", r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b", False, None),
    ("github_token", r"\bgh[pousr]_[A-Za-z0-9]{36}\b", False, None),
    ("openai_key", r"\bsk-(?:proj-)?[A-Za-z0-9_-]{20,}", False, None),
    ("slack_token", r"\bxox[baprs]-[A-Za-z0-9-]{10,}", False, None),
    ("jwt", r"\beyJ[A-Za-z0-9_-]{10,}\.eyJ[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}", False, None),
    ("private_key", r"-----BEGIN (?:RSA |EC |OPENSSH )?PRIVATE KEY-----", False, None),
    ("password_assignment", r"\b(?:password|passwd|pwd|secret)\s*[:=]\s*[^\s,;]{4,}", True, None),
    ("url_credentials", r"\b[a-z][a-z0-9+.-]*://[^\s/:@]+:[^\s/@]+@[^\s/]+", True, None),
    ("date_of_birth", r"\b(?:dob|date of birth|born)[: ]+[0-9]{4}-[0-9]{2}-[0-9]{2}\b", True, None),
    ("uk_nino", r"\b[A-CEGHJ-PR-TW-Z]{2}[0-9]{6}[A-D]\b", False, None),
    ("uk_postcode", r"\b[A-Z]{1,2}[0-9][A-Z0-9]? [0-9][A-Z]{2}\b", False, None),
    ("us_zip_plus4", r"\b[0-9]{5}-[0-9]{4}\b", False, None),
    ("vin", r"\b[A-HJ-NPR-Z0-9]{17}\b", False, None),
    ("swift_bic", r"\b[A-Z]{4}(?:DE|GB|FR|US|CH|NL)[A-Z0-9]{2}(?:[A-Z0-9]{3})?\b", False, None),
    ("hex_secret", r"\b[0-9a-f]{40,64}\b", False, None),
    ("street_address", r"\b[0-9]{1,5} [A-Z][a-z]+ (?:Street|St|Avenue|Ave|Road|Rd|Lane|Blvd)\b", False, None),
]  # fmt: skip

# (id, keywords, case_insensitive)
KEYWORD_RULES: list[tuple[str, list[str], bool]] = [
    (
        "confidential",
        ["confidential", "internal only", "do not distribute", "proprietary", "under NDA"],
        True,
    ),
    ("medical", ["diagnosis", "prescription", "HIV", "diabetes", "oncology", "chemotherapy", "MRI"], False),
    ("mental_health", ["depression", "anxiety disorder", "therapy session", "psychiatrist"], True),
    ("legal", ["lawsuit", "subpoena", "litigation", "settlement agreement", "attorney-client"], True),
    ("hr", ["termination", "performance review", "disciplinary", "severance", "grievance"], True),
    ("salary", ["salary", "compensation package", "bonus", "payslip", "pay stub"], True),
    ("banking", ["bank account", "routing number", "sort code", "wire transfer", "overdraft"], True),
    ("credentials", ["password", "passphrase", "api key", "access token", "secret key"], True),
    ("identity", ["passport", "driver's license", "national insurance", "social security"], True),
    ("children", ["minor", "child's", "school records", "parental consent"], True),
    ("religion", ["religious", "church", "mosque", "synagogue"], True),
    ("politics", ["political affiliation", "voting record", "union membership"], True),
    ("greeting", ["hello", "hi", "hey", "good morning", "thanks", "thank you"], True),
    ("summarize", ["summarize", "summarise", "summary", "tl;dr", "key points"], True),
    ("translate", ["translate", "translation", "in French", "in German", "in Spanish"], True),
    ("classify", ["classify", "categorize", "label", "sentiment"], True),
    ("extract", ["extract", "parse", "pull out", "fields", "as JSON"], True),
    ("code", ["Python", "JavaScript", "TypeScript", "Rust", "function", "stack trace", "traceback"], False),
    ("sql", ["SELECT", "INSERT INTO", "JOIN", "WHERE", "GROUP BY"], False),
    ("math", ["integral", "derivative", "equation", "prove that", "theorem"], True),
    ("refund", ["refund", "chargeback", "money back", "cancel my order"], True),
    ("complaint", ["unacceptable", "disappointed", "complaint", "escalate", "manager"], True),
    ("urgent", ["urgent", "asap", "immediately", "emergency", "outage"], True),
    ("shipping", ["tracking number", "delivery address", "shipment", "courier"], True),
    ("profanity_mild", ["damn", "crap", "wtf"], True),
]

FRAGMENTS = [
    "Hello team, thanks for the quick turnaround on ticket #4821. The customer says the delivery address "
    "changed; new one is 221 Baker Street, London NW1 6XE. Please update the shipment before the courier "
    "picks it up.\n",
    "Customer wrote: I'm really disappointed, this is unacceptable. I want a refund or I'll escalate to your "
    "manager. You can reach me at jane.doe@example.com or +442079460958.\n",
    "Can you summarize the key points of the attached performance review and translate the summary in "
    "German? Keep it confidential, internal only.\n",
    "2024-11-22T08:14:03Z ERROR upstream=10.20.30.40 mac=00:1A:2B:3C:4D:5E request failed after 3 retries; "
    "traceback follows.\n",
    "def charge(card: str, amount: int) -> Receipt:\n    client = Stripe(api_key=os.environ['STRIPE_KEY'])\n"
    "    return client.charge(card, amount)  # never log the card\n",
    "Payment details: card 4111 1111 1111 1111 (exp 12/27), IBAN GB82 WEST 1234 5698 7654 32, sort code "
    "and routing number on file. Wire transfer expected Monday.\n",
    "SELECT id, email FROM users WHERE created_at > now() - interval '7 days' GROUP BY id;\n",
    "Quick question about the integral of x^2 from 0 to 3 - is the derivative of the result zero? Prove that "
    "the equation holds.\n",
    "Config dump: password = hunter2hunter2, db=postgres://admin:s3cr3t@db.internal:5432/app, "
    "AKIAIOSFODNN7EXAMPLE was rotated last week.\n",
    "The patient's diagnosis was discussed in the therapy session; prescription renewed, MRI scheduled.\n",
    "Please extract the fields as JSON: name, date of birth: 1984-03-12, passport number, and the "
    "national insurance number QQ123456C.\n",
    "Our Python service throws a stack trace when the JWT eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0."
    "dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U expires. Urgent: outage since 02:00.\n",
    "Order 48213 shipped. Tracking number 1Z999AA10123456784. Expected delivery Thursday between 9 and 5.\n",
    "Meeting notes: budget approved, hiring two engineers, revisit vendor contract in Q3. No blockers.\n",
    "Classify the sentiment of each review and label it positive, neutral or negative.\n",
    "I need the settlement agreement reviewed by legal before the lawsuit deadline; attorney-client "
    "privileged.\n",
]
# Accented words and emoji, for the second text: the same rules, text that is not pure ASCII.
UNICODE_FRAGMENTS = [
    "Grüße aus München! Die Überweisung an Zoë Müller ist erledigt. 👍\n",
    "Merci beaucoup, l'équipe a déjà répondu à François. 🎉\n",
    "¿Puedes resumir el informe? Gracias, José. 🙏\n",
]


def make_text(fragments: list[str], size: int, seed: int) -> str:
    rng = random.Random(seed)
    parts: list[str] = []
    length = 0
    while length < size:
        fragment = rng.choice(fragments)
        parts.append(fragment)
        length += len(fragment.encode())
    return "".join(parts).encode()[:size].decode(errors="ignore")


def rule_set() -> RuleSet:
    rules = [Rule(rule_id, regex=p, case_insensitive=ci, validator=v) for rule_id, p, ci, v in REGEX_RULES]  # type: ignore[arg-type]
    rules += [Rule(rule_id, keywords=words, case_insensitive=ci) for rule_id, words, ci in KEYWORD_RULES]
    return RuleSet(rules)


def luhn(text: str) -> bool:
    digits = [int(c) for c in text if c.isdigit()]
    if any(c not in "0123456789 -" for c in text) or not 12 <= len(digits) <= 19:
        return False
    total = 0
    for i, digit in enumerate(reversed(digits)):
        if i % 2 == 1:
            digit = digit * 2 - 9 if digit > 4 else digit * 2
        total += digit
    return total % 10 == 0


def iban(text: str) -> bool:
    compact = text.replace(" ", "").upper()
    if not (15 <= len(compact) <= 34 and compact.isascii() and compact.isalnum()):
        return False
    if not (compact[:2].isalpha() and compact[2:4].isdigit()):
        return False
    return int("".join(str(int(c, 36)) for c in compact[4:] + compact[:4])) % 97 == 1


VALIDATORS: dict[str | None, Callable[[str], bool] | None] = {None: None, "luhn": luhn, "iban": iban}


def python_rules() -> list[tuple[str, re.Pattern[str], Callable[[str], bool] | None]]:
    compiled = []
    for rule_id, pattern, ci, validator in REGEX_RULES:
        compiled.append((rule_id, re.compile(pattern, re.IGNORECASE if ci else 0), VALIDATORS[validator]))
    for rule_id, words, ci in KEYWORD_RULES:
        alternation = "|".join(re.escape(w) for w in sorted(words, key=len, reverse=True))
        compiled.append((rule_id, re.compile(rf"\b(?:{alternation})\b", re.IGNORECASE if ci else 0), None))
    return compiled


def python_scan(
    rules: list[tuple[str, re.Pattern[str], Callable[[str], bool] | None]], text: str
) -> list[tuple[int, int, str]]:
    """What RuleSet.scan does, written the obvious way with Python's re."""
    found = []
    for rule_id, pattern, validator in rules:
        for m in pattern.finditer(text):
            if validator is None or validator(m.group()):
                found.append((m.start(), m.end(), rule_id))
    found.sort()
    return found


def per_call_ns(call: Callable[[], object]) -> float:
    """Median ns per call over REPEATS runs of about RUN_NS each, after a warm-up run."""
    start = time.perf_counter_ns()
    call()
    once = max(time.perf_counter_ns() - start, 1)
    iterations = max(RUN_NS // once, 3)
    for _ in range(iterations):
        call()
    samples = []
    for _ in range(REPEATS):
        start = time.perf_counter_ns()
        for _ in range(iterations):
            call()
        samples.append((time.perf_counter_ns() - start) / iterations)
    return statistics.median(samples)


def pack_rows() -> list[list[str]]:
    """The default pack on 1 KB prompts: plain prose, prose with personal data, and with accents and emoji."""
    pack = RuleSet([r.rule for r in default_rules()])
    clean = [f for f in FRAGMENTS if not pack.matched_ids(f)]
    prompts = {
        "no personal data": make_text(clean, PROMPT_BYTES, SEED),
        "mixed (support tickets, logs, code)": make_text(FRAGMENTS, PROMPT_BYTES, SEED),
        "mixed, with accents and emoji": make_text(FRAGMENTS + UNICODE_FRAGMENTS, PROMPT_BYTES, SEED),
    }
    rows = []
    for label, prompt in prompts.items():
        matched = pack.matched_ids(prompt)
        rows.append(
            [
                label,
                f"{len(prompt.encode()):,} B",
                ", ".join(matched) or "none",
                f"{per_call_ns(lambda p=prompt: pack.analyze(p)) / 1000:,.1f}",
                f"{per_call_ns(lambda p=prompt: pack.matched_ids(p)) / 1000:,.1f}",
            ]
        )
    return rows


def main() -> int:
    machine = harness.machine()
    ours = rule_set()
    theirs = python_rules()
    assert len(ours) == len(theirs) == 50
    texts = {
        "ASCII": make_text(FRAGMENTS, TEXT_BYTES, SEED),
        "with accents and emoji": make_text(FRAGMENTS + UNICODE_FRAGMENTS, TEXT_BYTES, SEED),
    }
    assert texts["ASCII"].isascii() and not texts["with accents and emoji"].isascii()
    rows = []
    worst = float("inf")
    for label, text in texts.items():
        expected = python_scan(theirs, text)
        got = [(m.start, m.end, m.rule_id) for m in ours.scan(text)]
        if got != expected:
            missing, extra = sorted(set(expected) - set(got)), sorted(set(got) - set(expected))
            print(
                f"{label}: results differ; only re: {missing[:5]}, only tiergate: {extra[:5]}",
                file=sys.stderr,
            )
            return 1
        python_ns = per_call_ns(lambda t=text: python_scan(theirs, t))
        scan_ns = per_call_ns(lambda t=text: ours.scan(t))
        matched_ns = per_call_ns(lambda t=text: ours.matched_ids(t))
        analyze_ns = per_call_ns(lambda t=text: ours.analyze(t))
        ratio = python_ns / scan_ns
        worst = min(worst, ratio)
        rules_hit = len({rule_id for _, _, rule_id in expected})
        rows.append(
            [
                label,
                f"{len(text.encode()):,} B, {len(expected)} matches of {rules_hit} rules",
                f"{python_ns / 1000:,.0f}",
                f"{scan_ns / 1000:,.0f}",
                f"**{ratio:.1f}x**",
                f"{matched_ns / 1000:,.0f}",
                f"{analyze_ns / 1000:,.0f}",
            ]
        )
    verdict = "meets" if worst >= TARGET_RATIO else "MISSES"
    lines = [
        "# Rule matching: 50 rules over 8 KB, tiergate vs a Python `re` loop",
        "",
        f"`RuleSet.scan(text)` (every match of every rule, with character spans) against a Python `re` loop "
        f"doing the same work over the same {len(REGEX_RULES)} regex and {len(KEYWORD_RULES)} keyword rules "
        f"(results verified equal first). The slower case is **{worst:.1f}x** faster than the loop: it "
        f"{verdict} the target of >= {TARGET_RATIO:.0f}x.",
        "",
        *harness.table(
            [
                "text",
                "size and matches",
                "Python `re` loop µs",
                "`scan` µs",
                "speed-up",
                "`matched_ids` µs",
                "`analyze` µs (+ o200k count)",
            ],
            rows,
        ),
        "",
        f"Median of {REPEATS} runs of ~{RUN_NS / 1e9:.1f} s each, after a warm-up. `matched_ids` and "
        "`analyze` are the request-path calls (ids only, no spans); `analyze` also counts o200k_base tokens.",
        "",
        f"## The default rule pack on {PROMPT_BYTES // 1024} KB prompts",
        "",
        f"`RuleSet.analyze(prompt)` with the {len(default_rules())} rules of the default pack: the analysis "
        "step of every request unless the config says `default_rules: false`.",
        "",
        *harness.table(
            ["prompt", "size", "rules matched", "`analyze` µs (+ o200k count)", "`matched_ids` µs"],
            pack_rows(),
        ),
        "",
        *machine,
        f"- command: `{harness.command_line()}` (extension built with `maturin develop --release`)",
    ]
    harness.write_result("bench_rules", lines)
    return 0 if worst >= TARGET_RATIO else 1


if __name__ == "__main__":
    sys.exit(main())
