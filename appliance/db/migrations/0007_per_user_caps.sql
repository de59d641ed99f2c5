-- Per-user caps read one row or a few index entries when a job is made.
--
-- Stored bytes: user_usage.stored_bytes is the size of every file the user's live tasks hold
-- (an import's file, a conversion's outputs; the same file held by two tasks counts twice),
-- kept by triggers on task_files so that no writer has to remember it. task_files gets the
-- owner of its task, filled in on insert, because a row deleted with its task (ON DELETE
-- CASCADE) can no longer find the task to learn whose bytes it held.
ALTER TABLE task_files ADD COLUMN user_id uuid;
UPDATE task_files f SET user_id = t.user_id FROM tasks t WHERE t.id = f.task_id;

CREATE TABLE user_usage (
    user_id       uuid PRIMARY KEY REFERENCES users(id) ON DELETE CASCADE,
    stored_bytes  bigint NOT NULL DEFAULT 0
);
INSERT INTO user_usage (user_id, stored_bytes)
SELECT user_id, sum(size) FROM task_files WHERE user_id IS NOT NULL GROUP BY user_id;

CREATE FUNCTION appliance_task_file_owner() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.user_id IS NULL THEN
        SELECT user_id INTO NEW.user_id FROM tasks WHERE id = NEW.task_id;
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER task_files_owner BEFORE INSERT ON task_files
    FOR EACH ROW EXECUTE FUNCTION appliance_task_file_owner();

-- Once per statement, whatever its number of rows: a job's deletion takes all its files in one
-- update of its owner's row.
CREATE FUNCTION appliance_count_stored_bytes() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO user_usage AS u (user_id, stored_bytes)
        SELECT user_id, sum(size) FROM added GROUP BY user_id ORDER BY user_id
        ON CONFLICT (user_id) DO UPDATE SET stored_bytes = u.stored_bytes + EXCLUDED.stored_bytes;
    ELSE
        UPDATE user_usage u SET stored_bytes = greatest(u.stored_bytes - g.bytes, 0)
          FROM (SELECT user_id, sum(size) AS bytes FROM gone GROUP BY user_id) g
         WHERE u.user_id = g.user_id;
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER task_files_stored_added AFTER INSERT ON task_files
    REFERENCING NEW TABLE AS added
    FOR EACH STATEMENT EXECUTE FUNCTION appliance_count_stored_bytes();
CREATE TRIGGER task_files_stored_gone AFTER DELETE ON task_files
    REFERENCING OLD TABLE AS gone
    FOR EACH STATEMENT EXECUTE FUNCTION appliance_count_stored_bytes();

-- Jobs and single tasks in flight, counted per user.
CREATE INDEX jobs_user_open ON jobs (user_id) WHERE status IN ('waiting', 'processing');
CREATE INDEX tasks_user_open_alone ON tasks (user_id)
    WHERE job_id IS NULL AND status IN ('waiting', 'processing');
