"""One transaction held on one pooled connection across a unit's steps (signup, upgrade)."""

from __future__ import annotations

from typing import Any

import psycopg

from authsvc.errors import DatabaseUnavailable
from authsvc.stores.pg.database import Database, translate


class HeldTransaction:
    """BEGIN on entry (retried as Database.begin retries it), statements translated as every
    other, ROLLBACK that a dead connection cannot fail, the connection given back once."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self._conn: psycopg.Connection | None = None

    def _begin(self) -> None:
        try:
            self._conn = self.db.begin()
        except DatabaseUnavailable as exc:
            # Nothing of the unit was sent: whatever BEGIN's failure was, no row exists.
            raise DatabaseUnavailable(database=self.db.name, sent=False) from exc

    def _run(self, query: str, params: Any) -> psycopg.Cursor:
        assert self._conn is not None
        try:
            return self._conn.execute(query, params)
        except psycopg.Error as exc:
            raise translate(exc, self.db.name) from exc

    def _rollback(self) -> None:
        if self._conn is None:
            return
        try:
            self._conn.execute("ROLLBACK")
        except psycopg.Error:
            pass  # the connection died: the server rolls the transaction back by itself

    def _release(self) -> None:
        if self._conn is not None:
            conn, self._conn = self._conn, None
            self.db.putconn(conn)
