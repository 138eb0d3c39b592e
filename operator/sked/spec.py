"""The ScheduledJob API: pydantic models of its spec and status.

These models are the single source of the CRD's schema: ``sked.crd`` turns
them into the structural OpenAPI schema under ``crds/`` (``make crds``), so
the API server and the operator accept the same specs. Field names are the
API's own camelCase names. Descriptions become ``kubectl explain`` text.
"""

from __future__ import annotations

import datetime as dt
import enum
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    field_serializer,
    model_validator,
)

from sked.schedule import RepeatedTime, SkippedTime

# The API server rejects a string where a number belongs, so the model does too.
StrictNumber = Annotated[float, Field(strict=True)]

GROUP = "sked.dev"
VERSION = "v1alpha1"
KIND = "ScheduledJob"
PLURAL = "scheduledjobs"


class ConcurrencyPolicy(enum.StrEnum):
    """What a due slot does while an earlier run of the same ScheduledJob is still active."""

    ALLOW = "Allow"
    FORBID = "Forbid"
    REPLACE = "Replace"


class RunPhase(enum.StrEnum):
    """Where a run is in its life; Succeeded and Failed are final."""

    PENDING = "Pending"
    RUNNING = "Running"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"

    @property
    def finished(self) -> bool:
        return self in (RunPhase.SUCCEEDED, RunPhase.FAILED)


class MissedReason(enum.StrEnum):
    """Why a slot got no run."""

    DEADLINE = "deadline"
    """The operator reached the slot later than spec.startingDeadlineSeconds allows."""
    CONCURRENCY = "concurrency"
    """concurrencyPolicy Forbid and an earlier run was still active."""
    SUSPENDED = "suspended"
    """spec.suspend was true at the slot's time."""
    CATCH_UP = "catchUp"
    """The slot was reached late and the catch-up policy does not run it."""


# An object field whose own fields all have defaults gets `default: {}` in the
# CRD, so the API server fills in the nested defaults too.
_EMPTY: dict[str, Any] = {"default": {}}


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True, use_enum_values=False)


class Backoff(_Model):
    """Waits between the attempts of one run: initialSeconds × factor^(n-1), capped."""

    initialSeconds: StrictInt = Field(
        10, ge=0, le=86400, description="Wait before the first retry, in seconds."
    )
    factor: StrictNumber = Field(
        2.0, ge=1, le=10, description="Multiplier applied to the wait after each retry."
    )
    maxSeconds: StrictInt = Field(
        360, ge=0, le=604800, description="Upper bound of any wait, in seconds."
    )


class Retry(_Model):
    """How often a failed attempt is tried again."""

    nonRetryableExitCodes: list[StrictInt] = Field(
        default_factory=list,
        max_length=64,
        description=(
            "Exit codes after which the run fails at once, with no further attempts; default: none."
        ),
        json_schema_extra={"items": {"type": "integer", "minimum": 0, "maximum": 255}},
    )

    limit: StrictInt = Field(
        3, ge=0, le=100, description="Retries after the first attempt; 0 disables retries."
    )
    backoff: Backoff = Field(
        default_factory=Backoff, description="Waits between attempts.", json_schema_extra=_EMPTY
    )


class CatchUpPolicy(enum.StrEnum):
    """Which slots run after the operator was down or a slot could not start on time."""

    LATEST = "Latest"
    ALL = "All"
    NONE = "None"


class CatchUp(_Model):
    """What happens to slots that fell due while no run could start."""

    policy: CatchUpPolicy = Field(
        CatchUpPolicy.LATEST,
        description=(
            "Latest (default) runs the newest missed slot; All runs every missed slot inside "
            "startingDeadlineSeconds, oldest first, at most maxRuns; None runs no missed slot. "
            "Slots that do not run are counted in status.missedRuns."
        ),
    )
    maxRuns: StrictInt = Field(
        10, ge=1, le=1000, description="With policy All, the most slots that run; default 10."
    )


class DaylightSaving(_Model):
    """What fixed-time slots do when the time zone's clocks change."""

    repeatedTime: RepeatedTime = Field(
        RepeatedTime.ONCE,
        description=(
            "A slot in an hour that repeats when clocks go back runs at its first occurrence "
            "only (Once, default) or at both (Twice)."
        ),
    )
    skippedTime: SkippedTime = Field(
        SkippedTime.SHIFT,
        description=(
            "A slot in an hour that clocks skip runs at the first instant after the jump "
            "(Shift, default) or not that day (Skip)."
        ),
    )


