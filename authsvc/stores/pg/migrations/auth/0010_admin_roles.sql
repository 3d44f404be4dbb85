-- Roles an operator grants (`authsvc users grant-admin EMAIL`). They live on the identity, which
-- only authsvc writes; never on the profile or in metadata a user can edit.
ALTER TABLE auth.users ADD COLUMN IF NOT EXISTS roles text[] NOT NULL DEFAULT '{}'::text[];

DO $$
BEGIN
    IF NOT EXISTS (
        SELECT 1 FROM pg_constraint
        WHERE conname = 'users_roles_known' AND conrelid = 'auth.users'::regclass
    ) THEN
        ALTER TABLE auth.users ADD CONSTRAINT users_roles_known
            CHECK (roles <@ ARRAY['admin']::text[]);
    END IF;
END
$$;

-- The admin API lists identities newest first, by keyset on (created_at, id).
CREATE INDEX IF NOT EXISTS users_created_at_id_idx ON auth.users (created_at DESC, id DESC);
