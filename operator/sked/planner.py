"""Decide what one ScheduledJob needs now: the reconcile step, with no I/O.

``plan()`` takes the ScheduledJob as last read, the Pods it owns and ``now``,
and returns the new status, the Pods to create and delete, the Events to post
and when to look at the job again. The caller performs the I/O. Because the
decision is derived from status and Pods alone, an operator that restarts
(or a new leader) reaches the same decisions, and deterministic Pod names
turn a repeated create into AlreadyExists instead of a second run.

The crash window: Pods are created before status is written. If the operator
dies in between, the next plan finds the Pods, adopts them into status and
does not create them again.
"""

from __future__ import annotations

import datetime as dt
import enum
from dataclasses import dataclass, field
from typing import Any

from sked import naming
from sked.backoff import retry_delay
from sked.catchup import DueSlots, due_slots
from sked.conditions import condition_is, set_condition, set_failing, set_late
from sked.errors import InvalidSpecError
from sked.placement import fallback_steps, pinned_region
from sked.schedule import Schedule, ScheduleSet, jitter
from sked.spec import (
    ActiveRun,
    Attempt,
    CatchUpPolicy,
    ConcurrencyPolicy,
    MissedReason,
    MissedSlot,
    Run,
    RunPhase,
    ScheduledJobSpec,
    ScheduledJobStatus,
)

# A Pod that the status names but that no watch has shown for this long after
# its creation is taken as deleted, and its attempt as failed.
MISSING_POD_GRACE = dt.timedelta(seconds=30)


class Reason(enum.StrEnum):
    """Event and condition reasons, CamelCase as Kubernetes uses them."""

    POD_CREATED = "PodCreated"
    POD_CREATE_FAILED = "PodCreateFailed"
    RUN_SUCCEEDED = "RunSucceeded"
    RUN_FAILED = "RunFailed"
    RETRY_SCHEDULED = "RetryScheduled"
    RETRIES_EXHAUSTED = "RetriesExhausted"
    CONCURRENCY_SKIPPED = "ConcurrencySkipped"
    MISSED_SCHEDULE = "MissedSchedule"
    INVALID_SCHEDULE = "InvalidSchedule"
    INVALID_SPEC = "InvalidSpec"
    RUN_REPLACED = "RunReplaced"
    DEADLINE_EXCEEDED = "DeadlineExceeded"
    POD_DELETED = "PodDeleted"
    NEVER_FIRES = "NeverFires"
    NON_RETRYABLE_EXIT_CODE = "NonRetryableExitCode"
    PLACED = "Placed"
    PLACEMENT_FALLBACK = "PlacementFallback"
    PLACEMENT_OVERRIDDEN = "PlacementOverridden"
    UNSCHEDULABLE = "Unschedulable"
    PENDING_TIMEOUT = "PendingTimeout"
    SCHEDULED = "Scheduled"
    SUSPENDED = "Suspended"
    VALID = "Valid"


class SuccessEvents(enum.StrEnum):
    """The successful runs that get a RunSucceeded Event (every run gets a PodCreated one)."""

    RECOVERY = "recovery"
    """Only a success that ends a streak of failed runs."""
    ALL = "all"
    """Every successful run."""


# Events that report the progress of a run and need no prompt status write.
PROGRESS_REASONS = frozenset({Reason.POD_CREATED, Reason.PLACED})


@dataclass(frozen=True)
class PodView:
    """The fields of one Pod that the planner reads."""

    name: str
    slot: dt.datetime
    attempt: int
    phase: str
    created: dt.datetime | None = None
    finished: dt.datetime | None = None
    exit_code: int | None = None
    reason: str | None = None
    message: str | None = None
    deleting: bool = False
    trigger: str | None = None
    """The run-now value of a Pod started by hand."""
    pending_reason: str | None = None
    """Why a Pending Pod does not run yet: Unschedulable, ImagePullBackOff, ..."""
    pending_message: str | None = None
    step: int = 0
    """The placement fallback step the Pod was created for."""
    node: str | None = None
    region: str | None = None
    zone: str | None = None
    labelled: bool = False
    """True when the Pod carries its name as a label, so a batched delete can select it."""


@dataclass(frozen=True)
class JobView:
    """The fields of one ScheduledJob that the planner reads."""

    namespace: str
    name: str
    uid: str
    generation: int
    created: dt.datetime
    spec: ScheduledJobSpec | None
    status: ScheduledJobStatus
    spec_error: InvalidSpecError | None = None
    run_now: str | None = None
    """The value of the sked.dev/run-now annotation."""