class History(_Model):
    """How many finished runs stay in status, with their Pods."""

    successfulRunsLimit: StrictInt = Field(3, ge=0, le=100, description="Succeeded runs kept.")
    failedRunsLimit: StrictInt = Field(1, ge=0, le=100, description="Failed runs kept.")


class Container(BaseModel):
    """A container of the Pod template; fields other than name and image pass through."""

    model_config = ConfigDict(extra="allow")

    name: str = Field(min_length=1, max_length=63, description="Container name.")
    image: str = Field(min_length=1, description="Container image.")


class PodSpecTemplate(BaseModel):
    """A Pod spec; every field besides restartPolicy and containers passes through unchecked.

    The operator checks the whole Pod with a server-side dry-run create.
    """

    model_config = ConfigDict(extra="allow")

    restartPolicy: Literal["Never"] = Field(
        "Never",
        description=(
            "Must be Never: with OnFailure or Always the kubelet restarts containers in place, "
            "and sked could no longer see or count attempts. Retries are set in spec.retry."
        ),
    )
    containers: list[Container] = Field(min_length=1, description="The Pod's containers.")


# A Kubernetes quantity such as 500m, 2, 1.5Gi or 1e3.
QUANTITY_PATTERN = (
    r"^(\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))(([KMGTPE]i)|[numkMGTPE]|"
    r"([eE](\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$"
)
Quantity = Annotated[str, Field(pattern=QUANTITY_PATTERN, max_length=64)] | StrictInt


class PlacementMode(enum.StrEnum):
    """How strictly the listed regions and zones bind a Pod."""

    REQUIRED = "Required"
    PREFERRED = "Preferred"


class PlacementResources(_Model):
    """Resource requests for the main container (the first one)."""

    cpu: Quantity | None = Field(None, description="CPU request, such as 500m or 2.")
    memory: Quantity | None = Field(None, description="Memory request, such as 512Mi or 4Gi.")
    ephemeralStorage: Quantity | None = Field(None, description="Ephemeral storage request.")
    gpu: StrictInt | None = Field(None, ge=0, le=64, description="GPUs, set as request and limit.")
    gpuResource: str = Field(
        "nvidia.com/gpu",
        min_length=1,
        max_length=253,
        description="Extended resource name of the GPU; default nvidia.com/gpu.",
    )


class Placement(_Model):
    """Where each Pod may run, decided by the kube-scheduler from these constraints."""

    resources: PlacementResources | None = Field(
        None, description="Requests set unless the template already sets them (the template wins)."
    )
    regions: list[Annotated[str, Field(min_length=1, max_length=63)]] = Field(
        default_factory=list,
        max_length=16,
        description="Ordered topology.kubernetes.io/region values, the preferred first.",
    )
    zones: list[Annotated[str, Field(min_length=1, max_length=63)]] = Field(
        default_factory=list,
        max_length=32,
        description="Ordered topology.kubernetes.io/zone values, the preferred first.",
    )
    mode: PlacementMode = Field(
        PlacementMode.REQUIRED,
        description=(
            "Required (default): only the listed places; Preferred: the listed places first, "
            "by weight in list order, anything else allowed."
        ),
    )
    fallbackAfterSeconds: StrictInt | None = Field(
        None,
        ge=1,
        description=(
            "With Required and several regions: pin each attempt's Pod to the first region, and "
            "move it to the next when it stays unschedulable this long; after the last region "
            "the attempt fails with reason Unschedulable. Unset: any listed region at once."
        ),
    )
    nodeSelector: dict[str, str] = Field(
        default_factory=dict, description="Labels a node must have, added to the template's."
    )
    instanceTypes: list[Annotated[str, Field(min_length=1, max_length=63)]] = Field(
        default_factory=list,
        max_length=32,
        description="Allowed node.kubernetes.io/instance-type values (always required).",
    )
    tolerations: list[dict[str, Any]] = Field(
        default_factory=list,
        max_length=32,
        description="Tolerations added to the template's.",
        json_schema_extra={
            "items": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
        },
    )


class PodTemplate(_Model):
    """The Pod that each attempt of a run creates."""

    metadata: dict[str, Any] = Field(
        default_factory=dict,
        description="Labels and annotations copied onto each Pod.",
        json_schema_extra={"x-kubernetes-preserve-unknown-fields": True},
    )
    spec: PodSpecTemplate = Field(description="The Pod spec.")


