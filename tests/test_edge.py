"""The HTTP edge under real gunicorn, over raw sockets: bodies over the limit however they are
framed."""

from __future__ import annotations

import http.client
import json

import pytest

from tests.conftest import PASSWORD, count
from tests.service import Gunicorn, service_env

LIMIT = 65536  # AUTHSVC_MAX_BODY_BYTES's default
LOGIN = "/api/v1/auth/login"
SIGNUP = "/api/v1/auth/signup"


@pytest.fixture(scope="module")
def server(database_url, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("edge")
    service = Gunicorn.started(
        service_env(
            tmp,
            DATABASE_URL=database_url,
            AUTHSVC_ENV="production",
            AUTHSVC_ARGON2_TIME_COST="2",
            AUTHSVC_ARGON2_MEMORY_KIB="19456",
        ),
        log_path=tmp / "gunicorn.log",
    )
    yield service
    service.stop()


def padded(body: dict, size: int) -> bytes:
    """`body` as JSON, padded with spaces to exactly `size` bytes (still valid JSON)."""
    raw = json.dumps(body).encode()
    return raw + b" " * (size - len(raw))


def chunked(data: bytes, piece: int = 16384) -> bytes:
    out = b"".join(
        b"%x\r\n%s\r\n" % (len(data[i : i + piece]), data[i : i + piece])
        for i in range(0, len(data), piece)
    )
    return out + b"0\r\n\r\n"


def post_chunked(port: int, path: str, data: bytes) -> http.client.HTTPResponse:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=20)
    conn.putrequest("POST", path)
    conn.putheader("Content-Type", "application/json")
    conn.putheader("Transfer-Encoding", "chunked")
    conn.endheaders()
    conn.send(chunked(data))
    response = conn.getresponse()
    response.body = json.loads(response.read())
    conn.close()
    return response


# -- bodies over the limit, however they are framed --------------------------------------------


@pytest.mark.parametrize("size", [LIMIT + 1, 100_060, 200_000])
def test_a_chunked_body_over_the_limit_is_413_and_nothing_is_processed(server, db, size):
    body = padded({"email": "big@example.com", "password": PASSWORD}, size)
    response = post_chunked(server.port, SIGNUP, body)
    assert response.status == 413, response.body
    assert response.body["error"]["code"] == "PAYLOAD_TOO_LARGE"
    assert response.body["error"]["request_id"] == response.headers["X-Request-ID"]
    assert count(db, "auth.users") == 0
    response = post_chunked(server.port, LOGIN, body)
    assert response.status == 413 and response.body["error"]["code"] == "PAYLOAD_TOO_LARGE"


def test_a_chunked_body_at_the_limit_is_read_whole(server, db):
    body = padded({"email": "edge@example.com", "password": PASSWORD}, LIMIT)
    response = post_chunked(server.port, SIGNUP, body)
    assert response.status == 201, response.body
    response = post_chunked(server.port, LOGIN, padded({"email": "edge@example.com"}, 300))
    assert response.status == 422, response.body  # the whole body, no password: parsed
    assert count(db, "auth.users") == 1
