"""The HTTP edge under real gunicorn, over raw sockets: bodies over the limit however they are
framed, what a connection promises after an answer, and the requests gunicorn answers itself."""

from __future__ import annotations

import http.client
import json
import time

import pytest

from tests.conftest import PASSWORD, count
from tests.service import Gunicorn, raw_exchange

LIMIT = 65536  # AUTHSVC_MAX_BODY_BYTES's default
LOGIN = "/api/v1/auth/login"
SIGNUP = "/api/v1/auth/signup"


@pytest.fixture(scope="module")
def server(database_url, tmp_path_factory):
    service = Gunicorn.in_production(database_url, tmp_path_factory.mktemp("edge"))
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


@pytest.mark.parametrize(
    "framing",
    [
        b"zz\r\n{}\r\n0\r\n\r\n",  # a chunk size that is not hexadecimal
        b"2\r\n{}xx\r\n0\r\n\r\n",  # a chunk longer than its size says
    ],
)
def test_a_malformed_chunked_body_is_a_400_in_the_envelope(server, db, framing):
    status, headers, body = raw_exchange(
        server.port,
        b"POST /api/v1/auth/signup HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n" + framing,
    )
    assert status == 400, body
    error = json.loads(body)["error"]
    assert error["code"] == "BAD_REQUEST" and error["request_id"] == headers["x-request-id"]
    assert count(db, "auth.users") == 0


def test_a_chunked_body_at_the_limit_is_read_whole(server, db):
    body = padded({"email": "edge@example.com", "password": PASSWORD}, LIMIT)
    response = post_chunked(server.port, SIGNUP, body)
    assert response.status == 201, response.body
    response = post_chunked(server.port, LOGIN, padded({"email": "edge@example.com"}, 300))
    assert response.status == 422, response.body  # the whole body, no password: parsed
    assert count(db, "auth.users") == 1


# -- what an answer promises about its connection ----------------------------------------------


def _next_request_after(port: int, send_first) -> tuple[int, str, int | None]:
    """(status, Connection header) of a first exchange, and the status of a signup sent on the
    same connection when the first answer said keep-alive (None when it said close)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=20)
    try:
        send_first(conn)
        first = conn.getresponse()
        answer = json.loads(first.read())  # whole, whatever the connection does next
        assert answer["success"] is (first.status < 400)
        connection = first.headers.get("Connection", "")
        if connection.lower() == "close":
            return first.status, connection, None
        time.sleep(0.3)  # what a client may well do between two requests
        conn.request(
            "POST",
            SIGNUP,
            body=json.dumps({"email": "next@example.com", "password": PASSWORD}),
            headers={"Content-Type": "application/json"},
        )
        second = conn.getresponse()
        second.read()
        return first.status, connection, second.status
    finally:
        conn.close()


def _with_length(path: str, data: bytes, method: str = "POST"):
    return lambda conn: conn.request(
        method, path, body=data, headers={"Content-Type": "application/json"}
    )


def _chunked_request(path: str, data: bytes):
    def send(conn: http.client.HTTPConnection) -> None:
        conn.putrequest("POST", path)
        conn.putheader("Content-Type", "application/json")
        conn.putheader("Transfer-Encoding", "chunked")
        conn.endheaders()
        conn.send(chunked(data))

    return send


@pytest.mark.parametrize(
    ("send", "status"),
    [
        (_with_length(SIGNUP, b" " * 70_000), 413),
        (_with_length(SIGNUP, b" " * 100_000), 413),
        (_chunked_request(SIGNUP, b" " * 200_000), 413),
        (_with_length("/healthz", b" " * 100_000, method="GET"), 200),  # a body nobody reads
    ],
    ids=["413-70KB", "413-100KB", "413-chunked-200KB", "unread-100KB"],
)
def test_an_answer_that_says_keep_alive_keeps_the_connection_usable(server, db, send, status):
    first, connection, second = _next_request_after(server.port, send)
    assert first == status
    if status == 413:
        assert connection.lower() == "close"  # the body was not read: no promise to keep
    assert second in (None, 201), (connection, second)


def test_a_body_read_whole_keeps_the_connection(server, db):
    body = json.dumps({"email": "first@example.com", "password": PASSWORD}).encode()
    first, connection, second = _next_request_after(server.port, _with_length(SIGNUP, body))
    assert (first, connection.lower(), second) == (201, "keep-alive", 201)


# -- what gunicorn answers itself --------------------------------------------------------------


@pytest.mark.parametrize(
    ("request_bytes", "status", "code"),
    [
        (
            b"GET /api/v1/admin/users?q=" + b"a" * 5000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
            414,
            "URI_TOO_LONG",
        ),
        (
            b"GET /api/v1/auth/me HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
            + b"a" * 20_000
            + b"\r\n\r\n",
            431,
            "HEADERS_TOO_LARGE",
        ),
        (
            b"POST /api/v1/auth/login HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n",
            400,
            "BAD_REQUEST",
        ),
        (
            b"GET /healthz HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: br, chunked\r\n\r\n",
            501,
            "NOT_IMPLEMENTED",
        ),
    ],
    ids=["414-request-line", "431-header", "400-content-length", "501-transfer-coding"],
)
def test_requests_gunicorn_refuses_are_answered_in_the_envelope(
    server, request_bytes, status, code
):
    got, headers, body = raw_exchange(server.port, request_bytes)
    assert got == status, body
    assert headers["content-type"] == "application/json"
    assert headers["connection"] == "close"
    assert int(headers["content-length"]) == len(body)
    envelope = json.loads(body)
    assert envelope["success"] is False
    assert envelope["error"]["code"] == code and envelope["error"]["message"]
    assert envelope["error"]["request_id"] == headers["x-request-id"]
    assert b"<html" not in body


def test_a_refused_request_keeps_the_client_request_id_it_could_read(server):
    got, headers, body = raw_exchange(
        server.port,
        b"POST /api/v1/auth/login HTTP/1.1\r\nHost: x\r\nX-Request-ID: edge-1\r\n"
        b"Content-Length: -1\r\n\r\n",
    )
    assert got == 400
    assert headers["x-request-id"] == "edge-1" == json.loads(body)["error"]["request_id"]
