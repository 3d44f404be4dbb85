"""The OpenAPI document: valid OpenAPI 3.1, and true to what the service sends.

schemathesis drives every documented operation of the real app (on the suite's Postgres) with a
fixed seed, derandomized, and checks each answer against the document: no 5xx, only documented
statuses, bodies and headers as documented, schema-violating requests refused.
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Any
from uuid import UUID

import pytest
import schemathesis
from openapi_spec_validator import validate
from openapi_spec_validator.validation import OpenAPIV31SpecValidator
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    ignored_auth,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from authsvc import create_app, errors
from authsvc.api.admin_schemas import USER_ID_EXAMPLE
from authsvc.services import admin, audit
from authsvc.stores import ADMIN_ROLE, NewProfile
from tests.conftest import PASSWORD, app_overrides
from tests.test_health import closed_port_url

OPENAPI_PATH = "/api/v1/openapi.json"
SEED = 20261130
MAX_EXAMPLES = 25  # per operation, fuzzing phase; the coverage phase adds its boundary cases
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    response_schema_conformance,
    response_headers_conformance,
    content_type_conformance,
    negative_data_rejection,
    ignored_auth,  # a 2xx on a secured operation: resent without and with a bad token, 401 both
]
SCHEMATHESIS_USER = "schemathesis@example.com"
EXAMPLE_USER = "example-user@example.com"
TOKEN_PLACEHOLDER = "access-token-minted-when-the-case-is-sent"
HTTP_METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}
ANONYMOUS_OPERATIONS = {"POST /api/v1/auth/upgrade"}  # sent with an anonymous account's token


def operations(spec: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (method.upper(), path, operation)
        for path, item in spec["paths"].items()
        for method, operation in item.items()
        if method in HTTP_METHODS
    ]


def error_codes(response: dict[str, Any]) -> list[str]:
    """The `error.code` values a documented error response allows."""
    schema = response["content"]["application/json"]["schema"]
    (narrowing,) = [part for part in schema["allOf"] if "$ref" not in part]
    return narrowing["properties"]["error"]["properties"]["code"]["enum"]


@pytest.fixture
def spec(client) -> dict[str, Any]:
    response = client.get(OPENAPI_PATH)
    assert response.status_code == 200
    return response.get_json()


# -- the document -----------------------------------------------------------------------------


def test_the_served_document_is_valid_openapi_3_1(spec):
    assert spec["openapi"].startswith("3.1")
    validate(spec, cls=OpenAPIV31SpecValidator)  # raises with the first violation


def test_the_document_lists_every_endpoint_and_error(spec):
    paths = spec["paths"]
    assert set(paths) >= {
        "/api/v1/auth/signup",
        "/api/v1/auth/login",
        "/api/v1/auth/refresh",
        "/api/v1/auth/logout",
        "/api/v1/auth/me",
        "/healthz",
        "/readyz",
        "/version",
    }
    signup = paths["/api/v1/auth/signup"]["post"]
    assert {"201", "400", "409", "413", "415", "422", "429", "500", "503"} <= set(
        signup["responses"]
    )
    assert signup["requestBody"]["content"]["application/json"]["schema"]
    assert set(paths["/api/v1/auth/me"]) >= {"get", "patch"}
    assert "401" in paths["/api/v1/auth/me"]["get"]["responses"]
    # What gunicorn refuses before any route runs, every operation can answer.
    assert {"400", "414", "417", "431", "501"} <= set(paths["/api/v1/auth/me"]["get"]["responses"])
    assert "Error" in spec["components"]["schemas"]
    # The success body is the envelope, with the real data schema inside.
    ok = signup["responses"]["201"]["content"]["application/json"]["schema"]["$ref"]
    assert ok.endswith("SignupResultEnvelope")


def test_every_operation_has_a_unique_name_for_generated_clients(spec):
    ids = [
        (op["operationId"], method, path)
        for path, item in spec["paths"].items()
        for method, op in item.items()
        if method in {"get", "post", "put", "patch", "delete"}
    ]
    names = [name for name, _, _ in ids]
    assert len(names) >= 24 and len(set(names)) == len(names)
    assert all(re.fullmatch(r"[a-z][A-Za-z0-9]*", name) for name in names), names
    assert ("postAuthLogin", "post", "/api/v1/auth/login") in ids
    assert ("getAdminUsersByUserId", "get", "/api/v1/admin/users/{user_id}") in ids


def test_no_operation_has_a_catch_all_response(spec):
    # A "default" response would make every status "documented"; each status is listed instead.
    for method, path, operation in operations(spec):
        assert "default" not in operation["responses"], (method, path)
    assert "DEFAULT_ERROR" not in spec["components"].get("responses", {})


def test_every_response_documents_x_request_id_and_retry_answers_retry_after(spec):
    headers = spec["components"]["headers"]
    assert headers["X-Request-ID"]["required"] is True
    assert headers["Retry-After"]["schema"] == {"type": "integer", "minimum": 1}
    seen_retry = set()
    for method, path, operation in operations(spec):
        for status, response in operation["responses"].items():
            documented = response.get("headers", {})
            assert documented.get("X-Request-ID") == {
                "$ref": "#/components/headers/X-Request-ID"
            }, (method, path, status)
            if status in ("429", "503"):
                assert documented.get("Retry-After") == {
                    "$ref": "#/components/headers/Retry-After"
                }, (method, path, status)
                seen_retry.add(status)
            else:
                assert "Retry-After" not in documented, (method, path, status)
    assert seen_retry == {"429", "503"}


def test_every_error_response_is_the_envelope_naming_its_codes(spec):
    for method, path, operation in operations(spec):
        for status, response in operation["responses"].items():
            if int(status) < 400:
                continue
            schema = response["content"]["application/json"]["schema"]
            assert {"$ref": "#/components/schemas/Error"} in schema["allOf"], (method, path, status)
            codes = error_codes(response)
            assert codes, (method, path, status)
            for code in codes:  # the description names each code the schema allows
                assert code in response["description"], (method, path, status, code)


def test_signup_documents_the_idempotency_codes(spec):
    responses = spec["paths"]["/api/v1/auth/signup"]["post"]["responses"]
    assert errors.IdempotencyKeyInFlight.code in error_codes(responses["409"])
    assert errors.IdempotencyKeyReused.code in error_codes(responses["422"])
    (key,) = [
        p
        for p in spec["paths"]["/api/v1/auth/signup"]["post"]["parameters"]
        if p["name"] == "Idempotency-Key"
    ]
    assert key["in"] == "header" and key["required"] is False


# -- answers the fuzz cannot reach, held to the document by the same checks --------------------

DOCUMENT_CHECKS = [
    status_code_conformance,
    response_schema_conformance,
    response_headers_conformance,
    content_type_conformance,
]


def send_and_validate(app, method: str, path: str, **case: Any):
    """Send one hand-made case through schemathesis and check the answer against the document."""
    operation = schemathesis.openapi.from_wsgi(OPENAPI_PATH, app)[path][method]
    built = operation.Case(**case)
    response = built.call()
    built.validate_response(response, checks=DOCUMENT_CHECKS)
    return response


def test_a_rate_limited_answer_is_as_documented(database_url, tmp_path):
    app = create_app(
        app_overrides(
            database_url,
            tmp_path,
            AUTHSVC_RATE_LIMITS="on",
            AUTHSVC_RATE_LIMIT_LOGIN="2 per minute",
        )
    )
    body = {"email": "nobody@example.com", "password": PASSWORD}
    try:
        answers = [
            send_and_validate(app, "POST", "/api/v1/auth/login", body=body) for _ in range(3)
        ]
        assert [answer.status_code for answer in answers] == [401, 401, 429]
        assert answers[-1].json()["error"]["code"] == errors.RateLimited.code
        assert int(answers[-1].headers["retry-after"][0]) >= 1  # lower-case, listed
    finally:
        app.extensions["authsvc"].stores.close()


def test_answers_without_a_database_are_as_documented(tmp_path):
    app = create_app(app_overrides(closed_port_url(), tmp_path))
    try:
        signup = send_and_validate(
            app,
            "POST",
            "/api/v1/auth/signup",
            body={"email": "a@example.com", "password": PASSWORD},
        )
        assert signup.status_code == 503
        assert signup.json()["error"]["code"] == errors.DatabaseUnavailable.code
        assert int(signup.headers["retry-after"][0]) >= 1
        ready = send_and_validate(app, "GET", "/readyz")
        assert ready.status_code == 503
        assert ready.json()["error"]["code"] == errors.NotReady.code
        assert int(ready.headers["retry-after"][0]) >= 1
    finally:
        app.extensions["authsvc"].stores.close()


def test_an_anonymous_account_seen_by_the_admin_api_is_as_documented(app, auth):
    """Both rows of a guest account hold no email: the document's rows say they may not."""
    accounts_in_place(app, auth)
    admin_token = auth.login(SCHEMATHESIS_USER, PASSWORD)["data"]["session"]["access_token"]
    guest = auth.client.post("/api/v1/auth/anonymous", json={}).get_json()["data"]["user"]
    answer = send_and_validate(
        app,
        "GET",
        "/api/v1/admin/users/{user_id}",
        path_parameters={"user_id": guest["id"]},
        headers={"Authorization": f"Bearer {admin_token}"},
    )
    assert answer.status_code == 200
    detail = answer.json()["data"]
    assert detail["identity"]["email"] is None and detail["profile"]["email"] is None