@dataclass(frozen=True)
class PodToCreate:
    """A Pod the plan starts: ``attempt`` of the run at ``slot``."""

    slot: dt.datetime
    attempt: int
    trigger: str | None = None
    step: int = 0


@dataclass(frozen=True)
class Event:
    """A Kubernetes Event to post about the ScheduledJob."""

    reason: Reason
    message: str
    warning: bool = False
    slot: dt.datetime | None = None
    attempt: int | None = None
    count: int = 1
    """How many slots a MissedSchedule or ConcurrencySkipped event stands for."""
    missed_reason: MissedReason | None = None
    manual: bool = False
    """True for events of runs started by hand."""


@dataclass
class Plan:
    """Everything one reconcile decided."""

    status: ScheduledJobStatus
    creates: list[PodToCreate] = field(default_factory=list)
    deletes: list[str] = field(default_factory=list)
    """Pods to delete now: stopped, replaced or duplicate attempts."""
    prunes: list[str] = field(default_factory=list)
    """Finished Pods whose runs left the history, deleted later in a batched request."""
    events: list[Event] = field(default_factory=list)
    wake_at: dt.datetime | None = None

    def wake_no_later_than(self, when: dt.datetime | None) -> None:
        if when is not None and (self.wake_at is None or when < self.wake_at):
            self.wake_at = when


def _format(instant: dt.datetime) -> str:
    return instant.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def plan(
    job: JobView,
    pods: list[PodView],
    *,
    now: dt.datetime,
    schedule: Schedule | ScheduleSet | None,
    failing_threshold: int = 3,
    online_since: dt.datetime | None = None,
    success_events: SuccessEvents = SuccessEvents.RECOVERY,
) -> Plan:
    """Return what ``job`` needs at ``now``; ``schedule`` is None when the spec is invalid.

    ``failing_threshold`` is how many runs in a row must fail before the
    Failing condition turns True.
    """
    status = job.status.model_copy(deep=True)
    result = Plan(status=status)
    if job.spec is None or schedule is None:
        _plan_invalid(job, result, now=now)
        return result
    spec = job.spec

    pods_by_name = {pod.name: pod for pod in pods}
    _adopt_pods(status, pods, result, run_now=job.run_now)
    for run in status.runs:
        if not run.phase.finished:
            _advance_run(job, spec, run, pods_by_name, result, now=now, events=success_events)
    _start_manual_run(job, spec, result, now=now)
    _start_due_runs(job, spec, schedule, result, now=now, online_since=online_since)
    _record_results(status)
    _trim_history(spec, status, pods, result)
    _summarize(job, spec, schedule, result, now=now)
    set_failing(status, failing_threshold, now=now, generation=job.generation)
    return result


def _plan_invalid(job: JobView, result: Plan, *, now: dt.datetime) -> None:
    status = result.status
    error = job.spec_error or InvalidSpecError("the spec could not be read")
    message = str(error)
    changed = set_condition(
        status, "InvalidSpec", True, error.reason, message, now=now, generation=job.generation
    )
    set_condition(status, "Ready", False, error.reason, message, now=now, generation=job.generation)
    status.nextScheduleTime = None
    status.observedGeneration = job.generation
    if changed:
        event_reason = (
            Reason.INVALID_SCHEDULE if error.reason == "InvalidSchedule" else Reason.INVALID_SPEC
        )
        result.events.append(Event(event_reason, message, warning=True))


def _run_key(run: Run) -> tuple[dt.datetime, str]:
    return (run.scheduledTime, run.trigger or "")


