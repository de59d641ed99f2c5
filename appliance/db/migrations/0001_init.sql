-- Users, API keys, jobs, tasks, content-addressed files and the conversion cache.

CREATE TABLE users (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    email       text NOT NULL UNIQUE,
    created_at  timestamptz NOT NULL DEFAULT now()
);

-- Only a SHA-256 of each key is stored; keys are 256-bit random, so a fast hash is enough.
CREATE TABLE api_keys (
    id            uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id       uuid NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    key_hash      bytea NOT NULL UNIQUE,
    prefix        text NOT NULL,
    scopes        text[] NOT NULL DEFAULT '{task.read,task.write}',
    created_at    timestamptz NOT NULL DEFAULT now(),
    revoked_at    timestamptz
);

CREATE TABLE jobs (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id     uuid NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    tag         text,
    status      text NOT NULL DEFAULT 'waiting'
                CHECK (status IN ('waiting', 'processing', 'finished', 'error')),
    created_at  timestamptz NOT NULL DEFAULT now(),
    started_at  timestamptz,
    ended_at    timestamptz,
    expires_at  timestamptz NOT NULL
);
CREATE INDEX jobs_user_created ON jobs (user_id, created_at DESC, id DESC);
CREATE INDEX jobs_expires ON jobs (expires_at);
CREATE INDEX jobs_open ON jobs (created_at) WHERE status IN ('waiting', 'processing');

-- A task is ready to run once ready_at is set (all dependencies finished) and ready_at <= now()
-- (a retry sets it in the future). A running task holds a lease its worker renews.
CREATE TABLE tasks (
    id                uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    seq               bigint GENERATED ALWAYS AS IDENTITY,  -- creation order within a job
    job_id            uuid REFERENCES jobs(id) ON DELETE CASCADE,
    user_id           uuid NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    name              text NOT NULL,
    operation         text NOT NULL,
    queue             text NOT NULL,
    status            text NOT NULL DEFAULT 'waiting'
                      CHECK (status IN ('waiting', 'processing', 'finished', 'error')),
    payload           jsonb NOT NULL DEFAULT '{}',
    result            jsonb,
    code              text,
    message           text,
    percent           integer NOT NULL DEFAULT 0,
    engine            text,
    engine_version    text,
    depends_on        uuid[] NOT NULL DEFAULT '{}',
    retry_of_task_id  uuid,
    attempts          integer NOT NULL DEFAULT 0,
    ready_at          timestamptz,
    lease_until       timestamptz,
    created_at        timestamptz NOT NULL DEFAULT now(),
    started_at        timestamptz,
    ended_at          timestamptz,
    expires_at        timestamptz NOT NULL
);
CREATE INDEX tasks_job ON tasks (job_id);
CREATE INDEX tasks_user_created ON tasks (user_id, created_at DESC, id DESC);
CREATE INDEX tasks_depends_on ON tasks USING gin (depends_on);
CREATE INDEX tasks_ready ON tasks (ready_at) WHERE status = 'waiting' AND ready_at IS NOT NULL;
CREATE INDEX tasks_lease ON tasks (lease_until) WHERE status = 'processing';
CREATE INDEX tasks_expires ON tasks (expires_at) WHERE job_id IS NULL;
CREATE INDEX tasks_blocked ON tasks (created_at) WHERE status = 'waiting' AND ready_at IS NULL;
CREATE INDEX tasks_retry_of ON tasks (retry_of_task_id) WHERE retry_of_task_id IS NOT NULL;

-- Content-addressed objects: key = sha256. refcount counts task_files and cache rows.
CREATE TABLE files (
    sha256       text PRIMARY KEY,
    size         bigint NOT NULL,
    refcount     integer NOT NULL DEFAULT 0,
    released_at  timestamptz
);
CREATE INDEX files_unreferenced ON files (released_at) WHERE refcount <= 0;

CREATE TABLE task_files (
    task_id   uuid NOT NULL REFERENCES tasks(id) ON DELETE CASCADE,
    position  integer NOT NULL,
    sha256    text NOT NULL,
    filename  text NOT NULL,
    size      bigint NOT NULL,
    url       text,
    PRIMARY KEY (task_id, position)
);

CREATE TABLE conversion_cache (
    input_sha256    text NOT NULL,
    output_format   text NOT NULL,
    options_hash    text NOT NULL,
    engine_version  text NOT NULL,
    output_sha256   text NOT NULL,
    size            bigint NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    last_hit_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (input_sha256, output_format, options_hash, engine_version)
);
CREATE INDEX conversion_cache_last_hit ON conversion_cache (last_hit_at);

