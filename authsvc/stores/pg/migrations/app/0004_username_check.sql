-- Usernames follow the API's rule in the database too (USERNAME_PATTERN in
-- authsvc/api/schemas.py), so no writer that goes around the API can store another.
--
-- Safe on a table that already holds usernames breaking the rule: the constraint is added
-- NOT VALID, which checks every row inserted or updated from now on without reading the old
-- ones, and it is validated in the same migration only when no row breaks it. Otherwise it
-- stays NOT VALID (a WARNING says so): those rows keep their username, any update of such a
-- row must also set a valid username, and once they are fixed an operator runs
--     ALTER TABLE public.users VALIDATE CONSTRAINT users_username_check;
-- which reads the table under a lock that lets reads and writes go on.
DO $$
BEGIN
    IF NOT EXISTS (
        SELECT 1 FROM pg_constraint
        WHERE conname = 'users_username_check' AND conrelid = 'public.users'::regclass
    ) THEN
        ALTER TABLE public.users ADD CONSTRAINT users_username_check
            CHECK (username IS NULL OR username COLLATE "C" ~ '^[a-z0-9_]{3,32}$') NOT VALID;
    END IF;
END
$$;

DO $$
DECLARE
    breaking bigint;
BEGIN
    SELECT count(*) INTO breaking FROM public.users
     WHERE NOT (username IS NULL OR username COLLATE "C" ~ '^[a-z0-9_]{3,32}$');
    IF breaking = 0 THEN
        ALTER TABLE public.users VALIDATE CONSTRAINT users_username_check;
    ELSE
        RAISE WARNING 'users_username_check added NOT VALID: % existing row(s) break it; fix them, then run ALTER TABLE public.users VALIDATE CONSTRAINT users_username_check', breaking;
    END IF;
END
$$;
