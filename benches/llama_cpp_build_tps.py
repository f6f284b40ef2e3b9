"""Decode speed of a llama-cpp-python build, in the process that loads it: for comparing builds side by side.

    PYTHON benches/llama_cpp_build_tps.py default|no-extra-bufts MODEL.gguf

Loads the model (n_ctx 512, 2 threads) and generates 128 tokens greedily three times; prints the best rate.
`no-extra-bufts` loads with `llama_model_params.use_extra_bufts = False` (no weight repacking, so no AMX
buffer either): the only way a native build ran on an Intel AMX machine. Needs only llama-cpp-python, so it
runs in any build's environment: run it with each one's interpreter, alternating (results:
`benches/results/llama_cpp_build.md`).
"""

import sys
import time

import llama_cpp
import llama_cpp.llama


def main(mode: str, model: str) -> None:
    if mode == "no-extra-bufts":
        defaults = llama_cpp.llama_model_default_params

        def without_extra_bufts() -> llama_cpp.llama_model_params:
            params = defaults()
            params.use_extra_bufts = False
            return params

        llama_cpp.llama.llama_cpp.llama_model_default_params = without_extra_bufts
    print("system:", llama_cpp.llama_print_system_info().decode().strip(), flush=True)
    llm = llama_cpp.Llama(model_path=model, n_ctx=512, n_threads=2, verbose=False)
    best = 0.0
    for _ in range(3):
        started = time.perf_counter()
        out = llm(
            "Write a long essay about the history of Rome.",
            max_tokens=128,
            temperature=0,
            repeat_penalty=1.15,
        )
        tokens = out["usage"]["completion_tokens"]
        best = max(best, tokens / (time.perf_counter() - started))
    print(f"{mode}: {tokens} tokens, best of 3: {best:.1f} tokens/s", flush=True)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
