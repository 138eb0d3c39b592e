"""Validation and defaults of the ScheduledJob spec."""

from __future__ import annotations

from typing import Any

import pydantic
import pytest

from sked.spec import ConcurrencyPolicy, parse_spec


def minimal_body(**fields: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "schedule": "0 * * * *",
        "template": {"spec": {"containers": [{"name": "main", "image": "busybox:1.36"}]}},
    }
    body.update(fields)
    return body


def template_body(**pod_fields: Any) -> dict[str, Any]:
    pod: dict[str, Any] = {"containers": [{"name": "main", "image": "busybox:1.36"}]}
    pod.update(pod_fields)
    return minimal_body(template={"spec": pod})


def error_locations(raised: pytest.ExceptionInfo[pydantic.ValidationError]) -> list[tuple]:
    return [error["loc"] for error in raised.value.errors()]


def test_spec_defaults():
    spec = parse_spec(minimal_body())

    assert spec.timeZone == "UTC"
    assert spec.suspend is False
    assert spec.concurrencyPolicy is ConcurrencyPolicy.FORBID
    assert spec.startingDeadlineSeconds is None
    assert spec.activeDeadlineSeconds is None
    assert spec.retry.limit == 3
    assert spec.retry.backoff.initialSeconds == 10
    assert spec.retry.backoff.factor == 2
    assert spec.retry.backoff.maxSeconds == 360
    assert spec.history.successfulRunsLimit == 3
    assert spec.history.failedRunsLimit == 1
    assert spec.template.spec.restartPolicy == "Never"
    assert spec.template.metadata == {}


def test_spec_partial_nested_fields_keep_other_defaults():
    spec = parse_spec(minimal_body(retry={"limit": 5, "backoff": {"factor": 3}}))

    assert spec.retry.limit == 5
    assert spec.retry.backoff.factor == 3
    assert spec.retry.backoff.initialSeconds == 10
    assert spec.retry.backoff.maxSeconds == 360


@pytest.mark.parametrize(
    "policy", ["Allow", "Forbid", "Replace"], ids=["allow", "forbid", "replace"]
)
def test_spec_accepts_concurrency_policy(policy):
    assert parse_spec(minimal_body(concurrencyPolicy=policy)).concurrencyPolicy == policy


@pytest.mark.parametrize(
    ("body", "location"),
    [
        (template_body(restartPolicy="OnFailure"), ("template", "spec", "restartPolicy")),
        (template_body(restartPolicy="Always"), ("template", "spec", "restartPolicy")),
        (minimal_body(retry={"limit": -1}), ("retry", "limit")),
        (minimal_body(history={"successfulRunsLimit": -1}), ("history", "successfulRunsLimit")),
        (minimal_body(history={"failedRunsLimit": -1}), ("history", "failedRunsLimit")),
        (minimal_body(startingDeadlineSeconds=-5), ("startingDeadlineSeconds",)),
        (minimal_body(activeDeadlineSeconds=0), ("activeDeadlineSeconds",)),
        (
            minimal_body(retry={"backoff": {"initialSeconds": -1}}),
            ("retry", "backoff", "initialSeconds"),
        ),
        (minimal_body(retry={"backoff": {"factor": 0.5}}), ("retry", "backoff", "factor")),
        (minimal_body(concurrencyPolicy="Sometimes"), ("concurrencyPolicy",)),
        (minimal_body(startingDeadlineSeconds="soon"), ("startingDeadlineSeconds",)),
        (template_body(containers=[]), ("template", "spec", "containers")),
        (minimal_body(schedule=""), ("schedule",)),
        (minimal_body(timeZone=""), ("timeZone",)),
        (minimal_body(startingDeadline=60), ("startingDeadline",)),
        (minimal_body(retry={"limit": 1, "tries": 2}), ("retry", "tries")),
    ],
    ids=[
        "restart-on-failure",
        "restart-always",
        "negative-retry-limit",
        "negative-successful-history",
        "negative-failed-history",
        "negative-starting-deadline",
        "zero-active-deadline",
        "negative-initial-backoff",
        "shrinking-backoff-factor",
        "unknown-concurrency-policy",
        "word-for-number",
        "no-containers",
        "empty-schedule",
        "empty-time-zone",
        "unknown-spec-field",
        "unknown-retry-field",
    ],
)
def test_spec_rejects(body, location):
    with pytest.raises(pydantic.ValidationError) as raised:
        parse_spec(body)

    assert location in error_locations(raised)


# The CRD declares these fields as integer and boolean, so the API server
# rejects a JSON string there. The model must reject it too.
@pytest.mark.parametrize(
    ("body", "location"),
    [
        (minimal_body(startingDeadlineSeconds="10"), ("startingDeadlineSeconds",)),
        (minimal_body(retry={"limit": "2"}), ("retry", "limit")),
        (minimal_body(suspend="true"), ("suspend",)),
    ],
    ids=["digits-for-number", "digits-for-limit", "word-for-boolean"],
)
def test_spec_rejects_string_for_scalar(body, location):
    with pytest.raises(pydantic.ValidationError) as raised:
        parse_spec(body)

    assert location in error_locations(raised)


@pytest.mark.parametrize(
    "body",
    [
        minimal_body(schedules=["0 * * * *"]),
        {key: value for key, value in minimal_body().items() if key != "schedule"},
    ],
    ids=["both", "neither"],
)
def test_spec_needs_exactly_one_schedule_field(body):
    with pytest.raises(pydantic.ValidationError, match=r"exactly one of spec\.schedule"):
        parse_spec(body)


def test_spec_rejects_container_without_image():
    body = minimal_body(template={"spec": {"containers": [{"name": "main"}]}})

    with pytest.raises(pydantic.ValidationError) as raised:
        parse_spec(body)

    assert ("template", "spec", "containers", 0, "image") in error_locations(raised)


def test_spec_accepts_unknown_pod_fields():
    body = template_body(
        nodeSelector={"disk": "ssd"},
        serviceAccountName="reporter",
        containers=[
            {
                "name": "main",
                "image": "busybox:1.36",
                "args": ["echo", "hello"],
                "resources": {"limits": {"cpu": "1"}},
            }
        ],
    )

    dumped = parse_spec(body).template.spec.model_dump()

    assert dumped["nodeSelector"] == {"disk": "ssd"}
    assert dumped["serviceAccountName"] == "reporter"
    assert dumped["containers"][0]["args"] == ["echo", "hello"]
    assert dumped["containers"][0]["resources"] == {"limits": {"cpu": "1"}}


def test_spec_accepts_template_metadata():
    body = minimal_body()
    body["template"]["metadata"] = {"labels": {"app": "report"}, "annotations": {"a": "b"}}

    assert parse_spec(body).template.metadata == {
        "labels": {"app": "report"},
        "annotations": {"a": "b"},
    }
