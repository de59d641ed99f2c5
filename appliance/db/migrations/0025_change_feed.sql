-- Job and task status reads are served from a cache in each API process (conversions/
-- status_cache.py). A cached document may be served only while nothing it was built from has
-- changed, so every change to tasks and jobs must be known to whoever caches, at the moment it
-- commits, whichever code path made it. These triggers give each writing session the ids of
-- the jobs (or job-less tasks) its statements changed, as notifications on a channel of its
-- own ('appliance_changed_<backend pid>'): Postgres delivers them to that session when the
-- transaction commits, before its COMMIT returns, so the writer invalidates the cache before
-- it goes on (db/changes.py). A session not listening on its channel (migrations, psql) sends
-- nothing.
CREATE FUNCTION appliance_announce_changes() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    v_channel text := 'appliance_changed_' || pg_backend_pid();
    v_ids text[];
BEGIN
    IF NOT v_channel = ANY (ARRAY(SELECT pg_listening_channels())) THEN
        RETURN NULL;
    END IF;
    IF TG_TABLE_NAME = 'tasks' THEN
        SELECT array_agg(DISTINCT coalesce(job_id, id)::text) INTO v_ids FROM changed_rows;
    ELSE
        SELECT array_agg(DISTINCT id::text) INTO v_ids FROM changed_rows;
    END IF;
    -- A payload holds under 8000 bytes: 200 ids (36 characters and a space) at a time.
    FOR i IN 1 .. coalesce(array_length(v_ids, 1), 0) BY 200 LOOP
        PERFORM pg_notify(v_channel, array_to_string(v_ids[i:i + 199], ' '));
    END LOOP;
    RETURN NULL;
END $$;

-- One trigger per event: a trigger with transition tables takes one event only.
CREATE TRIGGER tasks_changed_by_insert AFTER INSERT ON tasks
    REFERENCING NEW TABLE AS changed_rows
    FOR EACH STATEMENT EXECUTE FUNCTION appliance_announce_changes();
CREATE TRIGGER tasks_changed_by_update AFTER UPDATE ON tasks
    REFERENCING NEW TABLE AS changed_rows
    FOR EACH STATEMENT EXECUTE FUNCTION appliance_announce_changes();
CREATE TRIGGER tasks_changed_by_delete AFTER DELETE ON tasks
    REFERENCING OLD TABLE AS changed_rows
    FOR EACH STATEMENT EXECUTE FUNCTION appliance_announce_changes();
CREATE TRIGGER jobs_changed_by_update AFTER UPDATE ON jobs
    REFERENCING NEW TABLE AS changed_rows
    FOR EACH STATEMENT EXECUTE FUNCTION appliance_announce_changes();
CREATE TRIGGER jobs_changed_by_delete AFTER DELETE ON jobs
    REFERENCING OLD TABLE AS changed_rows
    FOR EACH STATEMENT EXECUTE FUNCTION appliance_announce_changes();
