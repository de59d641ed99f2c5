"""Schemathesis over the API's own OpenAPI document, in-process over ASGI on the real
Postgres, Redis and local storage (conftest.py): every documented operation, through the
examples, coverage (boundary and invalid values), fuzzing (valid and invalid input) and
stateful (ids of created jobs and tasks reused) phases, must answer without a 5xx and as its
documentation says: a documented status, content type and body, and a 401 without the key
where the document asks for one.

Bounded for CI (a fixed seed, derandomized, few examples: about half a minute); a deeper local
run: ``APPLIANCE_FUZZ_EXAMPLES=300 pytest tests/integration/api/test_openapi_fuzz.py``.
(Schemathesis's own pytest plugin is not used: its ``parametrize`` reads ``Function._nodeid``,
which pytest 9.2 no longer has; the engine below is what its CLI runs.)
"""

from __future__ import annotations

import ipaddress
import os
import socket
from collections import Counter
from dataclasses import dataclass, field

import pytest
import schemathesis
from litestar import Litestar
from schemathesis.config import SchemathesisConfig
from schemathesis.engine import events
from schemathesis.python import asgi

EXAMPLES = int(os.environ.get("APPLIANCE_FUZZ_EXAMPLES", "25"))
SEED = 20261206
CHECKS = (
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_schema_conformance",
    "ignored_auth",
)


@pytest.fixture
def offline_dns(monkeypatch: pytest.MonkeyPatch) -> None:
    """No DNS query leaves the run (POST /v2/webhooks resolves the URL's host): as on an
    offline host, only IP literals and localhost resolve; the address checks after that run
    as they are."""
    real = socket.getaddrinfo

    def offline(host: object, *args: object, **kwargs: object) -> object:
        if host in (None, "localhost") or _ip_literal(host):
            return real(host, *args, **kwargs)  # type: ignore[arg-type]
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", offline)


def _ip_literal(host: object) -> bool:
    text = host.decode() if isinstance(host, bytes) else str(host)
    try:
        ipaddress.ip_address(text.split("%")[0])
    except ValueError:
        return False
    return True


def fuzz_config(key: str) -> SchemathesisConfig:
    return SchemathesisConfig.from_dict(
        {
            "seed": SEED,
            "headers": {"Authorization": f"Bearer {key}"},
            "generation": {"max-examples": EXAMPLES, "deterministic": True},
            "checks": {"enabled": False} | {name: {"enabled": True} for name in CHECKS},
            "continue-on-failure": True,
            "workers": 1,
        }
    )


@dataclass
class Run:
    # each kind of failure (operation, check, title) once, with its first reproduction
    failures: dict[tuple[str, str, str], str] = field(default_factory=dict)
    cases: Counter[str] = field(default_factory=Counter)  # requests sent, by phase
    operations: set[str] = field(default_factory=set)  # those that got a request
    seconds: Counter[str] = field(default_factory=Counter)  # by operation, all phases

    def record(self, event: events.ScenarioFinished) -> None:
        recorder = event.recorder
        self.cases[event.phase] += len(recorder.cases)
        self.seconds[recorder.label] += event.elapsed_time
        if recorder.cases and event.phase != "stateful":
            self.operations.add(recorder.label)
        for checks in recorder.checks.values():
            for check in checks:
                if (info := check.failure_info) is not None:
                    kind = (recorder.label, check.name, info.failure.title)
                    detail = f"{info.failure.message}\n    {info.code_sample}"
                    self.failures.setdefault(kind, detail)

    def report(self) -> str:
        items = sorted(self.failures.items())
        return "\n".join(f"{' | '.join(kind)}\n    {detail}" for kind, detail in items)


def fuzz(schema: schemathesis.schemas.BaseSchema) -> Run:
    run = Run()
    for event in schemathesis.engine.from_schema(schema).execute():
        if isinstance(event, events.ScenarioFinished):
            run.record(event)
        elif isinstance(event, (events.NonFatalError, events.FatalError)):
            run.failures.setdefault(("engine", type(event).__name__, str(event)), "")
    return run


@pytest.mark.usefixtures("offline_dns")
@pytest.mark.timeout(max(300, EXAMPLES * 15))  # the default run takes about 100 s
def test_every_operation_answers_as_documented(app: Litestar, api_key: str) -> None:
    try:
        schema = schemathesis.openapi.from_asgi(
            "/docs/openapi.json", app, config=fuzz_config(api_key)
        )
        run = fuzz(schema)
    finally:
        asgi.shutdown_lifespans()
    print(f"requests by phase: {dict(run.cases)}")
    print(f"slowest operations (s): {run.seconds.most_common(6)}")
    assert not run.failures, f"{len(run.failures)} kinds of failure:\n{run.report()}"
    documented = {op.ok().label for op in schema.get_all_operations()}
    assert run.operations == documented  # nothing left untried
    assert run.cases["stateful"] > 0
