-- Usage metering per user and UTC day, for billing, and quotas per user.
--
-- usage_daily holds one row per user and day: jobs created, tasks ended (and failed), the CPU
-- seconds their engine runs used, bytes in (imports), out (what tasks made) and exported
-- (export/url), and stored byte-hours. Rows outlive the user (no foreign key): a deleted
-- user's month is still billed.
--
-- Counting happens in the transaction of the event, but in deferred triggers: they run at
-- commit, after every other lock the transaction takes, so a day's row (locked by its upsert
-- until the commit) is never held while the transaction waits on a task or job row; taken
-- mid-statement it would deadlock a task's end with a sibling's failure that locked their
-- common dependent first. A connection with appliance.metering = off (APPLIANCE_USAGE_METERING)
-- counts nothing.
CREATE TABLE usage_daily (
    user_id            uuid NOT NULL,
    day                date NOT NULL,
    jobs_created       bigint NOT NULL DEFAULT 0,
    tasks_ended        bigint NOT NULL DEFAULT 0,
    tasks_failed       bigint NOT NULL DEFAULT 0,
    cpu_seconds        double precision NOT NULL DEFAULT 0,
    bytes_in           bigint NOT NULL DEFAULT 0,
    bytes_out          bigint NOT NULL DEFAULT 0,
    bytes_exported     bigint NOT NULL DEFAULT 0,
    stored_byte_hours  double precision NOT NULL DEFAULT 0,
    PRIMARY KEY (user_id, day)
);

-- The CPU seconds a task's engine runs used (helpers measure it, the worker records it with
-- the task's end); NULL for tasks that ran no engine.
ALTER TABLE tasks ADD COLUMN cpu_seconds double precision;

-- Quotas an operator sets per user; NULL: the setting's default; 0: unlimited.
ALTER TABLE users ADD COLUMN quota_minutes_per_day integer;
ALTER TABLE users ADD COLUMN quota_minutes_per_month integer;
ALTER TABLE users ADD COLUMN quota_stored_bytes bigint;

-- Stored byte-hours are integrated when stored_bytes changes (the row is updated then anyway):
-- byte_hours holds what accrued since the last move into usage_daily, accrued_at when.
ALTER TABLE user_usage ADD COLUMN byte_hours double precision NOT NULL DEFAULT 0;
ALTER TABLE user_usage ADD COLUMN accrued_at timestamptz NOT NULL DEFAULT now();

CREATE FUNCTION appliance_meter_job() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO usage_daily AS u (user_id, day, jobs_created)
    VALUES (NEW.user_id, (now() AT TIME ZONE 'UTC')::date, 1)
    ON CONFLICT (user_id, day) DO UPDATE SET jobs_created = u.jobs_created + 1;
    RETURN NULL;
END $$;
CREATE CONSTRAINT TRIGGER jobs_metered AFTER INSERT ON jobs
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW
    WHEN (current_setting('appliance.metering', true) IS DISTINCT FROM 'off')
    EXECUTE FUNCTION appliance_meter_job();

-- A task's end: its files by kind of operation, and its CPU seconds, read at commit (the
-- worker records them in the statement that ends the task).
CREATE FUNCTION appliance_meter_task_end() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    v_cpu double precision;
    v_bytes bigint;
    v_kind text := CASE WHEN NEW.operation LIKE 'import/%' THEN 'in'
                        WHEN NEW.operation LIKE 'export/%' THEN 'exported' ELSE 'out' END;
BEGIN
    SELECT t.cpu_seconds, (SELECT sum(f.size) FROM task_files f WHERE f.task_id = t.id)
      INTO v_cpu, v_bytes FROM tasks t WHERE t.id = NEW.id;
    v_bytes := coalesce(v_bytes, 0);
    INSERT INTO usage_daily AS u (user_id, day, tasks_ended, tasks_failed, cpu_seconds,
                                  bytes_in, bytes_out, bytes_exported)
    VALUES (NEW.user_id, (now() AT TIME ZONE 'UTC')::date, 1,
            CASE WHEN NEW.status = 'error' THEN 1 ELSE 0 END, coalesce(v_cpu, 0),
            CASE v_kind WHEN 'in' THEN v_bytes ELSE 0 END,
            CASE v_kind WHEN 'out' THEN v_bytes ELSE 0 END,
            CASE v_kind WHEN 'exported' THEN v_bytes ELSE 0 END)
    ON CONFLICT (user_id, day) DO UPDATE
       SET tasks_ended = u.tasks_ended + 1,
           tasks_failed = u.tasks_failed + EXCLUDED.tasks_failed,
           cpu_seconds = u.cpu_seconds + EXCLUDED.cpu_seconds,
           bytes_in = u.bytes_in + EXCLUDED.bytes_in,
           bytes_out = u.bytes_out + EXCLUDED.bytes_out,
           bytes_exported = u.bytes_exported + EXCLUDED.bytes_exported;
    RETURN NULL;
