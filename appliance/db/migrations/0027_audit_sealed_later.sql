-- The audit log's records are chained after they commit, not while: an append no longer waits
-- for every other one.
--
-- Until now an append took the chain's head row (audit_head) and held it until its transaction
-- ended, commit included, so every audited change in the fleet (each job created, each download,
-- each key made) committed one after another. In the lab fleet, whose primary waits for a
-- synchronous standby at each commit, pg_stat_activity showed up to 13 job creations, downloads
-- and task ends queued on that one row while the machine's CPU sat half idle.
--
-- Now an append inserts its record into audit_pending (no lock beyond its own row), in the
-- transaction of its change as before, so it commits or rolls back with it. appliance_audit_seal
-- chains the committed pending records onto the log under the head row, in the order they were
-- appended, and deletes them from audit_pending in the same transaction: the reconciler seals on
-- each pass, and every reader of the log (verify, show, a user's export, retention) seals first.
-- A record's `at` is its append's time; its sequence number is its place in the chain. A record
-- is tamper-evident from its sealing on (within one reconciler interval); until then it sits in
-- audit_pending, which refuses UPDATE, and DELETE unless the transaction set
-- appliance.audit_sealing (the sealer does).
CREATE TABLE audit_pending (
    id       bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at       timestamptz NOT NULL DEFAULT clock_timestamp(),
    event    text NOT NULL,
    user_id  uuid,
    actor    text NOT NULL,
    subject  text NOT NULL,
    details  text NOT NULL
);

CREATE OR REPLACE FUNCTION appliance_audit_append(p_event text, p_user uuid, p_actor text,
                                                  p_subject text, p_details text)
RETURNS bigint LANGUAGE sql AS $$
    INSERT INTO audit_pending (event, user_id, actor, subject, details)
    VALUES (p_event, p_user, p_actor, p_subject, p_details)
    RETURNING id
$$;

CREATE FUNCTION appliance_audit_seal(p_limit integer) RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    v_seq bigint;
    v_prev text;
    v_hash text;
    v_ids bigint[] := '{}';
    r record;
BEGIN
    -- one sealer at a time; it reads audit_pending only once it holds the head
    SELECT seq, hash INTO v_seq, v_prev FROM audit_head WHERE one FOR UPDATE;
    FOR r IN SELECT * FROM audit_pending ORDER BY id LIMIT p_limit LOOP
        v_seq := v_seq + 1;
        v_hash := appliance_audit_hash(v_seq, v_prev, r.at, r.event, r.user_id, r.actor,
                                       r.subject, r.details);
        INSERT INTO audit_log (seq, at, event, user_id, actor, subject, details, prev, hash)
        VALUES (v_seq, r.at, r.event, r.user_id, r.actor, r.subject, r.details, v_prev, v_hash);
        v_prev := v_hash;
        v_ids := v_ids || r.id;
    END LOOP;
    IF cardinality(v_ids) > 0 THEN
        UPDATE audit_head SET seq = v_seq, hash = v_prev WHERE one;
        PERFORM set_config('appliance.audit_sealing', 'on', true);
        -- by id: a record that committed since the loop read is left for the next sealing
        DELETE FROM audit_pending WHERE id = ANY (v_ids);
        PERFORM set_config('appliance.audit_sealing', 'off', true);
    END IF;
    RETURN cardinality(v_ids);
END $$;

-- One guard for both append-only tables (it replaces 0015's, which only the log used): each
-- refuses UPDATE and TRUNCATE, and DELETE unless the transaction set the setting named by the
-- trigger's first argument (the log: appliance.audit_pruning, retention's; audit_pending:
-- appliance.audit_sealing, the sealer's); the second is the refusal's words.
CREATE FUNCTION appliance_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' AND current_setting(TG_ARGV[0], true) = 'on' THEN
        RETURN OLD;
    END IF;
    RAISE EXCEPTION '% (% refused)', TG_ARGV[1], TG_OP;
END $$;
DROP TRIGGER audit_log_append_only ON audit_log;
DROP TRIGGER audit_log_no_truncate ON audit_log;
DROP FUNCTION appliance_audit_guard();
CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION
    appliance_append_only('appliance.audit_pruning', 'audit_log is append-only');
CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION
    appliance_append_only('appliance.audit_pruning', 'audit_log is append-only');
CREATE TRIGGER audit_pending_append_only BEFORE UPDATE OR DELETE ON audit_pending
    FOR EACH ROW EXECUTE FUNCTION
    appliance_append_only('appliance.audit_sealing', 'audit_pending is append-only until sealed');
CREATE TRIGGER audit_pending_no_truncate BEFORE TRUNCATE ON audit_pending
    FOR EACH STATEMENT EXECUTE FUNCTION
    appliance_append_only('appliance.audit_sealing', 'audit_pending is append-only until sealed');
