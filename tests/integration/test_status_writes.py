"""How often a run writes the ScheduledJob's status: run progress waits for a batch.

The session's operator runs with the default `--status-batch-seconds` of 10. A run
that ends within that delay costs one status write. A longer run costs two, because
its progress is written after the delay and its end at once. Only the operator writes these objects,
so every MODIFIED event on the watch below is one of its status writes.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from typing import Any

import pytest
from kubernetes import watch

from tests.integration.helpers_extra import start_operator
from tests.integration.support import (
    GROUP,
    PLURAL,
    VERSION,
    Jobs,
    OperatorProcess,
    pod_template,
    wait_until,
)

pytestmark = pytest.mark.integration

# The operator's default --status-batch-seconds, which the session's operator uses.
BATCH_SECONDS = 10


def one_shot_schedule(slot: dt.datetime) -> str:
    """Return a 6-field schedule that fires at ``slot`` and then a year later."""
    return f"{slot.second} {slot.minute} {slot.hour} {slot.day} {slot.month} *"


class StatusWrites:
    """Watches one ScheduledJob in a thread and keeps the status of each MODIFIED event."""

    def __init__(self, jobs: Jobs, name: str) -> None:
        self._jobs = jobs
        self._name = name
        self._lock = threading.Lock()
        self._statuses: list[dict[str, Any]] = []
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    def __enter__(self) -> StatusWrites:
        version = str(self._jobs.get(self._name)["metadata"]["resourceVersion"])
        self._thread = threading.Thread(target=self._watch, args=(version,), daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    @property
    def statuses(self) -> list[dict[str, Any]]:
        if self._error is not None:
            raise AssertionError("the ScheduledJob watch of the test failed") from self._error
        with self._lock:
            return list(self._statuses)

    def _watch(self, version: str) -> None:
        stream = watch.Watch()
        try:
            while not self._stopping.is_set():
                for event in stream.stream(
                    self._jobs.custom.list_namespaced_custom_object,
                    GROUP,
                    VERSION,
                    self._jobs.namespace,
                    PLURAL,
                    field_selector=f"metadata.name={self._name}",
                    resource_version=version,
                    timeout_seconds=1,
                ):
                    body = event["object"]
                    version = body["metadata"]["resourceVersion"]
                    if event["type"] == "MODIFIED":
                        with self._lock:
                            self._statuses.append(body.get("status") or {})
        except BaseException as error:  # Reported to the test by the next read.
            self._error = error


def create_one_shot(jobs: Jobs, name: str, run_annotations: dict[str, str]) -> dt.datetime:
    """Create a job whose only run starts in about 6 s; return its slot after setup."""
    slot = dt.datetime.now(dt.UTC).replace(microsecond=0) + dt.timedelta(seconds=6)
    jobs.create(
        name,
        {"schedule": one_shot_schedule(slot), "template": pod_template(run_annotations)},
    )
    # The first status write of a new object is setup, before any run.
    wait_until(
        lambda: jobs.status(name).get("observedGeneration"),
        timeout=10,
        message="the first status write",
    )
    return slot


def run_phases(status: dict[str, Any]) -> list[str]:
    return [run["phase"] for run in status.get("runs", [])]


def test_short_run_writes_status_once(jobs: Jobs) -> None:
    create_one_shot(jobs, "short", {"kwok.sked.dev/succeed-after": "1s"})

    with StatusWrites(jobs, "short") as writes:
        wait_until(
            lambda: writes.statuses and run_phases(writes.statuses[-1]) == ["Succeeded"],
            timeout=30,
            message="the run's end in status",
        )
        # Anything still batched would be written within the batch delay.
        time.sleep(BATCH_SECONDS + 2)
        statuses = writes.statuses

    assert len(statuses) == 1
    (run,) = statuses[0]["runs"]
    # The single write carries the progress that was batched: the node of the attempt.
    assert run["attempts"][0]["node"]
    assert run["attempts"][0]["phase"] == "Succeeded"
    assert statuses[0]["lastResult"] == "Succeeded"


def test_long_run_writes_progress_then_end(jobs: Jobs) -> None:
    create_one_shot(jobs, "long", {"kwok.sked.dev/succeed-after": "16s"})

    with StatusWrites(jobs, "long") as writes:
        wait_until(
            lambda: writes.statuses and run_phases(writes.statuses[-1]) == ["Succeeded"],
            timeout=45,
            message="the run's end in status",
        )
        statuses = writes.statuses

    assert len(statuses) == 2
    progress, end = statuses
    assert progress["activeCount"] == 1
    assert run_phases(progress) == ["Running"]
    assert end["activeCount"] == 0
    assert run_phases(end) == ["Succeeded"]


def test_graceful_stop_writes_batched_status(jobs: Jobs, operator: OperatorProcess) -> None:
    create_one_shot(jobs, "handed-over", {"kwok.sked.dev/succeed-after": "60s"})
    wait_until(lambda: jobs.pods("handed-over"), timeout=15, message="the run's Pod")
    assert jobs.status("handed-over").get("activeCount", 0) == 0

    # SIGTERM inside the batch delay: the run's start is written before the exit.
    operator.stop()
    try:
        status = jobs.status("handed-over")
        assert status["activeCount"] == 1
        assert run_phases(status) in (["Pending"], ["Running"])
    finally:
        start_operator(operator)
