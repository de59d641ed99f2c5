-- The web UI: people sign in with an e-mail and a password, of which only an argon2id hash is
-- kept; an operator flag opens the operator page; invitations (`appliance users invite`) let
-- a person choose their password once, when registration is by invitation only. Only a
-- SHA-256 of an invitation's token is stored, like API keys.
ALTER TABLE users ADD COLUMN password_hash text;
ALTER TABLE users ADD COLUMN operator boolean NOT NULL DEFAULT false;
CREATE TABLE invitations (
    token_hash  bytea PRIMARY KEY,
    email       text NOT NULL,
    operator    boolean NOT NULL DEFAULT false,
    created_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL,
    used_at     timestamptz
);
