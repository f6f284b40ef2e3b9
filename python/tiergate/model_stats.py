"""Live per-model latency figures (moving averages) that the latency objective predicts from."""

from __future__ import annotations

from dataclasses import dataclass

# Priors for a model nothing is known about yet: optimistic enough that it gets tried and measured.
PRIOR_TTFT_MS = 500.0
PRIOR_TOKENS_PER_S = 50.0
_ALPHA = 0.2  # weight of the newest sample in the moving averages


@dataclass(slots=True)
class ModelStats:
    ttft_ms: float = PRIOR_TTFT_MS
    tokens_per_s: float = PRIOR_TOKENS_PER_S
    samples: int = 0

    def observe(self, ttft_ms: float, output_tokens: int, generation_ms: float) -> None:
        """Folds one successful streamed attempt into the averages."""
        self._fold_ttft(ttft_ms)
        if output_tokens > 1 and generation_ms > 0:
            rate = (output_tokens - 1) * 1000.0 / generation_ms
            self.tokens_per_s = (
                rate if self.samples == 0 else self.tokens_per_s + _ALPHA * (rate - self.tokens_per_s)
            )
        self.samples += 1

    def observe_whole(self, total_ms: float, output_tokens: int) -> None:
        """Folds one successful non-streamed answer, of which only the whole time is known.

        The answer arrived at once, so the time since it arrived says nothing (dividing its tokens by it gave
        millions of tokens per second). What it does say: the model generated `output_tokens` within
        `total_ms`, so its speed is at least that; a speed below it moves up toward it. The time those tokens
        take at the speed then comes off the total, and the rest counts as time to the first token, so that
        `predict_ms` would have predicted this answer.
        """
        if output_tokens > 1 and total_ms > 0:
            at_least = (output_tokens - 1) * 1000.0 / total_ms
            if self.tokens_per_s < at_least:
                self.tokens_per_s = (
                    at_least
                    if self.samples == 0
                    else self.tokens_per_s + _ALPHA * (at_least - self.tokens_per_s)
                )
        generation_ms = max(output_tokens - 1, 0) * 1000.0 / max(self.tokens_per_s, 1e-3)
        self._fold_ttft(max(total_ms - generation_ms, 0.0))
        self.samples += 1

    def _fold_ttft(self, ttft_ms: float) -> None:
        if self.samples == 0:
            self.ttft_ms = ttft_ms
        else:
            self.ttft_ms += _ALPHA * (ttft_ms - self.ttft_ms)

    def predict_ms(self, output_tokens: int, queued_ahead: int = 0) -> float:
        """Expected end-to-end time for an answer of `output_tokens`, waiting behind `queued_ahead` jobs."""
        one = self.ttft_ms + output_tokens * 1000.0 / max(self.tokens_per_s, 1e-3)
        return one * (1 + queued_ahead)