def _adopt_pods(
    status: ScheduledJobStatus, pods: list[PodView], result: Plan, *, run_now: str | None
) -> None:
    """Record in status every Pod of this job that status does not name yet.

    Such Pods exist when the operator stopped between creating a Pod and
    writing status: their slot is newer than lastScheduleTime (or their
    run-now value is the current one and not yet handled), or their run is
    in status without that attempt. Adopting them keeps the slot from
    running again. Any other unknown Pod belongs to a run that history
    cleanup already dropped, and is deleted.
    """
    runs = {_run_key(run): run for run in status.runs}
    known = {attempt.podName for run in status.runs for attempt in run.attempts}
    last = status.lastScheduleTime
    for pod in sorted(pods, key=lambda p: (p.slot, p.attempt)):
        if pod.name in known or pod.deleting:
            continue
        run = runs.get((pod.slot, pod.trigger or ""))
        if run is None:
            if pod.trigger is not None:
                fresh = pod.trigger == run_now and status.lastRunNow != pod.trigger
            else:
                fresh = last is None or pod.slot > last
            if not fresh:
                finished = pod.phase in ("Succeeded", "Failed")
                (result.prunes if finished else result.deletes).append(pod.name)
                continue
            run = Run(scheduledTime=pod.slot, phase=RunPhase.PENDING, trigger=pod.trigger)
            status.runs.append(run)
            runs[_run_key(run)] = run
            if pod.trigger is not None:
                status.lastRunNow = pod.trigger
            elif status.lastScheduleTime is None or pod.slot > status.lastScheduleTime:
                status.lastScheduleTime = pod.slot
        same = next((a for a in run.attempts if a.attempt == pod.attempt), None)
        if same is not None:
            if pod.step > same.step:
                # A fallback Pod created before the operator stopped.
                same.podName, same.step, same.stepStartTime = pod.name, pod.step, pod.created
            else:
                result.deletes.append(pod.name)
            continue
        run.attempts.append(
            Attempt(
                attempt=pod.attempt,
                podName=pod.name,
                startTime=pod.created,
                step=pod.step,
                stepStartTime=pod.created,
            )
        )
        run.attempts.sort(key=lambda a: a.attempt)
        if run.attempts[-1].podName == pod.name:
            run.nextAttemptTime = None  # The retry it waited for exists.
    status.runs.sort(key=lambda r: r.scheduledTime)


def _refresh_attempt(attempt: Attempt, pod: PodView) -> None:
    attempt.phase = {
        "Pending": RunPhase.PENDING,
        "Running": RunPhase.RUNNING,
        "Succeeded": RunPhase.SUCCEEDED,
        "Failed": RunPhase.FAILED,
    }.get(pod.phase, attempt.phase)
    attempt.startTime = attempt.startTime or pod.created
    if attempt.phase.finished:
        attempt.finishTime = attempt.finishTime or pod.finished
        attempt.exitCode = pod.exit_code
        attempt.reason = pod.reason or attempt.reason
        attempt.message = pod.message or attempt.message


def _advance_run(
    job: JobView,
    spec: ScheduledJobSpec,
    run: Run,
    pods: dict[str, PodView],
    result: Plan,
    *,
    now: dt.datetime,
    events: SuccessEvents = SuccessEvents.RECOVERY,
) -> None:
    """Move one unfinished run forward: follow its Pod, retry it, or finish it."""
    if not run.attempts:
        run.phase = RunPhase.FAILED
        run.reason = "NoAttempt"
        run.finishTime = now
        return
    attempt = run.attempts[-1]
    pod = pods.get(attempt.podName)

    if not attempt.phase.finished:
        if pod is not None and not pod.deleting:
            _refresh_attempt(attempt, pod)
            _record_node(spec, run, attempt, pod, result)
            _fall_back(job, spec, run, attempt, pod, result, now=now)
        elif pod is None:
            # The create response puts new Pods in the cache at once, so a
            # missing Pod was deleted by someone else, or is still on its way.
            # NOTE: a Pod whose create the API server rejected is not created
            # again; its attempt fails as PodDeleted after the grace period.
            seen_since = attempt.stepStartTime or attempt.startTime or now
            if now - seen_since < MISSING_POD_GRACE:
                result.wake_no_later_than(seen_since + MISSING_POD_GRACE)
            else:
                attempt.phase = RunPhase.FAILED
                attempt.reason = Reason.POD_DELETED.value
                attempt.message = f"Pod {attempt.podName} was deleted before it finished"
                attempt.finishTime = now

    if attempt.phase is RunPhase.PENDING and spec.pendingTimeoutSeconds is not None:
        started = attempt.startTime or now
        limit = started + dt.timedelta(seconds=spec.pendingTimeoutSeconds)
        if now >= limit:
            reason = (pod.pending_reason if pod else None) or Reason.PENDING_TIMEOUT.value
            detail = (pod.pending_message if pod else None) or "the Pod did not start"
            attempt.phase = RunPhase.FAILED
            attempt.reason = reason
            attempt.message = (
                f"still Pending after pendingTimeoutSeconds ({spec.pendingTimeoutSeconds}s): "
                f"{detail}"
            )
            attempt.finishTime = now
            result.deletes.append(attempt.podName)
        else:
            result.wake_no_later_than(limit)

    if not attempt.phase.finished and spec.activeDeadlineSeconds is not None:
        started = attempt.startTime or now
        deadline = started + dt.timedelta(seconds=spec.activeDeadlineSeconds)
        if now >= deadline:
            attempt.phase = RunPhase.FAILED
            attempt.reason = Reason.DEADLINE_EXCEEDED.value
            attempt.message = (
                f"the attempt ran longer than activeDeadlineSeconds "
                f"({spec.activeDeadlineSeconds}s), so its Pod was deleted"
            )
            attempt.finishTime = now
            result.deletes.append(attempt.podName)
        else:
            result.wake_no_later_than(deadline)

    if attempt.phase is RunPhase.SUCCEEDED:
        _succeed(run, attempt, result, now=now, events=events)
        return
    if attempt.phase is RunPhase.FAILED:
        _after_failed_attempt(job, spec, run, attempt, result, now=now)
        return
    run.phase = RunPhase.RUNNING if attempt.phase is RunPhase.RUNNING else RunPhase.PENDING


