"""Prometheus metrics at GET /metrics (AUTHSVC_METRICS=on): requests, latency, signups, pools.

Everything is counted at the HTTP edge, after the response is rendered, so the services stay
free of metrics: requests by route template (never the raw path: the label set stays bounded),
method and status; latency by route and method; signup answers by outcome (`created` or the
error code), and SIGNUP_FAILED by step and compensation, read from the AuthError the error
renderer left on `flask.g`.

Under gunicorn every worker is a process. With PROMETHEUS_MULTIPROC_DIR set (gunicorn.conf.py
sets it) prometheus_client keeps each worker's values in files there and /metrics, on whichever
worker answers, reads them all: counters and histograms are summed over workers, dead ones
included. Connection pools belong to one worker each, so their gauges are `liveall`: one series
per live worker (label `pid`), gone when the worker dies, refreshed every few seconds by each
worker and by the one answering the scrape. In a single process they are read at scrape time.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterator, Mapping

from flask import Flask, Response, g, request
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import GaugeMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

from authsvc.config import Settings
from authsvc.errors import AuthError, SignupFailed
from authsvc.services import audit

log = logging.getLogger("authsvc.metrics")

PoolStats = Callable[[], Mapping[str, Mapping[str, int]]]

# A POST to these endpoints is a signup: the JSON API and the hosted form.
SIGNUP_ENDPOINTS = ("auth.signup_view", "pages.signup_page")
CREATED = "created"
UNMATCHED = "unmatched"  # no route matched (404, 405): one label value, whatever the path
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
# psycopg_pool's get_stats() keys shown as gauges: metric name and help.
POOL_GAUGES = {
    "pool_min": ("authsvc_db_pool_min", "Connections the pool keeps open at least."),
    "pool_max": ("authsvc_db_pool_max", "Connections the pool may open at most."),
    "pool_size": ("authsvc_db_pool_size", "Connections open or being opened."),
    "pool_available": ("authsvc_db_pool_available", "Idle connections ready to be handed out."),
    "requests_waiting": (
        "authsvc_db_pool_requests_waiting",
        "Requests waiting for a connection right now.",
    ),
}
SAMPLE_SECONDS = 5.0


class PoolCollector(Collector):
    """Connection pool gauges labelled by database, from `stats()` at each collection."""

    def __init__(self, stats: PoolStats) -> None:
        self._stats = stats

    def _families(self, snapshot: Mapping[str, Mapping[str, int]]) -> Iterator[GaugeMetricFamily]:
        for key, (name, documentation) in POOL_GAUGES.items():
            family = GaugeMetricFamily(name, documentation, labels=["database"])
            for database, stats in snapshot.items():
                if key in stats:
                    family.add_metric([database], stats[key])
            yield family

    def describe(self) -> Iterator[GaugeMetricFamily]:
        return self._families({})

    def collect(self) -> Iterator[GaugeMetricFamily]:
        return self._families(self._stats())


class LivePoolGauges:
    """A PoolCollector copied into `liveall` gauges (collectors cannot write to the
    multiprocess files), refreshed by a thread in each worker process."""

    def __init__(self, collector: PoolCollector, interval: float = SAMPLE_SECONDS) -> None:
        self._collector = collector
        self._interval = interval
        self._gauges = {
            family.name: Gauge(
                family.name,
                family.documentation,
                ["database"],
                registry=None,
                multiprocess_mode="liveall",
            )
            for family in collector.describe()
        }
        self._lock = threading.Lock()
        self._pid: int | None = None

    def refresh(self) -> None:
        for family in self._collector.collect():
            for sample in family.samples:
                self._gauges[family.name].labels(**sample.labels).set(sample.value)

    def ensure_sampling(self) -> None:
        """Run the refresh thread in this process (started again after a fork)."""
        if self._pid == os.getpid():
            return
        with self._lock:
            if self._pid == os.getpid():
                return
            self._pid = os.getpid()
            threading.Thread(target=self._sample, name="authsvc-metrics", daemon=True).start()

    def _sample(self) -> None:
        while True:
            try:
                self.refresh()
            except Exception:
                log.exception("pool metrics not refreshed")
            time.sleep(self._interval)


class Metrics:
    """The service's metrics, and how one answered request moves them."""

    def __init__(self, registry: CollectorRegistry | None) -> None:
        self.requests = Counter(
            "authsvc_http_requests",
            "HTTP requests answered, by route template, method and status.",
            ["route", "method", "status"],
            registry=registry,
        )
        self.latency = Histogram(
            "authsvc_http_request_duration_seconds",
            "Time from the request's arrival to its rendered response, by route and method.",
            ["route", "method"],
            registry=registry,
        )
        self.signups = Counter(
            "authsvc_signups",
            "Signup answers by outcome: created, or the error code answered.",
            ["outcome"],
            registry=registry,
        )
        self.signup_failures = Counter(
            "authsvc_signup_failures",
            "SIGNUP_FAILED answers by the step that failed and whether its writes were undone.",
            ["step", "compensated"],
            registry=registry,
        )
        self.compensations = Counter(
            "authsvc_signup_compensations",
            "Failed signups whose writes were undone (details.compensated true).",
            registry=registry,
        )
        self.uncompensated = Counter(
            "authsvc_signup_uncompensated",
            "Failed signups that could not be undone: a pending identity remains for "
            "`authsvc reconcile --repair`.",
            registry=registry,
        )
        self.audit_failures = Counter(
            "authsvc_audit_write_failures",
            "Audit events that could not be written (the operations they recorded went on).",
            registry=registry,
        )

        self.mail = Counter(
            "authsvc_mail",
            "Mail by kind (email_verification, password_reset) and outcome: sent, retry (an "
            "attempt failed and is retried), failed (given up), nothing_to_send.",
            ["kind", "outcome"],
            registry=registry,
        )

    def count_mail(self, kind: str, outcome: str) -> None:
        self.mail.labels(kind, outcome).inc()

    def count_request(self, route: str, method: str, status: int, seconds: float | None) -> None:
        self.requests.labels(route, method, str(status)).inc()
        if seconds is not None:
            self.latency.labels(route, method).observe(seconds)

    def count_signup(self, err: AuthError | None, status: int) -> None:
        """One signup answer: the rendered AuthError, if any, says how it ended."""
        if err is not None:
            outcome = err.code
        elif status < 400:
            outcome = CREATED
        else:  # refused before any AuthError was raised (a form's CSRF token)
            outcome = f"HTTP_{status}"
        self.signups.labels(outcome).inc()
        if isinstance(err, SignupFailed):
            compensated = err.details.get("compensated") is True
            self.signup_failures.labels(err.step, str(compensated).lower()).inc()
            (self.compensations if compensated else self.uncompensated).inc()


