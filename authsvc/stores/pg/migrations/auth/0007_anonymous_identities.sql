-- Anonymous identities: an account that exists before its person gives an email or password
-- (POST /api/v1/auth/anonymous). It has no email until it is upgraded; the unique index on
-- lower(email) ignores NULLs, so any number of anonymous identities can exist at once.
ALTER TABLE auth.users ALTER COLUMN email DROP NOT NULL;

DO $$
BEGIN
    IF NOT EXISTS (
        SELECT 1 FROM pg_constraint
        WHERE conname = 'users_email_unless_anonymous' AND conrelid = 'auth.users'::regclass
    ) THEN
        ALTER TABLE auth.users ADD CONSTRAINT users_email_unless_anonymous
            CHECK (is_anonymous OR email IS NOT NULL);
    END IF;
END
$$;

-- `authsvc purge` looks for anonymous identities idle past AUTHSVC_ANONYMOUS_MAX_IDLE_DAYS.
CREATE INDEX IF NOT EXISTS users_anonymous_created_idx ON auth.users (created_at)
    WHERE is_anonymous;
