"""The Python SDK: `tiergate.Client` (a sidecar over gRPC) and `tiergate.Router` (the same routing inside this
process), with their `async` forms. Import them from `tiergate`; the modules here are:

    api.py               the methods both share (`AsyncAPI`), and how their arguments become a Request
    client.py            AsyncClient and Client: the gRPC backend
    inprocess.py         AsyncRouter and Router: the in-process backend (runs a Sidecar in this process)
    sync.py              the blocking forms: the async methods run on an event loop of their own
    transport_errors.py  the Client's own errors (cannot connect, bad token) and gRPC status -> error type
"""