def init_app(app: Flask, settings: Settings, pool_stats: PoolStats) -> None:
    """Serve GET /metrics and count every request, when AUTHSVC_METRICS=on (else: nothing)."""
    if not settings.metrics:
        return
    missing = [e for e in SIGNUP_ENDPOINTS if e not in app.view_functions]
    if missing:  # a renamed view would silently stop the signup counts
        raise RuntimeError(f"metrics: no endpoint {', '.join(missing)} to count signups at")
    pools = PoolCollector(pool_stats)
    registry = CollectorRegistry()
    live: LivePoolGauges | None = None
    if settings.metrics_dir is not None:
        MultiProcessCollector(registry, path=str(settings.metrics_dir))
        metrics = Metrics(registry=None)  # written to the files, read back by the collector
        live = LivePoolGauges(pools)
        live.ensure_sampling()
    else:
        metrics = Metrics(registry)
        registry.register(pools)
    app.extensions["authsvc.metrics"] = metrics
    mail = app.extensions["authsvc"].mail
    if mail is not None:  # counted in the sender's thread, as each message ends
        mail.observers.append(metrics.count_mail)

    @app.after_request
    def count(response: Response) -> Response:
        route = request.url_rule.rule if request.url_rule is not None else UNMATCHED
        method = request.method if request.method in METHODS else "OTHER"
        started = g.get("started")  # observability's start of the request
        seconds = time.perf_counter() - started if started is not None else None
        metrics.count_request(route, method, response.status_code, seconds)
        if request.method == "POST" and request.endpoint in SIGNUP_ENDPOINTS:
            metrics.count_signup(g.get("auth_error"), response.status_code)
        failed = audit.FAILED_WRITES.take_unreported()
        if failed:
            metrics.audit_failures.inc(failed)
        if live is not None:
            live.ensure_sampling()
        return response

    def metrics_view() -> Response:
        if live is not None:
            live.refresh()
        encode, content_type = choose_encoder(request.headers.get("Accept", ""))
        return Response(encode(registry), content_type=content_type)

    app.add_url_rule("/metrics", "metrics", metrics_view, methods=["GET"])
