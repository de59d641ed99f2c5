-- The API's metrics port reads, at every scrape, the users with the most conversions and the
-- most failed tasks over the last hour (metrics/scrape.py): per-tenant figures without a
-- label per user on the request path's metrics. This index keeps that read to the last
-- hour's tasks instead of a scan of every task kept (24 h by default).
CREATE INDEX tasks_ended ON tasks (ended_at) WHERE ended_at IS NOT NULL;
