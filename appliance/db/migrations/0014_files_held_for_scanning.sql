-- Virus scanning (clamd runs on the worker hosts): a file a client sends (import/upload,
-- import/base64) is stored by the API, but its import task ends only once a worker has
-- scanned it. Until then the file is held here: the row keeps a reference to the stored
-- object (the same trigger as task_files), so the cleaner leaves it alone however long clamd
-- stays down, and it goes with its task (ON DELETE CASCADE), releasing the object. When the
-- scan finds malware, the worker deletes the row and the object. Files imported by a worker
-- (import/url, import/s3) are scanned before they are stored and need no row.
CREATE TABLE files_to_scan (
    task_id     uuid PRIMARY KEY REFERENCES tasks(id) ON DELETE CASCADE,
    sha256      text NOT NULL,
    size        bigint NOT NULL,
    filename    text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE TRIGGER files_to_scan_ref AFTER INSERT OR DELETE ON files_to_scan
    FOR EACH ROW EXECUTE FUNCTION appliance_file_ref('sha256');
