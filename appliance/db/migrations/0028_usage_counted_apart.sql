-- A user's usage is counted in up to 16 rows a day instead of one, so that one account's job
-- creations and task ends no longer commit one after another.
--
-- Until now each job created and each task ended took the user's one row of the day in
-- usage_daily (migration 0011's deferred triggers, at commit) and held it until the commit was
-- done, the wait for a synchronous standby included: all of one account's creations and task
-- ends, from every API and worker host, committed in single file. An account that sends its
-- whole product's traffic through one key, the usual way to use a conversion API, was held to
-- one commit at a time for all its work.
--
-- Now the counts go into usage_counts, one row per user, day and slot, the slot that of the
-- counting connection (its backend's process id modulo 16): transactions on different
-- connections seldom meet on a row. usage_daily becomes a view that sums a day's slots, read as
-- before. The reconciler folds the slots of days gone by into slot 0 (appliance_fold_usage), so
-- a past day keeps one row per user.
--
-- The bytes a user's files hold (user_usage, migration 0007) had the same single row, taken by
-- the statement that adds a task's files and held to the end of the task's completion: it is
-- kept per slot too (a slot's figure may go below zero when files counted on one connection are
-- deleted on another; the sum is the user's), and its byte-hours accrue per slot, which sums to
-- the same. The reconciler's hourly flush moves every user's slots back into slot 0.
ALTER TABLE usage_daily RENAME TO usage_counts;
ALTER TABLE usage_counts ADD COLUMN slot smallint NOT NULL DEFAULT 0;
ALTER TABLE usage_counts DROP CONSTRAINT usage_daily_pkey;
ALTER TABLE usage_counts ADD CONSTRAINT usage_counts_pkey PRIMARY KEY (user_id, day, slot);

CREATE VIEW usage_daily AS
SELECT user_id, day,
       sum(jobs_created)::bigint AS jobs_created,
       sum(tasks_ended)::bigint AS tasks_ended,
       sum(tasks_failed)::bigint AS tasks_failed,
       sum(cpu_seconds) AS cpu_seconds,
       sum(bytes_in)::bigint AS bytes_in,
       sum(bytes_out)::bigint AS bytes_out,
       sum(bytes_exported)::bigint AS bytes_exported,
       sum(stored_byte_hours) AS stored_byte_hours
  FROM usage_counts
 GROUP BY user_id, day;

-- The slot the counting connection writes: one per backend, so a transaction waits on another's
-- row only when their backends' process ids agree modulo 16.
CREATE FUNCTION appliance_usage_slot() RETURNS smallint LANGUAGE sql STABLE AS $$
    SELECT (pg_backend_pid() % 16)::smallint
$$;

CREATE OR REPLACE FUNCTION appliance_meter_job() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO usage_counts AS u (user_id, day, slot, jobs_created)
    VALUES (NEW.user_id, (now() AT TIME ZONE 'UTC')::date, appliance_usage_slot(), 1)
    ON CONFLICT (user_id, day, slot) DO UPDATE SET jobs_created = u.jobs_created + 1;
    RETURN NULL;
END $$;

CREATE OR REPLACE FUNCTION appliance_meter_task_end() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    v_cpu double precision;
    v_bytes bigint;
    v_kind text := CASE WHEN NEW.operation LIKE 'import/%' THEN 'in'
                        WHEN NEW.operation LIKE 'export/%' THEN 'exported' ELSE 'out' END;
BEGIN
    SELECT t.cpu_seconds, (SELECT sum(f.size) FROM task_files f WHERE f.task_id = t.id)
      INTO v_cpu, v_bytes FROM tasks t WHERE t.id = NEW.id;
    v_bytes := coalesce(v_bytes, 0);
    INSERT INTO usage_counts AS u (user_id, day, slot, tasks_ended, tasks_failed, cpu_seconds,
                                   bytes_in, bytes_out, bytes_exported)
    VALUES (NEW.user_id, (now() AT TIME ZONE 'UTC')::date, appliance_usage_slot(), 1,
            CASE WHEN NEW.status = 'error' THEN 1 ELSE 0 END, coalesce(v_cpu, 0),
            CASE v_kind WHEN 'in' THEN v_bytes ELSE 0 END,
            CASE v_kind WHEN 'out' THEN v_bytes ELSE 0 END,
            CASE v_kind WHEN 'exported' THEN v_bytes ELSE 0 END)
    ON CONFLICT (user_id, day, slot) DO UPDATE
       SET tasks_ended = u.tasks_ended + 1,
           tasks_failed = u.tasks_failed + EXCLUDED.tasks_failed,
           cpu_seconds = u.cpu_seconds + EXCLUDED.cpu_seconds,
           bytes_in = u.bytes_in + EXCLUDED.bytes_in,
           bytes_out = u.bytes_out + EXCLUDED.bytes_out,
           bytes_exported = u.bytes_exported + EXCLUDED.bytes_exported;
    RETURN NULL;
END $$;

ALTER TABLE user_usage ADD COLUMN slot smallint NOT NULL DEFAULT 0;
ALTER TABLE user_usage DROP CONSTRAINT user_usage_pkey;
ALTER TABLE user_usage ADD CONSTRAINT user_usage_pkey PRIMARY KEY (user_id, slot);

-- As in 0011, into the connection's slot; a deletion counts its bytes off as a negative figure
-- (only for users that still exist: a deleted user's rows went with them).
CREATE OR REPLACE FUNCTION appliance_count_stored_bytes() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO user_usage AS u (user_id, slot, stored_bytes)
        SELECT user_id, appliance_usage_slot(), sum(size) FROM added
         GROUP BY user_id ORDER BY user_id
        ON CONFLICT (user_id, slot) DO UPDATE
           SET stored_bytes = u.stored_bytes + EXCLUDED.stored_bytes,
               byte_hours = u.byte_hours + u.stored_bytes
                            * greatest(0, extract(epoch FROM now() - u.accrued_at)) / 3600,
               accrued_at = greatest(u.accrued_at, now());
    ELSE
        INSERT INTO user_usage AS u (user_id, slot, stored_bytes)
        SELECT g.user_id, appliance_usage_slot(), -sum(g.size) FROM gone g
          JOIN users ON users.id = g.user_id
         GROUP BY g.user_id ORDER BY g.user_id
        ON CONFLICT (user_id, slot) DO UPDATE
           SET stored_bytes = u.stored_bytes + EXCLUDED.stored_bytes,
               byte_hours = u.byte_hours + u.stored_bytes
                            * greatest(0, extract(epoch FROM now() - u.accrued_at)) / 3600,
               accrued_at = greatest(u.accrued_at, now());
    END IF;
    RETURN NULL;
END $$;

-- A user's stored bytes: the sum of their slots (never below zero).
CREATE FUNCTION appliance_stored_bytes(p_user uuid) RETURNS bigint LANGUAGE sql STABLE AS $$
    SELECT greatest(coalesce(sum(stored_bytes), 0), 0)::bigint FROM user_usage
     WHERE user_id = p_user
$$;

-- As in 0011, summed over each user's slots, into usage_counts' slot 0 (the reconciler alone
-- writes stored byte-hours, once an hour); then every other slot's bytes are moved into slot 0,
-- with the byte-hours a slot counted since (a row made after the first statement's locks).
CREATE OR REPLACE FUNCTION appliance_flush_stored_usage() RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    v_count integer;
BEGIN
    WITH held AS (
        SELECT user_id, slot, byte_hours + stored_bytes
               * greatest(0, extract(epoch FROM now() - accrued_at)) / 3600 AS bh
          FROM user_usage WHERE byte_hours <> 0 OR stored_bytes <> 0 OR slot <> 0
         ORDER BY user_id, slot FOR UPDATE
    ), taken AS (
        UPDATE user_usage u SET byte_hours = 0, accrued_at = greatest(u.accrued_at, now())
          FROM held h WHERE u.user_id = h.user_id AND u.slot = h.slot
        RETURNING h.user_id, h.bh
    )
    INSERT INTO usage_counts AS d (user_id, day, slot, stored_byte_hours)
    SELECT user_id, (now() AT TIME ZONE 'UTC')::date, 0, sum(bh) FROM taken
     GROUP BY user_id HAVING sum(bh) > 0 ORDER BY user_id
    ON CONFLICT (user_id, day, slot) DO UPDATE
       SET stored_byte_hours = d.stored_byte_hours + EXCLUDED.stored_byte_hours;
    GET DIAGNOSTICS v_count = ROW_COUNT;
    -- Added to slot 0, never set: a slot 0 row another transaction made meanwhile keeps its own.
    WITH moved AS (
        DELETE FROM user_usage WHERE slot <> 0
        RETURNING user_id, stored_bytes, byte_hours + stored_bytes
                  * greatest(0, extract(epoch FROM now() - accrued_at)) / 3600 AS bh
    )
    INSERT INTO user_usage AS u (user_id, slot, stored_bytes, byte_hours)
    SELECT user_id, 0, sum(stored_bytes), sum(bh) FROM moved GROUP BY user_id ORDER BY user_id
    ON CONFLICT (user_id, slot) DO UPDATE
       SET stored_bytes = u.stored_bytes + EXCLUDED.stored_bytes,
           byte_hours = u.byte_hours + EXCLUDED.byte_hours + u.stored_bytes
                        * greatest(0, extract(epoch FROM now() - u.accrued_at)) / 3600,
           accrued_at = greatest(u.accrued_at, now());
    RETURN v_count;
END $$;

-- The slots of every day before yesterday (UTC) summed into slot 0 and deleted: a day gone by
-- keeps one row per user (yesterday's last commits may still be counting when the day turns).
-- How many rows went.
CREATE FUNCTION appliance_fold_usage() RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    v_count integer;
BEGIN
    WITH gone AS (
        DELETE FROM usage_counts
         WHERE slot <> 0 AND day < (now() AT TIME ZONE 'UTC')::date - 1
        RETURNING *
    ), summed AS (
        SELECT user_id, day, sum(jobs_created) AS jobs_created, sum(tasks_ended) AS tasks_ended,
               sum(tasks_failed) AS tasks_failed, sum(cpu_seconds) AS cpu_seconds,
               sum(bytes_in) AS bytes_in, sum(bytes_out) AS bytes_out,
               sum(bytes_exported) AS bytes_exported, sum(stored_byte_hours) AS stored_byte_hours
          FROM gone GROUP BY user_id, day
    ), folded AS (
        INSERT INTO usage_counts AS u (user_id, day, slot, jobs_created, tasks_ended,
                                       tasks_failed, cpu_seconds, bytes_in, bytes_out,
                                       bytes_exported, stored_byte_hours)
        SELECT user_id, day, 0, jobs_created, tasks_ended, tasks_failed, cpu_seconds,
               bytes_in, bytes_out, bytes_exported, stored_byte_hours
          FROM summed ORDER BY user_id, day
        ON CONFLICT (user_id, day, slot) DO UPDATE
           SET jobs_created = u.jobs_created + EXCLUDED.jobs_created,
               tasks_ended = u.tasks_ended + EXCLUDED.tasks_ended,
               tasks_failed = u.tasks_failed + EXCLUDED.tasks_failed,
               cpu_seconds = u.cpu_seconds + EXCLUDED.cpu_seconds,
               bytes_in = u.bytes_in + EXCLUDED.bytes_in,
               bytes_out = u.bytes_out + EXCLUDED.bytes_out,
               bytes_exported = u.bytes_exported + EXCLUDED.bytes_exported,
               stored_byte_hours = u.stored_byte_hours + EXCLUDED.stored_byte_hours
        RETURNING 1
    )
    SELECT count(*) INTO v_count FROM gone;
    RETURN v_count;
END $$;
