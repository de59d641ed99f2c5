-- The route a task's inputs take (which engines, from which format to which) is planned once
-- and kept with the task, instead of being planned again where the task is created, where its
-- input's file is named and where a worker runs it: what the queue class was chosen for is
-- what runs. tasks.routes: {input format: [{engine, from, to}, ...]}, one entry per input
-- format known when it was planned; NULL when none was (a worker plans for what it finds).
ALTER TABLE tasks ADD COLUMN routes jsonb;

-- As in 0003, and each task's routes.
CREATE OR REPLACE FUNCTION appliance_insert_tasks(
    p_job uuid, p_user uuid, p_hours double precision, p_tasks jsonb
) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO tasks (id, job_id, user_id, name, operation, queue, payload, depends_on,
                       result, routes, ready_at, expires_at)
    SELECT (t ->> 'id')::uuid, p_job, p_user, t ->> 'name', t ->> 'operation', t ->> 'queue',
           t -> 'payload',
           ARRAY(SELECT d::uuid FROM jsonb_array_elements_text(t -> 'depends_on') AS d),
           nullif(t -> 'result', 'null'::jsonb),
           nullif(t -> 'routes', 'null'::jsonb),
           CASE WHEN (t ->> 'runs_now')::boolean THEN now() END,
           now() + p_hours * interval '1 hour'
      FROM jsonb_array_elements(p_tasks) WITH ORDINALITY AS x(t, n)
     ORDER BY n;
END $$;

-- As in 0004, except that a value of p_queues may also be {queue, routes}: the dependent
-- moves to that queue class and keeps those routes (merged into any it has: another input
-- may have named its own). A plain queue class, as hosts on the previous release send, still
-- only moves the queue.
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
        UPDATE tasks t
           SET queue = CASE jsonb_typeof(p_queues -> t.id::text)
                       WHEN 'string' THEN p_queues ->> t.id::text
                       ELSE coalesce(p_queues -> t.id::text ->> 'queue', t.queue) END,
               routes = CASE jsonb_typeof(p_queues -> t.id::text -> 'routes')
                        WHEN 'object' THEN coalesce(t.routes, '{}')
                                           || (p_queues -> t.id::text -> 'routes')
                        ELSE t.routes END
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
