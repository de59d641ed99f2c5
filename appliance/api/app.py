"""The Litestar application factory: wiring only."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from litestar import Litestar, Router
from litestar.di import Provide
from litestar.exceptions import HTTPException
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import ScalarRenderPlugin, SwaggerRenderPlugin

from appliance import logs
from appliance.api import files, jobs, meta, responses, tasks
from appliance.api.auth import Authenticator
from appliance.api.deps import Services, principal
from appliance.api.drain import Drain, DrainFlag
from appliance.api.events import Notifier
from appliance.db import async_pool
from appliance.engines.enabled import enabled_engines
from appliance.engines.registry import Registry
from appliance.errors import ClientError
from appliance.jobs.broker import make_broker, make_dispatcher
from appliance.jobs.catalog import Catalog
from appliance.jobs.service import JobService
from appliance.metrics.http import HttpMetrics
from appliance.settings import Settings
from appliance.storage import make_storage

MULTIPART_SLACK = 1024 * 1024  # room for form fields and boundaries around the file


def create_app(settings: Settings | None = None) -> Litestar:
    settings = settings or Settings.from_env()
    logs.configure(settings.log_level, settings.log_format)

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        pool = await async_pool(settings)
        read_pool = (
            await async_pool(settings, settings.database_read_url)
            if settings.database_read_url
            else None
        )
        storage = make_storage(settings)
        if hasattr(storage, "ensure_bucket"):
            await asyncio.to_thread(storage.ensure_bucket)
        broker = make_broker(settings)
        notifier = Notifier(settings.effective_redis_url)
        await notifier.start()
        registry = Registry(enabled_engines())
        app.state.services = Services(
            jobs=JobService(
                settings, pool, storage, registry, make_dispatcher(settings, broker), read_pool
            ),
            auth=Authenticator(pool),
            notifier=notifier,
            catalog=Catalog(registry),
        )
        try:
            yield
        finally:
            await notifier.stop()
            await pool.close()
            if read_pool is not None:
                await read_pool.close()
            broker.close()

    sync = Router(
        path=settings.sync_prefix, route_handlers=[jobs.sync_job, tasks.sync_task], tags=["sync"]
    )
    app = Litestar(
        route_handlers=[
            jobs.JobController,
            tasks.TaskController,
            *tasks.SINGLE_TASK_ROUTES,
            files.upload,
            files.download,
            meta.formats,
            meta.operations,
            meta.live,
            meta.ready,
            meta.metrics,
            sync,
        ],
        dependencies={"principal": Provide(principal)},
        exception_handlers={
            ClientError: responses.client_error,
            HTTPException: responses.http_error,
            Exception: responses.server_error,
        },
        lifespan=[lifespan],
        request_max_body_size=settings.max_upload_bytes + MULTIPART_SLACK,
        openapi_config=OpenAPIConfig(
            title="Appliance API (CloudConvert API v2 compatible)",
            version="2",
            path="/docs",
            render_plugins=[ScalarRenderPlugin(), SwaggerRenderPlugin()],
        ),
        debug=False,
    )
    app.state.drain = DrainFlag(settings.drain_file)
    # Outermost, so they also see requests no route matched and errors turned into responses.
    app.asgi_handler = Drain(HttpMetrics(app.asgi_handler), app.state.drain)  # type: ignore[assignment]
    return app
