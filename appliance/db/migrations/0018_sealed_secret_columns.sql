-- Signing secrets rest sealed with their user's data key (security/sealing.py, Columns):
-- webhooks.signing_secret and signed_url_bases.signing_secret are sealed by the application
-- as it writes them. users.webhook_signing_secret was made here by a column default, in
-- clear; from now on it is made (and sealed) by the application the first time it is needed,
-- so new users start without one. Values stored before stay readable as they are.
ALTER TABLE users ALTER COLUMN webhook_signing_secret DROP DEFAULT,
    ALTER COLUMN webhook_signing_secret DROP NOT NULL;
