-- A job's creation and an import's end, each in one statement (one round trip, one implicit
-- transaction) instead of a transaction of five to seven. The functions of 0002 stay as they
-- are, so hosts still on the previous release keep working during a rolling upgrade.
-- All are PL/pgSQL, whose statements' plans are kept per connection (PostgreSQL 15 plans the
-- body of a SQL-language function that it cannot inline again on every call).

-- A new job's or single task's tasks, from a JSON array of {id, name, operation, queue,
-- payload, depends_on, result, runs_now}, in that order (their seq follows it). runs_now: no
-- dependencies and nothing to wait for, ready at once.
CREATE FUNCTION appliance_insert_tasks(
    p_job uuid, p_user uuid, p_hours double precision, p_tasks jsonb
) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO tasks (id, job_id, user_id, name, operation, queue, payload, depends_on,
                       result, ready_at, expires_at)
    SELECT (t ->> 'id')::uuid, p_job, p_user, t ->> 'name', t ->> 'operation', t ->> 'queue',
           t -> 'payload',
           ARRAY(SELECT d::uuid FROM jsonb_array_elements_text(t -> 'depends_on') AS d),
           nullif(t -> 'result', 'null'::jsonb),
           CASE WHEN (t ->> 'runs_now')::boolean THEN now() END,
           now() + p_hours * interval '1 hour'
      FROM jsonb_array_elements(p_tasks) WITH ORDINALITY AS x(t, n)
     ORDER BY n;
END $$;

-- A job and its tasks; returns its id and, when p_doc, its JSON text.
CREATE FUNCTION appliance_create_job(
    p_user uuid, p_tag text, p_hours double precision, p_tasks jsonb, p_doc boolean,
    OUT new_job uuid, OUT doc text
) LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO jobs (user_id, tag, expires_at)
    VALUES (p_user, p_tag, now() + p_hours * interval '1 hour')
    RETURNING id INTO new_job;
    PERFORM appliance_insert_tasks(new_job, p_user, p_hours, p_tasks);
    IF p_doc THEN
        SELECT d.doc::text INTO doc FROM job_docs d WHERE d.id = new_job;
    END IF;
END $$;

-- The waiting tasks whose queue class an import's file name may change (convert, thumbnail
-- and merge that take it as an input), as a JSON array of {id, operation, queue, payload}.
CREATE FUNCTION appliance_routed_dependents(p_task uuid)
RETURNS jsonb LANGUAGE plpgsql STABLE AS $$
BEGIN
    RETURN (SELECT coalesce(jsonb_agg(jsonb_build_object(
                       'id', id, 'operation', operation, 'queue', queue, 'payload', payload)
                       ORDER BY id), '[]')
              FROM tasks
             WHERE depends_on @> ARRAY[p_task]
               AND operation IN ('convert', 'thumbnail', 'merge')
               AND status = 'waiting');
END $$;

-- An import ends well (as appliance_complete_task, without engine and cache), its dependents
-- moved to p_queues: the queue classes worked out from its file's name for p_routed, the
-- dependents the caller knew of. If one more has appeared since (a job made meanwhile that
-- takes this task as an input), nothing changes: stale is true and dependents lists them all,
-- read under the import's lock, to work the queues out again and call once more.
CREATE FUNCTION appliance_complete_import(
    p_task uuid, p_attempts integer, p_files jsonb, p_result jsonb, p_queues jsonb,
    p_routed uuid[], p_doc boolean,
    OUT owned boolean, OUT stale boolean, OUT dependents jsonb, OUT ready jsonb,
    OUT job_end text, OUT doc text
) LANGUAGE plpgsql AS $$
BEGIN
    owned := false;
    PERFORM 1 FROM tasks WHERE id = p_task FOR UPDATE;  -- lock order: own task first
    dependents := appliance_routed_dependents(p_task);
    stale := EXISTS (SELECT 1 FROM jsonb_array_elements(dependents) AS d
                      WHERE NOT (d ->> 'id')::uuid = ANY(p_routed));
    IF stale THEN
        RETURN;
    END IF;
    dependents := NULL;
    SELECT c.owned, c.ready, c.job_end, c.doc INTO owned, ready, job_end, doc
      FROM appliance_complete_task(p_task, p_attempts, p_files, p_result, NULL, NULL,
                                   p_queues, NULL, p_doc) AS c;
END $$;
