"""Choosing the next token for the local worker: a llama.cpp sampler chain, and grammar-constrained sampling
that stays fast.

llama-cpp-python's own sampler runs a grammar over the whole vocabulary for every token. Gemma 3 has 262,144
entries, and that took the embedded model from ~70 to 2-6 tokens/s on JSON output. `TokenSampler` follows
llama.cpp's own common sampler instead: sample freely, check only the chosen token against the grammar,
and, only when it is rejected, sample again from the candidates the grammar allows. Those are first the
1024 most likely tokens (plus the end-of-generation tokens, so a finished document can end), then the whole
vocabulary if none of those fits. For greedy decoding the result is identical to filtering everything;
with sampling the allowed set is the top 1024 when it holds any allowed token.

Runs on the worker thread only: a sampler, like the model context it reads, is not thread safe.
"""

from __future__ import annotations

import ctypes
import json
from dataclasses import dataclass

import llama_cpp
import numpy as np
from llama_cpp.llama_grammar import json_schema_to_gbnf

from tiergate.providers.base import BadRequest

TOP_K = 40
TOP_P = 0.95
MIN_P = 0.05
PENALTY_LAST_N = 64  # tokens of history the repetition penalty looks at
GRAMMAR_SHORTLIST = 1024  # costs about what 64 would (0.7 ms, mostly the partition); the full pass costs 50
_GRAMMAR_ROOT = b"root"
_TOKEN_DATA = np.dtype([("id", np.int32), ("logit", np.float32), ("p", np.float32)])


@dataclass(frozen=True, slots=True)
class Sampling:
    """How one request's tokens are chosen."""

    temperature: float  # 0: greedy
    repeat_penalty: float  # 1.0: off
    seed: int
    grammar: str | None = None  # GBNF
    top_p: float = TOP_P


def json_schema_grammar(schema: str) -> str:
    """GBNF for a JSON schema. Raises BadRequest when the schema is not usable."""
    try:
        parsed = json.loads(schema)
    except ValueError as exc:
        raise BadRequest(f"json_schema is not valid JSON: {exc}") from exc
    if not isinstance(parsed, dict):
        raise BadRequest(f"json_schema must be a JSON object, got {type(parsed).__name__}")
    try:
        return str(json_schema_to_gbnf(schema))
    except (ValueError, KeyError, TypeError, AttributeError, AssertionError, NotImplementedError) as exc:
        # The converter signals an unsupported schema with assorted exception types (AssertionError for an
        # unknown "type"), all of which mean the same thing here.
        raise BadRequest(f"json_schema is not supported for local generation: {exc}") from exc


