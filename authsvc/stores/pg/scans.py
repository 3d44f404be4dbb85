"""Keyset scans over a table's ids: the reconcile primitive both Postgres stores share."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from uuid import UUID

from psycopg import sql
from psycopg.rows import scalar_row, tuple_row

from authsvc.stores.pg.database import Database

SCAN_BATCH = 10000


def _table(name: str) -> sql.Composable:
    return sql.Identifier(*name.split("."))


def scan(db: Database, table: str, grace_seconds: int, columns: str = "") -> Iterator[list[Any]]:
    """Every row in id order, in batches of (id, *columns, older than the grace period); ids as
    text (a million UUID objects cost more than the scan)."""
    # Not "id::text" bare: its output column would be called id, and ORDER BY id would then
    # sort the text, by a sequential scan, instead of walking the primary key.
    cols = sql.SQL(
        "id::text AS key, "
        + (columns + ", " if columns else "")
        + "created_at < now() - make_interval(secs => %s) AS old"
    )
    template = "SELECT {cols} FROM {table} {after} ORDER BY id LIMIT %s"
    first, following = (
        sql.SQL(template).format(cols=cols, table=_table(table), after=sql.SQL(after))
        for after in ("", "WHERE id > %s::uuid")
    )
    last: str | None = None
    while True:
        if last is None:
            batch = db.read(first, (grace_seconds, SCAN_BATCH), row_factory=tuple_row)
        else:
            batch = db.read(following, (grace_seconds, last, SCAN_BATCH), row_factory=tuple_row)
        if not batch:
            return
        yield batch
        last = batch[-1][0]


def present(db: Database, table: str, ids: list[UUID]) -> set[UUID]:
    query = sql.SQL("SELECT id FROM {} WHERE id = ANY(%s)").format(_table(table))
    return set(db.read(query, (ids,), row_factory=scalar_row))