class ScheduledJobSpec(_Model):
    """What to run, when, and how to retry it."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": "has(self.schedule) != has(self.schedules)",
                    "message": "set exactly one of spec.schedule and spec.schedules",
                }
            ]
        },
    )

    schedule: str | None = Field(
        None,
        min_length=1,
        max_length=256,
        description=(
            "Cron schedule: 5 fields (minute hour day-of-month month day-of-week), or 6 with "
            "seconds first, or a macro (@yearly @annually @monthly @weekly @daily @midnight "
            "@hourly). Day and month names are accepted. When both day fields are restricted, "
            "a day matching either one fires, as in classic cron."
        ),
    )
    schedules: list[str] | None = Field(
        None,
        min_length=1,
        max_length=20,
        description=(
            "Several cron schedules, an alternative to schedule: the slots are their union, and "
            "a slot that two share runs once."
        ),
        json_schema_extra={"items": {"type": "string", "minLength": 1, "maxLength": 256}},
    )
    timeZone: str = Field(
        "UTC", min_length=1, max_length=64, description="IANA time zone the schedule is read in."
    )
    daylightSaving: DaylightSaving = Field(
        default_factory=DaylightSaving,
        description="Rules for fixed-time slots when clocks change.",
        json_schema_extra=_EMPTY,
    )
    jitterSeconds: StrictInt | None = Field(
        None,
        ge=1,
        le=86400,
        description=(
            "Delay each run by a fixed amount in [0, jitterSeconds) derived from the slot and "
            "the ScheduledJob, always shorter than the gap to the next slot; unset: none."
        ),
    )
    catchUp: CatchUp = Field(
        default_factory=CatchUp,
        description="What runs after slots were missed.",
        json_schema_extra=_EMPTY,
    )
    pendingTimeoutSeconds: StrictInt | None = Field(
        None,
        ge=1,
        description=(
            "An attempt whose Pod is still Pending after this long (unschedulable, image pull "
            "failing) fails with the Pod's own reason and its Pod is deleted; unset: no limit."
        ),
    )
    suspend: StrictBool = Field(
        False, description="Stops new runs; slots due meanwhile are counted as missed."
    )
    concurrencyPolicy: ConcurrencyPolicy = Field(
        ConcurrencyPolicy.FORBID,
        description=(
            "Allow runs side by side; Forbid skips a slot while a run is active (the slot is "
            "counted as missed and never starts later); Replace deletes the active run's Pod."
        ),
    )
    startingDeadlineSeconds: StrictInt | None = Field(
        None,
        ge=0,
        description="A slot reached later than this after its due time is missed; unset: no limit.",
    )
    activeDeadlineSeconds: StrictInt | None = Field(
        None,
        ge=1,
        description="An attempt running longer than this is stopped and failed; unset: no limit.",
    )
    retry: Retry = Field(
        default_factory=Retry, description="Retries of failed attempts.", json_schema_extra=_EMPTY
    )
    history: History = Field(
        default_factory=History, description="Finished runs kept.", json_schema_extra=_EMPTY
    )
    placement: Placement | None = Field(
        None, description="Resources and geography for each Pod; unset: the template alone."
    )
    template: PodTemplate = Field(description="The Pod each attempt creates.")

    @model_validator(mode="after")
    def _one_schedule_field(self) -> ScheduledJobSpec:
        if (self.schedule is None) == (self.schedules is None):
            raise ValueError("set exactly one of spec.schedule and spec.schedules")
        return self

    @property
    def expressions(self) -> list[str]:
        """Return the cron expressions of schedule or schedules."""
        return [self.schedule] if self.schedule is not None else list(self.schedules or [])


def _format_time(value: dt.datetime | None) -> str | None:
    if value is None:
        return None
    return value.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class _StatusModel(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    @field_serializer("*", when_used="json")
    def _serialize(self, value: Any) -> Any:
        if isinstance(value, dt.datetime):
            return _format_time(value)
        return value


class Attempt(_StatusModel):
    """One Pod of a run."""

    attempt: int = Field(ge=1, description="1 for the first Pod of a run, 2 for the first retry.")
    podName: str = Field(description="Name of the attempt's Pod.")
    startTime: dt.datetime | None = Field(None, description="When the Pod was created.")
    finishTime: dt.datetime | None = Field(None, description="When the Pod ended.")
    phase: RunPhase = Field(RunPhase.PENDING, description="Phase of this attempt.")
    exitCode: int | None = Field(None, description="Exit code of the main container.")
    reason: str | None = Field(None, description="Why the attempt ended, such as Error.")
    message: str | None = Field(None, description="Detail on how the attempt ended.")
    node: str | None = Field(None, description="Node the Pod ran on.")
    region: str | None = Field(None, description="topology.kubernetes.io/region of the node.")
    zone: str | None = Field(None, description="topology.kubernetes.io/zone of the node.")
    step: int = Field(0, description="Placement fallback step: 0 for the first region.")
    stepStartTime: dt.datetime | None = Field(
        None, description="When the Pod of the current fallback step was created."
    )
    fallbackFrom: str | None = Field(None, description="Region the attempt last fell back from.")
    fallbackReason: str | None = Field(None, description="Why it fell back.")


class Run(_StatusModel):
    """Everything that happened for one slot."""

    scheduledTime: dt.datetime = Field(description="The slot this run belongs to.")
    phase: RunPhase = Field(RunPhase.PENDING, description="Phase of the run.")
    attempts: list[Attempt] = Field(
        default_factory=list, description="Pods of the run, oldest first."
    )
    nextAttemptTime: dt.datetime | None = Field(
        None, description="When the next retry starts, while the run waits for one."
    )
    reason: str | None = Field(None, description="Why the run ended, such as RetriesExhausted.")
    finishTime: dt.datetime | None = Field(None, description="When the run ended.")
    trigger: str | None = Field(
        None, description="The sked.dev/run-now value that started this run by hand."
    )


class ActiveRun(_StatusModel):
    """A run that has not ended."""

    scheduledTime: dt.datetime = Field(description="The run's slot.")
    attempt: int = Field(description="The current attempt.")
    podName: str | None = Field(None, description="Pod of the current attempt, if it exists.")
    trigger: str | None = Field(None, description="The run-now value of a run started by hand.")


class MissedSlot(_StatusModel):
    """The newest slot that got no run."""

    scheduledTime: dt.datetime = Field(description="The slot.")
    reason: MissedReason = Field(description="deadline, concurrency, suspended or catchUp.")


class Condition(_StatusModel):
    """A Kubernetes-style condition."""

    type: str
    status: Literal["True", "False", "Unknown"]
    reason: str
    message: str = ""
    lastTransitionTime: dt.datetime | None = None
    observedGeneration: int | None = None


class ScheduledJobStatus(_StatusModel):
    """What the operator observed and decided; only the operator writes it."""

    observedGeneration: int | None = Field(None, description="The spec generation last acted on.")
    conditions: list[Condition] = Field(default_factory=list, description="Ready, InvalidSpec.")
    nextScheduleTime: dt.datetime | None = Field(
        None, description="The next slot; empty when the schedule is invalid or never fires."
    )
    lastScheduleTime: dt.datetime | None = Field(
        None, description="The newest slot handled, whether it ran or was missed."
    )
    lastSuccessfulTime: dt.datetime | None = Field(None, description="When a run last succeeded.")
    lastFailureTime: dt.datetime | None = Field(None, description="When a run last failed.")
    lastResult: str | None = Field(None, description="Phase of the newest finished run.")
    active: list[ActiveRun] = Field(default_factory=list, description="Runs not yet ended.")
    activeCount: int = Field(0, description="Number of active runs.")
    runs: list[Run] = Field(default_factory=list, description="Recent runs, newest last.")
    missedRuns: int = Field(0, description="Slots that got no run, since the job was created.")
    consecutiveFailures: int = Field(
        0, description="Runs that failed in a row since the last success (replaced runs aside)."
    )
    missedRunsIsLowerBound: bool = Field(
        False, description="True when missedRuns stopped counting during a long downtime."
    )
    lastMissed: MissedSlot | None = Field(None, description="The newest slot that got no run.")
    lastRegion: str | None = Field(None, description="Region of the newest run's node.")
    lastRunNow: str | None = Field(
        None, description="The last sked.dev/run-now value that started a run."
    )
    observedSchedule: str | None = Field(
        None,
        description=(
            "Schedule and time zone the slots were last computed for; when they change, "
            "slots of the old schedule are not caught up."
        ),
    )


def parse_spec(body_spec: dict[str, Any]) -> ScheduledJobSpec:
    """Validate a spec as read from the API server (raises pydantic.ValidationError)."""
    return ScheduledJobSpec.model_validate(body_spec)
