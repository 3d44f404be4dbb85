-- Rate-limit counters, shared by every worker and instance (stores/pg/ratelimits.py).
--
-- One row per counter (a rule of a limit for one client address or account), holding a sliding
-- window counter: the hits of the current window and of the one before it. Each hit is one
-- INSERT ... ON CONFLICT DO UPDATE over the counters it touches.
--
-- UNLOGGED: no WAL, so hits cost little, but after a crash (or on a promoted replica) Postgres
-- starts the table empty. That is fine for counters: at worst a client gets a fresh budget once.
CREATE UNLOGGED TABLE IF NOT EXISTS authsvc.rate_limits (
    key          text PRIMARY KEY,
    lim          integer,                -- hits allowed per window; NULL for a fixed-window counter
    expiry       integer NOT NULL CHECK (expiry > 0),   -- the window's length in seconds
    window_start timestamptz NOT NULL,   -- start of the current window
    current      integer NOT NULL,       -- hits in the current window
    previous     integer NOT NULL,       -- hits in the window before it
    expires_at   timestamptz NOT NULL    -- from then on the row counts nothing: it may be deleted
) WITH (fillfactor = 70);                -- room for HOT updates: a hit rewrites its row in place

-- Expired rows are deleted a batch at a time, oldest first.
CREATE INDEX IF NOT EXISTS rate_limits_expires_at_idx ON authsvc.rate_limits (expires_at);
