"""/healthz (no I/O), /readyz (database and migrations), /version."""

from __future__ import annotations

from flask import current_app
from flask_smorest import Blueprint

from authsvc.api.schemas import ErrorSchema, HealthSchema, ReadySchema, VersionSchema, enveloped
from authsvc.errors import NotReady, envelope_ok
from authsvc.services import health

blp = Blueprint("health", __name__, description="Liveness, readiness and the running code")


@blp.route("/healthz", methods=["GET"])
@blp.response(200, enveloped(HealthSchema))
def healthz():
    """The process is alive (no I/O)."""
    return envelope_ok({"status": "ok"})


@blp.route("/readyz", methods=["GET"])
@blp.response(200, enveloped(ReadySchema))
@blp.alt_response(503, schema=ErrorSchema, description="NOT_READY: details.checks names each state")
def readyz():
    """Every database answers and no migration is pending."""
    checks = health.readiness(current_app.extensions["authsvc"].stores)
    if any(state != "ok" for state in checks.values()):
        raise NotReady(details={"checks": checks})
    return envelope_ok({"status": "ready", "checks": checks})


@blp.route("/version", methods=["GET"])
@blp.response(200, enveloped(VersionSchema))
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
