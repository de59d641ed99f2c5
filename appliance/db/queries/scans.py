"""Files a client sent that wait for a worker's virus scan (``files_to_scan``, migration 0014)."""

from __future__ import annotations

from typing import Any

import msgspec

from appliance.db import AsyncDictConnection, SyncPool

# An upload's task becomes ready (for the worker that scans its file) only if it still waits
# for its file: a second upload of the same form finds it taken.
UPLOAD_READY = (
    "UPDATE tasks SET ready_at = now() WHERE id = %s AND status = 'waiting'"
    " AND ready_at IS NULL RETURNING queue"
)
HOLD = "INSERT INTO files_to_scan (task_id, sha256, size, filename) VALUES (%s, %s, %s, %s)"
HELD = "SELECT sha256, size, filename FROM files_to_scan WHERE task_id = %s"
# An infected file: its row goes (releasing the stored object), and the object's own row when
# nothing else holds it; the caller deletes the bytes.
DROP = "DELETE FROM files_to_scan WHERE task_id = %s RETURNING sha256"
FORGET_UNHELD = "DELETE FROM files WHERE sha256 = %s AND refcount <= 0"


class HeldFile(msgspec.Struct, frozen=True):
    sha256: str
    size: int
    filename: str


async def hold_upload(
    conn: AsyncDictConnection, task_id: Any, sha: str, size: int, filename: str
) -> str | None:
    """In a transaction: the upload's file waits for its scan and its task becomes ready;
    the task's queue, or None when the task no longer waits for a file."""
    row = await (await conn.execute(UPLOAD_READY, (task_id,))).fetchone()
    if row is None:
        return None
    await conn.execute(HOLD, (task_id, sha, size, filename))
    return str(row["queue"])


async def hold(conn: AsyncDictConnection, task_id: Any, sha: str, size: int, filename: str) -> None:
    """An import/base64 file waits for its scan (its task was inserted ready)."""
    await conn.execute(HOLD, (task_id, sha, size, filename))


def held(pool: SyncPool, task_id: Any) -> HeldFile | None:
    with pool.connection() as conn:
        row = conn.execute(HELD, (task_id,)).fetchone()
    return None if row is None else msgspec.convert(row, HeldFile)


def drop(conn: Any, task_id: Any) -> None:
    """In a transaction: the task's file no longer waits (it was infected)."""
    for row in conn.execute(DROP, (task_id,)).fetchall():
        conn.execute(FORGET_UNHELD, (row["sha256"],))
