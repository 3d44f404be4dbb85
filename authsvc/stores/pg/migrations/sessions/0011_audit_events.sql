-- The audit log: append-only. The service's role needs INSERT and SELECT on the table and nothing
-- more (grant it EXECUTE on authsvc.purge_audit_events for the retention purge): no UPDATE, no
-- DELETE. The trigger below also stops updates and deletes by the table's owner, outside the
-- purge function. Events never hold a password, a token or a hash.
CREATE TABLE IF NOT EXISTS authsvc.audit_events (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at          timestamptz NOT NULL DEFAULT clock_timestamp(),
    type        text NOT NULL CHECK (type ~ '^[a-z][a-z_]{0,63}$'),
    user_id     uuid,                       -- whom the event is about (no foreign key: it outlives
                                            -- the account)
    actor       text NOT NULL DEFAULT 'user'
                CHECK (actor IN ('user', 'admin', 'admin_key', 'cli', 'system')),
    actor_id    uuid,                       -- the admin's user id when an admin acted
    request_id  text CHECK (length(request_id) <= 128),
    ip          text CHECK (length(ip) <= 64),
    user_agent  text CHECK (length(user_agent) <= 512),
    details     jsonb NOT NULL DEFAULT '{}'::jsonb CHECK (jsonb_typeof(details) = 'object')
);
CREATE INDEX IF NOT EXISTS audit_events_user_id_idx ON authsvc.audit_events (user_id, id)
    WHERE user_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS audit_events_at_idx ON authsvc.audit_events (at);

CREATE OR REPLACE FUNCTION authsvc.audit_events_append_only() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' AND current_setting('authsvc.audit_purge', true) = 'on' THEN
        RETURN OLD;  -- inside authsvc.purge_audit_events only
    END IF;
    RAISE EXCEPTION 'authsvc.audit_events is append-only (% refused)', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END
$$;

DROP TRIGGER IF EXISTS audit_events_append_only ON authsvc.audit_events;
CREATE TRIGGER audit_events_append_only BEFORE UPDATE OR DELETE ON authsvc.audit_events
    FOR EACH ROW EXECUTE FUNCTION authsvc.audit_events_append_only();

-- The one way to remove events: those older than the retention, at least one day. It runs with
-- its owner's rights (the table's owner), so the service's role needs no DELETE grant.
CREATE OR REPLACE FUNCTION authsvc.purge_audit_events(keep_days integer) RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET authsvc.audit_purge = 'on'
AS $$
DECLARE
    removed bigint;
BEGIN
    IF keep_days IS NULL OR keep_days < 1 THEN
        RAISE EXCEPTION 'audit events are kept for at least one day, not %', keep_days
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    DELETE FROM authsvc.audit_events WHERE at < now() - make_interval(days => keep_days);
    GET DIAGNOSTICS removed = ROW_COUNT;
    RETURN removed;
END
$$;
REVOKE ALL ON FUNCTION authsvc.purge_audit_events(integer) FROM PUBLIC;
