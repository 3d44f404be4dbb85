-- authsvc profiles for a Supabase project (AUTHSVC_BACKEND=supabase).
--
-- One row per Supabase Auth user, with the user's id as its key. authsvc writes these rows
-- through PostgREST with the service role key, right after creating the user, and deletes the
-- user again if the row cannot be written; see docs/supabase.md.
--
-- Apply with `supabase db push` (this file lives in supabase/migrations/), or paste it into the
-- dashboard's SQL editor. Safe to run twice.

create table if not exists public.users (
    id           uuid primary key references auth.users (id) on delete cascade,
    email        text not null,
    username     text,
    display_name text check (display_name is null or length(display_name) <= 100),
    created_at   timestamptz not null default now(),
    updated_at   timestamptz not null default now()
);

-- authsvc answers 409 USERNAME_TAKEN when an insert or update hits this index, by its name.
create unique index if not exists users_username_key on public.users (username);

-- Grants are explicit: new tables in the public schema no longer get Supabase's default grants
-- to anon, authenticated and service_role.
revoke all on table public.users from anon, authenticated;
grant select, insert, update, delete on table public.users to service_role;
grant select on table public.users to authenticated;
-- Signed-in users may change their own username and display name, nothing else.
grant update (username, display_name, updated_at) on table public.users to authenticated;

-- Row-level security: a signed-in user sees and updates only their own row. There is no insert
-- or delete policy, so only the service role (which bypasses RLS) creates or removes profiles.
alter table public.users enable row level security;

-- `(select auth.uid())` is auth.uid() = id evaluated once per statement instead of once per row
-- (Supabase's advice for RLS performance).
drop policy if exists "users read their own profile" on public.users;
create policy "users read their own profile" on public.users
    for select to authenticated
    using ((select auth.uid()) = id);

drop policy if exists "users update their own profile" on public.users;
create policy "users update their own profile" on public.users
    for update to authenticated
    using ((select auth.uid()) = id)
    with check ((select auth.uid()) = id);
