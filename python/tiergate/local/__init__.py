"""The on-device tier: each local model runs in a worker process that the sidecar supervises.

`protocol` (the frames both sides speak), `supervisor` (the sidecar's side: start, watch, restart, jobs),
`worker/` (the worker process: the only code that imports llama.cpp).
"""
