"""Placement: from spec.placement to the Pod spec, and the planner's region fallback.

The first half builds Pods with ``build_pod`` and reads their spec. The second
half plans one run whose Pod is hand-built as Pending and Unschedulable, at
fixed times around spec.placement.fallbackAfterSeconds.
"""

from __future__ import annotations

import copy
import dataclasses
import datetime as dt
from typing import Any

import pytest

from sked import naming
from sked.placement import (
    INSTANCE_TYPE_LABEL,
    REGION_LABEL,
    ZONE_LABEL,
    fallback_steps,
    pinned_region,
)
from sked.planner import JobView, Plan, PodToCreate, PodView, Reason, plan
from sked.podspec import build_pod, template_overrides
from sked.schedule import parse_schedule
from sked.spec import Placement, RunPhase, ScheduledJobSpec, ScheduledJobStatus, parse_spec

SLOT = dt.datetime(2024, 5, 1, 11, 0, tzinfo=dt.UTC)
CREATED = dt.datetime(2024, 5, 1, 10, 0, 30, tzinfo=dt.UTC)
JOB_NAME = "train"
REQUIRED = "requiredDuringSchedulingIgnoredDuringExecution"
PREFERRED = "preferredDuringSchedulingIgnoredDuringExecution"
GPU_TOLERATION = {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}


def main_container(**fields: Any) -> dict[str, Any]:
    return {"name": "main", "image": "busybox:1.37", **fields}


def make_spec(
    placement: dict[str, Any] | None,
    *,
    template_spec: dict[str, Any] | None = None,
    **fields: Any,
) -> ScheduledJobSpec:
    body: dict[str, Any] = {
        "schedule": "0 * * * *",
        "template": {"spec": template_spec or {"containers": [main_container()]}},
    }
    if placement is not None:
        body["placement"] = placement
    body.update(fields)
    return parse_spec(body)


def build(spec: ScheduledJobSpec, *, step: int = 0) -> dict[str, Any]:
    return build_pod(
        namespace="ml",
        job_name=JOB_NAME,
        job_uid="5d2a-uid",
        spec=spec,
        slot=SLOT,
        attempt=1,
        step=step,
    )


def pod_spec(
    placement: dict[str, Any] | None,
    *,
    template_spec: dict[str, Any] | None = None,
    step: int = 0,
) -> dict[str, Any]:
    """Return the spec of the first attempt's Pod for ``placement`` over ``template_spec``."""
    return build(make_spec(placement, template_spec=template_spec), step=step)["spec"]  # type: ignore[no-any-return]


def required_terms(spec: dict[str, Any]) -> list[dict[str, Any]]:
    return spec["affinity"]["nodeAffinity"][REQUIRED]["nodeSelectorTerms"]  # type: ignore[no-any-return]


def preferred_terms(spec: dict[str, Any]) -> list[dict[str, Any]]:
    return spec["affinity"]["nodeAffinity"][PREFERRED]  # type: ignore[no-any-return]


def expression(key: str, *values: str) -> dict[str, Any]:
    return {"key": key, "operator": "In", "values": list(values)}


# -- resources ----------------------------------------------------------------------


def test_resources_become_requests():
    spec = pod_spec({"resources": {"cpu": "500m", "memory": "2Gi", "ephemeralStorage": "1Gi"}})

    resources = spec["containers"][0]["resources"]
    assert resources["requests"] == {"cpu": "500m", "memory": "2Gi", "ephemeral-storage": "1Gi"}
    assert "limits" not in resources


def test_integer_quantities_become_strings():
    spec = pod_spec({"resources": {"cpu": 2, "memory": 1073741824}})

    assert spec["containers"][0]["resources"]["requests"] == {"cpu": "2", "memory": "1073741824"}


def test_resources_go_to_first_container_only():
    template = {"containers": [main_container(), {"name": "sidecar", "image": "busybox:1.37"}]}

    spec = pod_spec({"resources": {"cpu": "1", "gpu": 1}}, template_spec=template)

    assert spec["containers"][0]["resources"]["requests"]["cpu"] == "1"
    assert "resources" not in spec["containers"][1]


