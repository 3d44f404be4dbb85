-- Profiles: the application's row for each identity, with the identity's id as its key.
CREATE TABLE IF NOT EXISTS public.users (
    id           uuid PRIMARY KEY,
    email        text NOT NULL,
    username     text,
    display_name text CHECK (display_name IS NULL OR length(display_name) <= 100),
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now()
);

CREATE UNIQUE INDEX IF NOT EXISTS users_username_key ON public.users (username);

-- In one database the profile references its identity. Split across two databases there is
-- no such foreign key, and the signup saga and `authsvc reconcile` keep the invariant.
DO $$
BEGIN
    IF to_regclass('auth.users') IS NOT NULL AND NOT EXISTS (
        SELECT 1 FROM pg_constraint
        WHERE conname = 'users_id_fkey' AND conrelid = 'public.users'::regclass
    ) THEN
        ALTER TABLE public.users ADD CONSTRAINT users_id_fkey
            FOREIGN KEY (id) REFERENCES auth.users (id) ON DELETE CASCADE;
    END IF;
END
$$;