def _succeed(
    run: Run, attempt: Attempt, result: Plan, *, now: dt.datetime, events: SuccessEvents
) -> None:
    """End a run whose last attempt succeeded; post RunSucceeded if ``events`` selects it."""
    run.phase = RunPhase.SUCCEEDED
    run.finishTime = attempt.finishTime or now
    run.nextAttemptTime = None
    failed_before = result.status.consecutiveFailures
    result.status.consecutiveFailures = 0
    if not failed_before and events is not SuccessEvents.ALL:
        return
    message = f"run of {_format(run.scheduledTime)} succeeded on attempt {attempt.attempt}"
    if failed_before:
        message += f" after {failed_before} failed run(s) in a row"
    result.events.append(
        Event(Reason.RUN_SUCCEEDED, message, slot=run.scheduledTime, attempt=attempt.attempt)
    )


def _record_node(
    spec: ScheduledJobSpec, run: Run, attempt: Attempt, pod: PodView, result: Plan
) -> None:
    """Record where the attempt's Pod runs.

    A job with spec.placement gets one Placed event when the Pod is bound; for
    the others, the node in status is the record.
    """
    if pod.node is None or attempt.node == pod.node:
        return
    attempt.node, attempt.region, attempt.zone = pod.node, pod.region, pod.zone
    if pod.region:
        result.status.lastRegion = pod.region
    if spec.placement is None and attempt.step == 0:
        return
    where = f"node {pod.node}"
    if pod.region or pod.zone:
        where += f" in region {pod.region or '?'}, zone {pod.zone or '?'}"
    result.events.append(
        Event(
            Reason.PLACED,
            f"Pod {pod.name} of run {_format(run.scheduledTime)} attempt {attempt.attempt} "
            f"was placed on {where}",
            slot=run.scheduledTime,
            attempt=attempt.attempt,
        )
    )


def _fall_back(
    job: JobView,
    spec: ScheduledJobSpec,
    run: Run,
    attempt: Attempt,
    pod: PodView,
    result: Plan,
    *,
    now: dt.datetime,
) -> None:
    """Move an attempt whose Pod stays unschedulable to the next region, or fail it."""
    placement = spec.placement
    region = pinned_region(placement, attempt.step)
    if placement is None or placement.fallbackAfterSeconds is None or region is None:
        return
    if attempt.phase is not RunPhase.PENDING or pod.pending_reason != "Unschedulable":
        return
    since = attempt.stepStartTime or attempt.startTime or now
    limit = since + dt.timedelta(seconds=placement.fallbackAfterSeconds)
    if now < limit:
        result.wake_no_later_than(limit)
        return
    why = pod.pending_message or "no node fits"
    result.deletes.append(pod.name)
    if attempt.step + 1 >= fallback_steps(placement):
        attempt.phase = RunPhase.FAILED
        attempt.reason = Reason.UNSCHEDULABLE.value
        attempt.message = f"unschedulable in every listed region, the last {region}: {why}"
        attempt.finishTime = now
        return
    attempt.step += 1
    following = pinned_region(placement, attempt.step)
    attempt.fallbackFrom, attempt.fallbackReason = region, why
    attempt.podName = naming.pod_name(
        job.name, run.scheduledTime, attempt.attempt, trigger=run.trigger, step=attempt.step
    )
    attempt.stepStartTime = now
    result.creates.append(
        PodToCreate(run.scheduledTime, attempt.attempt, trigger=run.trigger, step=attempt.step)
    )
    result.events.append(
        Event(
            Reason.PLACEMENT_FALLBACK,
            f"attempt {attempt.attempt} of run {_format(run.scheduledTime)} fell back from "
            f"region {region} to region {following}: unschedulable for "
            f"{placement.fallbackAfterSeconds}s ({why})",
            warning=True,
            slot=run.scheduledTime,
            attempt=attempt.attempt,
        )
    )


