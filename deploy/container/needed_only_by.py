"""Prints the installed distributions that are there only because NAME requires them, NAME included.

The image's install stage runs it to leave out huggingface-hub, which tokenizers requires for
`Tokenizer.from_pretrained` (a download from the Hugging Face Hub) and tiergate never calls: the image loads
its tokenizer from a file and downloads nothing at run time. What stays is everything the distributions
nobody requires (tiergate, llama-cpp-python, onnxruntime, ... : what was installed on purpose) need without
going through NAME. The image's import check and `make image-test` then run the embedding model without it.

Usage (the environment's own Python): python needed_only_by.py NAME
"""

from __future__ import annotations

import importlib.metadata as metadata
import re
import sys

from packaging.requirements import Requirement


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def main(name: str) -> int:
    installed = {_canonical(d.metadata["Name"]): d for d in metadata.distributions()}
    skipped = _canonical(name)
    if skipped not in installed:
        print(f"needed_only_by.py: {name} is not installed", file=sys.stderr)
        return 1
    requires: dict[str, set[str]] = {}
    for dist_name, dist in installed.items():
        needed = set()
        for line in dist.requires or []:
            requirement = Requirement(line)
            if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
                needed.add(_canonical(requirement.name))
        requires[dist_name] = needed & installed.keys()
    required_by_some = set().union(*requires.values())
    kept: set[str] = set()
    todo = [d for d in installed if d not in required_by_some and d != skipped]
    while todo:
        dist_name = todo.pop()
        if dist_name in kept or dist_name == skipped:
            continue
        kept.add(dist_name)
        todo.extend(requires[dist_name])
    print("\n".join(sorted(installed.keys() - kept)))
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    sys.exit(main(sys.argv[1]))
