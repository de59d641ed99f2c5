-- Encryption at rest (appliance/security/envelope.py): each user's files are sealed with a
-- data key of their own, kept here wrapped by the operator's master key (never in clear).
-- scope is the user's id as text, or 'shared' for the install's key (files shared across
-- users); it is what a new key is made unique by, so two processes sealing a user's first
-- files at once agree on one key. Deleting the user deletes the row (the cascade): that is
-- crypto-shredding, whatever was sealed with the key can never be opened again.
-- master_key_id names the master key the row is wrapped under, so old and new master keys
-- coexist while `appliance master-key rewrap` moves every row to the new one.
CREATE TABLE data_keys (
    id             uuid PRIMARY KEY,
    scope          text NOT NULL UNIQUE,
    user_id        uuid REFERENCES users(id) ON DELETE CASCADE,
    master_key_id  text NOT NULL,
    wrapped        bytea NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT now(),
    CHECK ((user_id IS NULL) = (scope = 'shared'))
);
CREATE INDEX data_keys_master ON data_keys (master_key_id);
