"""Pages from the Jinja templates beside this module (autoescaped), with the session's cookie
when the request made a new session."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, select_autoescape
from litestar import Request, Response
from litestar.datastructures import Cookie
from litestar.response import Redirect

from appliance.api.deps import services
from appliance.web.guard import cookie_secure, ensure_session
from appliance.web.sessions import COOKIE

TEMPLATES = Environment(
    loader=FileSystemLoader(Path(__file__).parent / "templates"),
    autoescape=select_autoescape(default=True),
    trim_blocks=True,
    lstrip_blocks=True,
)


async def page(
    request: Request[Any, Any, Any], name: str, status: int = 200, **context: Any
) -> Response[str]:
    session = await ensure_session(request)
    settings = services(request).jobs.settings
    html = TEMPLATES.get_template(name).render(
        csrf=session.csrf,
        path=request.url.path,
        registration_open=settings.web_registration == "open",
        **context,
    )
    return with_cookie(request, Response(html, status_code=status, media_type="text/html"))


def redirect(request: Request[Any, Any, Any], to: str) -> Response[Any]:
    return with_cookie(request, Redirect(to, status_code=303))


def with_cookie(request: Request[Any, Any, Any], response: Response[Any]) -> Response[Any]:
    """Set the cookie of a session made by this request (or clear it: ``""``)."""
    token = getattr(request.state, "new_session_token", None)
    if token is None:
        return response
    settings = services(request).jobs.settings
    response.cookies.append(
        Cookie(
            key=COOKIE,
            value=token,
            path="/",
            httponly=True,
            samesite="lax",
            secure=cookie_secure(settings),
            max_age=None if token else 0,
        )
    )
    return response
