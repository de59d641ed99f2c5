-- An export/url whose only input is the task that just ended is ended by the same statement,
-- with the signed URLs the worker made for that task's files, instead of a claim and an end
-- of its own after the worker has run it. (Exports of several inputs, and those the worker did
-- not know of, are still run as before.) appliance_complete_task stays as it is for hosts on
-- the previous release during a rolling upgrade.

-- As appliance_complete_task (no queue moves, no task JSON), then each export in p_exports
-- ({task id: {files, result}}) that this end released is ended with its files and result.
-- ready leaves out the exports so ended; ended lists them; job_end is the job's final status
-- if one of these ends ended it.
CREATE FUNCTION appliance_complete_with_exports(
    p_task uuid, p_attempts integer, p_files jsonb, p_result jsonb,
    p_engine text, p_engine_version text, p_cache jsonb, p_exports jsonb,
    OUT owned boolean, OUT ready jsonb, OUT job_end text, OUT ended uuid[]
) LANGUAGE plpgsql AS $$
DECLARE
    v_export uuid;
    v_out jsonb;
    v_owned boolean;
    v_ready jsonb;
    v_end text;
BEGIN
    ended := '{}';
    SELECT c.owned, c.ready, c.job_end INTO owned, ready, job_end
      FROM appliance_complete_task(p_task, p_attempts, p_files, p_result, p_engine,
                                   p_engine_version, NULL, p_cache, false) AS c;
    IF NOT owned THEN
        RETURN;
    END IF;
    FOR v_export, v_out IN
        SELECT e.key::uuid, e.value FROM jsonb_each(coalesce(p_exports, '{}')) AS e
    LOOP
        CONTINUE WHEN NOT EXISTS (SELECT 1 FROM jsonb_array_elements(ready) AS r
                                   WHERE (r ->> 'id')::uuid = v_export);
        -- released just now by this statement, so still waiting and not yet enqueued
        SELECT c.owned, c.ready, c.job_end INTO v_owned, v_ready, v_end
          FROM appliance_complete_task(v_export, NULL, v_out -> 'files', v_out -> 'result',
                                       NULL, NULL, NULL, NULL, false) AS c;
        CONTINUE WHEN NOT v_owned;
        ready := (SELECT coalesce(jsonb_agg(r), '[]') FROM jsonb_array_elements(ready) AS r
                   WHERE (r ->> 'id')::uuid <> v_export) || v_ready;
        job_end := coalesce(v_end, job_end);
        ended := ended || v_export;
    END LOOP;
END $$;
