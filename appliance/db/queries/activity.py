"""What users did lately, for the metrics port: the top users by conversions and by failed
tasks over a recent window (index tasks_ended, migration 0013)."""

from __future__ import annotations

from typing import Any

# Conversions: convert tasks that ended (finished or not); errors: tasks of any operation
# that ended in error. Each list is its top ``limit`` users, ties broken by id.
TOP_USERS = """
WITH per_user AS (
    SELECT user_id,
           count(*) FILTER (WHERE operation = 'convert') AS conversions,
           count(*) FILTER (WHERE status = 'error') AS errors
    FROM tasks
    WHERE ended_at IS NOT NULL AND ended_at > now() - make_interval(secs => %(seconds)s)
    GROUP BY user_id
)
(SELECT 'conversions' AS kind, user_id::text AS user_id, conversions AS n FROM per_user
 WHERE conversions > 0 ORDER BY conversions DESC, user_id LIMIT %(limit)s)
UNION ALL
(SELECT 'errors', user_id::text, errors FROM per_user
 WHERE errors > 0 ORDER BY errors DESC, user_id LIMIT %(limit)s)
"""


def top_users(conn: Any, seconds: float, limit: int) -> dict[str, dict[str, int]]:
    """{"conversions": {user id: n}, "errors": {user id: n}} over the last ``seconds``, each
    at most ``limit`` users; on a synchronous connection."""
    out: dict[str, dict[str, int]] = {"conversions": {}, "errors": {}}
    for kind, user, n in conn.execute(TOP_USERS, {"seconds": seconds, "limit": limit}):
        out[kind][user] = int(n)
    return out
