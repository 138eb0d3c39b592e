"""Prometheus metrics of the operator, all registered here, and the HTTP endpoint that serves them.

Every name starts with ``sked_`` and ends with its unit. Per-ScheduledJob
series carry ``namespace`` and ``scheduledjob`` labels. With
``per_job_labels=False`` (for very large installations) both are set to the
empty string, so the number of series stays bounded while the totals stay.
The same server answers ``/healthz`` (liveness) and ``/readyz`` (readiness).
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

logger = logging.getLogger(__name__)

JOB_LABELS = ("namespace", "scheduledjob")

# Schedule lag ranges from milliseconds (a healthy operator) to minutes (a
# backlog or an outage); run durations from seconds to hours.
LAG_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)
DURATION_BUCKETS = (1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 7200, 21600)


class Metrics:
    """The operator's metrics in a registry of their own."""

    def __init__(self, *, per_job_labels: bool = True) -> None:
        self.per_job_labels = per_job_labels
        self.registry = CollectorRegistry()
        registry = self.registry
        self.runs_finished = Counter(
            "sked_runs_finished_total",
            "Runs that ended, by result (succeeded, failed).",
            [*JOB_LABELS, "result"],
            registry=registry,
        )
        self.attempts_started = Counter(
            "sked_attempts_started_total",
            "Pods created for attempts of runs, retries included.",
            JOB_LABELS,
            registry=registry,
        )
        self.missed_slots = Counter(
            "sked_missed_slots_total",
            "Slots that got no run, by reason (deadline, concurrency, suspended, catchUp).",
            [*JOB_LABELS, "reason"],
            registry=registry,
        )
        self.run_duration = Histogram(
            "sked_run_duration_seconds",
            "Time from a run's first Pod creation to the end of the run.",
            [*JOB_LABELS, "result"],
            buckets=DURATION_BUCKETS,
            registry=registry,
        )
        self.lag_created = Histogram(
            "sked_schedule_lag_created_seconds",
            "Time from a slot's due time to the creation of its first Pod.",
            JOB_LABELS,
            buckets=LAG_BUCKETS,
            registry=registry,
        )
        self.lag_running = Histogram(
            "sked_schedule_lag_running_seconds",
            "Time from a slot's due time until the operator saw its first Pod running.",
            JOB_LABELS,
            buckets=LAG_BUCKETS,
            registry=registry,
        )
        self.active_runs = Gauge(
            "sked_active_runs", "Runs that have not ended.", JOB_LABELS, registry=registry
        )
        self.next_due = Gauge(
            "sked_next_due_timestamp_seconds",
            "Unix time of the next slot; 0 when none is scheduled.",
            JOB_LABELS,
            registry=registry,
        )
        self.last_success = Gauge(
            "sked_last_success_timestamp_seconds",
            "Unix time at which a run last succeeded; 0 before the first success.",
            JOB_LABELS,
            registry=registry,
        )
        self.interval = Gauge(
            "sked_schedule_interval_seconds",
            "Seconds between the last handled slot and the next one, for staleness alerts.",
            JOB_LABELS,
            registry=registry,
        )
        self.consecutive_failures = Gauge(
            "sked_consecutive_failures",
            "Runs that failed in a row since the last success.",
            JOB_LABELS,
            registry=registry,
        )
        self.leader = Gauge(
            "sked_leader", "1 while this replica holds the leader Lease, else 0.", registry=registry
        )
        self.heap_size = Gauge(
            "sked_scheduler_heap_size",
            "ScheduledJobs with a pending wake-up in the scheduler.",
            registry=registry,
        )
        self.api_errors = Counter(
            "sked_api_request_errors_total",
            "Kubernetes API requests that failed, by verb and HTTP code or error name.",
            ["verb", "code"],
            registry=registry,
        )
        self.reconcile_errors = Counter(
            "sked_reconcile_errors_total",
            "Reconciles that raised an error and were retried later.",
            registry=registry,
        )

    def job(self, namespace: str, name: str) -> tuple[str, str]:
        """Return the label values of one ScheduledJob, or blanks without per-job labels."""
        return (namespace, name) if self.per_job_labels else ("", "")

    def forget(self, namespace: str, name: str) -> None:
        """Remove the gauges of a deleted ScheduledJob; counters stay as Prometheus expects."""
        if not self.per_job_labels:
            return
        for gauge in (
            self.active_runs,
            self.next_due,
            self.last_success,
            self.consecutive_failures,
        ):
            with contextlib.suppress(KeyError):
                gauge.remove(namespace, name)

    def render(self) -> bytes:
        return generate_latest(self.registry)


class HealthServer:
    """Serves /metrics, /healthz and /readyz on one port."""

    def __init__(
        self,
        metrics: Metrics,
        *,
        liveness: Callable[[], str | None],
        readiness: Callable[[], bool],
        host: str,
        port: int,
    ) -> None:
        self._metrics = metrics
        self._liveness = liveness
        self._readiness = readiness
        self._host = host
        self._port = port
        self._runner: web.AppRunner | None = None
        self.started = time.monotonic()

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/metrics", self._serve_metrics)
        app.router.add_get("/healthz", self._serve_liveness)
        app.router.add_get("/readyz", self._serve_readiness)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self._host, self._port)
        await site.start()
        logger.info("serving /metrics, /healthz and /readyz on %s:%d", self._host, self._port)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _serve_metrics(self, _request: web.Request) -> web.Response:
        response = web.Response(body=self._metrics.render())
        response.headers["Content-Type"] = CONTENT_TYPE_LATEST
        return response

    async def _serve_liveness(self, _request: web.Request) -> web.Response:
        problem = self._liveness()
        if problem is None:
            return web.Response(text="ok\n")
        return web.Response(status=503, text=f"{problem}\n")

    async def _serve_readiness(self, _request: web.Request) -> web.Response:
        if self._readiness():
            return web.Response(text="ok\n")
        return web.Response(status=503, text="not ready\n")
