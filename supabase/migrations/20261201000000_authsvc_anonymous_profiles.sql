-- authsvc anonymous accounts (POST /api/v1/auth/anonymous) in a Supabase project.
--
-- An anonymous Supabase Auth user has no email until authsvc upgrades it, so its profile has
-- none either. Apply after 20261123000000_authsvc_profiles.sql. Safe to run twice.

alter table public.users alter column email drop not null;
