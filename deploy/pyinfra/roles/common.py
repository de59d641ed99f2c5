"""Small building blocks every role uses: write a rendered file, run a command once per
content, restart a service only when what it reads changed."""

from __future__ import annotations

import hashlib
from typing import Any

from pyinfra import host
from pyinfra.api import operation
from pyinfra.api.operation import OperationMeta
from pyinfra.facts.files import Sha256File
from pyinfra.operations import files, server, systemd
from pyinfra.operations.util import any_changed

from fleet.render import as_file, render

APP_ROOT = "/opt/appliance"
STAMPS = "/var/lib/appliance-deploy"  # what ran once, by content hash


def put(
    template: str,
    dest: str,
    *,
    mode: str = "644",
    user: str = "root",
    group: str = "root",
    **context: Any,
) -> OperationMeta:
    """Render ``template`` (a path under deploy/) to ``dest``; a no-op when unchanged."""
    return put_text(render(template, **context), dest, mode=mode, user=user, group=group)


def put_text(
    text: str, dest: str, *, mode: str = "644", user: str = "root", group: str = "root"
) -> OperationMeta:
    return files.put(
        name=f"Write {dest}", src=as_file(text), dest=dest, mode=mode, user=user, group=group
    )


def once(name: str, key: str, command: str) -> OperationMeta | None:
    """Run ``command`` when ``key`` (e.g. a rendered script, a release id) differs from the
    last one that succeeded on this host. The stamp is written only after success, so a
    failed run is retried by the next deploy, and a re-run with the same key does nothing."""
    digest = hashlib.sha256(key.encode()).hexdigest()
    stamp = f"{STAMPS}/{name}"
    if host.get_fact(Sha256File, path=stamp) == hashlib.sha256(digest.encode()).hexdigest():
        return None
    return server.shell(
        name=f"Run {name}",
        commands=[f"install -d -m 700 {STAMPS} && ( {command} ) && printf %s {digest} > {stamp}"],
    )


def restart_if(service: str, *changes: OperationMeta | None, reload: bool = False) -> None:
    """Restart (or reload) ``service`` when any of ``changes`` changed something, then make
    sure it is enabled and running."""
    real = [c for c in changes if c is not None]
    if real:
        systemd.service(
            name=f"{'Reload' if reload else 'Restart'} {service} (its files changed)",
            service=service,
            running=True,
            restarted=not reload,
            reloaded=reload,
            daemon_reload=True,
            _if=any_changed(*real),
        )
    systemd.service(
        name=f"{service} enabled and running", service=service, running=True, enabled=True
    )


@operation()
def barrier(stage: str):
    """A step every host passes at the same place in deploy.py, changing nothing.

    pyinfra orders operations as a graph of each host's sequence; hosts that take different
    paths (a db primary and its replica) are otherwise not ordered against each other.
    Called on every host from one line, this operation is one shared node: everything
    before it, on any host, runs before anything after it."""
    return
    yield