# -- schemathesis against the real service ----------------------------------------------------


class CaseTally:
    """What schemathesis sent: statuses per operation, printed in pytest's terminal summary."""

    def __init__(self) -> None:
        # label -> (method sent, status) -> cases; schemathesis also tries other methods on a path
        self.statuses: dict[str, Counter[tuple[str, int]]] = {}

    def record(self, label: str, method: str, status: int) -> None:
        self.statuses.setdefault(label, Counter())[(method.upper(), status)] += 1

    @property
    def cases(self) -> int:
        return sum(sum(counts.values()) for counts in self.statuses.values())

    def statuses_of(self, label: str) -> set[int]:
        """Statuses answered to the operation's own method."""
        method = label.split()[0]
        return {status for (sent, status) in self.statuses.get(label, {}) if sent == method}

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if not self.statuses:
            return
        terminalreporter.section("schemathesis")
        terminalreporter.write_line(
            f"schemathesis: {self.cases} cases over {len(self.statuses)} operations "
            f"(seed {SEED}, derandomized, at most {MAX_EXAMPLES} fuzzed per operation)"
        )
        for label, counts in sorted(self.statuses.items()):
            method = label.split()[0]
            own: Counter[int] = Counter()
            other: Counter[int] = Counter()
            for (sent, status), n in counts.items():
                (own if sent == method else other)[status] += n
            line = f"  {label}: {sum(counts.values())} cases: " + ", ".join(
                f"{status} x{n}" for status, n in sorted(own.items())
            )
            if other:
                line += "; other methods: " + ", ".join(
                    f"{status} x{n}" for status, n in sorted(other.items())
                )
            terminalreporter.write_line(line)


