"""The scheduler: one loop over a heap of wake-up times, fed by watch events.

Each ScheduledJob has at most one entry that counts in the heap: the time its
last plan asked to be looked at again (the next slot, a retry, a deadline).
Watch events on a ScheduledJob or one of its Pods mark it for an immediate
reconcile. A reconcile reads only the in-memory caches, calls the pure
planner and performs what it decided, so an idle job costs no API call and
a due slot's Pod is created at its due time, not at the next poll.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import heapq
import itertools
import json
import logging
import time
from collections.abc import Callable
from typing import Any

import aiohttp
import pydantic
from kubernetes_asyncio.client.exceptions import ApiException

from sked import naming
from sked.conditions import set_late
from sked.errors import InvalidScheduleError, InvalidSpecError
from sked.kube import KubeClient
from sked.metrics import Metrics
from sked.placement import REGION_LABEL, ZONE_LABEL
from sked.planner import (
    Event,
    JobView,
    Plan,
    PodToCreate,
    PodView,
    Reason,
    SuccessEvents,
    needs_prompt_write,
    plan,
    status_patch,
)
from sked.podspec import build_pod, template_overrides
from sked.schedule import Schedule, ScheduleSet, parse_schedules
from sked.spec import GROUP, KIND, VERSION, RunPhase, ScheduledJobSpec, ScheduledJobStatus

logger = logging.getLogger(__name__)

Key = tuple[str, str]

# Reconciles that run at once; more wait. Bounds memory and API bursts when
# thousands of slots fall due in the same second.
MAX_CONCURRENT_RECONCILES = 64

# Run progress (a Pod created, bound or running) reaches status at most this
# late, so a run that ends sooner costs one status write instead of three.
# Results, failures, missed slots and condition changes are written at once.
DEFAULT_STATUS_BATCH_SECONDS = 10.0
# Finished Pods that history dropped wait this long (or the status delay, if
# shorter), so jobs that fall due in the same second share one delete request.
# A request names at most PRUNE_BATCH_SIZE Pods, and a full batch goes out at once.
PRUNE_DELAY_SECONDS = 2.0
PRUNE_BATCH_SIZE = 100
# A name sent in a batched delete is not queued again for this long.
PRUNE_RESEND_SECONDS = 30.0
# After a failed batched delete, the first retry comes this late, and each failure in
# a row doubles the delay up to the maximum.
PRUNE_RETRY_SECONDS = 5.0
PRUNE_RETRY_MAX_SECONDS = 300.0


def parse_time(value: str | None) -> dt.datetime | None:
    if not value:
        return None
    return dt.datetime.fromisoformat(value.replace("Z", "+00:00"))


def _pydantic_message(error: pydantic.ValidationError) -> str:
    parts = []
    for item in error.errors():
        location = ".".join(str(part) for part in item["loc"])
        parts.append(f"spec.{location}: {item['msg']}")
    return "; ".join(parts)


def _compact_json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


def normalized_status(body_status: dict[str, Any] | None) -> str:
    """Return a status as read from the API server in the form ``status_json`` compares."""
    return ScheduledJobStatus.model_validate(body_status or {}).model_dump_json()


@dataclasses.dataclass(slots=True)
class JobRecord:
    """The operator's copy of one ScheduledJob.

    Spec and status are kept as compact JSON and parsed at each reconcile. For
    a typical job that is about 2 KiB of text instead of 17 KiB of dicts and
    pydantic models, and parsing both (about 30 µs) costs less than the deep
    copy a plan makes anyway. The schedule is parsed once per generation,
    because croniter's parser is the slow part (about 200 µs).
    """

    namespace: str
    name: str
    uid: str
    generation: int
    created: dt.datetime
    resource_version: str
    spec_json: str
    status_json: str
    """The status as the API server has it, in ``normalized_status`` form."""
    run_now: str | None = None
    pending_json: str | None = None
    """A planned status that differs from ``status_json`` only by run progress, not yet written."""
    pending_since: dt.datetime | None = None
    schedule: Schedule | ScheduleSet | None = None
    spec_error: InvalidSpecError | None = None
    parsed_generation: int | None = None
    checked_generation: int | None = None

    @property
    def key(self) -> Key:
        return (self.namespace, self.name)

    def written_status(self) -> ScheduledJobStatus:
        return ScheduledJobStatus.model_validate_json(self.status_json)

    def planned_status(self) -> ScheduledJobStatus:
        """Return the newest status this operator decided, written or not."""
        return ScheduledJobStatus.model_validate_json(self.pending_json or self.status_json)

    def parse(self) -> ScheduledJobSpec | None:
        """Return the spec, or None if it is invalid.

        The schedule is parsed once per generation, the spec at every call.
        """
        if self.parsed_generation != self.generation:
            self.parsed_generation = self.generation
            self.schedule = self.spec_error = None
            spec = self._validate_spec()
            if spec is None:
                return None
            try:
                self.schedule = parse_schedules(
                    spec.expressions,
                    spec.timeZone,
                    repeated=spec.daylightSaving.repeatedTime,
                    skipped=spec.daylightSaving.skippedTime,
                    hash_id=f"{self.namespace}/{self.name}",
                )
            except InvalidScheduleError as error:
                self.spec_error = error
                return None
            return spec
        if self.spec_error is not None or self.schedule is None:
            return None
        return self._validate_spec()

    def _validate_spec(self) -> ScheduledJobSpec | None:
        try:
            return ScheduledJobSpec.model_validate_json(self.spec_json)
        except pydantic.ValidationError as error:
            self.spec_error = InvalidSpecError(_pydantic_message(error))
            return None

    def reject_template(self, error: InvalidSpecError) -> None:
        """Mark the spec invalid for this generation because the API server rejects its Pods."""
        self.spec_error = error
        self.schedule = None

    def view(self, spec: ScheduledJobSpec | None, status: ScheduledJobStatus) -> JobView:
        return JobView(
            namespace=self.namespace,
            name=self.name,
            uid=self.uid,
            generation=self.generation,
            created=self.created,
            spec=spec,
            status=status,
            spec_error=self.spec_error,
            run_now=self.run_now,
        )


def _template_checked(status_json: str, generation: int) -> bool:
    """Tell whether a status shows that a leader already dry-ran this generation's template.

    The operator writes observedGeneration only after the dry run passed or
    after it recorded InvalidSpec. A template found invalid is checked again,
    so this replica has the API server's message too.
    """
    status = ScheduledJobStatus.model_validate_json(status_json)
    if status.observedGeneration != generation:
        return False
    return not any(c.type == "InvalidSpec" and c.status == "True" for c in status.conditions)


def _newer(incoming: str, current: str) -> bool:
    """Tell whether resourceVersion ``incoming`` is not older than ``current``.

    resourceVersions are opaque by contract; the API server backed by etcd
    issues increasing integers, and anything else is taken as newer.
    """
    try:
        return int(incoming) >= int(current)
    except ValueError:
        return True


# Status keeps this much of a failed container's output, the last lines of it.
MESSAGE_TAIL_CHARS = 1024
MESSAGE_TAIL_LINES = 20


def output_tail(text: str | None) -> str | None:
    """Return the last lines of a terminated container's message, bounded in size."""
    if not text:
        return text
    lines = text.rstrip("\n").splitlines()[-MESSAGE_TAIL_LINES:]
    tail = "\n".join(lines)
    if len(tail) > MESSAGE_TAIL_CHARS:
        tail = "…" + tail[-(MESSAGE_TAIL_CHARS - 1) :]
    return tail