-- Reference counting: every task_files / conversion_cache row holds one reference.
CREATE FUNCTION appliance_file_ref() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    v_row jsonb := to_jsonb(CASE WHEN TG_OP = 'INSERT' THEN NEW ELSE OLD END);
    v_sha text := v_row ->> TG_ARGV[0];  -- the column holding the referenced hash
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO files (sha256, size, refcount) VALUES (v_sha, (v_row ->> 'size')::bigint, 1)
        ON CONFLICT (sha256) DO UPDATE SET refcount = files.refcount + 1, released_at = NULL;
        RETURN NEW;
    END IF;
    UPDATE files SET refcount = refcount - 1,
                     released_at = CASE WHEN refcount - 1 <= 0 THEN now() END
     WHERE sha256 = v_sha;
    RETURN OLD;
END $$;
CREATE TRIGGER task_files_ref AFTER INSERT OR DELETE ON task_files
    FOR EACH ROW EXECUTE FUNCTION appliance_file_ref('sha256');
CREATE TRIGGER conversion_cache_ref AFTER INSERT OR DELETE ON conversion_cache
    FOR EACH ROW EXECUTE FUNCTION appliance_file_ref('output_sha256');

-- Job status follows its tasks: error if any failed (a task that was retried counts through its
-- retry), finished if all finished, processing once any task started, else waiting.
-- Concurrency: every function that reads other tasks' status to decide something first locks
-- the row it is about to change (the job, or the dependent tasks), in a statement of its own.
-- Under READ COMMITTED the deciding statement then sees whatever a concurrent writer of the
-- same rows committed, so when two inputs finish at once the later one releases the dependent
-- and settles the job. Lock order everywhere: own task -> dependent tasks -> job.
CREATE FUNCTION appliance_refresh_job(p_job uuid) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    v_status text;
BEGIN
    IF p_job IS NULL THEN
        RETURN NULL;
    END IF;
    PERFORM 1 FROM jobs WHERE id = p_job FOR UPDATE;
    SELECT CASE
             WHEN bool_or(status = 'error') THEN 'error'
             WHEN bool_and(status = 'finished') THEN 'finished'
             WHEN bool_or(status IN ('processing', 'finished')) THEN 'processing'
             ELSE 'waiting' END
      INTO v_status FROM tasks t
     WHERE job_id = p_job
       AND NOT EXISTS (SELECT 1 FROM tasks r WHERE r.retry_of_task_id = t.id);
    UPDATE jobs SET status = v_status,
                    started_at = CASE WHEN v_status <> 'waiting'
                                      THEN coalesce(started_at, now()) END,
                    ended_at = CASE WHEN v_status IN ('finished', 'error')
                                    THEN coalesce(ended_at, now()) END
     WHERE id = p_job AND status IS DISTINCT FROM v_status;
    RETURN v_status;
END $$;

-- Marks dependents of p_task whose dependencies are all finished as ready; returns their ids.
CREATE FUNCTION appliance_release_dependents(p_task uuid) RETURNS SETOF uuid
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM 1 FROM tasks WHERE p_task = ANY (depends_on) AND status = 'waiting'
                           AND ready_at IS NULL ORDER BY id FOR UPDATE;
    RETURN QUERY
    UPDATE tasks t SET ready_at = now()
     WHERE p_task = ANY (t.depends_on) AND t.status = 'waiting' AND t.ready_at IS NULL
       AND NOT EXISTS (SELECT 1 FROM tasks d
                        WHERE d.id = ANY (t.depends_on) AND d.status <> 'finished')
    RETURNING t.id;
END $$;

-- Safety nets run by the reconciler, each in its own transaction: jobs whose status was never
-- settled, and tasks whose inputs all finished but were never released (neither should happen
-- with the locking above; both are cheap to check).
CREATE FUNCTION appliance_settle_jobs() RETURNS integer LANGUAGE sql AS $$
    SELECT count(appliance_refresh_job(j.id))::integer FROM jobs j
     WHERE j.status IN ('waiting', 'processing')
       AND j.created_at < now() - interval '10 seconds'
       AND NOT EXISTS (SELECT 1 FROM tasks t WHERE t.job_id = j.id
                          AND t.status IN ('waiting', 'processing'))
$$;

CREATE FUNCTION appliance_release_stragglers() RETURNS SETOF uuid LANGUAGE sql AS $$
    UPDATE tasks t SET ready_at = now()
     WHERE t.status = 'waiting' AND t.ready_at IS NULL AND cardinality(t.depends_on) > 0
       AND t.created_at < now() - interval '10 seconds'
       AND NOT EXISTS (SELECT 1 FROM tasks d
                        WHERE d.id = ANY (t.depends_on) AND d.status <> 'finished')
    RETURNING t.id
$$;

CREATE FUNCTION appliance_finish_task(p_task uuid, p_result jsonb) RETURNS SETOF uuid
LANGUAGE plpgsql AS $$
DECLARE
    v_job uuid;
