-- A task's claim and its end, each in one statement (one round trip, one implicit
-- transaction) instead of a transaction of four to seven. Lock order as in 0001: own task ->
-- dependent tasks -> job.

-- A worker takes a ready task: waiting -> processing, one more attempt, a lease; the job is
-- settled again. Returns the task, or nothing when it is not (or not yet) ready to run.
CREATE FUNCTION appliance_claim_task(p_task uuid, p_lease_seconds double precision)
RETURNS SETOF tasks LANGUAGE plpgsql AS $$
DECLARE
    v_task tasks;
BEGIN
    UPDATE tasks SET status = 'processing', attempts = attempts + 1, percent = 0,
                     lease_until = now() + make_interval(secs => p_lease_seconds),
                     started_at = coalesce(started_at, now()), message = NULL, code = NULL
     WHERE id = p_task AND status = 'waiting' AND ready_at <= now()
    RETURNING * INTO v_task;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    PERFORM appliance_refresh_job(v_task.job_id);
    RETURN NEXT v_task;
END $$;

-- A task ends well: its files (a JSON array of {sha256, filename, size, url}) are recorded,
-- the engine that made them, the conversion cache's entries for them (a JSON array of
-- conversion_cache rows), and its result; dependents move to the queue classes in
-- p_queues ({task id: queue}: an import's file named the work they face), the ready ones are
-- released and the job is settled.
-- p_attempts: the worker's attempt, which must still own the task (processing, same attempt
-- count; it was not cancelled, deleted or re-run meanwhile); NULL for an import the API ends
-- (import/upload, import/base64), which must still be waiting.
-- Returns one row: owned (false: the task was not that one's to end, nothing changed); ready,
-- the released dependents ([{id, queue, operation}]); job_end, the job's final status if this
-- ended it; doc, the task's JSON text when p_doc.
CREATE FUNCTION appliance_complete_task(
    p_task uuid, p_attempts integer, p_files jsonb, p_result jsonb,
    p_engine text, p_engine_version text, p_queues jsonb, p_cache jsonb, p_doc boolean,
    OUT owned boolean, OUT ready jsonb, OUT job_end text, OUT doc text
) LANGUAGE plpgsql AS $$
DECLARE
    v_status text;
    v_attempts integer;
    v_job uuid;
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
    UPDATE tasks t SET queue = q.value
      FROM jsonb_each_text(coalesce(p_queues, '{}')) AS q
     WHERE t.id = q.key::uuid AND t.status = 'waiting';
    SELECT coalesce(jsonb_agg(jsonb_build_object(
               'id', t.id, 'queue', t.queue, 'operation', t.operation)), '[]')
      INTO ready
      FROM appliance_finish_task(p_task, p_result) r(id) JOIN tasks t ON t.id = r.id;
    SELECT status INTO job_end FROM jobs WHERE id = v_job AND ended_at = now();
    IF p_doc THEN
        SELECT appliance_task_json(t)::text INTO doc FROM tasks t WHERE id = p_task;
    END IF;
END $$;
