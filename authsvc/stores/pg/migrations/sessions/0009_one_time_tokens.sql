-- Single-use, expiring tokens mailed as links: email verification and password reset.
-- Only a hash of each token is stored (like refresh tokens); a token is spent by one atomic
-- UPDATE ... WHERE used_at IS NULL AND expires_at > now() RETURNING.
CREATE SCHEMA IF NOT EXISTS authsvc;

CREATE TABLE IF NOT EXISTS authsvc.one_time_tokens (
    token_hash  bytea PRIMARY KEY,          -- sha256 of the token; the token itself is never stored
    user_id     uuid NOT NULL,
    purpose     text NOT NULL CHECK (purpose IN ('email_verification', 'password_reset')),
    email       text NOT NULL,              -- the address the link was sent to
    created_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL,
    used_at     timestamptz
);
CREATE INDEX IF NOT EXISTS one_time_tokens_user_idx ON authsvc.one_time_tokens (user_id, purpose);
CREATE INDEX IF NOT EXISTS one_time_tokens_expires_idx ON authsvc.one_time_tokens (expires_at);

-- When the identities live in this database, a deleted identity takes its tokens with it.
DO $$
BEGIN
    IF to_regclass('auth.users') IS NOT NULL AND NOT EXISTS (
        SELECT 1 FROM pg_constraint
        WHERE conname = 'one_time_tokens_user_id_fkey'
          AND conrelid = 'authsvc.one_time_tokens'::regclass
    ) THEN
        ALTER TABLE authsvc.one_time_tokens ADD CONSTRAINT one_time_tokens_user_id_fkey
            FOREIGN KEY (user_id) REFERENCES auth.users (id) ON DELETE CASCADE;
    END IF;
END
$$;