def pod_view(body: dict[str, Any]) -> PodView | None:
    """Extract what the planner needs from a Pod, or None if it is not one of ours."""
    metadata = body.get("metadata", {})
    annotations = metadata.get("annotations") or {}
    slot = parse_time(annotations.get(naming.ANNOTATION_SCHEDULED_TIME))
    attempt_text = annotations.get(naming.ANNOTATION_ATTEMPT, "")
    step_text = annotations.get(naming.ANNOTATION_PLACEMENT_STEP, "0")
    if slot is None or not attempt_text.isdigit():
        return None
    status = body.get("status") or {}
    exit_code = reason = message = None
    finished = None
    for container in status.get("containerStatuses") or []:
        terminated = (container.get("state") or {}).get("terminated")
        if terminated:
            exit_code = terminated.get("exitCode")
            reason = terminated.get("reason")
            message = output_tail(terminated.get("message"))
            finished = parse_time(terminated.get("finishedAt"))
            if exit_code:
                break
    phase = status.get("phase", "Pending")
    pending_reason, pending_message = (
        _pending_reason(status) if phase == "Pending" else (None, None)
    )
    if phase == "Failed" and reason is None:
        reason = status.get("reason")
        message = status.get("message")
    if phase in ("Succeeded", "Failed") and finished is None:
        finished = dt.datetime.now(dt.UTC)
    return PodView(
        name=metadata["name"],
        slot=slot,
        attempt=int(attempt_text),
        phase=phase,
        created=parse_time(metadata.get("creationTimestamp")),
        finished=finished,
        exit_code=exit_code,
        reason=reason,
        message=message,
        deleting=bool(metadata.get("deletionTimestamp")),
        trigger=annotations.get(naming.ANNOTATION_RUN_NOW),
        pending_reason=pending_reason,
        pending_message=pending_message,
        step=int(step_text) if step_text.isdigit() else 0,
        node=(body.get("spec") or {}).get("nodeName"),
        labelled=(metadata.get("labels") or {}).get(naming.LABEL_POD) == metadata["name"],
    )


