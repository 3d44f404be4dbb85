-- An anonymous account's profile has no email either; upgrading the account gives both rows
-- the same address.
ALTER TABLE public.users ALTER COLUMN email DROP NOT NULL;
