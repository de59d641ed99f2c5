"""Every statement the application runs, one module per area; callers pass a connection.

``tasks``: a task's life on a worker (claim, lease, ends, retries); ``jobs``: what the API
reads and changes; ``files``: stored objects and the conversion cache; ``maintenance``: the
reconciler's passes; ``keys``: users and API keys. The database functions these call are
listed, as a migrated database holds them, in ``db/functions.sql``.

Arguments are plain Python values; JSON arguments are wrapped here (``Jsonb``).
"""
