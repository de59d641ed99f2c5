"""Conversion formats, the operations list, and health checks."""

from __future__ import annotations

import asyncio
import logging
from typing import Annotated, Any

from litestar import Request, Response, get
from litestar.params import Parameter

from appliance.api.deps import services
from appliance.api.schemas import Operations, answers
from appliance.conversions.catalog import Filters
from appliance.engines.formats import normalize
from appliance.scanning import scanner

log = logging.getLogger(__name__)


@get(
    "/v2/convert/formats",
    tags=["formats"],
    summary="What the enabled engines convert",
    responses=answers(200, Operations, (400,)),
)
async def formats(
    request: Request[Any, Any, Any],
    input_format: Annotated[str | None, Parameter(query="filter[input_format]")] = None,
    output_format: Annotated[str | None, Parameter(query="filter[output_format]")] = None,
) -> dict[str, Any]:
    registry = services(request).jobs.registry
    return {
        "data": registry.formats(
            normalize(input_format) if input_format else None,
            normalize(output_format) if output_format else None,
        )
    }


@get(
    "/v2/operations",
    tags=["formats"],
    summary="Every task operation, by input and output format",
    description="CloudConvert's operations list: `include=options` adds each row's options"
    " schema; `input_format` `*` is an operation that takes any file.",
    responses=answers(200, Operations, (400,)),
)
async def operations(
    request: Request[Any, Any, Any],
    operation: Annotated[str | None, Parameter(query="filter[operation]")] = None,
    input_format: Annotated[str | None, Parameter(query="filter[input_format]")] = None,
    output_format: Annotated[str | None, Parameter(query="filter[output_format]")] = None,
    engine: Annotated[str | None, Parameter(query="filter[engine]")] = None,
    include: str | None = None,
) -> dict[str, Any]:
    filters = Filters(
        operation,
        normalize(input_format) if input_format else None,
        normalize(output_format) if output_format else None,
        engine,
    )
    options = "options" in (include or "").split(",")
    # a thread: the first call builds the list (engine versions are asked of their tools)
    catalog = services(request).catalog
    return {"data": await asyncio.to_thread(catalog.operations, filters, options)}


@get("/health/live", tags=["health"], include_in_schema=False)
async def live() -> dict[str, str]:
    return {"status": "ok"}


@get("/health/ready", tags=["health"], include_in_schema=False)
async def ready(request: Request[Any, Any, Any]) -> Response[dict[str, Any]]:
    svc = services(request)
    checks = await probe(request)
    failed = [name for name, result in checks.items() if result != "ok"]
    if failed:
        log.warning("not ready: %s", ", ".join(f"{n} {checks[n]}" for n in failed))
    # the API stores files but the workers scan them: it says whether they do
    scan = "on" if scanner.enabled(svc.jobs.settings) else "off"
    return Response(
        {
            "status": "error" if failed else "ok",
            "checks": checks,
            "failed": failed,
            "virus_scan": scan,
        },
        status_code=503 if failed else 200,
    )


async def probe(request: Request[Any, Any, Any]) -> dict[str, str]:
    """What readiness checks: Postgres, Redis and storage reachable, not draining (each
    "ok" or why not)."""
    svc = services(request)
    probes = {
        "postgres": (svc.jobs.ping(), 2.0),
        "redis": (svc.notifier.ping(), 2.0),
        "storage": (asyncio.to_thread(svc.jobs.storage.check), 5.0),
    }
    checks: dict[str, str] = {}
    for name, (check, timeout) in probes.items():
        try:
            await asyncio.wait_for(check, timeout)
            checks[name] = "ok"
        except Exception as exc:
            checks[name] = f"error: {type(exc).__name__}"
    if request.app.state.drain.active():
        checks["draining"] = "error: the drain file exists"
    return checks
