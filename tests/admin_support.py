"""The service in one database or split across two, for the account lifecycle's admin tests:
the app, its stores, the owners' URLs for faults and raw-SQL assertions, and a few helpers."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg.rows import dict_row

from authsvc import create_app
from authsvc.services import admin, audit
from authsvc.stores import Stores
from tests.conftest import PASSWORD, AuthActions, app_overrides

ADMIN_KEY = "admin-key-4c1f9e2b7d8a6053e1f2c3b4a5d6e7f8-for-tests-only"


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


ADMIN_HEADERS = bearer(ADMIN_KEY)


@dataclass
class Deployment:
    """One running app (Flask's test client) on real Postgres, in the layout named."""

    layout: str
    service_urls: tuple[str, str]  # (profiles, identities) as the service connects
    identity_owner_url: str  # auth.users, sessions, the audit log, as their owner
    profile_owner_url: str  # public.users, as its owner
    data_dir: Any
    extra: dict[str, Any] = field(default_factory=dict)
    apps: list[Any] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.app = self.build(**self.extra)
        self.auth = AuthActions(self.app.test_client())

    def settings(self, **extra: Any) -> dict[str, Any]:
        app_url, auth_url = self.service_urls
        settings: dict[str, Any] = {
            "AUTH_DATABASE_URL": auth_url if auth_url != app_url else "",
            "AUTHSVC_ADMIN_KEY": ADMIN_KEY,
            **extra,
        }
        return app_overrides(app_url, self.data_dir, **settings)

    def build(self, **extra: Any) -> Any:
        """Another app on the same databases (other settings)."""
        app = create_app(self.settings(**extra))
        self.apps.append(app)
        return app

    def close(self) -> None:
        for app in self.apps:
            app.extensions["authsvc"].stores.close()

    @property
    def client(self) -> Any:
        return self.auth.client

    @property
    def stores(self) -> Stores:
        return self.app.extensions["authsvc"].stores

    def signup(self, email: str, **fields: Any) -> tuple[str, str]:
        """(user id, access token) of a new account."""
        body = self.auth.signup(email, PASSWORD, **fields)["data"]
        return body["user"]["id"], body["session"]["access_token"]

    def make_admin(self, email: str) -> str:
        """A new account holding the admin role; its access token."""
        user_id, _ = self.signup(email)
        from uuid import UUID

        admin.set_role(self.stores, audit.CLI, UUID(user_id), admin.ADMIN_ROLE, True)
        return self.auth.login(email)["data"]["session"]["access_token"]

    def identity(self, user_id: str) -> dict[str, Any] | None:
        with psycopg.connect(self.identity_owner_url, row_factory=dict_row) as conn:
            return conn.execute("SELECT * FROM auth.users WHERE id = %s", (user_id,)).fetchone()

    def profile(self, user_id: str) -> dict[str, Any] | None:
        with psycopg.connect(self.profile_owner_url, row_factory=dict_row) as conn:
            return conn.execute("SELECT * FROM public.users WHERE id = %s", (user_id,)).fetchone()

    def sql(self, url: str, query: str, params: tuple = ()) -> list[dict[str, Any]]:
        with psycopg.connect(url, autocommit=True, row_factory=dict_row) as conn:
            cursor = conn.execute(query, params)
            return cursor.fetchall() if cursor.description else []

    def events(self, event_type: str | None = None) -> list[dict[str, Any]]:
        """The audit log, oldest first, read as its owner."""
        where = "WHERE type = %s" if event_type else ""
        return self.sql(
            self.identity_owner_url,
            f"SELECT * FROM authsvc.audit_events {where} ORDER BY id",
            (event_type,) if event_type else (),
        )
