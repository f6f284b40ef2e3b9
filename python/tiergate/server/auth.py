"""Bearer-token auth (`listen.auth_token`) for both listeners, and the loopback warning.

gRPC: every call but the health service's must carry metadata `authorization: Bearer <token>`, else
UNAUTHENTICATED (probes, such as Kubernetes' gRPC probe, cannot send metadata). HTTP: `/v1/*` and `/metrics`
need the `Authorization: Bearer <token>` header, else 401; `/healthz` and `/readyz` stay open. Tokens are
compared in constant time and never appear in a log line or an error.

The control panel (`/ui`, `server/ui.py`) is opened in a browser, which cannot send a header: its login form
(`/ui/login`, open) takes the token once and sets an HttpOnly, SameSite=Strict session cookie for the `/ui`
paths only. The cookie is not the token but an expiry time signed with it (HMAC-SHA256), so it keeps nothing
per session on the server, expires after `SESSION_S`, and stops working when the token changes.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import time
from collections.abc import Mapping

OPEN_HTTP_PATHS = frozenset({"/healthz", "/readyz"})
UI_PREFIX = "/ui"
UI_LOGIN_PATH = "/ui/login"
SESSION_COOKIE = "tiergate_ui"
SESSION_S = 12 * 3600


class BearerToken:
    def __init__(self, token: str) -> None:
        self._expected = f"Bearer {token}".encode()
        self._key = hashlib.sha256(b"tiergate-ui-session\0" + token.encode()).digest()

    def __repr__(self) -> str:
        return "BearerToken(***)"

    def accepts(self, authorization: str | None) -> bool:
        """Whether an `authorization` value carries the token (the scheme's case does not matter)."""
        if authorization is None:
            return False
        scheme, _, credentials = authorization.strip().partition(" ")
        offered = f"{'Bearer' if scheme.lower() == 'bearer' else scheme} {credentials.strip()}"
        return hmac.compare_digest(offered.encode(), self._expected)

    def accepts_token(self, token: str) -> bool:
        """Whether a token typed into the control panel's login form is the one."""
        return hmac.compare_digest(f"Bearer {token.strip()}".encode(), self._expected)

    def http_allows(self, path: str, headers: Mapping[str, str]) -> bool:
        if path in OPEN_HTTP_PATHS or path == UI_LOGIN_PATH or self.accepts(headers.get("authorization")):
            return True
        return is_ui_path(path) and self.accepts_session(headers.get("cookie"))

    def session(self, now: float | None = None) -> str:
        """A session cookie's value: its expiry (Unix seconds) and the expiry's signature."""
        expires = str(int((time.time() if now is None else now) + SESSION_S))
        return f"{expires}.{self._sign(expires)}"

    def accepts_session(self, cookie_header: str | None, now: float | None = None) -> bool:
        """Whether a `Cookie` header carries an unexpired session cookie signed with this token."""
        if not cookie_header:
            return False
        for pair in cookie_header.split(";"):
            name, _, value = pair.strip().partition("=")
            if name != SESSION_COOKIE:
                continue
            expires, _, signature = value.partition(".")
            if not expires.isdigit() or int(expires) < (time.time() if now is None else now):
                continue
            if hmac.compare_digest(signature.encode(), self._sign(expires).encode()):
                return True
        return False

    def _sign(self, expires: str) -> str:
        return hmac.new(self._key, expires.encode(), hashlib.sha256).hexdigest()


def is_ui_path(path: str) -> bool:
    return path == UI_PREFIX or path.startswith(UI_PREFIX + "/")


def is_loopback(address: str) -> bool:
    """Whether a listen address ("host:port" or "unix:PATH") is reachable from this machine only."""
    if address.startswith("unix:"):
        return True
    host = address.rpartition(":")[0].strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name: whatever it resolves to, assume it is reachable
