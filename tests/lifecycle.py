"""Shared pieces of the account lifecycle's tests: an app per layout with a loopback SMTP
server, and an API client that speaks the envelope."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import psycopg
import pytest
from psycopg.rows import dict_row

from authsvc import create_app
from tests.conftest import PASSWORD, app_overrides, truncate
from tests.mailbox import Mailbox

LAYOUTS = ("one_database", "split")


@dataclass
class Layout:
    """An app on one layout, its SMTP server, and each table's database as its owner."""

    name: str
    app: Any
    mailbox: Mailbox
    auth_owner: str  # auth.users, authsvc.* (as the owner: faults and assertions)
    app_owner: str  # public.users

    @property
    def client(self) -> Any:
        return self.app.test_client()

    @property
    def stores(self) -> Any:
        return self.app.extensions["authsvc"].stores

    @property
    def settings(self) -> Any:
        return self.app.extensions["authsvc"].settings

    def drain(self) -> None:
        assert self.app.extensions["authsvc"].mail.drain(15), "mail still queued"

    def identity(self, **where: Any) -> dict[str, Any] | None:
        return _row(self.auth_owner, "auth.users", where)

    def profile(self, **where: Any) -> dict[str, Any] | None:
        return _row(self.app_owner, "public.users", where)

    def sql(self, url: str, query: str, params: Any = None) -> list[dict[str, Any]]:
        with psycopg.connect(url, autocommit=True, row_factory=dict_row) as conn:
            cur = conn.execute(query, params)
            return cur.fetchall() if cur.description else []


def _row(url: str, table: str, where: dict[str, Any]) -> dict[str, Any] | None:
    clause = " AND ".join(f"{k} = %s" for k in where)
    with psycopg.connect(url, autocommit=True, row_factory=dict_row) as conn:
        rows = conn.execute(
            f"SELECT * FROM {table} WHERE {clause}", tuple(str(v) for v in where.values())
        ).fetchall()
    assert len(rows) <= 1, rows
    return rows[0] if rows else None


def make_layout(
    request: pytest.FixtureRequest,
    name: str,
    tmp_path: Any,
    mailbox: Mailbox,
    clean: bool = True,
    **extra: Any,
) -> Layout:
    if name == "one_database":
        url = request.getfixturevalue("database_url")
        owner = request.getfixturevalue("owner_url")
        auth_url, auth_owner, app_owner = "", owner, owner
    else:
        url, auth_url = request.getfixturevalue("split_urls")
        app_owner, auth_owner = request.getfixturevalue("split_owner_urls")
    for owner in {auth_owner, app_owner} if clean else ():
        truncate(owner)  # asked for here, the databases escape conftest's autouse cleaning
    env = app_overrides(
        url,
        tmp_path,
        AUTH_DATABASE_URL=auth_url,
        SMTP_URL=mailbox.url,
        AUTHSVC_MAIL_RETRY_MS="20",
        **extra,
    )
    return Layout(name, create_app(env), mailbox, auth_owner, app_owner)


class Api:
    """The lifecycle's routes through a test client, answering parsed envelopes."""

    def __init__(self, client: Any) -> None:
        self.client = client

    def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        token: str | None = None,
        expect: int | None = None,
    ) -> tuple[int, dict[str, Any]]:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        response = self.client.open(
            f"/api/v1/auth{path}", method=method, json=body, headers=headers
        )
        payload = response.get_json()
        if expect is not None:
            assert response.status_code == expect, payload
        return response.status_code, payload

    def signup(self, email: str, password: str = PASSWORD, **fields: Any) -> dict[str, Any]:
        return self.call(
            "POST", "/signup", {"email": email, "password": password, **fields}, expect=201
        )[1]["data"]

    def login(self, email: str, password: str = PASSWORD, expect: int = 200) -> dict[str, Any]:
        return self.call("POST", "/login", {"email": email, "password": password}, expect=expect)[1]

    def anonymous(self) -> dict[str, Any]:
        return self.call("POST", "/anonymous", {}, expect=201)[1]["data"]

    def me(self, token: str) -> tuple[int, dict[str, Any]]:
        return self.call("GET", "/me", token=token)
