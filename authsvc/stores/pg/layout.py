"""The one part of the profile database's shape that depends on the layout, not on history:
whether public.users references an auth.users in the same database.

In one database it does (users_id_fkey, ON DELETE CASCADE). Split, the identities live in
AUTH_DATABASE_URL and no such key can hold; a database first migrated as one database and then
split keeps the key its first migration gave it, pointing at its own auth.users, which the
service no longer writes: every signup would fail on it. The numbered migrations ran once and
cannot know the layout of today, so `authsvc migrate` runs `align` every time, after them (it
is idempotent), and `authsvc doctor` runs `checks`.

Moving identities between databases is not migrate's job: when the profile database's own
auth.users still holds rows in a split layout, both say so.
"""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import scalar_row

from authsvc.stores.pg.database import Database

# Foreign keys from public.users to this database's auth.users (none when either is missing).
PROFILE_KEYS = (
    "SELECT conname FROM pg_constraint WHERE contype = 'f' "
    "AND conrelid = to_regclass('public.users') AND confrelid = to_regclass('auth.users') "
    "ORDER BY conname"
)
HAS_OWN_IDENTITIES = "SELECT to_regclass('auth.users') IS NOT NULL AS present"
OWN_IDENTITIES = "SELECT count(*) AS n FROM auth.users"
CAN_READ_IDENTITIES = "SELECT has_table_privilege('auth.users', 'SELECT') AS ok"
PROFILES_WITHOUT_IDENTITY = (
    "SELECT count(*) FROM public.users p WHERE NOT EXISTS "
    "(SELECT 1 FROM auth.users u WHERE u.id = p.id)"
)
ADD_PROFILE_KEY = (
    "ALTER TABLE public.users ADD CONSTRAINT users_id_fkey "
    "FOREIGN KEY (id) REFERENCES auth.users (id) ON DELETE CASCADE"
)


def unused_identities(count: int) -> str:
    return (
        f"the profile database's own auth.users still holds {count} identit"
        f"{'y' if count == 1 else 'ies'}, not used in the split layout (identities are read "
        "from AUTH_DATABASE_URL); authsvc does not move them, and until their identities are "
        "there their profiles count as profiles without an identity, which `authsvc reconcile "
        "--repair` removes"
    )


def _column(conn: psycopg.Connection, query: str) -> list[Any]:
    return conn.cursor(row_factory=scalar_row).execute(query).fetchall()


def _scalar(conn: psycopg.Connection, query: str) -> Any:
    return next(iter(_column(conn, query)), None)


def align(conn: psycopg.Connection, split: bool) -> list[str]:
    """Bring the profile database (`conn`, its tables' owner, in a transaction) to the shape of
    the layout; one sentence per change made or problem left."""
    keys = _column(conn, PROFILE_KEYS)
    if split:
        notes = []
        for name in keys:
            conn.execute(
                sql.SQL("ALTER TABLE public.users DROP CONSTRAINT {}").format(sql.Identifier(name))
            )
            notes.append(
                f"dropped the foreign key {name} from public.users to this database's own "
                "auth.users: in the split layout identities live in AUTH_DATABASE_URL"
            )
        if _scalar(conn, HAS_OWN_IDENTITIES) and (count := _scalar(conn, OWN_IDENTITIES)):
            notes.append(unused_identities(count))
        return notes
    # One database (back from a split one, say): the key comes back once every profile has its
    # identity here.
    if keys or not _scalar(conn, "SELECT to_regclass('public.users') IS NOT NULL"):
        return []
    if not _scalar(conn, HAS_OWN_IDENTITIES):
        return []
    orphans = _scalar(conn, PROFILES_WITHOUT_IDENTITY)
    if orphans:
        return [
            f"public.users has no foreign key to auth.users, and {orphans} profile(s) have no "
            "identity in this database, so none was added: move their identities here (a "
            "database that was split?), then run `authsvc migrate` again"
        ]
    conn.execute(ADD_PROFILE_KEY)
    return ["added the foreign key users_id_fkey from public.users to auth.users (one database)"]


def checks(db: Database) -> list[tuple[str, bool, str]]:
    """`authsvc doctor` in the split layout, on the profile database as the service's role."""
    keys = [row["conname"] for row in db.fetchall(PROFILE_KEYS)]
    result = [
        (
            "layout",
            not keys,
            "split: public.users has no foreign key to an auth.users of its own"
            if not keys
            else f"public.users has a foreign key ({', '.join(keys)}) to the profile database's "
            "own auth.users, which the split layout does not use: every signup fails on it "
            "-> run `authsvc migrate`",
        )
    ]
    row = db.fetchone(HAS_OWN_IDENTITIES)
    if not (row and row["present"]):
        return result
    readable = db.fetchone(CAN_READ_IDENTITIES)
    if not (readable and readable["ok"]):
        result.append(
            (
                "unused_identities",
                False,
                "the profile database has an auth.users of its own, which the split layout does "
                "not use, and this role cannot count its rows -> check it as its owner",
            )
        )
        return result
    count = (db.fetchone(OWN_IDENTITIES) or {}).get("n", 0)
    result.append(
        (
            "unused_identities",
            not count,
            "the profile database's own auth.users is empty"
            if not count
            else unused_identities(count)
            + " -> move them to AUTH_DATABASE_URL's auth.users, then empty this one",
        )
    )
    return result
