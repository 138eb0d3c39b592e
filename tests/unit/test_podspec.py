"""The Pod manifest of one attempt, built from a ScheduledJob's template."""

from __future__ import annotations

import copy
import datetime as dt
import re
from typing import Any

import pytest

from sked import naming
from sked.podspec import build_pod
from sked.spec import ScheduledJobSpec, parse_spec

SLOT = dt.datetime(2024, 5, 1, 11, 0, tzinfo=dt.UTC)
LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")


def make_spec(**fields: Any) -> ScheduledJobSpec:
    body: dict[str, Any] = {
        "schedule": "0 * * * *",
        "template": {
            "metadata": {
                "namespace": "somewhere-else",
                "labels": {"app": "report"},
                "annotations": {"team": "data"},
            },
            "spec": {
                "nodeSelector": {"disk": "ssd"},
                "volumes": [{"name": "scratch", "emptyDir": {}}],
                "containers": [
                    {
                        "name": "main",
                        "image": "busybox:1.36",
                        "env": [{"name": "MODE", "value": "full"}],
                        "resources": {"limits": {"cpu": "500m", "memory": "64Mi"}},
                    },
                    {
                        "name": "sidecar",
                        "image": "busybox:1.36",
                        "terminationMessagePolicy": "File",
                    },
                ],
            },
        },
    }
    body.update(fields)
    return parse_spec(body)


def build(spec: ScheduledJobSpec | None = None, *, job_name: str = "report", attempt: int = 1):
    return build_pod(
        namespace="team-a",
        job_name=job_name,
        job_uid="0b7e-uid",
        spec=spec or make_spec(),
        slot=SLOT,
        attempt=attempt,
    )


def test_pod_namespace_is_the_jobs():
    assert build()["metadata"]["namespace"] == "team-a"


def test_pod_name_derives_from_slot_and_attempt():
    assert build(attempt=3)["metadata"]["name"] == naming.pod_name("report", SLOT, 3)


def test_pod_owner_reference():
    assert build()["metadata"]["ownerReferences"] == [
        {
            "apiVersion": "sked.dev/v1alpha1",
            "kind": "ScheduledJob",
            "name": "report",
            "uid": "0b7e-uid",
            "controller": True,
            "blockOwnerDeletion": True,
        }
    ]


def test_pod_labels_keep_template_labels():
    labels = build()["metadata"]["labels"]

    assert labels["app"] == "report"
    assert labels["sked.dev/scheduledjob"] == "report"


def test_pod_label_of_long_job_name_is_valid():
    job_name = "r" * 200
    labels = build(job_name=job_name)["metadata"]["labels"]
    value = labels["sked.dev/scheduledjob"]

    assert len(value) <= 63
    assert LABEL_VALUE.match(value)
    assert value == naming.label_value(job_name)


def test_pod_annotations():
    annotations = build(attempt=2)["metadata"]["annotations"]

    assert annotations["team"] == "data"
    assert annotations["sked.dev/scheduled-time"] == "2024-05-01T11:00:00Z"
    assert annotations["sked.dev/attempt"] == "2"


def test_pod_scheduled_time_is_utc():
    new_york = dt.timezone(dt.timedelta(hours=-4))
    pod = build_pod(
        namespace="team-a",
        job_name="report",
        job_uid="0b7e-uid",
        spec=make_spec(),
        slot=SLOT.astimezone(new_york),
        attempt=1,
    )

    assert pod["metadata"]["annotations"]["sked.dev/scheduled-time"] == "2024-05-01T11:00:00Z"


def test_pod_restart_policy_is_never():
    assert build()["spec"]["restartPolicy"] == "Never"


def test_termination_message_policy_default_and_kept():
    main, sidecar = build()["spec"]["containers"]

    assert main["terminationMessagePolicy"] == "FallbackToLogsOnError"
    assert sidecar["terminationMessagePolicy"] == "File"


def test_pod_keeps_extra_fields():
    spec = build()["spec"]
    main = spec["containers"][0]

    assert main["image"] == "busybox:1.36"
    assert main["env"] == [{"name": "MODE", "value": "full"}]
    assert main["resources"] == {"limits": {"cpu": "500m", "memory": "64Mi"}}
    assert spec["nodeSelector"] == {"disk": "ssd"}
    assert spec["volumes"] == [{"name": "scratch", "emptyDir": {}}]


@pytest.mark.parametrize(("deadline", "expected"), [(45, 45), (None, None)], ids=["set", "unset"])
def test_pod_active_deadline_from_spec(deadline, expected):
    spec = build(make_spec(activeDeadlineSeconds=deadline))["spec"]

    assert spec.get("activeDeadlineSeconds") == expected


def test_build_pod_leaves_template_unchanged():
    spec = make_spec()
    before = copy.deepcopy(spec.model_dump())

    build(spec)

    assert spec.model_dump() == before


def test_pod_manifest_kind():
    pod = build()

    assert pod["apiVersion"] == "v1"
    assert pod["kind"] == "Pod"
