"""The floor: a bare WSGI app doing only the parts of each request no auth service can skip.

`python -m bench.floor` serves it beside authsvc, under the same gunicorn (gunicorn.conf.py:
the same worker class, threads and hash gate), on the same Postgres, to tell what this machine
allows from what authsvc adds:

    POST /signup   one argon2id hash, one INSERT
    POST /login    one SELECT, one argon2id verify, one INSERT (the session)
    GET  /me       authsvc's own session check (the same statement, by the Bearer session id)
    GET  /ok       a constant answer

No validation, no saga, no tokens, no error envelope, no logging: nothing to ship.
"""

from __future__ import annotations

import json
import os
import threading
import uuid
from typing import Any

from argon2 import PasswordHasher
from psycopg.rows import tuple_row
from psycopg_pool import ConnectionPool

from authsvc.hashgate import hashing
from authsvc.stores.pg.sessions import PgSessions

SCHEMA = "bench_floor"
TABLES = f"""
CREATE SCHEMA IF NOT EXISTS {SCHEMA};
CREATE TABLE IF NOT EXISTS {SCHEMA}.users (
    id uuid PRIMARY KEY, email text UNIQUE NOT NULL, password_hash text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now());
CREATE TABLE IF NOT EXISTS {SCHEMA}.sessions (
    id uuid PRIMARY KEY, user_id uuid NOT NULL, created_at timestamptz NOT NULL DEFAULT now());
"""
# The statement authsvc's GET /me runs (one database: session, ban, identity and profile).
CHECK = PgSessions(None, bans_known=True, profiles_here=True)._check  # type: ignore[arg-type]

_cost = [int(x) for x in os.environ.get("FLOOR_ARGON2", "2,19456,1").split(",")]
_hasher = PasswordHasher(time_cost=_cost[0], memory_cost=_cost[1], parallelism=_cost[2])
_pool: ConnectionPool | None = None
_lock = threading.Lock()


def _db() -> ConnectionPool:
    global _pool
    with _lock:
        if _pool is None:  # opened in the worker, after the fork
            _pool = ConnectionPool(
                os.environ["DATABASE_URL"], min_size=1, max_size=10, kwargs={"autocommit": True}
            )
        return _pool


def _body(environ: dict[str, Any]) -> dict[str, Any]:
    return json.loads(environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0)))


def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    path = environ["PATH_INFO"]
    status, body = "200 OK", b'{"status":"ok"}'
    if path == "/me":
        session_id = environ.get("HTTP_AUTHORIZATION", "")[len("Bearer ") :]
        with _db().connection() as conn:
            row = conn.cursor(row_factory=tuple_row).execute(CHECK, (session_id,)).fetchone()
        if row is None:  # no such session: counted as an error, never as a fast answer
            status, body = "401 Unauthorized", b"{}"
        else:
            body = json.dumps({"data": {"user": row}}, default=str).encode()
    elif path == "/signup":
        data = _body(environ)
        with hashing(_cost[2]):
            password_hash = _hasher.hash(data["password"])
        with _db().connection() as conn:
            conn.execute(
                f"INSERT INTO {SCHEMA}.users (id, email, password_hash) VALUES (%s, %s, %s)",
                (uuid.uuid4(), data["email"], password_hash),
            )
        status, body = "201 Created", b'{"created":true}'
    elif path == "/login":
        data = _body(environ)
        with _db().connection() as conn:
            user_id, password_hash = conn.execute(
                f"SELECT id, password_hash FROM {SCHEMA}.users WHERE email = %s", (data["email"],)
            ).fetchone()
        with hashing(_cost[2]):
            _hasher.verify(password_hash, data["password"])
        with _db().connection() as conn:
            conn.execute(
                f"INSERT INTO {SCHEMA}.sessions (id, user_id) VALUES (%s, %s)",
                (uuid.uuid4(), user_id),
            )
    elif path != "/ok":
        status, body = "404 Not Found", b"{}"
    start_response(
        status, [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
    )
    return [body]
