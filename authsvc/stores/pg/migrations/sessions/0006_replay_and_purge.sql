-- Idempotent replays return the first answer itself: its status and body, sealed (encrypted
-- with a key derived for this purpose from JWT_SECRET_KEY: a 201's body holds tokens). Keys
-- expire (AUTHSVC_IDEMPOTENCY_TTL_SECONDS) and are purged.
ALTER TABLE authsvc.idempotency_keys ADD COLUMN IF NOT EXISTS sealed bytea;
ALTER TABLE authsvc.idempotency_keys
    ADD COLUMN IF NOT EXISTS expires_at timestamptz NOT NULL DEFAULT now() + interval '1 day';
-- Answers recorded before this version hold no sealed body to replay: their keys start over
-- (a retry then runs again; a second account for one email is still impossible).
DELETE FROM authsvc.idempotency_keys WHERE status IS NOT NULL AND sealed IS NULL;
ALTER TABLE authsvc.idempotency_keys DROP COLUMN IF EXISTS response;
CREATE INDEX IF NOT EXISTS idempotency_keys_expires_idx ON authsvc.idempotency_keys (expires_at);

-- The purge finds spent refresh tokens and ended sessions by these.
CREATE INDEX IF NOT EXISTS refresh_tokens_used_idx ON authsvc.refresh_tokens (used_at)
    WHERE used_at IS NOT NULL;
CREATE INDEX IF NOT EXISTS refresh_tokens_expires_idx ON authsvc.refresh_tokens (expires_at);
CREATE INDEX IF NOT EXISTS sessions_revoked_idx ON authsvc.sessions (revoked_at)
    WHERE revoked_at IS NOT NULL;

-- When each periodic job last ran, across every instance: claiming a run is one atomic
-- UPDATE, so at most one instance runs a job per interval, without a session-level lock.
CREATE TABLE IF NOT EXISTS authsvc.maintenance (
    job      text PRIMARY KEY,
    last_run timestamptz NOT NULL
);