class DeferredToken:
    """Marks the cases schemathesis authenticates. It builds some cases (auth included) long
    before it sends them, so the test gives each marked case a fresh session just before
    sending it: no earlier logout case can have ended it."""

    def get(self, case: Any, context: Any) -> str:
        return TOKEN_PLACEHOLDER

    def set(self, case: Any, data: str, context: Any) -> None:
        case.headers = {**(case.headers or {}), "Authorization": f"Bearer {data}"}


@pytest.fixture
def tally(request: pytest.FixtureRequest) -> CaseTally:
    plugin = request.config.pluginmanager.get_plugin("authsvc-schemathesis-tally")
    if plugin is None:
        plugin = CaseTally()
        request.config.pluginmanager.register(plugin, "authsvc-schemathesis-tally")
    return plugin


def accounts_in_place(app, auth) -> None:
    """The schemathesis user, holding the admin role, and the user whose id is the document's
    example (the admin API's operations on one user reach it), whatever earlier cases deleted
    (DELETE /api/v1/auth/me, DELETE /api/v1/admin/users/{user_id})."""
    stores = app.extensions["authsvc"].stores
    if stores.identities.find_by_email(SCHEMATHESIS_USER) is None:
        auth.signup(SCHEMATHESIS_USER, PASSWORD)
    identity = stores.identities.find_by_email(SCHEMATHESIS_USER)
    admin.set_role(stores, audit.CLI, identity.id, ADMIN_ROLE, True)
    example = UUID(USER_ID_EXAMPLE)
    if stores.identities.get(example) is None:
        with stores.signup(example) as unit:
            unit.create_identity(EXAMPLE_USER, app.extensions["authsvc"].hasher.hash(PASSWORD), {})
            unit.insert_profile(NewProfile(example, EXAMPLE_USER))
            unit.complete()


