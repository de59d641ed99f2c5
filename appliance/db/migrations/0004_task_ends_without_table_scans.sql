-- A task's end reads the tasks table through its indexes only, however many tasks there are.
-- Under load the appliance's Postgres CPU per job climbed from 6 to 30 ms within two minutes
-- (~4,000 tasks) from the table scans below; auto_explain showed where.
--
-- 1. A task's dependents are found through the GIN index on depends_on. The functions of 0001
-- looked them up with `p_task = ANY (depends_on)`, which no index serves: a sequential scan of
-- every task on each task end (18 ms at 200,000 tasks, against 0.03 ms through the index). And
-- the index takes new entries directly instead of into a pending list that every lookup reads
-- through until a vacuum merges it (1.6 ms a lookup after 200,000 inserts).
ALTER INDEX tasks_depends_on SET (fastupdate = off);
SELECT gin_clean_pending_list('tasks_depends_on');  -- what an existing install has pending

CREATE OR REPLACE FUNCTION appliance_release_dependents(p_task uuid) RETURNS SETOF uuid
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM 1 FROM tasks WHERE depends_on @> ARRAY[p_task] AND status = 'waiting'
                           AND ready_at IS NULL ORDER BY id FOR UPDATE;
    RETURN QUERY
    UPDATE tasks t SET ready_at = now()
     WHERE t.depends_on @> ARRAY[p_task] AND t.status = 'waiting' AND t.ready_at IS NULL
       AND NOT EXISTS (SELECT 1 FROM tasks d
                        WHERE d.id = ANY (t.depends_on) AND d.status <> 'finished')
    RETURNING t.id;
END $$;

CREATE OR REPLACE FUNCTION appliance_fail_task(p_task uuid, p_code text, p_message text)
RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    v_ids uuid[];
    v_jobs uuid[];
    v_count integer;
BEGIN
    -- the ids first: joined to the recursive CTE itself (estimated at thousands of rows), the
    -- update would scan the whole table
    WITH RECURSIVE doomed(id) AS (
        SELECT p_task
        UNION
        SELECT t.id FROM tasks t JOIN doomed d ON t.depends_on @> ARRAY[d.id]
    )
    SELECT array_agg(id) INTO v_ids FROM doomed;
    WITH failed AS (
        UPDATE tasks t
           SET status = 'error', lease_until = NULL, ended_at = now(),
               code = CASE WHEN t.id = p_task THEN p_code ELSE 'INPUT_TASK_FAILED' END,
               message = CASE WHEN t.id = p_task THEN p_message
                              ELSE 'An input task failed: ' || p_message END
         WHERE t.id = ANY (v_ids) AND t.status IN ('waiting', 'processing')
        RETURNING t.job_id
    )
    SELECT array_agg(DISTINCT job_id), count(*) INTO v_jobs, v_count FROM failed;
    PERFORM appliance_refresh_job(j) FROM unnest(v_jobs) AS j;
    RETURN v_count;
END $$;

-- 2. Set-returning functions are estimated at 1000 rows unless told: joined to tasks, the
-- released dependents (a handful at most) made a hash join over a scan of every task, and a
-- claimed task (one) joined to task_files for its inputs a scan of every task's files.
ALTER FUNCTION appliance_finish_task(uuid, jsonb) ROWS 2;
ALTER FUNCTION appliance_release_dependents(uuid) ROWS 2;
ALTER FUNCTION appliance_claim_task(uuid, double precision) ROWS 1;

-- 3. appliance_complete_task (0002) moved dependents to new queues by joining tasks to
-- jsonb_each_text(p_queues) (estimated at 100 rows: a scan of every task), even with no queue
-- to move. Same function, by primary key and only when there is one.
CREATE OR REPLACE FUNCTION appliance_complete_task(
    p_task uuid, p_attempts integer, p_files jsonb, p_result jsonb,
    p_engine text, p_engine_version text, p_queues jsonb, p_cache jsonb, p_doc boolean,
    OUT owned boolean, OUT ready jsonb, OUT job_end text, OUT doc text
) LANGUAGE plpgsql AS $$
DECLARE
    v_status text;
    v_attempts integer;
    v_job uuid;
    v_moved uuid[];
BEGIN
    owned := false;
    SELECT status, attempts, job_id INTO v_status, v_attempts, v_job
      FROM tasks WHERE id = p_task FOR UPDATE;
    IF NOT FOUND
       OR (p_attempts IS NULL AND v_status <> 'waiting')
       OR (p_attempts IS NOT NULL AND (v_status <> 'processing' OR v_attempts <> p_attempts))
    THEN
        RETURN;
    END IF;
    owned := true;
    INSERT INTO task_files (task_id, position, sha256, filename, size, url)
    SELECT p_task, f.n - 1, f.v ->> 'sha256', f.v ->> 'filename', (f.v ->> 'size')::bigint,
           f.v ->> 'url'
      FROM jsonb_array_elements(p_files) WITH ORDINALITY AS f(v, n);
    INSERT INTO conversion_cache (input_sha256, output_format, options_hash, engine_version,
                                  output_sha256, size)
    SELECT c ->> 'input_sha256', c ->> 'output_format', c ->> 'options_hash',
           c ->> 'engine_version', c ->> 'output_sha256', (c ->> 'size')::bigint
      FROM jsonb_array_elements(coalesce(p_cache, '[]')) AS c
    ON CONFLICT DO NOTHING;
    IF p_engine IS NOT NULL THEN
        UPDATE tasks SET engine = p_engine, engine_version = p_engine_version WHERE id = p_task;
    END IF;
    v_moved := ARRAY(SELECT jsonb_object_keys(coalesce(p_queues, '{}'))::uuid);
    IF cardinality(v_moved) > 0 THEN
        UPDATE tasks t SET queue = p_queues ->> t.id::text
         WHERE t.id = ANY (v_moved) AND t.status = 'waiting';
    END IF;
    SELECT coalesce(jsonb_agg(jsonb_build_object(
               'id', t.id, 'queue', t.queue, 'operation', t.operation)), '[]')
      INTO ready
      FROM appliance_finish_task(p_task, p_result) r(id) JOIN tasks t ON t.id = r.id;
    SELECT status INTO job_end FROM jobs WHERE id = v_job AND ended_at = now();
    IF p_doc THEN
        SELECT appliance_task_json(t)::text INTO doc FROM tasks t WHERE id = p_task;
    END IF;
END $$;