class TokenSampler:
    """One request's sampler over a llama.cpp context. Call `close()` when done to free the C objects."""

    def __init__(
        self, model: llama_cpp.llama_model_p, ctx: llama_cpp.llama_context_p, sampling: Sampling
    ) -> None:
        self._ctx = ctx
        self._closed = False
        vocab = llama_cpp.llama_model_get_vocab(model)
        self._n_vocab = int(llama_cpp.llama_vocab_n_tokens(vocab))
        eog = {int(llama_cpp.llama_vocab_eos(vocab)), int(llama_cpp.llama_vocab_eot(vocab))} - {-1}
        self._eog = np.array(sorted(eog), dtype=np.int32)
        self._chain = llama_cpp.llama_sampler_chain_init(llama_cpp.llama_sampler_chain_default_params())
        self._grammar: llama_cpp.llama_sampler_p | None = None
        if sampling.grammar is not None:
            grammar = llama_cpp.llama_sampler_init_grammar(
                vocab, sampling.grammar.encode("utf-8"), _GRAMMAR_ROOT
            )
            if not grammar:  # NULL: llama.cpp could not parse the GBNF
                self.close()
                raise BadRequest("json_schema produced a grammar llama.cpp cannot parse")
            self._grammar = grammar
        # top-k first, greedy too: every later step then sees 40 candidates instead of the whole vocabulary
        # (0.23 rather than 0.66 ms a token for penalty + greedy on Gemma 3). Greedy picks the same token;
        # with the penalty it could differ only if all 40 were penalised below the 41st.
        self._add(llama_cpp.llama_sampler_init_top_k(TOP_K))
        # No penalty with a grammar: JSON repeats quotes and braces by nature, and without it the chain is
        # stateless, so a token the grammar rejected leaves no trace in it.
        if sampling.repeat_penalty != 1.0 and self._grammar is None:
            self._add(
                llama_cpp.llama_sampler_init_penalties(
                    self._n_vocab, PENALTY_LAST_N, sampling.repeat_penalty, 0.0, 0.0
                )
            )
        if sampling.temperature <= 0.0:
            self._add(llama_cpp.llama_sampler_init_greedy())
        else:
            self._add(llama_cpp.llama_sampler_init_top_p(sampling.top_p, 1))
            self._add(llama_cpp.llama_sampler_init_min_p(MIN_P, 1))
            self._add(llama_cpp.llama_sampler_init_temp(sampling.temperature))
            self._add(llama_cpp.llama_sampler_init_dist(sampling.seed & 0xFFFFFFFF))

    def sample(self) -> int:
        """The next token, from the logits of the last evaluated position."""
        token = int(llama_cpp.llama_sampler_sample(self._chain, self._ctx, -1))
        if self._grammar is None:
            return token
        if _apply(self._grammar, np.array([token], dtype=np.int32), None) is None:
            logits = np.ctypeslib.as_array(
                llama_cpp.llama_get_logits_ith(self._ctx, -1), shape=(self._n_vocab,)
            )
            top = np.argpartition(logits, -GRAMMAR_SHORTLIST)[-GRAMMAR_SHORTLIST:].astype(np.int32)
            chosen = self._constrained(np.union1d(top, self._eog), logits)
            if chosen is None:
                chosen = self._constrained(np.arange(self._n_vocab, dtype=np.int32), logits)
            if chosen is None:
                raise RuntimeError("the grammar allows no token at this point")
            token = chosen
        # Only a token the grammar allowed is ever accepted: llama.cpp aborts the process on any other.
        llama_cpp.llama_sampler_accept(self._grammar, token)
        return token

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._grammar is not None:
            llama_cpp.llama_sampler_free(self._grammar)
        llama_cpp.llama_sampler_free(self._chain)  # frees the samplers added to it too

    def _add(self, sampler: llama_cpp.llama_sampler_p) -> None:
        llama_cpp.llama_sampler_chain_add(self._chain, sampler)  # the chain owns it from here

    def _constrained(self, ids: np.ndarray, logits: np.ndarray) -> int | None:
        """The chain's choice among the `ids` the grammar allows, or None if it allows none of them."""
        assert self._grammar is not None
        candidates = _apply(self._grammar, ids, logits[ids])
        if candidates is None:
            return None
        _data, array = candidates  # `array` points into `_data`, which this frame keeps alive
        llama_cpp.llama_sampler_apply(self._chain, ctypes.byref(array))
        token = int(array.data[array.selected].id)
        llama_cpp.llama_sampler_accept(self._chain, token)
        return token


def _apply(
    sampler: llama_cpp.llama_sampler_p, ids: np.ndarray, logits: np.ndarray | None
) -> tuple[np.ndarray, llama_cpp.llama_token_data_array] | None:
    """Runs `sampler` (the grammar) over candidates `ids`; None if it rejects them all."""
    data = np.zeros(len(ids), dtype=_TOKEN_DATA)
    data["id"] = ids
    if logits is not None:
        data["logit"] = logits
    array = llama_cpp.llama_token_data_array(
        data=data.ctypes.data_as(llama_cpp.llama_token_data_p), size=len(data), selected=-1, sorted=False
    )
    llama_cpp.llama_sampler_apply(sampler, ctypes.byref(array))
    if not np.isfinite(data["logit"]).any():
        return None
    return data, array