def _pending_reason(status: dict[str, Any]) -> tuple[str | None, str | None]:
    """Return why a Pending Pod is not running: a container's waiting reason or Unschedulable."""
    for container in status.get("containerStatuses") or []:
        waiting = (container.get("state") or {}).get("waiting")
        if waiting and waiting.get("reason") not in (None, "ContainerCreating"):
            return waiting.get("reason"), waiting.get("message")
    for condition in status.get("conditions") or []:
        if condition.get("type") == "PodScheduled" and condition.get("status") == "False":
            return condition.get("reason") or "Unschedulable", condition.get("message")
    return None, None


def owner_uid(body: dict[str, Any]) -> str | None:
    for owner in body.get("metadata", {}).get("ownerReferences") or []:
        if owner.get("kind") == KIND and owner.get("controller"):
            return str(owner.get("uid"))
    return None


class Controller:
    """Keeps the caches, the heap of wake-up times, and runs reconciles."""

    def __init__(
        self,
        kube: KubeClient,
        *,
        clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
        identity: str = "sked",
        metrics: Metrics | None = None,
        failing_threshold: int = 3,
        status_batch_seconds: float = DEFAULT_STATUS_BATCH_SECONDS,
        success_events: SuccessEvents = SuccessEvents.RECOVERY,
    ) -> None:
        self._failing_threshold = failing_threshold
        self._status_batch = dt.timedelta(seconds=status_batch_seconds)
        self._success_events = success_events
        self._kube = kube
        self.metrics = metrics or Metrics()
        self.primed = False
        self.online_since: dt.datetime | None = None
        self.running = False
        self._clock = clock
        self._identity = identity
        self.jobs: dict[Key, JobRecord] = {}
        self._keys_by_uid: dict[str, Key] = {}
        self.pods: dict[str, dict[str, PodView]] = {}
        self._heap: list[tuple[float, int, Key]] = []
        self._wake: dict[Key, float] = {}
        self._counter = itertools.count()
        self._dirty: set[Key] = set()
        self._running: set[Key] = set()
        self._changed = asyncio.Event()
        self._semaphore = asyncio.Semaphore(MAX_CONCURRENT_RECONCILES)
        self._tasks: set[asyncio.Task[None]] = set()
        self._nodes: dict[str, tuple[str | None, str | None]] = {}
        self._node_reads: dict[str, asyncio.Future[tuple[str | None, str | None]]] = {}
        # Finished Pods queued for a batched delete: namespace -> names.
        self._prunes: dict[str, set[str]] = {}
        self._prune_at: float | None = None
        # Names sent in a batched delete lately, so a reconcile that runs before the
        # DELETED event arrives does not queue them again: (namespace, name) -> time sent.
        self._pruned: dict[tuple[str, str], float] = {}
        self._collection_deletes = True
        self._prune_failures = 0
        self.last_tick = time.monotonic()
        self.last_watch_event = time.monotonic()

    def note_watch_activity(self) -> None:
        self.last_watch_event = time.monotonic()

    # -- feeding the caches -------------------------------------------------------

    def job_event(self, body: dict[str, Any], event_type: str | None) -> None:
        """Take a ScheduledJob from a list or watch event."""
        metadata = body.get("metadata", {})
        key = (metadata.get("namespace", ""), metadata.get("name", ""))
        if event_type == "DELETED":
            record = self.jobs.pop(key, None)
            self.metrics.forget(*key)
            if record is not None:
                self._keys_by_uid.pop(record.uid, None)
                self.pods.pop(record.uid, None)
            self._wake.pop(key, None)
            return
        uid = str(metadata.get("uid"))
        resource_version = str(metadata.get("resourceVersion", ""))
        generation = int(metadata.get("generation", 1))
        run_now = (metadata.get("annotations") or {}).get(naming.ANNOTATION_RUN_NOW)
        spec_json = _compact_json(body.get("spec") or {})
        status_json = normalized_status(body.get("status"))
        record = self.jobs.get(key)
        if record is not None and record.uid == uid:
            if not _newer(resource_version, record.resource_version):
                return  # An older copy than the status this operator just wrote.
            record.generation = generation
            record.run_now = run_now
            record.spec_json = spec_json
            record.resource_version = resource_version
            if status_json != record.status_json:
                if status_json != record.pending_json:
                    # Another writer changed status: plan again from its version.
                    record.pending_json = record.pending_since = None
                record.status_json = status_json
            if status_json == record.pending_json:
                record.pending_json = record.pending_since = None
        else:
            if record is not None:
                self._keys_by_uid.pop(record.uid, None)
            record = JobRecord(
                namespace=key[0],
                name=key[1],
                uid=uid,
                generation=generation,
                created=parse_time(metadata.get("creationTimestamp")) or self._clock(),
                resource_version=resource_version,
                spec_json=spec_json,
                status_json=status_json,
                run_now=run_now,
            )
            if _template_checked(status_json, generation):
                record.checked_generation = generation
            self.jobs[key] = record
            self._keys_by_uid[uid] = key
        self.mark(key)

    def pod_event(self, body: dict[str, Any], event_type: str | None) -> None:
        """Take a Pod from a list or watch event and mark its ScheduledJob for a reconcile."""
        uid = owner_uid(body)
        if uid is None:
            return
        name = body.get("metadata", {}).get("name", "")
        logger.debug(
            "Pod %s event %s phase %s", name, event_type, (body.get("status") or {}).get("phase")
        )
        pods = self.pods.setdefault(uid, {})
        if event_type == "DELETED":
            pods.pop(name, None)
        else:
            view = pod_view(body)
            if view is None:
                return
            pods[name] = view
        key = self._keys_by_uid.get(uid)
        if key is not None:
            self.mark(key)

    def mark(self, key: Key) -> None:
        """Ask for a reconcile of ``key`` as soon as possible."""
        self._dirty.add(key)
        self._changed.set()

    def _schedule(self, key: Key, when: dt.datetime | None) -> None:
        if when is None:
            self._wake.pop(key, None)
            return
        stamp = when.timestamp()
        current = self._wake.get(key)
        if current is not None and current <= stamp and current > time.time():
            return
        self._wake[key] = stamp
        heapq.heappush(self._heap, (stamp, next(self._counter), key))
        self._changed.set()

    @property
    def heap_size(self) -> int:
        return len(self._wake)

    # -- the loop -----------------------------------------------------------------

    async def prime(self, namespaces: list[str] | None) -> None:
        """List ScheduledJobs and their Pods before the first reconcile.

        Without this, a job could be planned before its Pods are known, and
        Forbid would not see a run that is still active.
        """
        scopes: list[str | None] = list(namespaces) if namespaces else [None]
        for namespace in scopes:
            async for pod in self._kube.list_pods(naming.LABEL_SCHEDULEDJOB, namespace):
                self.pod_event(pod, None)
            async for job in self._kube.list_jobs(namespace):
                self.job_event(job, None)
        self.primed = True
        self.online_since = self._clock()
        logger.info("loaded %d ScheduledJobs and their Pods", len(self.jobs))

    async def run(self) -> None:
        """Reconcile marked jobs and jobs whose wake-up time came, until cancelled."""
        self.running = True
        while True:
            self.last_tick = time.monotonic()
            self.metrics.heap_size.set(len(self._wake))
            now = time.time()
            while self._heap and self._heap[0][0] <= now:
                stamp, _, key = heapq.heappop(self._heap)
                if self._wake.get(key) == stamp:
                    del self._wake[key]
                    self._dirty.add(key)
            for key in list(self._dirty):
                if key in self._running:
                    continue  # Picked up again when the running reconcile ends.
                self._dirty.discard(key)
                if key in self.jobs:
                    self._start(key)
            if self._prune_at is not None and self._prune_at <= now:
                self._start_prunes()
            self._changed.clear()
            timeout = None
            if self._heap:
                # A millisecond late rather than early, so the slot is due when planned.
                timeout = max(0.0, self._heap[0][0] - time.time()) + 0.001
            if self._prune_at is not None:
                until_prune = max(0.0, self._prune_at - time.time())
                timeout = until_prune if timeout is None else min(timeout, until_prune)
            # Wake at least every few seconds, so the liveness check can tell the loop is turning.
            timeout = 5.0 if timeout is None else min(timeout, 5.0)
            # asyncio.timeout, not wait_for: on Python 3.11, wait_for returns
            # normally when it is cancelled just as the event is set, and the
            # loop would go on scheduling after a stop or a lost Lease.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await self._changed.wait()

    def _start(self, key: Key) -> None:
        self._running.add(key)
        task = asyncio.create_task(self._reconcile_guarded(key))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _reconcile_guarded(self, key: Key) -> None:
        try:
            async with self._semaphore:
                await self.reconcile(key)
        except asyncio.CancelledError:
            raise
        except ApiException as error:
            self.metrics.reconcile_errors.inc()
            logger.warning(
                "reconcile of %s/%s failed with API status %s: %s; retrying in 5s",
                key[0],
                key[1],
                error.status,
                error.reason,
            )
            self._schedule(key, self._clock() + dt.timedelta(seconds=5))
        except Exception:
            # One broken ScheduledJob must not stop the others: log, back off, go on.
            self.metrics.reconcile_errors.inc()
            logger.exception("reconcile of %s/%s failed; retrying in 30s", key[0], key[1])
            self._schedule(key, self._clock() + dt.timedelta(seconds=30))
        finally:
            self._running.discard(key)
            if key in self._dirty:
                self._changed.set()

    # -- batched deletes of finished Pods ----------------------------------------------

    def _queue_prunes(self, record: JobRecord, result: Plan) -> None:
        """Queue the plan's finished Pods for the next batched delete.

        Pods without the name label (created before sked added it) cannot be
        selected by a batched delete, so they go into the plan's immediate deletes.
        """
        pods = self.pods.get(record.uid, {})
        now = time.time()
        queued = self._prunes.setdefault(record.namespace, set())
        for name in result.prunes:
            pod = pods.get(name)
            if pod is not None and not pod.labelled:
                result.deletes.append(name)
            elif self._pruned.get((record.namespace, name), 0.0) < now - PRUNE_RESEND_SECONDS:
                queued.add(name)
        if not queued:
            del self._prunes[record.namespace]
            return
        due = now + min(self._status_batch.total_seconds(), PRUNE_DELAY_SECONDS)
        if sum(len(names) for names in self._prunes.values()) >= PRUNE_BATCH_SIZE:
            due = now
        if self._prune_at is None or due < self._prune_at:
            self._prune_at = due
            self._changed.set()

    def _take_prunes(self) -> dict[str, set[str]]:
        """Return the queued Pods and empty the queue."""
        batches, self._prunes, self._prune_at = self._prunes, {}, None
        return batches

    def _start_prunes(self) -> None:
        task = asyncio.create_task(self._prune(self._take_prunes()))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _prune(self, batches: dict[str, set[str]]) -> None:
        """Delete the queued Pods, one request per namespace and PRUNE_BATCH_SIZE names.

        A failed request puts its names back in the queue, due again after a delay
        that doubles with each failure in a row. Pods of jobs that will not be
        planned again soon (suspended, or due once a day) are thus still deleted.
        """
        now = time.time()
        self._pruned = {
            key: sent for key, sent in self._pruned.items() if sent >= now - PRUNE_RESEND_SECONDS
        }
        # What is not deleted yet goes back to the queue if the task is cancelled, so the
        # flush on a graceful stop still deletes it.
        remaining = {namespace: set(names) for namespace, names in batches.items()}
        try:
            for namespace, names in batches.items():
                ordered = sorted(names)
                for start in range(0, len(ordered), PRUNE_BATCH_SIZE):
                    chunk = ordered[start : start + PRUNE_BATCH_SIZE]
                    # Marked before the request, so a reconcile meanwhile does not queue them.
                    sent = time.time()
                    for name in chunk:
                        self._pruned[(namespace, name)] = sent
                    try:
                        await self._delete_pods(namespace, chunk)
                    except asyncio.CancelledError:
                        raise
                    except Exception as error:
                        self._requeue_prunes(namespace, chunk, error)
                    else:
                        self._prune_failures = 0
                    remaining[namespace].difference_update(chunk)
        except asyncio.CancelledError:
            for namespace, names in remaining.items():
                if names:
                    self._prunes.setdefault(namespace, set()).update(names)
                    for name in names:
                        self._pruned.pop((namespace, name), None)
            raise

    def _requeue_prunes(self, namespace: str, names: list[str], error: BaseException) -> None:
        for name in names:
            self._pruned.pop((namespace, name), None)
        self._prunes.setdefault(namespace, set()).update(names)
        delay = min(PRUNE_RETRY_SECONDS * 2**self._prune_failures, PRUNE_RETRY_MAX_SECONDS)
        self._prune_failures += 1
        due = time.time() + delay
        if self._prune_at is None or due < self._prune_at:
            self._prune_at = due
            self._changed.set()
        logger.warning(
            "deleting %d finished Pods in %s failed: %s; retrying in %.0fs",
            len(names),
            namespace,
            error,
            delay,
        )

    async def _delete_pods(self, namespace: str, names: list[str]) -> None:
        if self._collection_deletes:
            try:
                await self._kube.delete_pods_named(namespace, names)
                return
            except ApiException as error:
                if error.status != 403:
                    raise
                # A Role from an older chart may lack deletecollection, so delete one by one.
                logger.warning(
                    "deleting Pods by label selector is forbidden (%s); deleting them one "
                    "at a time instead. Grant deletecollection on pods to save requests.",
                    error.reason,
                )
                self._collection_deletes = False
        for name in names:
            await self._kube.delete_pod(namespace, name)

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    # -- one reconcile --------------------------------------------------------------

    async def reconcile(self, key: Key) -> None:
        record = self.jobs.get(key)
        if record is None:
            return
        spec = record.parse()
        if spec is not None and record.checked_generation != record.generation:
            spec = await self._check_template(record, spec)
        now = self._clock()
        pods = [await self._with_node(pod) for pod in self.pods.get(record.uid, {}).values()]
        before = record.planned_status()
        result = plan(
            record.view(spec, before),
            pods,
            now=now,
            schedule=record.schedule,
            failing_threshold=self._failing_threshold,
            online_since=self.online_since,
            success_events=self._success_events,
        )
        await self._perform(record, spec, before, result, now=now)

    async def _with_node(self, pod: PodView) -> PodView:
        """Add the region and zone of the Pod's node, read once per node and cached."""
        if pod.node is None:
            return pod
        place = self._nodes.get(pod.node)
        if place is None:
            # Reconciles that meet a new node at the same time share one read.
            reading = self._node_reads.get(pod.node)
            if reading is None:
                reading = asyncio.ensure_future(self._read_node(pod.node))
                self._node_reads[pod.node] = reading
            place = await asyncio.shield(reading)
        region, zone = place
        return dataclasses.replace(pod, region=region, zone=zone)

    async def _read_node(self, name: str) -> tuple[str | None, str | None]:
        labels: dict[str, str] = {}
        try:
            node = await self._kube.get_node(name)
            labels = (node.get("metadata") or {}).get("labels") or {}
        except ApiException as error:
            # Without read access to Nodes, runs still work; they lack region and zone.
            logger.warning("reading Node %s failed with %s", name, error.status)
        finally:
            self._node_reads.pop(name, None)
        place = (labels.get(REGION_LABEL), labels.get(ZONE_LABEL))
        self._nodes[name] = place
        return place

    async def _check_template(
        self, record: JobRecord, spec: ScheduledJobSpec
    ) -> ScheduledJobSpec | None:
        """Dry-run the Pod on the API server, so errors it would reject show as InvalidSpec.

        Returns the spec, or None when the API server rejects the template.
        """
        # Slot 0 and attempt 0 give a name no real Pod has, so the dry run
        # cannot collide with a Pod created in the same second.
        pod = build_pod(
            namespace=record.namespace,
            job_name=record.name,
            job_uid=record.uid,
            spec=spec,
            slot=dt.datetime.fromtimestamp(0, dt.UTC),
            attempt=0,
        )
        try:
            await self._kube.create_pod(record.namespace, pod, dry_run=True)
        except ApiException as error:
            if error.status == 409:
                record.checked_generation = record.generation
                return spec
            if error.status not in (400, 422):
                raise
            message = _api_message(error)
            record.reject_template(
                InvalidSpecError(
                    f"the API server rejects the Pod template: {message}; fix spec.template"
                )
            )
            record.checked_generation = record.generation
            return None
        record.checked_generation = record.generation
        if kept := template_overrides(spec):
            message = (
                f"the Pod template's own {', '.join(kept)} override spec.placement; "
                "remove them from the template to let the placement apply"
            )
            self._log_event(record, Event(Reason.PLACEMENT_OVERRIDDEN, message))
            task = asyncio.create_task(
                self._post_events(
                    record, [Event(Reason.PLACEMENT_OVERRIDDEN, message)], now=self._clock()
                )
            )
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return spec

    async def _apply_pods(
        self,
        record: JobRecord,
        spec: ScheduledJobSpec,
        before: ScheduledJobStatus,
        result: Plan,
        *,
        now: dt.datetime,
    ) -> None:
        """Create and delete the plan's Pods; take rejected creates back out of its status."""
        creates = result.creates
        outcomes = await asyncio.gather(
            *(
                self._create(record, spec, item.slot, item.attempt, item.trigger, item.step)
                for item in creates
            ),
            *(self._kube.delete_pod(record.namespace, name) for name in result.deletes),
            return_exceptions=True,
        )
        failures: list[tuple[PodToCreate, ApiException]] = []
        for index, outcome in enumerate(outcomes):
            if not isinstance(outcome, BaseException):
                continue
            if index < len(creates) and isinstance(outcome, ApiException):
                failures.append((creates[index], outcome))
            else:
                raise outcome
        if failures:
            self._undo_failed_creates(record, before, result, failures, now=now)
        else:
            message = "the newest due slot has its Pod"
            set_late(result.status, False, message, now=now, generation=record.generation)

    async def _perform(
        self,
        record: JobRecord,
        spec: ScheduledJobSpec | None,
        before: ScheduledJobStatus,
        result: Plan,
        *,
        now: dt.datetime,
    ) -> None:
        """Carry out a plan: Pods, metrics, Events and the status write, now or batched."""
        if result.prunes:
            self._queue_prunes(record, result)
        if spec is not None and (result.creates or result.deletes):
            await self._apply_pods(record, spec, before, result, now=now)
        planned = result.status.model_dump_json()
        if planned != (record.pending_json or record.status_json):
            self._observe(record, before, result, now=now)
        for event in result.events:
            self._log_event(record, event)
        if result.events:
            task = asyncio.create_task(self._post_events(record, result.events, now=now))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

        if planned == record.status_json:
            record.pending_json = record.pending_since = None
        else:
            # Kept before the write, so a failed write is retried from it and the
            # metrics above are not counted twice.
            record.pending_json = planned
            record.pending_since = record.pending_since or now
            flush_at = record.pending_since + self._status_batch
            prompt = needs_prompt_write(record.written_status(), result.status, result.events)
            if prompt or now >= flush_at:
                if not await self._write_status(record, result.status, planned):
                    return
            else:
                result.wake_no_later_than(flush_at)
        self._schedule(record.key, result.wake_at)

    async def _write_status(
        self, record: JobRecord, status: ScheduledJobStatus, planned: str
    ) -> bool:
        """Write ``status``; return False when the job is gone or must be planned again."""
        try:
            response = await self._kube.patch_job_status(
                record.namespace,
                record.name,
                status_patch(status),
                resource_version=record.resource_version,
            )
        except ApiException as error:
            if error.status == 404:
                return False  # Deleted meanwhile; its DELETED event cleans up.
            if error.status != 409:
                raise
            # The object changed since it was read. Read it again: if only its
            # spec or metadata changed, the planned status is kept and written on
            # the next pass; if another writer changed status, planning starts
            # again from that. The Pods created above are found again by name,
            # so nothing runs twice.
            logger.warning("%s/%s changed meanwhile; planning again", record.namespace, record.name)
            fresh = await self._kube.get_job(record.namespace, record.name)
            self.job_event(fresh, "MODIFIED")
            return False
        record.status_json = planned
        record.pending_json = record.pending_since = None
        record.resource_version = str(response["metadata"]["resourceVersion"])
        return True

    async def flush(self) -> None:
        """Write every batched status and delete queued Pods, before a graceful stop."""
        if self._prunes:
            await self._prune(self._take_prunes())
        records = [record for record in self.jobs.values() if record.pending_json]
        for record in records:
            pending = record.pending_json
            if pending is None:
                continue
            status = ScheduledJobStatus.model_validate_json(pending)
            try:
                await self._write_status(record, status, pending)
            except (ApiException, aiohttp.ClientError, TimeoutError, OSError) as error:
                logger.warning(
                    "writing the batched status of %s/%s before stopping failed: %s",
                    record.namespace,
                    record.name,
                    error,
                )
        if records:
            logger.info("wrote %d batched statuses before stopping", len(records))

    def _undo_failed_creates(
        self,
        record: JobRecord,
        before: ScheduledJobStatus,
        result: Plan,
        failures: list[tuple[PodToCreate, ApiException]],
        *,
        now: dt.datetime,
    ) -> None:
        """Take failed creates out of the plan's status, so the next reconcile tries again.

        A quota, an admission webhook or missing RBAC can reject a Pod. The slot
        then stays unhandled (and is missed once past startingDeadlineSeconds),
        the Late condition gives the reason, and the job is looked at again in 10 s.
        """
        status = result.status
        for item, error in failures:
            for run in list(status.runs):
                if run.scheduledTime != item.slot or run.trigger != item.trigger:
                    continue
                if item.step:
                    # A fallback Pod: keep the attempt and retry this step's create.
                    for attempt in run.attempts:
                        if attempt.attempt == item.attempt:
                            attempt.stepStartTime = now
                    continue
                run.attempts = [a for a in run.attempts if a.attempt != item.attempt]
                if run.attempts:
                    run.nextAttemptTime = now
                else:
                    status.runs.remove(run)
            if item.trigger is not None:
                status.lastRunNow = before.lastRunNow
            elif item.attempt == 1:
                # The slot is planned again, with the slots it counted as missed.
                status.lastScheduleTime = before.lastScheduleTime
                status.missedRuns = before.missedRuns
                status.missedRunsIsLowerBound = before.missedRunsIsLowerBound
                status.lastMissed = before.lastMissed
                result.events = [
                    event
                    for event in result.events
                    if event.reason not in (Reason.MISSED_SCHEDULE, Reason.CONCURRENCY_SKIPPED)
                ]
            result.events = [
                event
                for event in result.events
                if not (
                    event.reason is Reason.POD_CREATED
                    and event.slot == item.slot
                    and event.attempt == item.attempt
                )
            ]
            message = (
                f"creating the Pod of run {item.slot.strftime('%Y-%m-%dT%H:%M:%SZ')} attempt "
                f"{item.attempt} failed with {error.status}: {_api_message(error)}; "
                "retrying every 10s"
            )
            logger.error("%s/%s: %s", record.namespace, record.name, message)
            if set_late(status, True, message, now=now, generation=record.generation):
                result.events.append(Event(Reason.POD_CREATE_FAILED, message, warning=True))
        status.active = [
            a
            for a in status.active
            if any(
                r.scheduledTime == a.scheduledTime and r.trigger == a.trigger for r in status.runs
            )
        ]
        status.activeCount = len(status.active)
        result.wake_at = now + dt.timedelta(seconds=10)

    async def _create(
        self,
        record: JobRecord,
        spec: ScheduledJobSpec,
        slot: dt.datetime,
        attempt: int,
        trigger: str | None,
        step: int,
    ) -> None:
        pod = build_pod(
            namespace=record.namespace,
            job_name=record.name,
            job_uid=record.uid,
            spec=spec,
            slot=slot,
            attempt=attempt,
            trigger=trigger,
            step=step,
        )
        try:
            created = await self._kube.create_pod(record.namespace, pod)
        except ApiException as error:
            if error.status != 409:
                raise
            # The name is derived from the slot and attempt, so AlreadyExists
            # means an earlier try (or an earlier leader) created it: done.
            logger.info(
                "%s/%s slot=%s attempt=%d: Pod %s already exists",
                record.namespace,
                record.name,
                slot.isoformat(),
                attempt,
                pod["metadata"]["name"],
            )
            return
        labels = self.metrics.job(record.namespace, record.name)
        if step == 0:
            self.metrics.attempts_started.labels(*labels).inc()
        if attempt == 1 and trigger is None and step == 0:
            lag = (self._clock() - slot).total_seconds()
            self.metrics.lag_created.labels(*labels).observe(max(lag, 0.0))
        view = pod_view(created)
        if view is not None:
            self.pods.setdefault(record.uid, {}).setdefault(view.name, view)

    def _observe(
        self, record: JobRecord, before: ScheduledJobStatus, result: Plan, *, now: dt.datetime
    ) -> None:
        """Update the metrics from the decisions of one plan that reached the API server."""
        metrics = self.metrics
        labels = metrics.job(record.namespace, record.name)
        status = result.status
        for event in result.events:
            if event.reason in (Reason.MISSED_SCHEDULE, Reason.CONCURRENCY_SKIPPED):
                reason = event.missed_reason.value if event.missed_reason else "unknown"
                metrics.missed_slots.labels(*labels, reason).inc(event.count)
        for run in status.runs:
            self._observe_run(labels, before, run, now=now)
        metrics.active_runs.labels(*labels).set(status.activeCount)
        next_due = status.nextScheduleTime.timestamp() if status.nextScheduleTime else 0
        metrics.next_due.labels(*labels).set(next_due)
        if status.lastSuccessfulTime is not None:
            metrics.last_success.labels(*labels).set(status.lastSuccessfulTime.timestamp())
        metrics.consecutive_failures.labels(*labels).set(status.consecutiveFailures)
        if status.nextScheduleTime is not None and status.lastScheduleTime is not None:
            interval = (status.nextScheduleTime - status.lastScheduleTime).total_seconds()
            metrics.interval.labels(*labels).set(interval)

    def _observe_run(
        self, labels: tuple[str, str], before: ScheduledJobStatus, run: Any, *, now: dt.datetime
    ) -> None:
        previous = next(
            (
                old
                for old in before.runs
                if old.scheduledTime == run.scheduledTime and old.trigger == run.trigger
            ),
            None,
        )
        metrics = self.metrics
        if run.phase.finished and (previous is None or not previous.phase.finished):
            result = "succeeded" if run.phase is RunPhase.SUCCEEDED else "failed"
            metrics.runs_finished.labels(*labels, result).inc()
            started = run.attempts[0].startTime if run.attempts else None
            if started is not None and run.finishTime is not None:
                duration = max((run.finishTime - started).total_seconds(), 0.0)
                metrics.run_duration.labels(*labels, result).observe(duration)
        if not run.attempts or run.trigger is not None:
            return
        first = run.attempts[0]
        was_pending = previous is None or not previous.attempts
        if previous is not None and previous.attempts:
            was_pending = previous.attempts[0].phase is RunPhase.PENDING
        if was_pending and first.phase is not RunPhase.PENDING and first.reason is None:
            lag = (now - run.scheduledTime).total_seconds()
            metrics.lag_running.labels(*labels).observe(max(lag, 0.0))

    def _log_event(self, record: JobRecord, event: Event) -> None:
        level = logging.WARNING if event.warning else logging.INFO
        slot = event.slot.isoformat() if event.slot else "-"
        attempt = event.attempt if event.attempt is not None else "-"
        logger.log(
            level,
            "%s/%s slot=%s attempt=%s %s: %s",
            record.namespace,
            record.name,
            slot,
            attempt,
            event.reason.value,
            event.message,
        )

    async def _post_events(
        self, record: JobRecord, events: list[Event], *, now: dt.datetime
    ) -> None:
        stamp = now.strftime("%Y-%m-%dT%H:%M:%SZ")
        for event in events:
            body = {
                "metadata": {"generateName": f"{record.name}.", "namespace": record.namespace},
                "involvedObject": {
                    "apiVersion": f"{GROUP}/{VERSION}",
                    "kind": KIND,
                    "name": record.name,
                    "namespace": record.namespace,
                    "uid": record.uid,
                },
                "reason": event.reason.value,
                "message": event.message[:1024],
                "type": "Warning" if event.warning else "Normal",
                "source": {"component": "sked"},
                "reportingComponent": "sked.dev/operator",
                "reportingInstance": self._identity,
                "firstTimestamp": stamp,
                "lastTimestamp": stamp,
                "count": 1,
            }
            try:
                await self._kube.create_event(record.namespace, body)
            except ApiException as error:
                logger.warning(
                    "posting Event %s for %s/%s failed with API status %s",
                    event.reason.value,
                    record.namespace,
                    record.name,
                    error.status,
                )


def _api_message(error: ApiException) -> str:
    try:
        return str(json.loads(error.body or "{}").get("message", error.reason))
    except (TypeError, ValueError):
        return str(error.reason)