def _after_failed_attempt(
    job: JobView,
    spec: ScheduledJobSpec,
    run: Run,
    attempt: Attempt,
    result: Plan,
    *,
    now: dt.datetime,
) -> None:
    """Schedule the next attempt after a failure, start it when due, or fail the run."""
    failed = len(run.attempts)
    detail = f"exit code {attempt.exitCode}" if attempt.exitCode is not None else attempt.reason
    if attempt.exitCode is not None and attempt.exitCode in spec.retry.nonRetryableExitCodes:
        run.phase = RunPhase.FAILED
        run.reason = Reason.NON_RETRYABLE_EXIT_CODE.value
        run.finishTime = attempt.finishTime or now
        run.nextAttemptTime = None
        result.status.consecutiveFailures += 1
        result.events.append(
            Event(
                Reason.RUN_FAILED,
                f"run of {_format(run.scheduledTime)} failed with exit code {attempt.exitCode}, "
                "which spec.retry.nonRetryableExitCodes lists, so it is not retried",
                warning=True,
                slot=run.scheduledTime,
                attempt=attempt.attempt,
            )
        )
        return
    if failed > spec.retry.limit:
        run.phase = RunPhase.FAILED
        run.reason = Reason.RETRIES_EXHAUSTED.value
        run.finishTime = attempt.finishTime or now
        run.nextAttemptTime = None
        result.status.consecutiveFailures += 1
        result.events.append(
            Event(
                Reason.RETRIES_EXHAUSTED,
                f"run of {_format(run.scheduledTime)} failed after {failed} attempts; "
                f"the last ended with {detail}",
                warning=True,
                slot=run.scheduledTime,
                attempt=attempt.attempt,
            )
        )
        return
    if run.nextAttemptTime is None:
        # Derived from the failed Pod's finish time, so the wait survives a restart.
        finished = attempt.finishTime or now
        run.nextAttemptTime = finished + retry_delay(spec.retry.backoff, failed)
        run.phase = RunPhase.PENDING
        result.events.append(
            Event(
                Reason.RETRY_SCHEDULED,
                f"attempt {attempt.attempt} of run {_format(run.scheduledTime)} failed with "
                f"{detail}; attempt {attempt.attempt + 1} starts at "
                f"{_format(run.nextAttemptTime)}",
                warning=True,
                slot=run.scheduledTime,
                attempt=attempt.attempt,
            )
        )
    if now < run.nextAttemptTime:
        result.wake_no_later_than(run.nextAttemptTime)
        return
    _start_attempt(job, run, attempt.attempt + 1, result, now=now)


def _start_attempt(job: JobView, run: Run, number: int, result: Plan, *, now: dt.datetime) -> None:
    name = naming.pod_name(job.name, run.scheduledTime, number, trigger=run.trigger)
    run.attempts.append(Attempt(attempt=number, podName=name, startTime=now, stepStartTime=now))
    run.nextAttemptTime = None
    run.phase = RunPhase.PENDING
    result.creates.append(PodToCreate(slot=run.scheduledTime, attempt=number, trigger=run.trigger))
    result.events.append(
        Event(
            Reason.POD_CREATED,
            f"created Pod {name} for run {_format(run.scheduledTime)}, attempt {number}",
            slot=run.scheduledTime,
            attempt=number,
            manual=run.trigger is not None,
        )
    )


def _count_missed(
    status: ScheduledJobStatus,
    count: int,
    newest: dt.datetime | None,
    reason: MissedReason,
    result: Plan,
    *,
    lower_bound: bool = False,
) -> None:
    if count <= 0 or newest is None:
        return
    status.missedRuns += count
    status.missedRunsIsLowerBound = status.missedRunsIsLowerBound or lower_bound
    status.lastMissed = MissedSlot(scheduledTime=newest, reason=reason)
    amount = f"at least {count}" if lower_bound else str(count)
    if reason is MissedReason.CONCURRENCY:
        result.events.append(
            Event(
                Reason.CONCURRENCY_SKIPPED,
                f"skipped the run of {_format(newest)} because an earlier run is still active "
                "and concurrencyPolicy is Forbid",
                slot=newest,
                count=count,
                missed_reason=reason,
            )
        )
        return
    explanation = {
        MissedReason.DEADLINE: "they were reached later than startingDeadlineSeconds allows",
        MissedReason.SUSPENDED: "the ScheduledJob was suspended",
        MissedReason.CATCH_UP: "they fell due while no run could start and the catch-up policy "
        "does not run them",
    }.get(reason, str(reason))
    result.events.append(
        Event(
            Reason.MISSED_SCHEDULE,
            f"{amount} slot(s) got no run because {explanation}; the newest was {_format(newest)}",
            warning=True,
            slot=newest,
            count=count,
            missed_reason=reason,
        )
    )


