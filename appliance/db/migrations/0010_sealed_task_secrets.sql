-- Secrets a task carries (the credentials of import/s3 and export/s3) are sealed by the API
-- into its payload's "_sealed" field (AES-GCM, appliance/security/sealing.py) and opened by
-- the worker that runs it. They are kept only while the task may still run:
--
-- * the task's JSON (and so every job document, list and webhook built from it) never shows
--   the field, not even encrypted;
-- * the field is dropped in the statement that ends the task, finished or failed (a failure
--   failing its dependents included), by a trigger, so that no function ending a task has to
--   remember it, and an ended task, or a retry copied from one, holds no secret at all.
CREATE OR REPLACE FUNCTION appliance_task_json(t tasks) RETURNS json LANGUAGE sql STABLE AS $$
    SELECT json_build_object(
        'id', t.id, 'name', t.name, 'job_id', t.job_id, 'operation', t.operation,
        'status', t.status, 'message', t.message, 'code', t.code, 'percent', t.percent,
        'credits', 0, 'engine', t.engine, 'engine_version', t.engine_version,
        -- `?` reads the key list only: payloads without the field are not copied
        'payload', CASE WHEN t.payload ? '_sealed' THEN t.payload - '_sealed' ELSE t.payload END,
        'result', t.result,
        'created_at', date_trunc('second', t.created_at),
        'started_at', date_trunc('second', t.started_at),
        'ended_at', date_trunc('second', t.ended_at),
        'retry_of_task_id', t.retry_of_task_id, 'copy_of_task_id', NULL,
        'user_id', t.user_id, 'priority', 0, 'host_name', NULL, 'storage', NULL,
        'depends_on_task_ids', t.depends_on)
$$;

CREATE FUNCTION appliance_drop_sealed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.payload := NEW.payload - '_sealed';
    RETURN NEW;
END $$;
CREATE TRIGGER tasks_drop_sealed BEFORE UPDATE OF status ON tasks
    FOR EACH ROW WHEN (NEW.status IN ('finished', 'error') AND NEW.payload ? '_sealed')
    EXECUTE FUNCTION appliance_drop_sealed();
