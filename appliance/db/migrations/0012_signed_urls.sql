-- Signed URLs (CloudConvert's): a user makes a signed-URL base, a public URL with a signing
-- secret of its own; anyone holding a URL built on it with that secret (job, cache_key, an
-- HMAC-SHA256 signature) runs the job as the base's owner, no API key needed. The secret is
-- kept in clear: checking an HMAC needs it (like a webhook's). url is the base as it was
-- shown at creation, what the SDK signs, so a later change of PUBLIC_URL keeps URLs working.
CREATE TABLE signed_url_bases (
    id              uuid PRIMARY KEY,
    user_id         uuid NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    name            text,
    url             text NOT NULL,
    signing_secret  text NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX signed_url_bases_user ON signed_url_bases (user_id, created_at DESC, id DESC);

-- cache_key: the job a base's URL with that key ran, answered again while its output can be
-- downloaded. The row goes with the job (jobs expire) or the base; a failed job is run again.
CREATE TABLE signed_url_results (
    base_id     uuid NOT NULL REFERENCES signed_url_bases(id) ON DELETE CASCADE,
    cache_key   text NOT NULL,
    job_id      uuid NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (base_id, cache_key)
);
CREATE INDEX signed_url_results_job ON signed_url_results (job_id);  -- for the cascade
