"""Usage per user and UTC day, for billing, and the quotas an operator sets per user.

The database counts (``usage_daily``, migration 0011): jobs created, tasks ended and failed,
the CPU seconds engine runs used (measured by the sandboxed helpers), bytes imported, made
and exported, and stored byte-hours. Here: the export (``appliance usage``) and the quotas
(``appliance users quota``); ``quotas`` says what a quota leaves.
"""

from __future__ import annotations

import csv
import io
import json
from datetime import date
from typing import Any

from appliance.db.queries import usage as usage_rows
from appliance.security.accounts import AccountError, connect
from appliance.security.quotas import Quota
from appliance.settings import Settings

FORMATS = ("csv", "json")


def export(settings: Settings, start: date, end: date, email: str | None, fmt: str) -> str:
    """Usage per user and day from ``start`` to ``end`` (both included), as CSV or JSON."""
    if fmt not in FORMATS:
        raise AccountError(f"unknown format {fmt!r}: one of {', '.join(FORMATS)}")
    if end < start:
        raise AccountError(f"--to {end} is before --from {start}")
    with connect(settings) as conn:
        rows = usage_rows.export(conn, start, end, email)
    columns = ("email", "user_id", "day", *usage_rows.COLUMNS)
    if fmt == "json":
        return json.dumps([{c: _plain(row[c]) for c in columns} for row in rows], indent=1) + "\n"
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(columns)
    writer.writerows([_plain(row[c]) for c in columns] for row in rows)
    return out.getvalue()


def _plain(value: Any) -> Any:
    """A JSON/CSV cell: days and ids as text; CPU seconds and byte-hours to milli-units."""
    if isinstance(value, float):
        return round(value, 3)
    if value is None or isinstance(value, int | str):
        return value
    return str(value)


def set_quota(
    settings: Settings,
    email: str,
    minutes_per_day: int | None,
    minutes_per_month: int | None,
    stored_bytes: int | None,
) -> Quota:
    """Set the given quotas of a user (None: leave as is; -1: back to the setting's default,
    0: unlimited); the quotas that now apply."""
    with connect(settings) as conn:
        row = usage_rows.quota(conn, email)
        if row is None:
            raise AccountError(f"no user {email}")
        wanted = {
            "quota_minutes_per_day": minutes_per_day,
            "quota_minutes_per_month": minutes_per_month,
            "quota_stored_bytes": stored_bytes,
        }
        for column, value in wanted.items():
            if value is not None and value < -1:
                raise AccountError(f"{column} {value}: give N >= 0, or -1 for the default")
            if value is not None:
                row[column] = None if value == -1 else value
        usage_rows.set_quota(
            conn,
            email,
            row["quota_minutes_per_day"],
            row["quota_minutes_per_month"],
            row["quota_stored_bytes"],
        )
    return Quota.of(row, settings)
