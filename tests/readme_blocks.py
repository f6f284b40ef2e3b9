"""README examples that tests run: a fenced block right after a `<!-- readme-test: NAME -->` line.

`block("name")` returns that block's text, so the README's copy-paste examples are the ones exercised.
"""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path

README = Path(__file__).resolve().parent.parent / "README.md"
_BLOCK = re.compile(r"^<!-- readme-test: (\S+) -->\n```[^\n]*\n(.*?)^```", re.MULTILINE | re.DOTALL)


@cache
def blocks() -> dict[str, str]:
    found: dict[str, str] = {}
    for match in _BLOCK.finditer(README.read_text(encoding="utf-8")):
        name, text = match.group(1), match.group(2)
        if name in found:
            raise ValueError(f"README.md: readme-test block {name!r} appears twice")
        found[name] = text
    return found


def block(name: str) -> str:
    """The text of the README block marked `<!-- readme-test: name -->` (KeyError if there is none)."""
    try:
        return blocks()[name]
    except KeyError:
        raise KeyError(f"README.md has no block marked <!-- readme-test: {name} -->") from None
