"""Who is asking, on every web route: the session from the cookie, the CSRF check of every
request that changes something, and the security headers of every answer.

CSRF: each session has a random token; a POST must carry it (form field ``csrf`` or header
``X-CSRF-Token``), compared in constant time. The cookie is also SameSite=Lax and HttpOnly.
"""

from __future__ import annotations

import hmac
import uuid
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from litestar import Request, Response

from appliance.api.deps import services
from appliance.db.queries import web as web_rows
from appliance.settings import Settings
from appliance.web.sessions import COOKIE, Session, SessionStore

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
CSRF_HEADER = "x-csrf-token"
CSRF_FIELD = "csrf"


class SignInNeeded(Exception):
    """The route needs a signed-in user (pages answer with the sign-in page)."""


class NotAllowed(Exception):
    """A bad CSRF token, or a page for operators only (403)."""


@dataclass
class WebUser:
    id: uuid.UUID
    email: str
    operator: bool
    session: Session


def store(request: Request[Any, Any, Any]) -> SessionStore:
    svc = services(request)
    return SessionStore(svc.notifier.client, svc.jobs.settings.web_session_hours * 3600)


async def session_of(request: Request[Any, Any, Any]) -> Session | None:
    """The request's session (loaded once per request)."""
    if not hasattr(request.state, "web_session"):
        request.state.web_session = await store(request).load(request.cookies.get(COOKIE))
    return request.state.web_session  # type: ignore[no-any-return]


async def ensure_session(request: Request[Any, Any, Any]) -> Session:
    """The request's session, or a new anonymous one (its cookie set by ``render``)."""
    session = await session_of(request)
    if session is None:
        token, session = await store(request).create()
        request.state.web_session, request.state.new_session_token = session, token
    return session


async def signed_in(request: Request[Any, Any, Any]) -> WebUser:
    """The signed-in user, checked against the database on every request: a disabled or
    deleted user's sessions stop at once."""
    session = await session_of(request)
    if session is None or session.user_id is None:
        raise SignInNeeded
    row = await web_rows.session_user(services(request).jobs.pool, session.user_id)
    if row is None:
        await store(request).drop(request.cookies.get(COOKIE))
        raise SignInNeeded
    return WebUser(row["id"], row["email"], row["operator"], session)


async def operator(request: Request[Any, Any, Any]) -> WebUser:
    user = await signed_in(request)
    if not user.operator:
        raise NotAllowed("This page is for the appliance's operators.")
    return user


async def check_csrf(request: Request[Any, Any, Any]) -> None:
    """Router hook: every request that may change something carries its session's token."""
    if request.method in SAFE_METHODS:
        return
    session = await session_of(request)
    sent = request.headers.get(CSRF_HEADER)
    if sent is None and request.headers.get("content-type", "").startswith(
        ("application/x-www-form-urlencoded", "multipart/form-data")
    ):
        sent = (await request.form()).get(CSRF_FIELD)
    if (
        session is None
        or not isinstance(sent, str)
        or not hmac.compare_digest(sent.encode(), session.csrf.encode())
    ):
        raise NotAllowed("The form was out of date or not sent from this site; try again.")


def content_security_policy(settings: Settings) -> str:
    """Only this site's own scripts and styles; requests to this site only (uploads go to
    the API's own upload route at PUBLIC_URL, which may be another name for it)."""
    connect = " ".join(dict.fromkeys(("'self'", origin(settings.effective_public_url))))
    return "; ".join(
        (
            "default-src 'none'",
            "script-src 'self'",
            "style-src 'self'",
            "img-src 'self' data:",
            f"connect-src {connect}",
            "form-action 'self'",
            "frame-ancestors 'none'",
            "base-uri 'none'",
        )
    )


def origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def secure_headers(settings: Settings) -> dict[str, str]:
    return {
        "Content-Security-Policy": content_security_policy(settings),
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "same-origin",
        "X-Frame-Options": "DENY",
        "Cache-Control": "no-store",
    }


def add_headers(response: Response[Any], settings: Settings) -> Response[Any]:
    for name, value in secure_headers(settings).items():
        response.headers.setdefault(name, value)
    return response


def cookie_secure(settings: Settings) -> bool:
    return settings.effective_public_url.startswith("https://")
