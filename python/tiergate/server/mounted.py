"""Several `App`s mounted on one HTTP listener: each request goes to the app that serves its path."""

from __future__ import annotations

from collections.abc import Collection

from tiergate.server.http import App, HttpRequest, Response, StreamResponse


class Mounted:
    """The union of `apps`, whose paths must not overlap."""

    def __init__(self, *apps: App) -> None:
        self._by_path: dict[str, App] = {}
        for app in apps:
            for path in app.paths:
                if path in self._by_path:
                    raise ValueError(f"two apps serve {path}")
                self._by_path[path] = app
        self.paths: Collection[str] = frozenset(self._by_path)

    async def __call__(self, request: HttpRequest) -> Response | StreamResponse:
        return await self._by_path[request.path](request)
