"""Embeddings: turning texts into vectors, on every door (the Embed RPC, `POST /v1/embeddings`).

`types.py` holds the domain types and the embedding-provider interface, `model_files.py` finds the embedded
on-device model, `checks.py` checks a request at the door, `dispatch.py` plans and runs it over an embedding
route (restricted text only to on-device models, breakers, retries, the Decision). `Sidecar.embed` wraps that
in the same limits, budgets and reports as a chat request.
"""
