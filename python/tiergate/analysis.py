"""One call into Rust per request: token count and rule matches, turned into sensitivity and complexity.

The rules scan every text the request sends (`Request.prompt_text`: message texts, tool calls' arguments,
tool results, tool definitions). Images cannot be scanned: a request with images is at least as sensitive as
its route's `image_sensitivity` (default internal), and the request's own `sensitivity` can raise that.
"""

from __future__ import annotations

from dataclasses import dataclass

from tiergate._native import RuleSet
from tiergate.config import RuleConfig
from tiergate.request import Request, Sensitivity

_SENSITIVITY = {
    "public": Sensitivity.PUBLIC,
    "internal": Sensitivity.INTERNAL,
    "restricted": Sensitivity.RESTRICTED,
}
_COMPLEXITY_RANK = {"trivial": 0, "moderate": 1, "complex": 2}


@dataclass(slots=True, frozen=True)
class Analysis:
    input_tokens: int
    matched_rules: list[str]  # rule ids only; the matched text is never kept
    sensitivity: Sensitivity
    complexity: str  # "" when no rule decided
    decided_by: str  # who set the sensitivity: "client", "rules", or "" (nothing matched)
    complexity_by: str = ""  # who set the complexity: "rules", "model:NAME", or ""


class Analyzer:
    """Holds the compiled rule set; built once per config (load or reload)."""

    def __init__(self, rules: list[RuleConfig], encoding: str = "o200k_base") -> None:
        self._encoding = encoding
        self._ruleset = RuleSet([r.native() for r in rules])
        self._sensitivity = {r.id: _SENSITIVITY[r.sensitivity] for r in rules if r.sensitivity}
        self._complexity = {r.id: r.complexity for r in rules if r.complexity}

    def analyze(self, request: Request, image_sensitivity: str = "internal") -> Analysis:
        tokens, matched = self._ruleset.analyze(request.prompt_text(), self._encoding)
        # The client may raise sensitivity but never lower what the rules found: fail closed.
        sensitivity = request.sensitivity
        decided_by = "client" if sensitivity != Sensitivity.UNSPECIFIED else ""
        if request.image_count and _SENSITIVITY[image_sensitivity] > sensitivity:
            sensitivity, decided_by = _SENSITIVITY[image_sensitivity], "images"
        complexity = ""
        for rule_id in matched:
            level = self._sensitivity.get(rule_id)
            if level is not None and level > sensitivity:
                sensitivity = level
                decided_by = "rules"
            rule_complexity = self._complexity.get(rule_id)
            # The most demanding complexity a rule names wins: one "complex" hit outweighs a greeting.
            if rule_complexity and (
                not complexity or _COMPLEXITY_RANK[rule_complexity] > _COMPLEXITY_RANK[complexity]
            ):
                complexity = rule_complexity
        if sensitivity == Sensitivity.UNSPECIFIED:
            sensitivity = Sensitivity.PUBLIC
        return Analysis(tokens, matched, sensitivity, complexity, decided_by, "rules" if complexity else "")
