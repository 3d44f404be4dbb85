"""The signup, login and compensation journeys against a real Supabase project.

Runs only when SUPABASE_URL, SUPABASE_SERVICE_ROLE_KEY and SUPABASE_ANON_KEY are set, and the
project has the SQL in supabase/migrations applied (see docs/supabase.md):

    SUPABASE_URL=https://<ref>.supabase.co SUPABASE_SERVICE_ROLE_KEY=... SUPABASE_ANON_KEY=... \\
        python -m pytest -m supabase_live tests/supabase -v

Every user it creates is named authsvc-live-<random>@example.com and deleted afterwards.
Sessions go to a throwaway database on the test Postgres, never to the project's.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any
from uuid import UUID, uuid4

import pytest

from authsvc import create_app
from authsvc.errors import EmailTaken, InvalidCredentials, UsernameTaken
from tests.conftest import PASSWORD, app_overrides
from tests.supabase.conftest import migrate_sessions

LIVE_VARS = ("SUPABASE_URL", "SUPABASE_SERVICE_ROLE_KEY", "SUPABASE_ANON_KEY")
MISSING = [name for name in LIVE_VARS if not os.environ.get(name)]

pytestmark = [
    pytest.mark.supabase_live,
    pytest.mark.skipif(
        bool(MISSING),
        reason=f"{', '.join(MISSING)} not set: the live Supabase suite needs a real project",
    ),
]


@pytest.fixture(scope="module")
def live_sessions_url(pg, tmp_path_factory) -> str:
    url = pg.create_database("authsvc_test_live")
    migrate_sessions(url, tmp_path_factory.mktemp("live-migrate"))
    return url


@pytest.fixture
def live_app(live_sessions_url: str, tmp_path: Any) -> Iterator[Any]:
    app = create_app(
        app_overrides(
            live_sessions_url,
            tmp_path,
            AUTHSVC_BACKEND="supabase",
            **{name: os.environ[name] for name in LIVE_VARS},
        )
    )
    store = app.extensions["authsvc"].stores
    created: list[str] = []
    app.config["LIVE_EMAILS"] = created
    yield app
    for email in created:
        identity = store.identities.find_by_email(email)
        if identity is not None:
            store.identities.delete_pending(identity.id)
    store.close()


def email(app: Any) -> str:
    address = f"authsvc-live-{uuid4().hex[:12]}@example.com"
    app.config["LIVE_EMAILS"].append(address)
    return address


def post(app: Any, path: str, body: dict[str, Any], **kwargs: Any) -> Any:
    return app.test_client().post(path, json=body, **kwargs)


def test_live_project_is_configured_for_authsvc(live_app):
    diagnosed = live_app.extensions["authsvc"].stores.admin.diagnose()
    checks = {name: (ok, detail) for name, ok, detail in diagnosed}
    for name in ("supabase_keys", "supabase_auth", "profiles_table"):
        assert checks[name][0], f"{name}: {checks[name][1]}"


def test_live_signup_login_me(live_app):
    store = live_app.extensions["authsvc"].stores
    address = email(live_app)
    username = f"live_{uuid4().hex[:10]}"
    signup = post(
        live_app,
        "/api/v1/auth/signup",
        {"email": address, "password": PASSWORD, "username": username},
    )
    assert signup.status_code == 201, signup.get_json()
    user = signup.get_json()["data"]["user"]
    identity = store.identities.get(UUID(user["id"]))
    assert identity is not None and identity.signup_state == "complete"
    assert store.profiles.get(identity.id).username == username

    login = post(live_app, "/api/v1/auth/login", {"email": address, "password": PASSWORD})
    assert login.status_code == 200, login.get_json()
    token = login.get_json()["data"]["session"]["access_token"]
    me = live_app.test_client().get("/api/v1/auth/me", headers={"Authorization": f"Bearer {token}"})
    assert me.get_json()["data"]["user"]["id"] == user["id"]

    wrong = post(live_app, "/api/v1/auth/login", {"email": address, "password": "not " + PASSWORD})
    assert wrong.get_json()["error"]["code"] == InvalidCredentials.code


def test_live_duplicate_email_is_409(live_app):
    address = email(live_app)
    assert (
        post(live_app, "/api/v1/auth/signup", {"email": address, "password": PASSWORD}).status_code
        == 201
    )
    again = post(live_app, "/api/v1/auth/signup", {"email": address, "password": PASSWORD})
    assert again.status_code == 409 and again.get_json()["error"]["code"] == EmailTaken.code


def test_live_a_failed_profile_insert_removes_the_identity(live_app):
    store = live_app.extensions["authsvc"].stores
    username = f"live_{uuid4().hex[:10]}"
    first = email(live_app)
    assert (
        post(
            live_app,
            "/api/v1/auth/signup",
            {"email": first, "password": PASSWORD, "username": username},
        ).status_code
        == 201
    )
    loser = email(live_app)
    response = post(
        live_app,
        "/api/v1/auth/signup",
        {"email": loser, "password": PASSWORD, "username": username},
    )
    assert response.status_code == 409, response.get_json()
    assert response.get_json()["error"]["code"] == UsernameTaken.code
    # The identity created before the profile insert failed was deleted again.
    assert store.identities.find_by_email(loser) is None
