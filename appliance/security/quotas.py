"""What a user's quotas leave: conversion minutes per UTC day and month, in CloudConvert's
``credits`` (whole minutes), checked when a job is made and shown in ``users/me``."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from appliance.errors import CreditsExceeded
from appliance.settings import Settings


@dataclass(frozen=True)
class Quota:
    """A user's conversion minutes per UTC day and month (0: unlimited) and stored bytes."""

    minutes_per_day: int
    minutes_per_month: int
    stored_bytes: int

    @classmethod
    def of(cls, row: Mapping[str, Any], settings: Settings) -> Quota:
        """The user's own quotas (``quota_*`` columns; None: the setting's default)."""

        def own(column: str, default: int) -> int:
            value = row.get(column)
            return default if value is None else int(value)

        return cls(
            own("quota_minutes_per_day", settings.quota_minutes_per_day),
            own("quota_minutes_per_month", settings.quota_minutes_per_month),
            own("quota_stored_bytes", settings.max_stored_bytes_per_user),
        )

    def credits(self, cpu_today: float, cpu_month: float) -> int | None:
        """Whole conversion minutes left today and this month, the fewer of the two (a
        minute begun counts as used); None when neither is limited."""
        left = [
            limit - math.ceil(seconds / 60)
            for limit, seconds in (
                (self.minutes_per_day, cpu_today),
                (self.minutes_per_month, cpu_month),
            )
            if limit
        ]
        return max(0, min(left)) if left else None

    def check_credits(self, cpu_today: float, cpu_month: float) -> None:
        """Refuse new work (402) once the day's or the month's minutes are used up."""
        if self.credits(cpu_today, cpu_month) == 0:
            day = self.minutes_per_day and math.ceil(cpu_today / 60) >= self.minutes_per_day
            which, limit = (
                ("day", self.minutes_per_day) if day else ("month", self.minutes_per_month)
            )
            raise CreditsExceeded(
                f"Your {limit} conversion minutes of this {which} are used up (UTC); new jobs"
                f" are accepted again next {which}"
            )