BEGIN
    UPDATE tasks SET status = 'finished', result = p_result, percent = 100,
                     code = NULL, message = NULL, lease_until = NULL,
                     started_at = coalesce(started_at, now()), ended_at = now()
     WHERE id = p_task AND status IN ('waiting', 'processing')
    RETURNING job_id INTO v_job;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    RETURN QUERY SELECT appliance_release_dependents(p_task);
    PERFORM appliance_refresh_job(v_job);
END $$;

-- Fails a task and, transitively, every task that depends on it.
CREATE FUNCTION appliance_fail_task(p_task uuid, p_code text, p_message text) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    v_jobs uuid[];
    v_count integer;
BEGIN
    WITH RECURSIVE doomed(id, root) AS (
        SELECT p_task, true
        UNION
        SELECT t.id, false FROM tasks t JOIN doomed d ON d.id = ANY (t.depends_on)
    ), failed AS (
        UPDATE tasks t
           SET status = 'error', lease_until = NULL, ended_at = now(),
               code = CASE WHEN d.root THEN p_code ELSE 'INPUT_TASK_FAILED' END,
               message = CASE WHEN d.root THEN p_message
                              ELSE 'An input task failed: ' || p_message END
          FROM doomed d
         WHERE t.id = d.id AND t.status IN ('waiting', 'processing')
        RETURNING t.job_id
    )
    SELECT array_agg(DISTINCT job_id), count(*) INTO v_jobs, v_count FROM failed;
    PERFORM appliance_refresh_job(j) FROM unnest(v_jobs) AS j;
    RETURN v_count;
END $$;

-- Deletes tasks; tasks elsewhere that used them as input fail (they could never run), and the
-- jobs concerned are settled again.
CREATE FUNCTION appliance_delete_tasks(p_ids uuid[]) RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    v_jobs uuid[];
    v_count integer;
BEGIN
    PERFORM appliance_fail_task(d.id, 'INPUT_TASK_FAILED', 'An input task was deleted')
       FROM tasks d
      WHERE d.depends_on && p_ids AND NOT d.id = ANY (p_ids)
        AND d.status IN ('waiting', 'processing');
    WITH gone AS (DELETE FROM tasks WHERE id = ANY (p_ids) RETURNING job_id)
    SELECT array_agg(DISTINCT job_id), count(*) INTO v_jobs, v_count FROM gone;
    PERFORM appliance_refresh_job(j) FROM unnest(v_jobs) AS j WHERE j IS NOT NULL;
    RETURN v_count;
END $$;

-- The CloudConvert JSON shape of a task and a job, built where the data lives. json (not jsonb)
-- keeps the key order and is ~3x cheaper to build. Timestamps are whole seconds; sessions run
-- with TimeZone=UTC (set by the pools) so they read like "2026-11-29T20:38:19+00:00".
CREATE FUNCTION appliance_task_json(t tasks) RETURNS json LANGUAGE sql STABLE AS $$
    SELECT json_build_object(
        'id', t.id, 'name', t.name, 'job_id', t.job_id, 'operation', t.operation,
        'status', t.status, 'message', t.message, 'code', t.code, 'percent', t.percent,
        'credits', 0, 'engine', t.engine, 'engine_version', t.engine_version,
        'payload', t.payload, 'result', t.result,
        'created_at', date_trunc('second', t.created_at),
        'started_at', date_trunc('second', t.started_at),
        'ended_at', date_trunc('second', t.ended_at),
        'retry_of_task_id', t.retry_of_task_id, 'copy_of_task_id', NULL,
        'user_id', t.user_id, 'priority', 0, 'host_name', NULL, 'storage', NULL,
        'depends_on_task_ids', t.depends_on)
$$;

-- Views (always inlined by the planner, unlike a function taking a whole row) give each job's
-- document; filters on id/user_id are pushed down, so only matching rows are rendered.
CREATE VIEW job_docs AS
SELECT j.id, j.user_id, j.status, j.tag, j.created_at, json_build_object(
        'id', j.id, 'tag', j.tag, 'status', j.status,
        'created_at', date_trunc('second', j.created_at),
        'started_at', date_trunc('second', j.started_at),
        'ended_at', date_trunc('second', j.ended_at),
        'tasks', (SELECT coalesce(json_agg(appliance_task_json(t) ORDER BY t.seq), '[]')
                    FROM tasks t WHERE t.job_id = j.id)) AS doc
  FROM jobs j;

-- Job lists leave tasks out unless include=tasks.
CREATE VIEW job_summaries AS
SELECT j.id, j.user_id, j.status, j.tag, j.created_at, json_build_object(
        'id', j.id, 'tag', j.tag, 'status', j.status,
        'created_at', date_trunc('second', j.created_at),
        'started_at', date_trunc('second', j.started_at),
        'ended_at', date_trunc('second', j.ended_at)) AS doc
  FROM jobs j;