@pytest.fixture
def api_schema(app, auth, tally, spec):
    """The served document, loaded by schemathesis against the in-process app."""
    accounts_in_place(app, auth)
    # The document's example login works: the examples phase reaches a 200.
    login = spec["components"]["schemas"]["Login"]["properties"]
    auth.signup(login["email"]["example"], login["password"]["example"])
    config = schemathesis.Config.from_dict(
        {
            "seed": SEED,
            "generation": {"max-examples": MAX_EXAMPLES, "deterministic": True, "database": "none"},
        }
    )
    schema = schemathesis.openapi.from_wsgi(OPENAPI_PATH, app, config=config)
    secured = [f"{method} {path}" for method, path, op in operations(spec) if op.get("security")]
    assert secured
    # No caching and no retry on 401: a 401 stays a 401.
    schema.auth(refresh_interval=None, retry_on=[]).apply_to(name=secured)(DeferredToken)
    yield schema
    # Every operation was reached, and the authenticated ones got past 401 at least once.
    for method, path, _ in operations(spec):
        label = f"{method} {path}"
        assert tally.statuses_of(label), f"schemathesis sent no {label}"
        if label in secured:
            assert any(200 <= status < 300 for status in tally.statuses_of(label)), (
                f"{label} never got past authentication: {tally.statuses_of(label)}"
            )


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()
def test_schemathesis_finds_no_5xx_and_no_drift_from_the_document(case, tally, app, auth):
    if (case.headers or {}).get("Authorization") == f"Bearer {TOKEN_PLACEHOLDER}":
        accounts_in_place(app, auth)
        if case.operation.label in ANONYMOUS_OPERATIONS:  # only an anonymous account may
            answer = auth.client.post("/api/v1/auth/anonymous", json={}).get_json()
        else:
            answer = auth.login(SCHEMATHESIS_USER, PASSWORD)
        token = answer["data"]["session"]["access_token"]
        case.headers["Authorization"] = f"Bearer {token}"
    response = case.call()
    tally.record(case.operation.label, case.method, response.status_code)
    case.validate_response(response, checks=CHECKS)


def test_the_document_lists_the_account_lifecycle_with_its_codes(spec):
    expected = {
        ("post", "/api/v1/auth/anonymous"): {
            "201": None,
            "429": errors.RateLimited,
            "500": errors.SignupFailed,
        },
        ("post", "/api/v1/auth/upgrade"): {
            "200": None,
            "409": errors.NotAnonymous,
            "422": errors.WeakPassword,
            "500": errors.UpgradeFailed,
        },
        ("post", "/api/v1/auth/verify"): {"200": None, "400": errors.LinkInvalid},
        ("post", "/api/v1/auth/verify/resend"): {"202": None, "429": errors.RateLimited},
        ("post", "/api/v1/auth/password/forgot"): {"202": None, "429": errors.RateLimited},
        ("post", "/api/v1/auth/password/reset"): {
            "200": None,
            "400": errors.LinkInvalid,
            "422": errors.WeakPassword,
        },
        ("post", "/api/v1/auth/password"): {"200": None, "401": errors.InvalidCredentials},
    }
    for (method, path), responses in expected.items():
        operation = spec["paths"][path][method]
        for status, error in responses.items():
            assert status in operation["responses"], (path, status)
            if error is not None:
                assert error.code in error_codes(operation["responses"][status]), (path, status)
    for path in ("/api/v1/auth/upgrade", "/api/v1/auth/password"):
        assert spec["paths"][path]["post"]["security"] == [{"bearerAuth": []}]
    login = spec["paths"]["/api/v1/auth/login"]["post"]["responses"]
    user = spec["components"]["schemas"]["User"]["properties"]["email"]
    assert "null" in user["type"]
    assert errors.EmailNotConfirmed.code in error_codes(login["403"])


def test_the_document_says_text_refuses_nul_as_the_service_does(spec, client):
    """A client generating bodies from the document (schemathesis' positive data) gets no 422
    for a NUL it was not told about."""
    properties = spec["components"]["schemas"]["Login"]["properties"]
    for name in ("email", "password"):
        pattern = properties[name]["pattern"]
        assert re.fullmatch(pattern, "text") and not re.fullmatch(pattern, "te\x00xt")
    body = {"email": "alice@example.com", "password": "te\x00xt-long-enough"}
    answer = client.post("/api/v1/auth/login", json=body)
    assert answer.status_code == 422 and "password" in answer.get_json()["error"]["details"]


@pytest.mark.parametrize(
    "email",
    ["a@b.test", "A@B.TEST", "x@y.local", "x@y.localhost.", "x@onion", "x@in-addr.arpa"]
    + ["alice@example.com", "bob@contest.com", "test.user@test-lab.io", "c@local.dev"],
)
def test_the_document_says_which_domains_the_service_refuses(spec, client, email):
    """The email pattern matches exactly the addresses the service accepts, so a client that
    generates "valid" addresses from the document (schemathesis picks .test among its
    top-level domains) is not refused for a domain it was not told about."""
    for schema in ("Signup", "Login", "Upgrade", "Email"):
        pattern = spec["components"]["schemas"][schema]["properties"]["email"]["pattern"]
        documented = re.search(pattern, email) is not None
        answer = client.post("/api/v1/auth/password/forgot", json={"email": email})
        assert (answer.status_code == 202) == documented, (schema, answer.get_json())
