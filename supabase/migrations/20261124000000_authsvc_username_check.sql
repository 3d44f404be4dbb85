-- authsvc: usernames follow the API's rule in the database too (^[a-z0-9_]{3,32}$), so a
-- signed-in user's own PATCH of public.users through PostgREST (allowed by the update policy
-- in 20261123000000_authsvc_profiles.sql) cannot store another.
--
-- Apply after 20261123000000_authsvc_profiles.sql (`supabase db push` applies both, in order).
-- Safe to run twice, and safe on a table that already holds usernames breaking the rule: the
-- constraint is added NOT VALID, which checks every row inserted or updated from now on
-- without reading the old ones, and validated here only when no row breaks it. Otherwise it
-- stays NOT VALID (a WARNING says so): those rows keep their username, any update of such a
-- row must also set a valid username, and once they are fixed run
--     alter table public.users validate constraint users_username_check;

do $$
begin
    if not exists (
        select 1 from pg_constraint
        where conname = 'users_username_check' and conrelid = 'public.users'::regclass
    ) then
        alter table public.users add constraint users_username_check
            check (username is null or username collate "C" ~ '^[a-z0-9_]{3,32}$') not valid;
    end if;
end
$$;

do $$
declare
    breaking bigint;
begin
    if exists (
        select 1 from pg_constraint
        where conname = 'users_username_check' and conrelid = 'public.users'::regclass
          and convalidated
    ) then
        return;
    end if;
    select count(*) into breaking from public.users
     where not (username is null or username collate "C" ~ '^[a-z0-9_]{3,32}$');
    if breaking = 0 then
        alter table public.users validate constraint users_username_check;
    else
        raise warning 'users_username_check added NOT VALID: % existing row(s) break it; fix them, then run alter table public.users validate constraint users_username_check', breaking;
    end if;
end
$$;
