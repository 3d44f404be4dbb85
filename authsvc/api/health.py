"""/healthz (no I/O), /readyz (database and migrations), /version."""

from __future__ import annotations

from flask import current_app
from flask_smorest import Blueprint

from authsvc.api.schemas import HealthSchema, ReadySchema, VersionSchema, enveloped, error_schema
from authsvc.errors import InternalError, NotReady, envelope_ok
from authsvc.services import health

blp = Blueprint("health", __name__, description="Liveness, readiness and the running code")

# Seconds a load balancer or client is told to wait before asking /readyz again.
READY_RETRY_AFTER = 5

internal_error_doc = blp.alt_response(
    500,
    schema=error_schema(InternalError.code),
    description=f"{InternalError.code}: {InternalError.message}",
)


@blp.route("/healthz", methods=["GET"])
@blp.response(200, enveloped(HealthSchema))
@internal_error_doc
def healthz():
    """The process is alive (no I/O)."""
    return envelope_ok({"status": "ok"})


@blp.route("/readyz", methods=["GET"])
@blp.response(200, enveloped(ReadySchema))
@blp.alt_response(
    503,
    schema=error_schema(NotReady.code),
    description=f"{NotReady.code}: details.checks names each check's state",
)
@internal_error_doc
def readyz():
    """Every database answers and no migration is pending."""
    checks = health.readiness(current_app.extensions["authsvc"].stores)
    if any(state != "ok" for state in checks.values()):
        raise NotReady(details={"checks": checks}, headers={"Retry-After": str(READY_RETRY_AFTER)})
    return envelope_ok({"status": "ready", "checks": checks})


@blp.route("/version", methods=["GET"])
@blp.response(200, enveloped(VersionSchema))
@internal_error_doc
def version():
    """What code is running: package version, git sha, start time, schema version, backend."""
    from authsvc import __version__

    runtime = current_app.extensions["authsvc"]
    return envelope_ok(
        {
            "version": __version__,
            "git_sha": runtime.settings.git_sha,
            "started_at": runtime.started_at.isoformat().replace("+00:00", "Z"),
            "schema_version": health.schema_version(runtime.stores),
            "backend": runtime.settings.backend,
        }
    )
