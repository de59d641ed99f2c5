"""The Litestar application factory: wiring only."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from litestar import Litestar, Router
from litestar.di import Provide
from litestar.exceptions import HTTPException
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import ScalarRenderPlugin, SwaggerRenderPlugin

from appliance import logs
from appliance.api import (
    files,
    idempotency,
    jobs,
    meta,
    responses,
    schemas,
    signed_urls,
    tasks,
    users,
    webhooks,
)
from appliance.api.admission import InFlightCap
from appliance.api.body import ApiRequest
from appliance.api.deps import Services, principal
from appliance.api.drain import Drain, DrainFlag
from appliance.api.events import Notifier
from appliance.api.gotenberg.routes import router as gotenberg_router
from appliance.conversions.catalog import Catalog
from appliance.conversions.idempotency import Replayed
from appliance.conversions.service import JobService
from appliance.conversions.signed_urls import SignedUrlService
from appliance.conversions.task import Dispatcher
from appliance.conversions.webhooks import WebhookService
from appliance.errors import ClientError, RetryableError
from appliance.metrics.http import HttpMetrics
from appliance.metrics.runtime import RuntimeWatch
from appliance.security import audit
from appliance.security.auth import Authenticator
from appliance.security.limits import (
    ClientAddresses,
    Limiter,
    RequestLimits,
    Rule,
    Slots,
    networks,
)
from appliance.security.sealing import Columns
from appliance.settings import Settings

MULTIPART_SLACK = 1024 * 1024  # room for form fields and boundaries around the file


def create_app(
    dispatcher: Callable[[Settings], Dispatcher],
    settings: Settings | None = None,
    pages: Callable[[Settings], list[Router]] | None = None,
) -> Litestar:
    """The API; ``dispatcher(settings)`` makes what enqueues ready tasks (the queue side's,
    handed in by the entry point: the API knows no queue); ``pages(settings)``, more routes
    served beside it (the web UI, handed in likewise: it is built on the API's services)."""
    settings = settings or Settings.from_env()
    logs.configure(settings.log_level, settings.log_format)

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        queue = dispatcher(settings)
        jobs = await JobService.open(settings, queue)
        notifier = Notifier(settings.effective_redis_url)
        await notifier.start()
        limiter = Limiter(notifier.client)  # counts in the Redis the notifier listens to
        auth = Authenticator(
            jobs.pool,
            limiter,
            settings.auth_failures_per_minute,
            trusted=lambda: notifier.hearing_revocations,
        )
        notifier.on_revoked, notifier.on_heard_again = auth.forget, auth.forget_all
        limits_audit = audit.SampledLimits(jobs.pool, settings.audit_limit_sample_seconds)
        jobs.on_limit = limits_audit.refused
        app.state.services = Services(
            jobs=jobs,
            auth=auth,
            notifier=notifier,
            catalog=Catalog(jobs.registry),
            limits=RequestLimits(limiter, settings, limits_audit.refused),
            sync_waits=Slots(
                notifier.client,
                Rule("sync-waits-per-user", "user", settings.max_sync_waits_per_user),
                hold=settings.sync_timeout_seconds,
                what="sync requests open",
            ),
        )
        columns = Columns(jobs.storage.keyring)
        app.state.webhooks = WebhookService(settings, jobs.pool, columns)
        app.state.signed_urls = SignedUrlService(settings, jobs.pool, columns)
        pools = {"primary": jobs.pool} | ({"replica": jobs.read_pool} if jobs.read_pool else {})
        watch = RuntimeWatch(pools)
        watch.start()
        try:
            yield
        finally:
            await watch.stop()
            await notifier.stop()
            await jobs.close()
            queue.close()

    # Request bodies: JSON up to max_json_bytes, where import/base64 files may come along
    # also room for them (their own cap is checked once decoded), and uploads the file limit.
    inline_bytes = base64_chars(settings.max_inline_file_bytes)
    sync = Router(
        path=settings.sync_prefix,
        route_handlers=[jobs.sync_create_job, jobs.sync_job, tasks.sync_task],
        tags=["sync"],
        security=schemas.KEY,
        request_max_body_size=settings.max_json_bytes + inline_bytes,
    )
    inline = Router(
        path="/",
        route_handlers=[jobs.JobController, *tasks.INLINE_FILE_ROUTES],
        request_max_body_size=settings.max_json_bytes + inline_bytes,
    )
    uploads = Router(
        path="/",
        route_handlers=[files.upload],
        request_max_body_size=settings.max_upload_bytes + MULTIPART_SLACK,
    )
    app = Litestar(
        route_handlers=[
            inline,
            uploads,
            tasks.TaskController,
            *tasks.SINGLE_TASK_ROUTES,
            webhooks.WebhookController,
            webhooks.my_webhooks,
            signed_urls.SignedUrlController,
            signed_urls.open_signed_url,
            files.download,
            users.me,
            users.erase_me,
            meta.formats,
            meta.operations,
            meta.live,
            meta.ready,
            sync,
            # Gotenberg's routes: a form of several files, each at most the upload limit
            gotenberg_router(settings.max_upload_bytes + MULTIPART_SLACK),
            *(pages(settings) if pages else []),
        ],
        dependencies={"principal": Provide(principal)},
        exception_handlers={
            ClientError: responses.client_error,
            RetryableError: responses.retryable,
            Replayed: idempotency.replayed,
            HTTPException: responses.http_error,
            Exception: responses.server_error,
        },
        lifespan=[lifespan],
        request_class=ApiRequest,
        request_max_body_size=settings.max_json_bytes,
        openapi_config=OpenAPIConfig(
            title="Appliance API (CloudConvert API v2 compatible)",
            version="2",
            path="/docs",
            components=schemas.COMPONENTS,
            render_plugins=[ScalarRenderPlugin(), SwaggerRenderPlugin()],
        ),
        debug=False,
    )
    app.state.drain = DrainFlag(settings.drain_file)
    app.state.client_addresses = ClientAddresses(networks(settings.trusted_proxies))
    # Outermost, so they also see requests no route matched and errors turned into responses.
    gate = InFlightCap(app.asgi_handler, settings.max_requests_in_flight, settings.sync_prefix)
    app.asgi_handler = Drain(HttpMetrics(gate), app.state.drain)  # type: ignore[assignment]
    return app


def base64_chars(size: int) -> int:
    """Characters of ``size`` bytes in base64."""
    return (size + 2) // 3 * 4
