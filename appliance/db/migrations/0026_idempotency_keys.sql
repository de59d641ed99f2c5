-- Idempotency-Key (the IETF httpapi draft "The Idempotency-Key HTTP Header Field"): a creating
-- request sent again with the same key and the same body gets the first one's response instead
-- of creating a second job, task or webhook; the lb may then resend such a POST to another api
-- host when the first one died with it in flight.
-- A row is written in the transaction that creates what its request made, with that request's
-- response, so a key is stored exactly when its job is (never a key without its job, never a
-- job whose key was lost). Keys belong to one user: another user's identical key is another row.
-- Rows live APPLIANCE_IDEMPOTENCY_KEY_HOURS (default 24) and the reconciler deletes the expired
-- ones with the expired jobs; erasing a user deletes theirs.
CREATE TABLE idempotency_keys (
    user_id     uuid NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    key         text NOT NULL,
    -- SHA-256 (hex) of the route and the request's body as canonical JSON
    fingerprint text NOT NULL,
    status      smallint NOT NULL,
    -- the response's document (a webhook's with its signing secret sealed, as in webhooks)
    body        text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL,
    PRIMARY KEY (user_id, key)
);
CREATE INDEX idempotency_keys_expires ON idempotency_keys (expires_at);
