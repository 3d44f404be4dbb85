"""One email, one account in Supabase mode: Supabase Auth and PostgREST get the normalised
address (NFC, lower-cased whole), and invisible or control characters never leave authsvc."""

from __future__ import annotations

import json

import pytest

from authsvc.errors import EmailTaken, ValidationFailed

JOSE = "jos\u00e9@example.com"  # é precomposed (NFC)


def test_supabase_auth_and_the_profile_get_the_normalised_address(auth, fake):
    user = auth.signup("JOSE\u0301@Example.COM", username="jose")["data"]["user"]
    assert user["email"] == JOSE
    assert fake.bodies("create_user")[-1]["email"] == JOSE
    assert fake.bodies("insert_profile")[-1]["email"] == JOSE
    assert fake.profiles[user["id"]]["email"] == JOSE


def test_a_decomposed_form_of_a_taken_address_is_409_in_supabase_mode(auth, fake):
    # Supabase Auth lower-cases but does not NFC-normalise: without normalising here, the
    # decomposed form would be a second user.
    auth.signup(JOSE)
    body = auth.signup("jose\u0301@example.com", expect=409)
    assert body["error"]["code"] == EmailTaken.code
    assert len(fake.users) == 1 and len(fake.profiles) == 1


def test_login_sends_supabase_auth_the_normalised_address(auth, fake):
    user_id = auth.signup(JOSE)["data"]["user"]["id"]
    assert auth.login("JOSE\u0301@EXAMPLE.com")["data"]["user"]["id"] == user_id
    assert json.loads(fake.requests("token")[-1].content)["email"] == JOSE


@pytest.mark.parametrize(
    "address",
    [
        "ali\u200bce@example.com",
        "alice\u202e@example.com",
        "al\u2066ice@example.com",
        "\ufeffalice@example.com",
        "ali\u0000ce@example.com",
        "alice\u0007@example.com",
    ],
)
def test_an_invisible_or_control_character_never_reaches_supabase(auth, fake, address):
    body = auth.signup(address, expect=422)
    assert body["error"]["code"] == ValidationFailed.code
    assert auth.login(address, expect=422)["error"]["code"] == ValidationFailed.code
    assert fake.all_requests() == []
