-- Sessions, rotating refresh tokens and idempotency keys: authsvc's own, whatever the backend.
CREATE SCHEMA IF NOT EXISTS authsvc;

CREATE TABLE IF NOT EXISTS authsvc.sessions (
    id             uuid PRIMARY KEY,
    user_id        uuid NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT now(),
    refreshed_at   timestamptz,
    revoked_at     timestamptz,
    revoked_reason text,
    user_agent     text
);
CREATE INDEX IF NOT EXISTS sessions_user_id_idx ON authsvc.sessions (user_id);

CREATE TABLE IF NOT EXISTS authsvc.refresh_tokens (
    token_hash  bytea PRIMARY KEY,          -- sha256 of the opaque token; the token is never stored
    session_id  uuid NOT NULL REFERENCES authsvc.sessions (id) ON DELETE CASCADE,
    created_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL,
    used_at     timestamptz
);
CREATE INDEX IF NOT EXISTS refresh_tokens_session_idx ON authsvc.refresh_tokens (session_id);

CREATE TABLE IF NOT EXISTS authsvc.idempotency_keys (
    key          text PRIMARY KEY CHECK (length(key) BETWEEN 1 AND 255),
    fingerprint  text NOT NULL,             -- keyed hash of the request body
    status       integer,                   -- null while the first request is in flight
    user_id      uuid,
    response     jsonb,
    created_at   timestamptz NOT NULL DEFAULT now(),
    completed_at timestamptz
);

-- When the identities live in this database, a deleted identity takes its sessions with it.
DO $$
BEGIN
    IF to_regclass('auth.users') IS NOT NULL AND NOT EXISTS (
        SELECT 1 FROM pg_constraint
        WHERE conname = 'sessions_user_id_fkey' AND conrelid = 'authsvc.sessions'::regclass
    ) THEN
        ALTER TABLE authsvc.sessions ADD CONSTRAINT sessions_user_id_fkey
            FOREIGN KEY (user_id) REFERENCES auth.users (id) ON DELETE CASCADE;
    END IF;
END
$$;
