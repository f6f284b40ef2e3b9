"""Loading a GGUF model inside the worker process, and how it is prompted."""

from __future__ import annotations

from dataclasses import dataclass

import llama_cpp

from tiergate.local.worker.prompt import PromptFormat, format_for


class LoadFailed(Exception):
    """llama.cpp could not load the model, or its chat template does not parse."""


@dataclass(frozen=True, slots=True)
class LoadedModel:
    llm: llama_cpp.Llama
    format: PromptFormat


def load(path: str, *, n_ctx: int, threads: int) -> LoadedModel:
    """Loads the model (memory-mapped: a restarted worker maps the same pages from the page cache)."""
    try:
        # verbose=False keeps llama.cpp's load log off the output.
        # swa_full=False: sliding-window layers (Gemma 3 has them) keep only their window in the KV cache
        # instead of the whole context: ~100 MB less RSS for the embedded model at 8192 tokens.
        llm = llama_cpp.Llama(
            model_path=path,
            n_ctx=n_ctx,
            n_threads=threads,
            n_threads_batch=threads,
            swa_full=False,
            use_mmap=True,
            verbose=False,
        )
    except ValueError as exc:  # llama-cpp-python's report of any load failure (truncated, unsupported, ...)
        raise LoadFailed(f"llama.cpp cannot load {path}, corrupt or unsupported: {exc}") from exc
    bos, eos = llm.token_bos(), llm.token_eos()
    # One decode before the worker says ready: the first one pages the mapped weights in and sets up the
    # compute buffers, which would otherwise land on the first request's time to first token.
    llm.eval([bos if bos >= 0 else 0])
    llm.n_tokens = 0
    try:
        prompt_format = format_for(
            llm.metadata,
            bos_token=llm.detokenize([bos], special=True).decode("utf-8", errors="replace"),
            eos_token=llm.detokenize([eos], special=True).decode("utf-8", errors="replace"),
        )
    except ValueError as exc:
        llm.close()
        raise LoadFailed(f"{path}: {exc}") from exc
    return LoadedModel(llm, prompt_format)


def system_info() -> str:
    """llama.cpp's own line of the CPU features it was built for and uses (e.g. "AVX2 = 1 | ...")."""
    return bytes(llama_cpp.llama_print_system_info()).decode("utf-8", errors="replace").strip()
