-- The audit log: append-only records of security-relevant events (users and keys created,
-- revoked, disabled, erased; jobs created and deleted; files downloaded; webhooks changed;
-- limits hit, sampled; operator commands; malware found), tamper-evident as a hash chain.
--
-- Each record holds the hash of the one before (prev) and its own (hash): SHA-256 over its
-- sequence number, prev, time and the SHA-256 of each of its text fields
-- (appliance_audit_hash; `appliance audit verify` recomputes it in Python independently), so an
-- edited, deleted or reordered record breaks the chain. Appends are serialized by one row,
-- audit_head (the last sequence number and hash), updated by the append itself: a second
-- writer waits on that row lock until the first one's transaction ends, then chains onto its
-- record; a rolled-back append rolls back the head too, leaving no gap. Callers append last in
-- their transaction, so the lock is held only for its commit.
--
-- Retention (APPLIANCE_AUDIT_RETENTION_DAYS) deletes a prefix of the chain and keeps an anchor
-- of it in audit_anchors: the last pruned record's sequence number and hash, the count, and an
-- HMAC of them with the appliance's secret key, so the first kept record still verifies against
-- it and a forged anchor (to hide a deleted prefix) cannot be made without that key.
-- UPDATE of a record is refused, and DELETE too unless the transaction set
-- appliance.audit_pruning (the pruner does): a guard against mistakes, not against a superuser;
-- the chain is what detects changes.
CREATE TABLE audit_head (
    one   boolean PRIMARY KEY DEFAULT true CHECK (one),
    seq   bigint NOT NULL,
    hash  text NOT NULL
);
INSERT INTO audit_head (one, seq, hash) VALUES (true, 0, repeat('0', 64));

CREATE TABLE audit_log (
    seq      bigint PRIMARY KEY,
    at       timestamptz NOT NULL,
    event    text NOT NULL,
    user_id  uuid,              -- no foreign key: records outlive the users they name
    actor    text NOT NULL,     -- operator, a key (key:<prefix>), a worker, the system
    subject  text NOT NULL,     -- what it was done to: job:<id>, key:<id>, webhook:<id>, ...
    details  text NOT NULL,     -- JSON text exactly as hashed
    prev     text NOT NULL,
    hash     text NOT NULL
);
CREATE INDEX audit_log_user ON audit_log (user_id, seq) WHERE user_id IS NOT NULL;
CREATE INDEX audit_log_at ON audit_log (at);

-- A download is recorded as the user's who holds the file: found by its address.
CREATE INDEX task_files_sha256 ON task_files (sha256);

CREATE TABLE audit_anchors (
    seq        bigint PRIMARY KEY,   -- the last pruned record's
    hash       text NOT NULL,        -- its hash: the prev of the first kept record
    records    bigint NOT NULL,      -- how many this pruning deleted
    pruned_at  timestamptz NOT NULL DEFAULT now(),
    signature  text NOT NULL         -- HMAC-SHA256 of 'seq:hash' (security/audit.py)
);

CREATE FUNCTION appliance_audit_hash(p_seq bigint, p_prev text, p_at timestamptz, p_event text,
                                     p_user uuid, p_actor text, p_subject text, p_details text)
RETURNS text LANGUAGE sql STABLE AS $$
    SELECT encode(sha256(convert_to(concat_ws('|', p_seq::text, p_prev,
        to_char(p_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
        encode(sha256(convert_to(p_event, 'UTF8')), 'hex'),
        encode(sha256(convert_to(coalesce(p_user::text, ''), 'UTF8')), 'hex'),
        encode(sha256(convert_to(p_actor, 'UTF8')), 'hex'),
        encode(sha256(convert_to(p_subject, 'UTF8')), 'hex'),
        encode(sha256(convert_to(p_details, 'UTF8')), 'hex')), 'UTF8')), 'hex')
$$;

CREATE FUNCTION appliance_audit_append(p_event text, p_user uuid, p_actor text, p_subject text,
                                       p_details text)
RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    v_seq bigint;
    v_prev text;
    v_at timestamptz;
    v_hash text;
BEGIN
    -- the row lock: appends wait here, in turn, until the holder's transaction ends
    UPDATE audit_head SET seq = seq + 1 WHERE one RETURNING seq, hash INTO v_seq, v_prev;
    v_at := clock_timestamp();  -- taken under the lock: times rise with seq
    v_hash := appliance_audit_hash(v_seq, v_prev, v_at, p_event, p_user, p_actor, p_subject,
                                   p_details);
    UPDATE audit_head SET hash = v_hash WHERE one;
    INSERT INTO audit_log (seq, at, event, user_id, actor, subject, details, prev, hash)
    VALUES (v_seq, v_at, p_event, p_user, p_actor, p_subject, p_details, v_prev, v_hash);
    RETURN v_seq;
END $$;

CREATE FUNCTION appliance_audit_guard() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' AND current_setting('appliance.audit_pruning', true) = 'on' THEN
        RETURN OLD;
    END IF;
    RAISE EXCEPTION 'audit_log is append-only (% refused)', TG_OP;
END $$;
CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION appliance_audit_guard();
CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION appliance_audit_guard();
