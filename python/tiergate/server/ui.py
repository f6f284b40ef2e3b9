"""The control panel: one page on the HTTP listener that shows the sidecar's state at a glance.

    GET  /ui               the page (HTML; its script and style sheet below; no CDN, works offline)
    GET  /ui/panel.js      renders `/ui/api/state`, polled every 2 s, with small SVG trend charts
    GET  /ui/panel.css
    GET  /ui/api/state     the JSON the page renders (`server/ui_state.py`)
    GET  /ui/login         with `listen.auth_token`: a form that takes the token once (open)
    POST /ui/login         checks it and sets the session cookie (`server/auth.py`), then back to /ui
    POST /ui/logout        clears the cookie

With a token, the page and its data need the session cookie or an `Authorization: Bearer` header (the HTTP
listener checks before this app is called): a browser without either is sent to the login form, a script
gets a 401. The assets ship in the package (`ui_assets/`). Responses forbid framing and inline scripts
(Content-Security-Policy), and the page writes data into the DOM as text only, since tenant and task names
are client input.
"""

from __future__ import annotations

from collections.abc import Collection
from importlib import resources
from urllib.parse import parse_qs

import orjson

from tiergate.reload import LiveSidecar
from tiergate.server.auth import SESSION_COOKIE, SESSION_S, UI_LOGIN_PATH, UI_PREFIX, BearerToken
from tiergate.server.http import HttpRequest, Response
from tiergate.server.ui_state import panel_state
from tiergate.telemetry import Telemetry

STATE_PATH = "/ui/api/state"
LOGOUT_PATH = "/ui/logout"
HTML = "text/html; charset=utf-8"
_SECURITY_HEADERS = (
    (
        "Content-Security-Policy",
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'",
    ),
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "no-referrer"),
    ("Cache-Control", "no-store"),
)
_ASSETS = {
    "/ui/panel.js": ("panel.js", "text/javascript; charset=utf-8"),
    "/ui/panel.css": ("panel.css", "text/css; charset=utf-8"),
}
_LOGIN_MESSAGE = "<!--message-->"


def _asset(name: str) -> bytes:
    return (resources.files("tiergate.server") / "ui_assets" / name).read_bytes()


class ControlPanel:
    """The `/ui` paths, mounted on the HTTP listener next to the OpenAI facade."""

    def __init__(
        self,
        live: LiveSidecar,
        telemetry: Telemetry,
        *,
        token: BearerToken | None,
        config_path: str | None,
        tls: bool,
    ) -> None:
        self._live = live
        self._telemetry = telemetry
        self._token = token
        self._config_path = config_path
        self._tls = tls
        self._page = _asset("panel.html")
        self._login = _asset("login.html").decode()
        self._assets = {path: (_asset(name), kind) for path, (name, kind) in _ASSETS.items()}
        self._paths = frozenset({UI_PREFIX, STATE_PATH, UI_LOGIN_PATH, LOGOUT_PATH, *self._assets})

    @property
    def paths(self) -> Collection[str]:
        return self._paths

    async def __call__(self, request: HttpRequest) -> Response:
        path, method = request.path, request.method
        if path == UI_LOGIN_PATH:
            return self._login_post(request) if method == "POST" else self._login_form()
        if path == LOGOUT_PATH:
            return self._logout() if method == "POST" else _only("POST")
        if method not in ("GET", "HEAD"):
            return _only("GET, HEAD")
        if path == STATE_PATH:
            state = panel_state(
                self._live.current,
                self._telemetry,
                config_path=self._config_path,
                auth=self._token is not None,
            )
            return Response(200, orjson.dumps(state), "application/json", _SECURITY_HEADERS)
        if path == UI_PREFIX:
            return Response(200, self._page, HTML, _SECURITY_HEADERS)
        body, kind = self._assets[path]
        return Response(200, body, kind, _SECURITY_HEADERS)

    def _login_form(self, message: str = "", status: int = 200) -> Response:
        if self._token is None:
            return _redirect(UI_PREFIX)
        page = self._login.replace(_LOGIN_MESSAGE, message)
        return Response(status, page.encode(), HTML, _SECURITY_HEADERS)

    def _login_post(self, request: HttpRequest) -> Response:
        if self._token is None:
            return _redirect(UI_PREFIX)
        form = parse_qs(request.body.decode("utf-8", "replace"), max_num_fields=4)
        offered = form.get("token", [""])[0]
        if not offered or not self._token.accepts_token(offered):
            # A fixed message: nothing the client sent is echoed.
            return self._login_form('<p class="error" role="alert">That is not the token.</p>', 401)
        cookie = f"{SESSION_COOKIE}={self._token.session()}; Max-Age={SESSION_S}; {self._cookie_attributes()}"
        return _redirect(UI_PREFIX, ("Set-Cookie", cookie))

    def _logout(self) -> Response:
        return _redirect(
            UI_LOGIN_PATH, ("Set-Cookie", f"{SESSION_COOKIE}=; Max-Age=0; {self._cookie_attributes()}")
        )

    def _cookie_attributes(self) -> str:
        return f"Path={UI_PREFIX}; HttpOnly; SameSite=Strict" + ("; Secure" if self._tls else "")


def _redirect(location: str, *headers: tuple[str, str]) -> Response:
    return Response(303, b"", HTML, (("Location", location), *headers, *_SECURITY_HEADERS))


def _only(methods: str) -> Response:
    return Response(405, f"only {methods}\n".encode(), "text/plain; charset=utf-8", (("Allow", methods),))
