-- Identities: who can sign in. One row per person; the profile lives in public.users.
CREATE SCHEMA IF NOT EXISTS auth;

CREATE TABLE IF NOT EXISTS auth.users (
    id                 uuid PRIMARY KEY,
    email              text NOT NULL CHECK (length(email) BETWEEN 3 AND 320),
    password_hash      text,
    is_anonymous       boolean NOT NULL DEFAULT false,
    email_confirmed_at timestamptz,
    banned_until       timestamptz,
    last_sign_in_at    timestamptz,
    raw_user_meta_data jsonb NOT NULL DEFAULT '{}'::jsonb,
    -- 'pending' from the identity insert until the profile is verified; only 'complete'
    -- identities may sign in. See authsvc/services/signup.py.
    signup_state       text NOT NULL DEFAULT 'pending'
                       CHECK (signup_state IN ('pending', 'complete')),
    created_at         timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now()
);

CREATE UNIQUE INDEX IF NOT EXISTS users_email_lower_key ON auth.users (lower(email));
CREATE INDEX IF NOT EXISTS users_pending_created_idx ON auth.users (created_at)
    WHERE signup_state = 'pending';