def test_gpu_sets_request_limit_and_toleration():
    spec = pod_spec({"resources": {"gpu": 2}})

    resources = spec["containers"][0]["resources"]
    assert resources["requests"] == {"nvidia.com/gpu": "2"}
    assert resources["limits"] == {"nvidia.com/gpu": "2"}
    assert spec["tolerations"] == [GPU_TOLERATION]


def test_gpu_resource_name_is_configurable():
    spec = pod_spec({"resources": {"gpu": 1, "gpuResource": "amd.com/gpu"}})

    resources = spec["containers"][0]["resources"]
    assert resources["requests"] == {"amd.com/gpu": "1"}
    assert resources["limits"] == {"amd.com/gpu": "1"}
    assert spec["tolerations"] == [
        {"key": "amd.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
    ]


def test_zero_gpus_add_nothing():
    spec = pod_spec({"resources": {"gpu": 0}})

    assert "tolerations" not in spec
    assert "nvidia.com/gpu" not in spec["containers"][0].get("resources", {}).get("limits", {})
    assert "nvidia.com/gpu" not in spec["containers"][0].get("resources", {}).get("requests", {})


def test_template_gpu_toleration_is_not_doubled():
    own = {"key": "nvidia.com/gpu", "operator": "Equal", "value": "present", "effect": "NoSchedule"}
    template = {"tolerations": [own], "containers": [main_container()]}

    spec = pod_spec({"resources": {"gpu": 1}}, template_spec=template)

    assert spec["tolerations"] == [own]


def test_template_request_wins_and_is_reported():
    template = {"containers": [main_container(resources={"requests": {"cpu": "250m"}})]}
    placement = {"resources": {"cpu": "2", "memory": "1Gi"}}

    spec = pod_spec(placement, template_spec=template)
    kept = template_overrides(make_spec(placement, template_spec=template))

    assert spec["containers"][0]["resources"]["requests"] == {"cpu": "250m", "memory": "1Gi"}
    assert kept == ["cpu"]


def test_template_gpu_limit_wins_and_is_reported():
    template = {"containers": [main_container(resources={"limits": {"nvidia.com/gpu": "3"}})]}
    placement = {"resources": {"gpu": 1}}

    spec = pod_spec(placement, template_spec=template)
    kept = template_overrides(make_spec(placement, template_spec=template))

    resources = spec["containers"][0]["resources"]
    assert resources["limits"] == {"nvidia.com/gpu": "3"}
    assert "nvidia.com/gpu" not in resources.get("requests", {})
    assert kept == ["nvidia.com/gpu"]
    # The Pod still requests GPUs, so it still has to tolerate the GPU taint.
    assert spec["tolerations"] == [GPU_TOLERATION]


def test_template_cpu_limit_wins_over_request():
    # The API server defaults a missing request to the limit and rejects a request above
    # the limit, so a template with only a limit has set the request too.
    template = {"containers": [main_container(resources={"limits": {"cpu": "500m"}})]}
    placement = {"resources": {"cpu": "2"}}

    spec = pod_spec(placement, template_spec=template)
    kept = template_overrides(make_spec(placement, template_spec=template))

    resources = spec["containers"][0]["resources"]
    assert resources["limits"] == {"cpu": "500m"}
    assert "cpu" not in resources.get("requests", {})
    assert kept == ["cpu"]


def test_placement_without_conflicts_reports_nothing():
    placement = {
        "resources": {"cpu": "1", "gpu": 1},
        "regions": ["eu-west"],
        "nodeSelector": {"pool": "batch"},
    }

    assert template_overrides(make_spec(placement)) == []
    assert template_overrides(make_spec(None)) == []


# -- node selector, instance types and tolerations ----------------------------------


def test_node_selector_merges_and_template_wins():
    template = {"nodeSelector": {"disk": "ssd", "pool": "a"}, "containers": [main_container()]}
    placement = {"nodeSelector": {"pool": "b", "tier": "gold"}}

    spec = pod_spec(placement, template_spec=template)
    kept = template_overrides(make_spec(placement, template_spec=template))

    assert spec["nodeSelector"] == {"disk": "ssd", "pool": "a", "tier": "gold"}
    assert kept == ["nodeSelector pool"]


@pytest.mark.parametrize("mode", ["Required", "Preferred"])
def test_instance_types_are_always_required(mode):
    spec = pod_spec({"instanceTypes": ["small", "large"], "regions": ["eu-west"], "mode": mode})

    (term,) = required_terms(spec)
    assert expression(INSTANCE_TYPE_LABEL, "small", "large") in term["matchExpressions"]


def test_tolerations_are_appended():
    own = {"key": "dedicated", "operator": "Equal", "value": "ml", "effect": "NoSchedule"}
    added = {"key": "spot", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 30}
    template = {"tolerations": [own], "containers": [main_container()]}

    spec = pod_spec({"tolerations": [added], "resources": {"gpu": 1}}, template_spec=template)

    assert spec["tolerations"] == [own, GPU_TOLERATION, added]


# -- regions and zones --------------------------------------------------------------


def test_required_regions_and_zones():
    spec = pod_spec({"regions": ["eu-west", "us-east"], "zones": ["eu-west-b", "us-east-a"]})

    assert required_terms(spec) == [
        {
            "matchExpressions": [
                expression(REGION_LABEL, "eu-west", "us-east"),
                expression(ZONE_LABEL, "eu-west-b", "us-east-a"),
            ]
        }
    ]
    assert PREFERRED not in spec["affinity"]["nodeAffinity"]


def test_preferred_weights_follow_list_order():
    spec = pod_spec(
        {"mode": "Preferred", "regions": ["eu-west", "us-east", "ap-south"], "zones": ["eu-west-b"]}
    )

    assert preferred_terms(spec) == [
        {"weight": 100, "preference": {"matchExpressions": [expression(REGION_LABEL, "eu-west")]}},
        {"weight": 90, "preference": {"matchExpressions": [expression(REGION_LABEL, "us-east")]}},
        {"weight": 80, "preference": {"matchExpressions": [expression(REGION_LABEL, "ap-south")]}},
        {
            "weight": 100,
            "preference": {"matchExpressions": [expression(ZONE_LABEL, "eu-west-b")]},
        },
    ]
    assert REQUIRED not in spec["affinity"]["nodeAffinity"]


def test_preferred_weights_stay_in_api_range():
    regions = [f"region-{index}" for index in range(16)]

    spec = pod_spec({"mode": "Preferred", "regions": regions})

    weights = [term["weight"] for term in preferred_terms(spec)]
    # The API server accepts weights from 1 to 100 only.
    assert all(1 <= weight <= 100 for weight in weights)
    assert weights == sorted(weights, reverse=True)
    assert weights[:3] == [100, 90, 80]


def test_empty_placement_changes_nothing():
    template = {
        "nodeSelector": {"disk": "ssd"},
        "containers": [main_container(resources={"limits": {"cpu": "1"}})],
    }

    assert pod_spec({}, template_spec=template) == pod_spec(None, template_spec=template)


# -- fallback pinning ---------------------------------------------------------------

CHAIN = {"regions": ["eu-west", "us-east", "ap-south"], "fallbackAfterSeconds": 60}


@pytest.mark.parametrize(
    ("placement", "step", "expected"),
    [
        pytest.param(None, 0, None, id="no placement"),
        pytest.param({"regions": ["eu-west", "us-east"]}, 0, None, id="no fallbackAfterSeconds"),
        pytest.param(
            {"regions": ["eu-west"], "fallbackAfterSeconds": 60}, 0, None, id="one region"
        ),
        pytest.param({**CHAIN, "mode": "Preferred"}, 0, None, id="preferred"),
        pytest.param(CHAIN, 0, "eu-west", id="step 0"),
        pytest.param(CHAIN, 1, "us-east", id="step 1"),
        pytest.param(CHAIN, 2, "ap-south", id="last step"),
        pytest.param(CHAIN, 7, "ap-south", id="past the last step"),
    ],
)
def test_pinned_region(placement, step, expected):
    model = Placement.model_validate(placement) if placement is not None else None

    assert pinned_region(model, step) == expected


@pytest.mark.parametrize(
    ("placement", "expected"),
    [
        pytest.param(None, 1, id="no placement"),
        pytest.param({"regions": ["eu-west", "us-east"]}, 1, id="no fallbackAfterSeconds"),
        pytest.param({**CHAIN, "mode": "Preferred"}, 1, id="preferred"),
        pytest.param(CHAIN, 3, id="three regions"),
    ],
)
def test_fallback_steps(placement, expected):
    model = Placement.model_validate(placement) if placement is not None else None

    assert fallback_steps(model) == expected


@pytest.mark.parametrize(("step", "region"), [(0, "eu-west"), (1, "us-east"), (2, "ap-south")])
def test_fallback_step_pins_its_region(step, region):
    pod = build(make_spec({**CHAIN, "zones": ["eu-west-b", "us-east-a"]}), step=step)

    (term,) = required_terms(pod["spec"])
    assert term["matchExpressions"] == [
        expression(REGION_LABEL, region),
        expression(ZONE_LABEL, "eu-west-b", "us-east-a"),
    ]
    assert pod["metadata"]["name"] == naming.pod_name(JOB_NAME, SLOT, 1, step=step)


def test_fallback_step_is_annotated():
    first = build(make_spec(CHAIN), step=0)
    second = build(make_spec(CHAIN), step=1)

    assert naming.ANNOTATION_PLACEMENT_STEP not in first["metadata"]["annotations"]
    assert second["metadata"]["annotations"][naming.ANNOTATION_PLACEMENT_STEP] == "1"
    assert second["metadata"]["name"].endswith("-1-f1")


# -- the template's own affinity ----------------------------------------------------

GPU_TERM = {"matchExpressions": [expression("nvidia.com/gpu.present", "true")]}
LARGE_TERM = {
    "matchExpressions": [expression(INSTANCE_TYPE_LABEL, "large")],
    "matchFields": [expression("metadata.name", "kwok-eu-west-b-large")],
}
TEMPLATE_PREFERENCE = {
    "weight": 7,
    "preference": {"matchExpressions": [expression("disk", "ssd")]},
}


def affinity_template() -> dict[str, Any]:
    return {
        "affinity": {
            "nodeAffinity": {
                REQUIRED: {"nodeSelectorTerms": copy.deepcopy([GPU_TERM, LARGE_TERM])},
                PREFERRED: [copy.deepcopy(TEMPLATE_PREFERENCE)],
            },
            "podAntiAffinity": {
                PREFERRED: [
                    {
                        "weight": 50,
                        "podAffinityTerm": {
                            "topologyKey": "kubernetes.io/hostname",
                            "labelSelector": {"matchLabels": {"app": "train"}},
                        },
                    }
                ]
            },
        },
        "containers": [main_container()],
    }


def test_every_template_term_gets_placement():
    spec = pod_spec(
        {"regions": ["eu-west", "us-east"], "instanceTypes": ["large", "gpu"]},
        template_spec=affinity_template(),
    )

    added = [
        expression(REGION_LABEL, "eu-west", "us-east"),
        expression(INSTANCE_TYPE_LABEL, "large", "gpu"),
    ]
    # Terms are ORed, so each must carry the placement, or one would bypass it.
    assert required_terms(spec) == [
        {"matchExpressions": GPU_TERM["matchExpressions"] + added},
        {
            "matchExpressions": LARGE_TERM["matchExpressions"] + added,
            "matchFields": LARGE_TERM["matchFields"],
        },
    ]


def test_fallback_pin_reaches_every_template_term():
    spec = pod_spec(CHAIN, template_spec=affinity_template(), step=1)

    for term in required_terms(spec):
        assert term["matchExpressions"][-1] == expression(REGION_LABEL, "us-east")


def test_template_preferences_kept_under_required():
    spec = pod_spec({"regions": ["eu-west"]}, template_spec=affinity_template())

    assert preferred_terms(spec) == [TEMPLATE_PREFERENCE]


def test_template_preferences_come_first_under_preferred():
    spec = pod_spec(
        {"mode": "Preferred", "regions": ["us-east"]}, template_spec=affinity_template()
    )

    assert preferred_terms(spec) == [
        TEMPLATE_PREFERENCE,
        {"weight": 100, "preference": {"matchExpressions": [expression(REGION_LABEL, "us-east")]}},
    ]
    # Preferred regions leave the template's required terms as they were.
    assert required_terms(spec) == [GPU_TERM, LARGE_TERM]


def test_nothing_the_template_sets_is_dropped():
    template = affinity_template()
    template["nodeSelector"] = {"disk": "ssd"}
    template["tolerations"] = [{"key": "dedicated", "operator": "Exists"}]
    template["volumes"] = [{"name": "scratch", "emptyDir": {}}]
    template["containers"][0]["env"] = [{"name": "MODE", "value": "full"}]
    template["containers"][0]["resources"] = {
        "requests": {"memory": "1Gi"},
        "limits": {"memory": "2Gi", "example.com/fpga": "1"},
    }
    template["containers"].append({"name": "sidecar", "image": "busybox:1.37"})
    placement = {
        "resources": {"cpu": "1", "memory": "4Gi", "gpu": 1},
        "regions": ["eu-west", "us-east"],
        "zones": ["eu-west-b"],
        "nodeSelector": {"tier": "gold"},
        "instanceTypes": ["large"],
        "tolerations": [{"key": "spot", "operator": "Exists"}],
    }
    original = copy.deepcopy(template)

    spec = pod_spec(placement, template_spec=template)

    assert spec["volumes"] == original["volumes"]
    assert spec["affinity"]["podAntiAffinity"] == original["affinity"]["podAntiAffinity"]
    assert preferred_terms(spec) == original["affinity"]["nodeAffinity"][PREFERRED]
    assert spec["nodeSelector"] == {"disk": "ssd", "tier": "gold"}
    assert spec["tolerations"][0] == original["tolerations"][0]
    main, sidecar = spec["containers"]
    assert main["env"] == original["containers"][0]["env"]
    assert main["resources"]["requests"] == {"memory": "1Gi", "cpu": "1", "nvidia.com/gpu": "1"}
    assert main["resources"]["limits"] == {
        "memory": "2Gi",
        "example.com/fpga": "1",
        "nvidia.com/gpu": "1",
    }
    assert sidecar == {
        **original["containers"][1],
        "terminationMessagePolicy": "FallbackToLogsOnError",
    }
    for term, own in zip(
        required_terms(spec),
        original["affinity"]["nodeAffinity"][REQUIRED]["nodeSelectorTerms"],
        strict=True,
    ):
        count = len(own["matchExpressions"])
        assert term["matchExpressions"][:count] == own["matchExpressions"]
        assert term.get("matchFields") == own.get("matchFields")


def test_building_leaves_spec_unchanged():
    spec = make_spec(
        {
            "resources": {"gpu": 1},
            "regions": ["eu-west"],
            "tolerations": [{"key": "spot", "operator": "Exists"}],
        },
        template_spec=affinity_template(),
    )
    before = spec.model_dump(mode="json")

    first = build(spec)
    template_overrides(spec)
    second = build(spec)

    # A second Pod must not carry the first one's additions twice.
    assert first == second
    assert spec.model_dump(mode="json") == before


# -- the planner: fallback to the next region ---------------------------------------

FALLBACK = {
    "regions": ["eu-west", "us-east"],
    "fallbackAfterSeconds": 60,
    "resources": {"cpu": "8"},
}
UNSCHEDULABLE = "0/4 nodes are available: 4 Insufficient cpu."


def after(seconds: float) -> dt.datetime:
    return SLOT + dt.timedelta(seconds=seconds)


def fallback_spec(placement: dict[str, Any] | None = None, **fields: Any) -> ScheduledJobSpec:
    return make_spec(FALLBACK if placement is None else placement, **fields)


@dataclasses.dataclass
class Job:
    """One ScheduledJob whose status each plan writes back; the test sets its Pods."""

    spec: ScheduledJobSpec
    status: ScheduledJobStatus = dataclasses.field(default_factory=ScheduledJobStatus)
    pods: list[PodView] = dataclasses.field(default_factory=list)

    def plan(self, now: dt.datetime) -> Plan:
        view = JobView(
            namespace="ml",
            name=JOB_NAME,
            uid="5d2a-uid",
            generation=1,
            created=CREATED,
            spec=self.spec,
            status=self.status,
        )
        schedule = parse_schedule(self.spec.schedule or "", self.spec.timeZone)
        result = plan(view, self.pods, now=now, schedule=schedule)
        self.status = result.status
        return result

    def attempt(self, number: int = 1):
        (run,) = self.status.runs
        return run.attempts[number - 1]


def pending(
    *,
    step: int = 0,
    created: dt.datetime = SLOT,
    attempt: int = 1,
    reason: str | None = "Unschedulable",
    message: str | None = UNSCHEDULABLE,
) -> PodView:
    return PodView(
        naming.pod_name(JOB_NAME, SLOT, attempt, step=step),
        SLOT,
        attempt,
        "Pending",
        created=created,
        pending_reason=reason,
        pending_message=message,
        step=step,
    )


def started(spec: ScheduledJobSpec | None = None) -> Job:
    """Return a job whose first attempt was created at SLOT and is Unschedulable."""
    job = Job(spec or fallback_spec())
    result = job.plan(SLOT)
    assert result.creates == [PodToCreate(slot=SLOT, attempt=1)]
    job.pods = [pending()]
    return job


def reasons(result: Plan) -> list[Reason]:
    return [event.reason for event in result.events]


def test_unschedulable_before_limit_waits():
    job = started()

    result = job.plan(after(59))

    assert result.deletes == []
    assert result.creates == []
    assert Reason.PLACEMENT_FALLBACK not in reasons(result)
    assert result.wake_at == after(60)
    assert job.attempt().step == 0


def test_unschedulable_at_limit_falls_back():
    job = started()

    result = job.plan(after(60))

    assert result.deletes == [pending().name]
    assert result.creates == [PodToCreate(slot=SLOT, attempt=1, step=1)]
    assert reasons(result) == [Reason.PLACEMENT_FALLBACK]
    (run,) = job.status.runs
    assert len(run.attempts) == 1
    assert run.phase is RunPhase.PENDING
    attempt = job.attempt()
    assert attempt.attempt == 1
    assert attempt.step == 1
    assert attempt.podName == naming.pod_name(JOB_NAME, SLOT, 1, step=1)
    assert attempt.fallbackFrom == "eu-west"
    assert attempt.fallbackReason == UNSCHEDULABLE
    assert attempt.stepStartTime == after(60)
    assert attempt.startTime == SLOT
    assert job.status.active[0].podName == attempt.podName


def test_fallback_event_names_both_regions():
    job = started()

    (event,) = job.plan(after(60)).events

    assert "eu-west" in event.message
    assert "us-east" in event.message
    assert event.warning is True
    assert event.slot == SLOT
    assert event.attempt == 1


def test_fallback_step_limit_counts_from_its_own_pod():
    job = started()
    job.plan(after(60))
    job.pods = [pending(step=1, created=after(60))]

    early = job.plan(after(119))
    due = job.plan(after(120))

    assert early.deletes == []
    assert early.wake_at == after(120)
    assert due.deletes == [pending(step=1).name]


def test_last_region_fails_attempt_unschedulable():
    job = started(fallback_spec(retry={"limit": 0}))
    job.plan(after(60))
    job.pods = [pending(step=1, created=after(60))]

    result = job.plan(after(120))

    attempt = job.attempt()
    assert attempt.phase is RunPhase.FAILED
    assert attempt.reason == "Unschedulable"
    assert "us-east" in (attempt.message or "")
    assert attempt.finishTime == after(120)
    assert result.deletes == [pending(step=1).name]
    assert result.creates == []
    (run,) = job.status.runs
    assert run.phase is RunPhase.FAILED
    assert run.reason == "RetriesExhausted"
    assert Reason.PLACEMENT_FALLBACK not in reasons(result)
    assert reasons(result) == [Reason.RETRIES_EXHAUSTED]


def test_retry_after_fallback_starts_at_first_region():
    job = started(fallback_spec(retry={"limit": 1, "backoff": {"initialSeconds": 10}}))
    job.plan(after(60))
    job.pods = [pending(step=1, created=after(60))]
    failed = job.plan(after(120))

    retry = job.plan(after(130))

    assert reasons(failed) == [Reason.RETRY_SCHEDULED]
    assert retry.creates == [PodToCreate(slot=SLOT, attempt=2, step=0)]
    second = job.attempt(2)
    assert second.step == 0
    assert second.podName == naming.pod_name(JOB_NAME, SLOT, 2)
    assert second.fallbackFrom is None


def test_three_regions_fall_back_in_order():
    job = started(fallback_spec({**CHAIN, "resources": {"cpu": "8"}}))
    first = job.plan(after(60))
    job.pods = [pending(step=1, created=after(60))]

    second = job.plan(after(120))

    assert first.creates == [PodToCreate(slot=SLOT, attempt=1, step=1)]
    assert second.creates == [PodToCreate(slot=SLOT, attempt=1, step=2)]
    assert job.attempt().fallbackFrom == "us-east"
    (event,) = second.events
    assert "us-east" in event.message
    assert "ap-south" in event.message


@pytest.mark.parametrize(
    ("reason", "phase"),
    [
        pytest.param("ImagePullBackOff", "Pending", id="image pull"),
        pytest.param(None, "Pending", id="scheduled, not started"),
        pytest.param(None, "Running", id="running"),
    ],
)
def test_other_states_do_not_fall_back(reason, phase):
    job = started()
    job.pods = [dataclasses.replace(pending(reason=reason), phase=phase)]

    result = job.plan(after(600))

    assert result.deletes == []
    assert result.creates == []
    assert job.attempt().step == 0


@pytest.mark.parametrize(
    "placement",
    [
        pytest.param({**FALLBACK, "mode": "Preferred"}, id="preferred"),
        pytest.param({"regions": ["eu-west", "us-east"]}, id="no fallbackAfterSeconds"),
        pytest.param({"regions": ["eu-west"], "fallbackAfterSeconds": 60}, id="one region"),
    ],
)
def test_no_chain_means_no_fallback(placement):
    job = started(fallback_spec(placement))

    result = job.plan(after(600))

    assert result.deletes == []
    assert result.creates == []
    assert job.attempt().phase is RunPhase.PENDING


def test_restart_adopts_fallback_pod():
    job = started()
    before = job.status.model_copy(deep=True)
    job.plan(after(60))
    # The operator stopped after creating the step 1 Pod but before writing status.
    job.status = before
    job.pods = [pending(step=1, created=after(60))]

    result = job.plan(after(61))

    assert result.creates == []
    assert result.deletes == []
    attempt = job.attempt()
    assert attempt.step == 1
    assert attempt.podName == pending(step=1).name
    assert attempt.stepStartTime == after(60)


# -- the planner: where the Pod landed ----------------------------------------------


def bound(pod: PodView, node: str, region: str | None, zone: str | None) -> PodView:
    return dataclasses.replace(
        pod,
        phase="Running",
        pending_reason=None,
        pending_message=None,
        node=node,
        region=region,
        zone=zone,
    )


def test_placed_event_once_when_node_appears():
    job = started()
    job.pods = [bound(pending(), "kwok-eu-west-b-large", "eu-west", "eu-west-b")]

    first = job.plan(after(5))
    again = job.plan(after(6))

    assert reasons(first) == [Reason.PLACED]
    (event,) = first.events
    assert "kwok-eu-west-b-large" in event.message
    assert "eu-west" in event.message
    assert "eu-west-b" in event.message
    assert reasons(again) == []
    attempt = job.attempt()
    assert (attempt.node, attempt.region, attempt.zone) == (
        "kwok-eu-west-b-large",
        "eu-west",
        "eu-west-b",
    )
    assert job.status.lastRegion == "eu-west"


def test_unbound_pod_records_no_node():
    job = started()

    result = job.plan(after(5))

    assert reasons(result) == []
    assert job.attempt().node is None
    assert job.status.lastRegion is None


def test_node_without_region_keeps_last_region():
    job = started()
    job.status.lastRegion = "us-east"
    job.pods = [bound(pending(), "plain-node", None, None)]

    result = job.plan(after(5))

    (event,) = result.events
    assert event.reason is Reason.PLACED
    assert "plain-node" in event.message
    assert job.attempt().node == "plain-node"
    assert job.attempt().region is None
    assert job.status.lastRegion == "us-east"


def test_fallback_pod_placement_recorded():
    job = started()
    job.plan(after(60))
    job.pods = [
        bound(pending(step=1, created=after(60)), "kwok-us-east-a-small", "us-east", "us-east-a")
    ]

    result = job.plan(after(62))

    assert reasons(result) == [Reason.PLACED]
    attempt = job.attempt()
    assert attempt.step == 1
    assert attempt.fallbackFrom == "eu-west"
    assert attempt.region == "us-east"
    assert attempt.zone == "us-east-a"
    assert job.status.lastRegion == "us-east"
