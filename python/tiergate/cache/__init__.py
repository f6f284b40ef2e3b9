"""The response cache: an exact-match answer cache in front of dispatch (`cache:` in the config).

`key.py` makes the key (a canonical hash of the route and everything in the request that shapes the answer),
`store.py` keeps answers (bounded memory by default; Redis for a fleet), `response_cache.py` decides what may
be cached where: never a restricted answer outside this process, never one tenant's answer for another, never
a request that opts out (`metadata: {cache: "no"}`).
"""
