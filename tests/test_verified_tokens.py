"""An access token verified once is remembered until it expires; everything that can change
while it lives (its session, a ban) is still checked on every call."""

from __future__ import annotations

import time
from datetime import timedelta

import jwt
import pytest
from flask_jwt_extended import create_access_token

from authsvc.tokens import key_id
from tests.conftest import AuthActions


def remembered(app) -> dict:
    return app.extensions["flask-jwt-extended"]._verified


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def error_code(response) -> str:
    return response.get_json()["error"]["code"]


def signed_up(auth: AuthActions, email: str = "alice@example.com") -> dict:
    return auth.signup(email)["data"]


def token_of_session(app, access_token: str, expires: timedelta) -> str:
    """Another access token of the same user and session, with a lifetime of our choosing."""
    claims = jwt.decode(access_token, options={"verify_signature": False})
    with app.app_context():
        return create_access_token(
            identity=claims["sub"], additional_claims={"sid": claims["sid"]}, expires_delta=expires
        )


def test_a_verified_token_is_remembered_and_answers_until_the_second_it_expires(app, auth):
    session = signed_up(auth)["session"]
    assert auth.me(session["access_token"]).status_code == 200
    assert session["access_token"] in remembered(app)

    short = token_of_session(app, session["access_token"], timedelta(seconds=2))
    assert auth.me(short).status_code == 200
    assert auth.me(short).status_code == 200
    assert short in remembered(app)
    exp = jwt.decode(short, options={"verify_signature": False})["exp"]
    time.sleep(max(0.0, exp - time.time()) + 0.05)
    response = auth.me(short)
    assert response.status_code == 401 and error_code(response) == "TOKEN_EXPIRED"


def test_a_remembered_token_changed_in_one_character_is_refused(app, auth):
    token = signed_up(auth)["session"]["access_token"]
    assert auth.me(token).status_code == 200
    header, payload, signature = token.split(".")
    flip = {"A": "B"}.get(signature[5], "A")
    forged_signature = ".".join([header, payload, signature[:5] + flip + signature[6:]])
    claims = jwt.decode(token, options={"verify_signature": False})
    other = jwt.api_jws.base64url_encode(
        jwt.api_jws.base64url_decode(payload).replace(claims["sub"].encode(), b"0" * 36)
    ).decode()
    forged_payload = ".".join([header, other, signature])
    for forged in (forged_signature, forged_payload):
        response = auth.me(forged)
        assert response.status_code == 401 and error_code(response) == "TOKEN_INVALID"
        assert forged not in remembered(app)


def test_a_remembered_token_stops_at_once_when_its_session_ends_or_its_user_is_banned(
    app, auth, db
):
    first = signed_up(auth)["session"]
    assert auth.me(first["access_token"]).status_code == 200
    auth.client.post("/api/v1/auth/logout", headers=bearer(first["access_token"]))
    response = auth.me(first["access_token"])
    assert response.status_code == 401 and error_code(response) == "TOKEN_REVOKED"

    second = auth.login()["data"]["session"]
    assert auth.me(second["access_token"]).status_code == 200
    db.execute(
        "UPDATE auth.users SET banned_until = now() + interval '1 day' WHERE email = %s",
        ("alice@example.com",),
    )
    response = auth.me(second["access_token"])
    assert response.status_code == 403 and error_code(response) == "USER_BANNED"


def test_a_refused_token_is_not_remembered(app, auth):
    token = signed_up(auth)["session"]["access_token"]
    claims = jwt.decode(token, options={"verify_signature": False})
    foreign = jwt.encode(claims, "some-other-key-that-this-service-never-held-0123456789")
    response = auth.me(foreign)
    assert response.status_code == 401 and error_code(response) == "TOKEN_INVALID"
    assert foreign not in remembered(app)


def test_the_memory_keeps_the_newest_tokens_and_no_more_than_its_size(app, auth):
    token = signed_up(auth)["session"]["access_token"]
    app.extensions["flask-jwt-extended"].max_tokens = 3
    remembered(app).clear()
    tokens = [token_of_session(app, token, timedelta(minutes=5 + i)) for i in range(5)]
    for t in tokens:
        assert auth.me(t).status_code == 200
    assert list(remembered(app)) == tokens[2:]
    # One that left the memory is verified again, and answers as before.
    assert auth.me(tokens[0]).status_code == 200
    assert list(remembered(app)) == [*tokens[3:], tokens[0]]


# -- claims: a token signed with our key still carries only what we mint ---------------------


class _Drop:
    def __repr__(self) -> str:
        return "DROP"


DROP = _Drop()


def resigned(app, token: str, **changes) -> str:
    """`token`'s claims with `changes` (DROP removes a claim), signed with the app's key under
    its `kid`, as only someone holding JWT_SECRET_KEY could."""
    claims = jwt.decode(token, options={"verify_signature": False})
    for name, value in changes.items():
        if value is DROP:
            del claims[name]
        else:
            claims[name] = value
    key = app.config["JWT_SECRET_KEY"]
    return jwt.encode(claims, key, algorithm="HS256", headers={"kid": key_id(key)})


@pytest.mark.parametrize(
    "changes",
    # (A `sub` or `jti` that is not a string PyJWT refuses by itself.)
    [
        {"sub": "not-a-uuid"},
        {"sub": "8D0C5D46-5F3C-4E7B-9A51-0B8F6F1F2A10"},
        {"sid": 5},
        {"sid": [1]},
        {"sid": {"id": 1}},
        {"sid": "not-a-uuid"},
        {"sid": ""},
        {"sid": DROP},
        {"exp": DROP},
        {"exp": "4102444800"},  # 2100, as a string
        {"jti": DROP},
        {"jti": ""},
    ],
    ids=repr,
)
def test_a_token_signed_with_our_key_but_malformed_claims_is_invalid(app, auth, changes):
    token = signed_up(auth)["session"]["access_token"]
    forged = resigned(app, token, **changes)
    response = auth.me(forged)
    assert response.status_code == 401, response.get_json()
    assert error_code(response) == "TOKEN_INVALID"
    assert forged not in remembered(app)
    # The same claims unchanged, signed the same way, are taken: only the change is refused.
    assert auth.me(resigned(app, token)).status_code == 200


def test_a_token_naming_another_user_than_its_session_is_invalid(app, auth):
    alice = signed_up(auth, "alice@example.com")
    bob = signed_up(auth, "bob@example.com")
    forged = resigned(app, alice["session"]["access_token"], sub=bob["user"]["id"])
    response = auth.me(forged)
    assert response.status_code == 401 and error_code(response) == "TOKEN_INVALID"
    assert auth.me(alice["session"]["access_token"]).status_code == 200
