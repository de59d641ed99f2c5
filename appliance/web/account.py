"""Signing in and out, signing up (open registration) and accepting an invitation."""

from __future__ import annotations

import asyncio
import hashlib
from typing import Any

from litestar import Request, Response, get, post

from appliance.api.deps import request_address, services
from appliance.db.queries import web as web_rows
from appliance.web import passwords
from appliance.web.guard import session_of, store
from appliance.web.render import page, redirect
from appliance.web.sessions import COOKIE

WRONG = "The e-mail address or the password is wrong."


async def form_fields(request: Request[Any, Any, Any], *names: str) -> list[str]:
    form = await request.form()
    return [str(form.get(n) or "").strip() if n != "password" else str(form.get(n) or "")
            for n in names]  # fmt: skip


async def start_session(request: Request[Any, Any, Any], row: dict[str, Any]) -> Response[Any]:
    """Replace the visitor's session with a signed-in one (a new token)."""
    sessions = store(request)
    await sessions.drop(request.cookies.get(COOKIE))
    token, session = await sessions.create(row["id"], row["email"], row["operator"])
    request.state.web_session, request.state.new_session_token = session, token
    return redirect(request, "/")


@get("/sign-in", include_in_schema=False)
async def sign_in_page(request: Request[Any, Any, Any]) -> Response[Any]:
    session = await session_of(request)
    if session is not None and session.signed_in:
        return redirect(request, "/")
    return await page(request, "sign_in.html")


@post("/sign-in", include_in_schema=False, status_code=200)
async def sign_in(request: Request[Any, Any, Any]) -> Response[Any]:
    email, password = await form_fields(request, "email", "password")
    svc, address = services(request), request_address(request)
    await svc.auth.check_not_throttled(address)
    row = await web_rows.sign_in_row(svc.jobs.pool, email)
    stored = row["password_hash"] if row else None
    ok = await asyncio.to_thread(passwords.verify, stored, password)
    if not ok or row is None:
        await svc.auth.count_failure(address)
        return await page(request, "sign_in.html", 401, error=WRONG, email=email)
    return await start_session(request, row)


@post("/sign-out", include_in_schema=False, status_code=200)
async def sign_out(request: Request[Any, Any, Any]) -> Response[Any]:
    await store(request).drop(request.cookies.get(COOKIE))
    request.state.new_session_token = ""  # clears the cookie
    return redirect(request, "/sign-in")


@get("/register", include_in_schema=False)
async def register_page(request: Request[Any, Any, Any]) -> Response[Any]:
    if services(request).jobs.settings.web_registration != "open":
        return await page(request, "closed.html", 404)
    return await page(request, "register.html")


@post("/register", include_in_schema=False, status_code=200)
async def register(request: Request[Any, Any, Any]) -> Response[Any]:
    jobs = services(request).jobs
    if jobs.settings.web_registration != "open":
        return await page(request, "closed.html", 404)
    email, password = await form_fields(request, "email", "password")
    problem = passwords.problem(password)
    if "@" not in email or len(email) > 254:
        problem = "Please give an e-mail address."
    if problem:
        return await page(request, "register.html", 400, error=problem, email=email)
    hashed = await asyncio.to_thread(passwords.hash_password, password)
    user_id = await web_rows.register(jobs.pool, email, hashed)
    if user_id is None:
        error = "That e-mail address has an account already: sign in instead."
        return await page(request, "register.html", 409, error=error, email=email)
    return await start_session(request, {"id": user_id, "email": email, "operator": False})


def token_hash(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


@get("/invitations/{token:str}", include_in_schema=False)
async def invitation_page(request: Request[Any, Any, Any], token: str) -> Response[Any]:
    email = await web_rows.invitation_email(services(request).jobs.pool, token_hash(token))
    if email is None:
        return await page(request, "invitation_gone.html", 404)
    return await page(request, "invitation.html", email=email, token=token)


@post("/invitations/{token:str}", include_in_schema=False, status_code=200)
async def accept_invitation(request: Request[Any, Any, Any], token: str) -> Response[Any]:
    pool = services(request).jobs.pool
    email = await web_rows.invitation_email(pool, token_hash(token))
    if email is None:
        return await page(request, "invitation_gone.html", 404)
    (password,) = await form_fields(request, "password")
    problem = passwords.problem(password)
    if problem:
        return await page(request, "invitation.html", 400, email=email, token=token, error=problem)
    hashed = await asyncio.to_thread(passwords.hash_password, password)
    user_id = await web_rows.accept_invitation(pool, token_hash(token), hashed)
    if user_id is None:
        return await page(request, "invitation_gone.html", 404)
    row = await web_rows.session_user(pool, user_id)
    if row is None:  # disabled by the operator
        return await page(request, "invitation_gone.html", 404)
    return await start_session(request, row)


ROUTES = [
    sign_in_page,
    sign_in,
    sign_out,
    register_page,
    register,
    invitation_page,
    accept_invitation,
]
