"""/healthz (no I/O), /readyz (database and migrations), /version."""

from __future__ import annotations

from flask import current_app
from flask_smorest import Blueprint

from authsvc.api.schemas import ErrorSchema, HealthSchema, ReadySchema, VersionSchema, enveloped
from authsvc.errors import NotReady, envelope_ok

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
    runtime = current_app.extensions["authsvc"]
    checks = runtime.readiness()
    if any(state != "ok" for state in checks.values()):
        raise NotReady(details={"checks": checks})
    return envelope_ok({"status": "ready", "checks": checks})


@blp.route("/version", methods=["GET"])
@blp.response(200, enveloped(VersionSchema))
def version():
    """What code is running: package version, git sha, start time, schema version, backend."""
    return envelope_ok(current_app.extensions["authsvc"].version_info())
