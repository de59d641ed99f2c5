"""The signed-in user's other pages: job history, API keys, usage; and the operator page."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
import redis
from litestar import Request, Response, get, post
from litestar.di import Provide

from appliance.api.deps import services
from appliance.db.queries import web as web_rows
from appliance.engines import QUEUE_CLASSES
from appliance.engines.doctor import check_engine
from appliance.engines.enabled import enabled_engines
from appliance.errors import NotFound
from appliance.metrics import scrape
from appliance.security import keys, revocation
from appliance.security.accounts import user_document
from appliance.settings import Settings
from appliance.web.convert import progress_view
from appliance.web.guard import WebUser, operator, signed_in
from appliance.web.render import page, redirect

USER = {"user": Provide(signed_in)}
HISTORY_PAGE = 25  # jobs a history page shows
WEB_KEY_SCOPES = ["task.read", "task.write", "webhook.read", "webhook.write", "user.read"]
USAGE_DAYS = 31
GRAFANA_DASHBOARDS = (
    ("Overview", "appliance-overview"),
    ("Service level", "appliance-service-level"),
    ("Engines", "appliance-engines"),
    ("Infrastructure", "appliance-infrastructure"),
)
# Redis sorted set of each queue's due messages (jobs.dispatch.PENDING_KEY; the web layer
# reads it as the metrics do, without the queue side's code).
PENDING_KEY = "appliance:pending:{queue}"


def history_row(job: dict[str, Any]) -> dict[str, Any]:
    upload = next((t for t in job["tasks"] if t["operation"] == "import/upload"), None)
    work: dict[str, Any] = next(
        (t for t in job["tasks"] if t["operation"] in ("convert", "archive")), {}
    )
    files = ((upload or {}).get("result") or {}).get("files") or [{}]
    return progress_view(job) | {
        "created_at": job["created_at"][:19].replace("T", " "),
        "input": files[0].get("filename") or "-",
        "output_format": (work.get("payload") or {}).get("output_format", "-"),
    }


@get("/history", include_in_schema=False, dependencies=USER)
async def history(request: Request[Any, Any, Any], user: WebUser, page_no: int = 1) -> Any:
    page_no = max(1, min(page_no, 1000))
    doc, more = await services(request).jobs.list_jobs(
        user.id, status=None, tag=None, page=page_no, per_page=HISTORY_PAGE, include_tasks=True
    )
    jobs = [history_row(j) for j in msgspec.json.decode(doc)]
    return await page(request, "history.html", user=user, jobs=jobs, page_no=page_no, more=more)


@post("/history/{job_id:uuid}/delete", include_in_schema=False, dependencies=USER)
async def delete_job(request: Request[Any, Any, Any], user: WebUser, job_id: uuid.UUID) -> Any:
    await services(request).jobs.delete_job(user.id, job_id)
    return redirect(request, "/history")


async def keys_page(request: Request[Any, Any, Any], user: WebUser, **extra: Any) -> Any:
    rows = await web_rows.user_keys(services(request).jobs.pool, user.id)
    template = "keys_table.html" if request.headers.get("hx-request") else "keys.html"
    return await page(request, template, user=user, keys=rows, **extra)


@get("/keys", include_in_schema=False, dependencies=USER)
async def keys_list(request: Request[Any, Any, Any], user: WebUser) -> Any:
    return await keys_page(request, user)


@post("/keys", include_in_schema=False, status_code=200, dependencies=USER)
async def create_key(request: Request[Any, Any, Any], user: WebUser) -> Any:
    name = str((await request.form()).get("name") or "").strip()[:100]
    if not name:
        return await keys_page(request, user, error="Give the key a name (what it is for).")
    key = keys.new_key()
    pool = services(request).jobs.pool
    await web_rows.new_key(pool, user.id, keys.key_hash(key), key[:8], WEB_KEY_SCOPES, name)
    return await keys_page(request, user, new_key=key, new_key_name=name)


@post("/keys/{key_id:uuid}/revoke", include_in_schema=False, status_code=200, dependencies=USER)
async def revoke_key(request: Request[Any, Any, Any], user: WebUser, key_id: uuid.UUID) -> Any:
    jobs = services(request).jobs
    digest = await web_rows.revoke_key(jobs.pool, key_id, user.id)
    if digest is None:
        raise NotFound(f"Key {key_id} not found")
    url = jobs.settings.effective_redis_url
    await asyncio.to_thread(revocation.announce, url, keys=[digest])
    if request.headers.get("hx-request"):
        return await keys_page(request, user)
    return redirect(request, "/keys")


@get("/usage", include_in_schema=False, dependencies=USER)
async def usage(request: Request[Any, Any, Any], user: WebUser) -> Any:
    jobs = services(request).jobs
    me = await user_document(jobs.pool, jobs.settings, user.id)
    since = datetime.now(UTC).date() - timedelta(days=USAGE_DAYS - 1)
    days = await web_rows.usage_days(jobs.pool, user.id, since)
    return await page(
        request, "usage.html", user=user, me=me, days=days, metering=jobs.settings.usage_metering
    )


def queue_figures(settings: Settings) -> dict[str, tuple[int, int, float, int]]:
    client = redis.Redis.from_url(settings.effective_redis_url, socket_timeout=2)
    try:
        return scrape.queues(client, {q: PENDING_KEY.format(queue=q) for q in QUEUE_CLASSES})
    finally:
        client.close()


def engine_checks() -> list[Any]:
    return [check_engine(e) for e in enabled_engines()]


@get("/operator", include_in_schema=False, dependencies={"user": Provide(operator)})
async def operator_page(request: Request[Any, Any, Any], user: WebUser) -> Response[Any]:
    jobs = services(request).jobs
    settings = jobs.settings
    users = await web_rows.operator_users(jobs.pool, 500)
    try:
        queues = await asyncio.to_thread(queue_figures, settings)
    except redis.RedisError:
        queues = {}
    engines = await asyncio.to_thread(engine_checks)
    grafana = [
        (title, f"{settings.grafana_url.rstrip('/')}/d/{uid}")
        for title, uid in GRAFANA_DASHBOARDS
        if settings.grafana_url
    ]
    return await page(
        request,
        "operator.html",
        user=user,
        users=users,
        queues=queues,
        engines=engines,
        grafana=grafana,
    )


ROUTES = [history, delete_job, keys_list, create_key, revoke_key, usage, operator_page]
