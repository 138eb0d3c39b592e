"""The CRD schema on the API server, and the pydantic model it is generated from, agree."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

import pydantic
import pytest
from kubernetes import client

from sked.spec import ScheduledJobSpec
from tests.integration.support import GROUP, PLURAL, VERSION, Jobs, job_manifest, namespace

pytestmark = pytest.mark.integration

MINIMAL: dict[str, Any] = {
    "schedule": "0 0 1 1 *",
    "template": {"spec": {"containers": [{"name": "main", "image": "busybox:1.37"}]}},
}


def changed(path: str, value: Any) -> dict[str, Any]:
    """Return MINIMAL with the dotted ``path`` set to ``value``, or removed for ``...``."""
    spec = copy.deepcopy(MINIMAL)
    *parents, last = path.split(".")
    target = spec
    for part in parents:
        target = target.setdefault(part, {})
    if value is ...:
        del target[last]
    else:
        target[last] = value
    return spec


# (id, spec, the field the API server's message names, or None when the spec is valid)
EXAMPLES: list[tuple[str, dict[str, Any], str | None]] = [
    ("limit-string", changed("retry.limit", "three"), "spec.retry.limit"),
    ("limit-negative", changed("retry.limit", -1), "spec.retry.limit"),
    ("limit-too-large", changed("retry.limit", 101), "spec.retry.limit"),
    ("factor-below-one", changed("retry.backoff.factor", 0.5), "spec.retry.backoff.factor"),
    ("history-negative", changed("history.failedRunsLimit", -1), "spec.history.failedRunsLimit"),
    ("policy-unknown", changed("concurrencyPolicy", "Sometimes"), "spec.concurrencyPolicy"),
    (
        "restart-on-failure",
        changed("template.spec.restartPolicy", "OnFailure"),
        "spec.template.spec.restartPolicy",
    ),
    ("active-deadline-zero", changed("activeDeadlineSeconds", 0), "spec.activeDeadlineSeconds"),
    (
        "starting-deadline-negative",
        changed("startingDeadlineSeconds", -1),
        "spec.startingDeadlineSeconds",
    ),
    ("schedule-missing", changed("schedule", ...), "spec.schedule"),
    ("schedule-empty", changed("schedule", ""), "spec.schedule"),
    ("schedule-and-schedules", changed("schedules", ["0 0 * * *"]), "spec.schedule"),
    ("template-missing", changed("template", ...), "spec.template"),
    (
        "containers-missing",
        changed("template.spec.containers", ...),
        "spec.template.spec.containers",
    ),
    ("containers-empty", changed("template.spec.containers", []), "spec.template.spec.containers"),
    (
        "image-missing",
        changed("template.spec.containers", [{"name": "main"}]),
        "spec.template.spec.containers[0].image",
    ),
    ("minimal", MINIMAL, None),
    ("policy-replace", changed("concurrencyPolicy", "Replace"), None),
    ("limit-zero", changed("retry.limit", 0), None),
    ("factor-fraction", changed("retry.backoff.factor", 1.5), None),
    ("seconds-schedule", changed("schedule", "*/10 * * * * *"), None),
    (
        "container-extras",
        changed(
            "template.spec.containers",
            [{"name": "main", "image": "busybox:1.37", "command": ["true"], "env": []}],
        ),
        None,
    ),
    ("pod-extras", changed("template.spec.nodeSelector", {"disk": "ssd"}), None),
]


@pytest.fixture(scope="module")
def schema_jobs(crd: None, api_client: client.ApiClient) -> Iterator[Jobs]:
    with namespace(api_client, "schema") as name:
        yield Jobs(api_client, name)


def create_dry_run(jobs: Jobs, spec: dict[str, Any]) -> dict[str, Any]:
    return jobs.custom.create_namespaced_custom_object(  # type: ignore[no-any-return]
        GROUP, VERSION, jobs.namespace, PLURAL, job_manifest("schema-check", spec), dry_run="All"
    )


def names_field(error: pydantic.ValidationError, field: str) -> bool:
    """Tell whether an error names ``field`` in its location, spelled as the API server does.

    A rule over several fields, such as the one between schedule and schedules, has no
    location of its own and names the fields in its message, so that counts too.
    """
    for item in error.errors():
        path = "spec"
        for part in item["loc"]:
            path += f"[{part}]" if isinstance(part, int) else f".{part}"
        if path.startswith(field) or field in item["msg"]:
            return True
    return False


@pytest.mark.parametrize(
    ("spec", "field"),
    [(spec, field) for _, spec, field in EXAMPLES],
    ids=[example_id for example_id, _, _ in EXAMPLES],
)
def test_crd_and_model_agree(schema_jobs: Jobs, spec: dict[str, Any], field: str | None) -> None:
    if field is None:
        created = create_dry_run(schema_jobs, spec)
        assert created["spec"]["schedule"] == spec["schedule"]
        ScheduledJobSpec.model_validate(spec)
        return

    with pytest.raises(client.ApiException) as rejected:
        create_dry_run(schema_jobs, spec)
    assert rejected.value.status == 422
    assert field in (rejected.value.body or "")

    with pytest.raises(pydantic.ValidationError) as invalid:
        ScheduledJobSpec.model_validate(spec)
    assert names_field(invalid.value, field), invalid.value.errors()


def test_minimal_spec_gets_defaults(schema_jobs: Jobs) -> None:
    schema_jobs.create("defaults", MINIMAL)
    spec = schema_jobs.get("defaults")["spec"]

    assert spec["timeZone"] == "UTC"
    assert spec["suspend"] is False
    assert spec["concurrencyPolicy"] == "Forbid"
    assert spec["retry"]["limit"] == 3
    assert spec["retry"]["backoff"] == {"initialSeconds": 10, "factor": 2, "maxSeconds": 360}
    assert spec["history"] == {"successfulRunsLimit": 3, "failedRunsLimit": 1}
    assert spec["template"]["spec"]["restartPolicy"] == "Never"

    # The model fills in the same defaults, so the operator reads the spec the same way.
    model = ScheduledJobSpec.model_validate(MINIMAL)
    assert model.timeZone == spec["timeZone"]
    assert model.suspend == spec["suspend"]
    assert model.concurrencyPolicy.value == spec["concurrencyPolicy"]
    assert model.retry.limit == spec["retry"]["limit"]
    assert model.retry.backoff.initialSeconds == spec["retry"]["backoff"]["initialSeconds"]
    assert model.retry.backoff.factor == spec["retry"]["backoff"]["factor"]
    assert model.retry.backoff.maxSeconds == spec["retry"]["backoff"]["maxSeconds"]
    assert model.history.successfulRunsLimit == spec["history"]["successfulRunsLimit"]
    assert model.history.failedRunsLimit == spec["history"]["failedRunsLimit"]