END $$;
CREATE CONSTRAINT TRIGGER tasks_end_metered AFTER UPDATE OF status ON tasks
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW
    WHEN (OLD.status IN ('waiting', 'processing') AND NEW.status IN ('finished', 'error')
          AND current_setting('appliance.metering', true) IS DISTINCT FROM 'off')
    EXECUTE FUNCTION appliance_meter_task_end();

-- As in 0007, and the byte-hours held until now accrue first.
CREATE OR REPLACE FUNCTION appliance_count_stored_bytes() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO user_usage AS u (user_id, stored_bytes)
        SELECT user_id, sum(size) FROM added GROUP BY user_id ORDER BY user_id
        ON CONFLICT (user_id) DO UPDATE
           SET stored_bytes = u.stored_bytes + EXCLUDED.stored_bytes,
               byte_hours = u.byte_hours + u.stored_bytes
                            * greatest(0, extract(epoch FROM now() - u.accrued_at)) / 3600,
               accrued_at = greatest(u.accrued_at, now());
    ELSE
        UPDATE user_usage u
           SET stored_bytes = greatest(u.stored_bytes - g.bytes, 0),
               byte_hours = u.byte_hours + u.stored_bytes
                            * greatest(0, extract(epoch FROM now() - u.accrued_at)) / 3600,
               accrued_at = greatest(u.accrued_at, now())
          FROM (SELECT user_id, sum(size) AS bytes FROM gone GROUP BY user_id) g
         WHERE u.user_id = g.user_id;
    END IF;
    RETURN NULL;
END $$;

-- Moves the byte-hours accrued until now into today's rows (the reconciler, hourly): the day
-- of the move gets them, so a day's figure may hold up to one interval of the day before.
CREATE FUNCTION appliance_flush_stored_usage() RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    v_count integer;
BEGIN
    WITH held AS (
        SELECT user_id, byte_hours + stored_bytes
               * greatest(0, extract(epoch FROM now() - accrued_at)) / 3600 AS bh
          FROM user_usage WHERE byte_hours > 0 OR stored_bytes > 0
         ORDER BY user_id FOR UPDATE
    ), taken AS (
        UPDATE user_usage u SET byte_hours = 0, accrued_at = greatest(u.accrued_at, now())
          FROM held h WHERE u.user_id = h.user_id
        RETURNING h.user_id, h.bh
    )
    INSERT INTO usage_daily AS d (user_id, day, stored_byte_hours)
    SELECT user_id, (now() AT TIME ZONE 'UTC')::date, bh FROM taken WHERE bh > 0
    ORDER BY user_id
    ON CONFLICT (user_id, day) DO UPDATE
       SET stored_byte_hours = d.stored_byte_hours + EXCLUDED.stored_byte_hours;
    GET DIAGNOSTICS v_count = ROW_COUNT;
    RETURN v_count;
END $$;

-- As in 0005, with the CPU seconds the task's engine runs used (recorded on the task: the
-- task-end trigger reads it at commit).
DROP FUNCTION appliance_complete_with_exports(uuid, integer, jsonb, jsonb, text, text, jsonb,
                                              jsonb);
CREATE FUNCTION appliance_complete_with_exports(
    p_task uuid, p_attempts integer, p_files jsonb, p_result jsonb, p_engine text,
    p_engine_version text, p_cache jsonb, p_exports jsonb, p_cpu double precision,
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
    IF p_cpu IS NOT NULL THEN
        UPDATE tasks SET cpu_seconds = p_cpu WHERE id = p_task;
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
