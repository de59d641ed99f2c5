-- Webhooks (CloudConvert's: a user's subscriptions to job.created, job.finished and job.failed,
-- and a job's own webhook_url) leave from an outbox, webhook_deliveries, whose rows are
-- written in the transaction that creates or ends the job: a crash, a Redis restart or a
-- receiver that is down loses no event. Senders (appliance/jobs/webhooks.py) claim due rows
-- with FOR UPDATE SKIP LOCKED and keep each row's outcome, which is the user's delivery log.

-- The secret that signs deliveries to the webhook_url a job names (a webhook resource has a
-- secret of its own): 64 hex characters, 244 random bits from gen_random_uuid's strong source.
ALTER TABLE users ADD COLUMN webhook_signing_secret text NOT NULL
    DEFAULT replace(gen_random_uuid()::text || gen_random_uuid()::text, '-', '');

ALTER TABLE jobs ADD COLUMN webhook_url text;

CREATE TABLE webhooks (
    id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id         uuid NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    url             text NOT NULL,
    events          text[] NOT NULL,
    signing_secret  text NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    disabled_at     timestamptz  -- the receiver answered 410 Gone: nothing more is sent
);
CREATE INDEX webhooks_user ON webhooks (user_id, created_at DESC, id DESC);

-- One row per event and receiver. body is the exact text sent and signed, made when the event
-- happened (the job as it was then, still there when the job has been deleted since). A row is
-- due while pending and next_at <= now(); a sender's claim moves next_at past the time one
-- attempt can take, so a sender that dies mid-attempt leaves it due again, not lost.
CREATE TABLE webhook_deliveries (
    id             uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    seq            bigint GENERATED ALWAYS AS IDENTITY,  -- the order events were written in
    webhook_id     uuid REFERENCES webhooks(id) ON DELETE CASCADE,  -- NULL: the job's own URL
    user_id        uuid NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    job_id         uuid NOT NULL,  -- no reference: the log outlives the job
    event          text NOT NULL,
    url            text NOT NULL,
    body           text NOT NULL,
    status         text NOT NULL DEFAULT 'pending'
                   CHECK (status IN ('pending', 'delivered', 'failed')),
    attempts       integer NOT NULL DEFAULT 0,
    next_at        timestamptz NOT NULL DEFAULT now(),
    response_code  integer,
    last_error     text,
    created_at     timestamptz NOT NULL DEFAULT now(),
    ended_at       timestamptz
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_at, seq) WHERE status = 'pending';
CREATE INDEX webhook_deliveries_user ON webhook_deliveries (user_id, seq DESC);
CREATE INDEX webhook_deliveries_webhook ON webhook_deliveries (webhook_id, seq DESC)
    WHERE webhook_id IS NOT NULL;
CREATE INDEX webhook_deliveries_job ON webhook_deliveries (job_id);
CREATE INDEX webhook_deliveries_ended ON webhook_deliveries (ended_at) WHERE ended_at IS NOT NULL;

-- Writes the deliveries of p_event for job p_job: one per live webhook of its owner that
-- takes the event, and one to the job's webhook_url for job.finished and job.failed. The
-- body is {"event", "job"} with the job's document as GET /v2/jobs/{id} shows it (in UTC
-- whatever the session's time zone). Senders are woken by NOTIFY, sent at commit. Returns the
-- number of deliveries written; a user with no webhooks costs one index lookup.
CREATE FUNCTION appliance_queue_webhooks(p_job uuid, p_event text) RETURNS integer
LANGUAGE plpgsql SET timezone = 'UTC' AS $$
DECLARE
    v_user uuid;
    v_url text;
    v_body text;
    v_count integer;
BEGIN
    SELECT user_id, CASE WHEN p_event <> 'job.created' THEN webhook_url END
      INTO v_user, v_url FROM jobs WHERE id = p_job;
    IF v_url IS NULL AND NOT EXISTS (
        SELECT 1 FROM webhooks w
         WHERE w.user_id = v_user AND w.disabled_at IS NULL AND p_event = ANY (w.events)
    ) THEN
        RETURN 0;
    END IF;
    SELECT json_build_object('event', p_event, 'job', d.doc)::text INTO v_body
      FROM job_docs d WHERE d.id = p_job;
    INSERT INTO webhook_deliveries (webhook_id, user_id, job_id, event, url, body)
    SELECT w.id, v_user, p_job, p_event, w.url, v_body FROM webhooks w
     WHERE w.user_id = v_user AND w.disabled_at IS NULL AND p_event = ANY (w.events)
    UNION ALL
    SELECT NULL, v_user, p_job, p_event, v_url, v_body WHERE v_url IS NOT NULL;
    GET DIAGNOSTICS v_count = ROW_COUNT;
    PERFORM pg_notify('appliance_webhooks', '');
    RETURN v_count;
END $$;

-- A job's end is its status becoming finished or error, which only appliance_refresh_job
-- writes, inside the transaction that ended its last task; a trigger keeps every path to it.
CREATE FUNCTION appliance_job_ended_webhooks() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM appliance_queue_webhooks(
        NEW.id, CASE NEW.status WHEN 'finished' THEN 'job.finished' ELSE 'job.failed' END);
    RETURN NULL;
END $$;
CREATE TRIGGER jobs_ended_webhooks AFTER UPDATE OF status ON jobs
    FOR EACH ROW WHEN (NEW.status IN ('finished', 'error')
                       AND OLD.status IS DISTINCT FROM NEW.status)
    EXECUTE FUNCTION appliance_job_ended_webhooks();

-- As 0003's, with the job's webhook_url, and job.created written once its tasks are in (a
-- trigger on the job's insert would see none). p_webhook_url has a default, so hosts still on
-- the previous release keep calling it with five arguments during a rolling upgrade.
DROP FUNCTION appliance_create_job(uuid, text, double precision, jsonb, boolean);
CREATE FUNCTION appliance_create_job(
    p_user uuid, p_tag text, p_hours double precision, p_tasks jsonb, p_doc boolean,
    p_webhook_url text DEFAULT NULL, OUT new_job uuid, OUT doc text
) LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO jobs (user_id, tag, expires_at, webhook_url)
    VALUES (p_user, p_tag, now() + p_hours * interval '1 hour', p_webhook_url)
    RETURNING id INTO new_job;
    PERFORM appliance_insert_tasks(new_job, p_user, p_hours, p_tasks);
    PERFORM appliance_queue_webhooks(new_job, 'job.created');
    IF p_doc THEN
        SELECT d.doc::text INTO doc FROM job_docs d WHERE d.id = new_job;
    END IF;
END $$;
