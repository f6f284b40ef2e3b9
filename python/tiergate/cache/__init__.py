"""The response cache: an answer cache in front of dispatch (`cache:` in the config), exact-match and, with
`cache.semantic`, matching paraphrases of the last user message.

`key.py` makes the key (a canonical hash of the route and everything in the request that shapes the answer)
and the semantic scope, `store.py` keeps answers (bounded memory by default; Redis for a fleet), `semantic.py`
the vectors of the kept answers per scope, `response_cache.py` decides what may be cached where: never a
restricted answer outside this process, never one tenant's answer for another, never a request that opts out
(`metadata: {cache: "no"}`).
"""
