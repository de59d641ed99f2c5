"""The web UI's routes as one router (CSRF check before, security headers after every
answer) and its static files; ``api.app`` mounts both."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from litestar import Request, Response, Router
from litestar.exceptions import HTTPException
from litestar.response import Redirect
from litestar.static_files import create_static_files_router

from appliance.api import responses
from appliance.errors import ClientError
from appliance.settings import Settings
from appliance.web import account, convert, pages
from appliance.web.guard import NotAllowed, SignInNeeded, add_headers, check_csrf
from appliance.web.render import TEMPLATES

STATIC = Path(__file__).parent / "static"
SCRIPT_PREFIX = "/ui/"  # routes the page's script calls: errors answer in JSON


def web_routers(settings: Settings) -> list[Router]:
    async def headers(response: Response[Any]) -> Response[Any]:
        return add_headers(response, settings)

    def failed(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
        return add_headers(error_response(request, exc), settings)

    web = Router(
        path="/",
        route_handlers=[*account.ROUTES, *convert.ROUTES, *pages.ROUTES],
        before_request=check_csrf,
        after_request=headers,
        exception_handlers={
            SignInNeeded: failed,
            NotAllowed: failed,
            ClientError: failed,
            HTTPException: failed,
        },
        include_in_schema=False,
    )
    static = create_static_files_router(
        path="/static", directories=[STATIC], include_in_schema=False, name="web-static"
    )
    return [web, static]


def error_response(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    script = request.url.path.startswith(SCRIPT_PREFIX)
    if isinstance(exc, SignInNeeded):
        if script:
            return Response({"code": "SIGN_IN", "message": "Sign in again."}, status_code=401)
        return Redirect("/sign-in", status_code=303)
    if isinstance(exc, NotAllowed):
        status, message = 403, str(exc)
        if script:
            return Response({"code": "FORBIDDEN", "message": message}, status_code=403)
    elif isinstance(exc, ClientError):
        if script:
            return responses.client_error(request, exc)
        status, message = exc.status, str(exc)
    else:
        assert isinstance(exc, HTTPException)
        if script:
            return responses.http_error(request, exc)
        status, message = exc.status_code, str(exc.detail)
    session = getattr(request.state, "web_session", None)
    html = TEMPLATES.get_template("error.html").render(
        status=status,
        message=message,
        csrf=session.csrf if session else "",
        user=session if session and session.signed_in else None,
        path=request.url.path,
    )
    return Response(html, status_code=status, media_type="text/html")
