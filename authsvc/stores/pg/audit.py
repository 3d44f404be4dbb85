"""The audit log in Postgres (authsvc.audit_events, with the sessions): append, page, purge.

The table is append-only (see its migration): this store only inserts and reads, and removes old
events through authsvc.purge_audit_events, which runs with the table owner's rights.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

import psycopg
from psycopg.types.json import Jsonb

from authsvc.stores import AuditEvent, cursors
from authsvc.stores.pg.database import Database, translate

# An audit write must not hold up the operation it records: wait this long for a connection.
APPEND_TIMEOUT = 1.0
COLUMNS = "id, at, type, user_id, actor, actor_id, request_id, ip, user_agent, details"
INSERT = (
    "INSERT INTO authsvc.audit_events "
    "(type, user_id, actor, actor_id, request_id, ip, user_agent, details) "
    "VALUES (%s, %s, %s, %s, %s, %s, %s, %s)"
)


def to_event(row: dict[str, Any]) -> AuditEvent:
    """An audit_events row as an AuditEvent."""
    return AuditEvent(**row)


class PgAuditLog:
    """AuditLog over authsvc.audit_events."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def append(self, event: AuditEvent) -> None:
        params = (
            event.type,
            event.user_id,
            event.actor,
            event.actor_id,
            event.request_id,
            event.ip,
            event.user_agent,
            Jsonb(event.details),
        )
        conn = self.db.getconn(timeout=APPEND_TIMEOUT)
        try:
            conn.execute(INSERT, params)
        except psycopg.Error as exc:
            raise translate(exc, self.db.name) from exc
        finally:
            self.db.putconn(conn)

    def page(
        self, user_id: UUID | None, event_type: str | None, after: str | None, limit: int
    ) -> tuple[list[AuditEvent], str | None]:
        conditions, params = [], []
        if user_id is not None:
            conditions.append("user_id = %s")
            params.append(user_id)
        if event_type is not None:
            conditions.append("type = %s")
            params.append(event_type)
        if after is not None:
            position = cursors.decode(after)
            if type(position) is not int or not 1 <= position < 2**63:
                raise cursors.invalid()
            conditions.append("id < %s")
            params.append(position)
        where = ("WHERE " + " AND ".join(conditions)) if conditions else ""
        rows = self.db.fetchall(
            f"SELECT {COLUMNS} FROM authsvc.audit_events {where} ORDER BY id DESC LIMIT %s",
            (*params, limit + 1),
        )
        following = None
        if len(rows) > limit:
            rows = rows[:limit]
            following = cursors.encode(rows[-1]["id"])
        return [to_event(row) for row in rows], following

    def purge(self, keep_days: int) -> int:
        row = self.db.fetchone("SELECT authsvc.purge_audit_events(%s) AS removed", (keep_days,))
        return int(row["removed"]) if row else 0
