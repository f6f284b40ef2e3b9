"""server/auth.py: the bearer token, and the control panel's session cookie signed with it."""

from __future__ import annotations

import pytest

from tiergate.server.auth import SESSION_COOKIE, SESSION_S, BearerToken

TOKEN = "s3cret-token-value"
NOW = 1_800_000_000.0


def cookie(value: str) -> str:
    return f"theme=dark; {SESSION_COOKIE}={value}; other=1"


def test_a_session_is_accepted_until_it_expires_and_only_by_the_same_token() -> None:
    token = BearerToken(TOKEN)
    session = token.session(NOW)
    assert TOKEN not in session
    assert token.accepts_session(cookie(session), NOW)
    assert token.accepts_session(cookie(session), NOW + SESSION_S - 1)
    assert not token.accepts_session(cookie(session), NOW + SESSION_S + 1)
    assert not BearerToken("another-token").accepts_session(cookie(session), NOW)


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        "theme=dark",
        f"{SESSION_COOKIE}=",
        f"{SESSION_COOKIE}=abc",
        f"{SESSION_COOKIE}=9999999999.00",
    ],
)
def test_malformed_or_forged_sessions_are_refused(header: str | None) -> None:
    assert not BearerToken(TOKEN).accepts_session(header, NOW)


def test_a_longer_expiry_cannot_reuse_a_signature() -> None:
    token = BearerToken(TOKEN)
    expires, _, signature = token.session(NOW).partition(".")
    assert not token.accepts_session(cookie(f"{int(expires) + 3600}.{signature}"), NOW)


@pytest.mark.parametrize(
    ("path", "headers", "allowed"),
    [
        ("/healthz", {}, True),
        ("/ui/login", {}, True),
        ("/ui", {}, False),
        ("/ui/api/state", {"authorization": f"Bearer {TOKEN}"}, True),
        ("/metrics", {"authorization": f"Bearer {TOKEN}"}, True),
        ("/metrics", {"cookie": "SESSION"}, False),  # the panel's cookie opens /ui only
        ("/v1/chat/completions", {"cookie": "SESSION"}, False),
        ("/ui/api/state", {"cookie": "SESSION"}, True),
        ("/uix", {"cookie": "SESSION"}, False),
    ],
)
def test_which_paths_a_session_opens(path: str, headers: dict[str, str], allowed: bool) -> None:
    token = BearerToken(TOKEN)
    if "cookie" in headers:
        headers = {"cookie": f"{SESSION_COOKIE}={token.session()}"}
    assert token.http_allows(path, headers) is allowed


def test_a_typed_token_is_checked_exactly() -> None:
    token = BearerToken(TOKEN)
    assert token.accepts_token(TOKEN) and token.accepts_token(f" {TOKEN}\n")
    assert not token.accepts_token(TOKEN[:-1]) and not token.accepts_token("")