def _start_manual_run(
    job: JobView, spec: ScheduledJobSpec, result: Plan, *, now: dt.datetime
) -> None:
    """Start one run for a new sked.dev/run-now value; the same value never starts another."""
    status = result.status
    value = job.run_now
    if not value or value == status.lastRunNow:
        return
    active = [run for run in status.runs if not run.phase.finished]
    if active and spec.concurrencyPolicy is ConcurrencyPolicy.FORBID:
        return  # Waits for the active run; its Pod's end triggers the next plan.
    slot = now.replace(microsecond=0)
    if active and spec.concurrencyPolicy is ConcurrencyPolicy.REPLACE:
        for run in active:
            _replace(run, slot, result, now=now)
    run = Run(scheduledTime=slot, phase=RunPhase.PENDING, trigger=value)
    status.runs.append(run)
    status.lastRunNow = value
    _start_attempt(job, run, 1, result, now=now)


def _start_due_runs(
    job: JobView,
    spec: ScheduledJobSpec,
    schedule: Schedule | ScheduleSet,
    result: Plan,
    *,
    now: dt.datetime,
    online_since: dt.datetime | None = None,
) -> None:
    """Start the due slots under the catch-up and concurrency policies; count what is missed."""
    status = result.status
    last = status.lastScheduleTime or job.created
    if status.observedSchedule != _schedule_key(spec):
        # A changed schedule starts from now: slots of the old one are not caught up.
        if status.observedSchedule is not None:
            last = max(last, now)
            status.lastScheduleTime = last
        status.observedSchedule = _schedule_key(spec)

    if spec.suspend or condition_is(status, "Suspended", "True"):
        last = _count_suspended(schedule, result, last=last, now=now)
        if spec.suspend:
            return

    def delay(slot: dt.datetime) -> dt.timedelta:
        key = f"{job.namespace}/{job.name}"
        return jitter(schedule, slot, key=key, jitter_seconds=spec.jitterSeconds)

    deadline = None
    if spec.startingDeadlineSeconds is not None:
        deadline = dt.timedelta(seconds=spec.startingDeadlineSeconds)
    due = due_slots(
        schedule,
        last_handled=last,
        now=now,
        starting_deadline=deadline,
        policy=spec.catchUp.policy,
        max_runs=spec.catchUp.maxRuns,
        delay=delay,
        online_since=online_since,
    )
    if due is None:
        return
    result.wake_no_later_than(due.wake_at)
    _start_runs(job, spec, due, result, last=last, now=now)


def _start_runs(
    job: JobView,
    spec: ScheduledJobSpec,
    due: DueSlots,
    result: Plan,
    *,
    last: dt.datetime,
    now: dt.datetime,
) -> None:
    """Start the slots ``due`` selected, as the concurrency policy allows."""
    status = result.status
    active = [run for run in status.runs if not run.phase.finished]
    policy = spec.concurrencyPolicy
    runs = due.runs
    if spec.catchUp.policy is CatchUpPolicy.ALL and policy is not ConcurrencyPolicy.ALLOW and runs:
        if active and policy is ConcurrencyPolicy.FORBID:
            return  # Catch-up slots wait for the active run while inside the deadline.
        runs = _one_at_a_time(runs, policy, result)
    _count_missed(
        status,
        due.missed,
        due.newest_missed,
        due.missed_reason,
        result,
        lower_bound=due.lower_bound,
    )
    if not runs:
        if due.newest_missed is not None:
            status.lastScheduleTime = max(due.newest_missed, status.lastScheduleTime or last)
        return
    status.lastScheduleTime = runs[-1]
    if active and policy is ConcurrencyPolicy.FORBID:
        _count_missed(status, len(runs), runs[-1], MissedReason.CONCURRENCY, result)
        return
    if active and policy is ConcurrencyPolicy.REPLACE:
        for run in active:
            _replace(run, runs[-1], result, now=now)
    for slot in runs:
        run = Run(scheduledTime=slot, phase=RunPhase.PENDING)
        status.runs.append(run)
        _start_attempt(job, run, 1, result, now=now)


