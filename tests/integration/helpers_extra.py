"""More helpers for integration tests: Pod creations seen by a watch, operator restarts, times."""

from __future__ import annotations

import dataclasses
import datetime as dt
import threading
import time
from collections import Counter

from kubernetes import client, watch

from tests.integration.support import Jobs, OperatorProcess, wait_until

LABEL_SCHEDULEDJOB = "sked.dev/scheduledjob"
ANNOTATION_SCHEDULED_TIME = "sked.dev/scheduled-time"
ANNOTATION_ATTEMPT = "sked.dev/attempt"

# The operator logs this once it has listed its ScheduledJobs and Pods, so it is ready.
LOADED_LINE = "ScheduledJobs and their Pods"


def parse_time(value: str) -> dt.datetime:
    """Parse an RFC 3339 time as the API server writes it, such as 2025-01-02T03:04:05Z."""
    return dt.datetime.fromisoformat(value.replace("Z", "+00:00"))


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def once_a_minute_soon(seconds: int = 3) -> str:
    """Return a 6-field schedule that first fires about ``seconds`` from now, then once a minute.

    A test that needs one run, not a stream of them, gets its slot quickly and no second
    slot for a minute.
    """
    due = utc_now() + dt.timedelta(seconds=seconds)
    return f"{due.second} * * * * *"


def pod_slot(pod: client.V1Pod) -> dt.datetime:
    return parse_time(pod.metadata.annotations[ANNOTATION_SCHEDULED_TIME])


def pod_attempt(pod: client.V1Pod) -> int:
    return int(pod.metadata.annotations[ANNOTATION_ATTEMPT])


# ---------------------------------------------------------------------------------------
# The operator process
# ---------------------------------------------------------------------------------------


def operator_log(operator: OperatorProcess) -> str:
    if not operator.log_path.exists():
        return ""
    return operator.log_path.read_text(errors="replace")


def start_operator(operator: OperatorProcess, *, timeout: float = 30) -> None:
    """Start the operator and wait until this process, not an earlier one, has loaded its jobs.

    ``OperatorProcess.start`` waits for the load line in a log file that every start appends
    to, so after a restart it would find the line of the previous process.
    """
    loads_before = operator_log(operator).count(LOADED_LINE)
    operator.start()
    wait_until(
        lambda: operator_log(operator).count(LOADED_LINE) > loads_before,
        timeout=timeout,
        message="the restarted operator to load its ScheduledJobs",
    )


# ---------------------------------------------------------------------------------------
# Pod creations, seen by a watch of the test's own
# ---------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class SeenPod:
    """A Pod as the recorder first saw it; ``seen`` is time.monotonic() at that moment."""

    name: str
    uid: str
    slot: dt.datetime
    attempt: int
    seen: float


class PodRecorder:
    """Record every ScheduledJob Pod created in a namespace, even one deleted soon after.

    Each Pod object is counted once by its uid, so a Pod created twice under the same
    name shows up twice. Use it as a context manager: the watch runs in a thread from
    ``__enter__`` to ``__exit__``.
    """

    def __init__(self, jobs: Jobs, job_name: str | None = None) -> None:
        self._core = jobs.core
        self._namespace = jobs.namespace
        self._selector = f"{LABEL_SCHEDULEDJOB}={job_name}" if job_name else LABEL_SCHEDULEDJOB
        self._by_uid: dict[str, SeenPod] = {}
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    def __enter__(self) -> PodRecorder:
        resource_version = self._list()
        self._thread = threading.Thread(
            target=self._watch, args=(resource_version,), name="pod-recorder", daemon=True
        )
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        if self._error is not None and exc_info[0] is None:
            raise AssertionError("the Pod watch of the test failed") from self._error

    @property
    def pods(self) -> list[SeenPod]:
        """Every Pod seen so far, in the order the recorder saw them."""
        self._raise_if_broken()
        with self._lock:
            return sorted(self._by_uid.values(), key=lambda pod: pod.seen)

    def created_per_slot(self, attempt: int = 1) -> Counter[dt.datetime]:
        """Count the Pods created for ``attempt`` of each slot."""
        return Counter(pod.slot for pod in self.pods if pod.attempt == attempt)

    def created_per_name(self) -> Counter[str]:
        return Counter(pod.name for pod in self.pods)

    def _raise_if_broken(self) -> None:
        if self._error is not None:
            raise AssertionError("the Pod watch of the test failed") from self._error

    def _note(self, pod: client.V1Pod) -> None:
        annotations = pod.metadata.annotations or {}
        if ANNOTATION_SCHEDULED_TIME not in annotations or ANNOTATION_ATTEMPT not in annotations:
            return
        with self._lock:
            if pod.metadata.uid in self._by_uid:
                return
            self._by_uid[pod.metadata.uid] = SeenPod(
                name=pod.metadata.name,
                uid=pod.metadata.uid,
                slot=pod_slot(pod),
                attempt=pod_attempt(pod),
                seen=time.monotonic(),
            )

    def _list(self) -> str:
        listed = self._core.list_namespaced_pod(self._namespace, label_selector=self._selector)
        for pod in listed.items:
            self._note(pod)
        return str(listed.metadata.resource_version)

    def _watch(self, resource_version: str) -> None:
        stream = watch.Watch()
        try:
            while not self._stopping.is_set():
                # Short server-side timeouts let the thread notice the stop flag.
                for event in stream.stream(
                    self._core.list_namespaced_pod,
                    self._namespace,
                    label_selector=self._selector,
                    resource_version=resource_version,
                    timeout_seconds=1,
                ):
                    if event["type"] == "ERROR":
                        # 410 Gone: the version is too old, so list again and go on from there.
                        resource_version = self._list()
                        break
                    pod = event["object"]
                    resource_version = pod.metadata.resource_version
                    if event["type"] in ("ADDED", "MODIFIED"):
                        self._note(pod)
        except BaseException as error:  # Reported to the test by the next read or at exit.
            self._error = error
