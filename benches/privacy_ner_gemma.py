"""The embedded Gemma 3 270M as a name and address detector, for bench_ner.py (its own process: llama.cpp).

    .venv/bin/python benches/privacy_ner_gemma.py CORPUS.json PROMPTS.json OUT.json SAMPLE

The cheapest question the model can answer: does the text contain a person's name or a street address, with
a grammar that allows only `yes` or `no` (one prompt evaluation, one token). SAMPLE sentences of each of
person_name, street_address and clean (spread over the locales), then the time per 1 KB prompt on the first
20 prompts. Writes `{"found": {index: bool}, "ns": [...]}`.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from llama_cpp import Llama, LlamaGrammar

from tiergate import embedded_model

QUESTION = (
    "Does the following text contain a person's name or a street address? Answer yes or no.\n\nText: {}\n\n"
    "Answer:"
)


def main() -> None:
    corpus = json.loads(Path(sys.argv[1]).read_text(encoding="utf-8"))
    prompts = json.loads(Path(sys.argv[2]).read_text(encoding="utf-8"))
    sample = int(sys.argv[4])
    llm = Llama(model_path=str(embedded_model.ensure()), n_ctx=1024, n_threads=2, verbose=False)
    grammar = LlamaGrammar.from_string('root ::= "yes" | "no"', verbose=False)

    def ask(text: str) -> bool:
        out = llm.create_completion(QUESTION.format(text), max_tokens=2, temperature=0.0, grammar=grammar)
        return str(out["choices"][0]["text"]).strip().startswith("yes")  # type: ignore[index]

    found = {}
    for kind in ("person_name", "street_address", "clean"):
        indices = [i for i, item in enumerate(corpus) if item["type"] == kind]
        step = max(1, len(indices) // sample)
        for i in indices[::step][:sample]:
            found[str(i)] = ask(corpus[i]["text"])
    ns = []
    for prompt in prompts[:20]:
        started = time.perf_counter_ns()
        ask(prompt[:900])  # the question's own tokens must fit in the context too
        ns.append(time.perf_counter_ns() - started)
    Path(sys.argv[3]).write_text(json.dumps({"found": found, "ns": ns}), encoding="utf-8")


if __name__ == "__main__":
    main()
