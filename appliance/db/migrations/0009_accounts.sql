-- Accounts an operator manages: a user may be disabled (every key stops working) and has a
-- username (CloudConvert's users/me shows one; the email's local part until set); a key may
-- have a name and an expiry.
ALTER TABLE users ADD COLUMN username text;
ALTER TABLE users ADD COLUMN disabled_at timestamptz;
UPDATE users SET username = split_part(email, '@', 1) WHERE username IS NULL;
ALTER TABLE api_keys ADD COLUMN name text;
ALTER TABLE api_keys ADD COLUMN expires_at timestamptz;
CREATE INDEX api_keys_user ON api_keys (user_id);
