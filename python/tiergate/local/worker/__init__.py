"""The child side of the on-device tier: runs in the worker process, and only there, imports llama.cpp.

`__main__` (the process and its socket), `engine` (the thread that owns the model), `model` (loading),
`prompt` (prompt formats and answer text), `sampling` (the token sampler and JSON-schema grammars).
"""