def _count_suspended(
    schedule: Schedule | ScheduleSet, result: Plan, *, last: dt.datetime, now: dt.datetime
) -> dt.datetime:
    """Count the slots that fell due while suspended as missed; return the new last slot."""
    status = result.status
    due = due_slots(schedule, last_handled=last, now=now, starting_deadline=dt.timedelta(0))
    if due is not None and (due.runs or due.newest_missed):
        count = due.missed + len(due.runs)
        newest = due.runs[-1] if due.runs else due.newest_missed
        _count_missed(
            status, count, newest, MissedReason.SUSPENDED, result, lower_bound=due.lower_bound
        )
        status.lastScheduleTime = newest
    return status.lastScheduleTime or last


def _one_at_a_time(
    runs: list[dt.datetime], policy: ConcurrencyPolicy, result: Plan
) -> list[dt.datetime]:
    """Pick the catch-up slot that starts now when runs may not overlap."""
    if policy is ConcurrencyPolicy.REPLACE:
        # Each would replace the one before it at once, so only the newest starts.
        older = runs[-2] if len(runs) > 1 else None
        _count_missed(result.status, len(runs) - 1, older, MissedReason.CATCH_UP, result)
        return runs[-1:]
    return runs[:1]


def _replace(run: Run, by: dt.datetime, result: Plan, *, now: dt.datetime) -> None:
    attempt = run.attempts[-1] if run.attempts else None
    if attempt is not None and not attempt.phase.finished:
        attempt.phase = RunPhase.FAILED
        attempt.reason = Reason.RUN_REPLACED.value
        attempt.finishTime = now
        planned = PodToCreate(slot=run.scheduledTime, attempt=attempt.attempt, trigger=run.trigger)
        if planned in result.creates:
            # A retry planned in this same pass: drop the create instead of deleting after it.
            result.creates.remove(planned)
            result.events = [
                event
                for event in result.events
                if not (
                    event.reason is Reason.POD_CREATED
                    and event.slot == run.scheduledTime
                    and event.attempt == attempt.attempt
                )
            ]
        else:
            result.deletes.append(attempt.podName)
    run.phase = RunPhase.FAILED
    run.reason = Reason.RUN_REPLACED.value
    run.finishTime = now
    run.nextAttemptTime = None
    result.events.append(
        Event(
            Reason.RUN_REPLACED,
            f"run of {_format(run.scheduledTime)} was stopped and replaced by the run of "
            f"{_format(by)} because concurrencyPolicy is Replace",
            slot=run.scheduledTime,
        )
    )


def _schedule_key(spec: ScheduledJobSpec) -> str:
    return f"{' & '.join(spec.expressions)}|{spec.timeZone}"


def _trim_history(
    spec: ScheduledJobSpec, status: ScheduledJobStatus, pods: list[PodView], result: Plan
) -> None:
    """Drop the oldest finished runs beyond the history limits, and prune their Pods."""
    keep: list[Run] = []
    kept_succeeded = kept_failed = 0
    dropped: set[tuple[dt.datetime, str]] = set()
    for run in sorted(status.runs, key=lambda r: r.scheduledTime, reverse=True):
        if run.phase is RunPhase.SUCCEEDED:
            kept_succeeded += 1
            if kept_succeeded > spec.history.successfulRunsLimit:
                dropped.add(_run_key(run))
                continue
        elif run.phase is RunPhase.FAILED:
            kept_failed += 1
            if kept_failed > spec.history.failedRunsLimit:
                dropped.add(_run_key(run))
                continue
        keep.append(run)
    status.runs = sorted(keep, key=lambda r: r.scheduledTime)
    already = {*result.deletes, *result.prunes}
    for pod in pods:
        if (
            (pod.slot, pod.trigger or "") in dropped
            and not pod.deleting
            and pod.name not in already
        ):
            finished = pod.phase in ("Succeeded", "Failed")
            (result.prunes if finished else result.deletes).append(pod.name)


def _record_results(status: ScheduledJobStatus) -> None:
    """Set the last success, failure and result from the runs, before history drops any."""
    for run in status.runs:
        if run.finishTime is None:
            continue
        if run.phase is RunPhase.SUCCEEDED:
            status.lastSuccessfulTime = max(
                status.lastSuccessfulTime or run.finishTime, run.finishTime
            )
        elif run.phase is RunPhase.FAILED:
            status.lastFailureTime = max(status.lastFailureTime or run.finishTime, run.finishTime)
    finished = [run for run in status.runs if run.phase.finished]
    if finished:
        status.lastResult = max(finished, key=lambda r: r.scheduledTime).phase.value


def _summarize(
    job: JobView,
    spec: ScheduledJobSpec,
    schedule: Schedule | ScheduleSet,
    result: Plan,
    *,
    now: dt.datetime,
) -> None:
    """Fill the fields derived from runs, the conditions and the next wake-up."""
    status = result.status
    generation = job.generation
    active = [run for run in status.runs if not run.phase.finished]
    status.active = [
        ActiveRun(
            scheduledTime=run.scheduledTime,
            attempt=run.attempts[-1].attempt if run.attempts else 1,
            podName=run.attempts[-1].podName if run.attempts else None,
            trigger=run.trigger,
        )
        for run in active
    ]
    status.activeCount = len(active)
    if spec.suspend:
        status.nextScheduleTime = None
        # Wake at each slot anyway, so slots missed while suspended are counted live.
        result.wake_no_later_than(schedule.next_after(max(now, status.lastScheduleTime or now)))
    else:
        status.nextScheduleTime = schedule.next_after(max(now, status.lastScheduleTime or now))
        result.wake_no_later_than(status.nextScheduleTime)
    status.observedGeneration = generation

    if not any(condition.type == "Late" for condition in status.conditions):
        # Present from the first write, so the first run changes no condition.
        set_late(
            status, False, "no due slot is waiting for its Pod", now=now, generation=generation
        )
    set_condition(
        status,
        "InvalidSpec",
        False,
        Reason.VALID,
        "the spec is valid",
        now=now,
        generation=generation,
    )
    if spec.suspend:
        set_condition(
            status,
            "Suspended",
            True,
            Reason.SUSPENDED,
            "spec.suspend is true: no new runs start, and their slots are counted as missed",
            now=now,
            generation=generation,
        )
    else:
        set_condition(
            status,
            "Suspended",
            False,
            Reason.SCHEDULED,
            "spec.suspend is false",
            now=now,
            generation=generation,
        )
    if not schedule.fires:
        set_condition(
            status,
            "Ready",
            True,
            Reason.NEVER_FIRES,
            f"schedule {' & '.join(spec.expressions)!r} names no date that exists, so it "
            "never fires; "
            "this is allowed for jobs that are only started by hand",
            now=now,
            generation=generation,
        )
    elif spec.suspend:
        set_condition(
            status,
            "Ready",
            True,
            Reason.SUSPENDED,
            "suspended; set spec.suspend to false to resume",
            now=now,
            generation=generation,
        )
    else:
        next_text = _format(status.nextScheduleTime) if status.nextScheduleTime else "none"
        set_condition(
            status,
            "Ready",
            True,
            Reason.SCHEDULED,
            f"the next run is due at {next_text}",
            now=now,
            generation=generation,
        )


def needs_prompt_write(
    written: ScheduledJobStatus, planned: ScheduledJobStatus, events: list[Event]
) -> bool:
    """Tell whether ``planned`` must reach the API server now rather than in a later batch.

    Run progress may wait: a run started, its Pod bound or running, the next
    due time moved on. Everything else may not: a run that ended or left
    history, a changed condition, counted misses, a manual run, a new
    generation, or an Event other than PodCreated and Placed.
    """
    if any(event.reason not in PROGRESS_REASONS for event in events):
        return True
    if _finished_runs(written) != _finished_runs(planned):
        return True
    if _condition_states(written) != _condition_states(planned):
        return True
    return (
        written.missedRuns,
        written.observedGeneration,
        written.lastRunNow,
        written.consecutiveFailures,
    ) != (
        planned.missedRuns,
        planned.observedGeneration,
        planned.lastRunNow,
        planned.consecutiveFailures,
    )


def _finished_runs(status: ScheduledJobStatus) -> set[tuple[dt.datetime, str]]:
    return {_run_key(run) for run in status.runs if run.phase.finished}


def _condition_states(status: ScheduledJobStatus) -> set[tuple[str, str, str]]:
    return {(c.type, c.status, c.reason) for c in status.conditions}


def status_patch(status: ScheduledJobStatus) -> dict[str, Any]:
    """Return the status as a merge-patch body; fields that are None are removed."""
    return status.model_dump(mode="json")
