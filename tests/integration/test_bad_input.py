"""Specs the CRD accepts but the operator cannot run: conditions and Events, no crash."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client

from tests.integration.helpers_extra import operator_log
from tests.integration.support import (
    Jobs,
    OperatorProcess,
    namespace,
    pod_template,
    wait_until,
)

pytestmark = pytest.mark.integration

# The operator posts an InvalidSchedule Event once per spec change, not once per
# reconcile. A reconcile loop would post several within this many seconds.
QUIET_SECONDS = 10

HEALTHY = {
    "schedule": "*/2 * * * * *",
    "history": {"successfulRunsLimit": 50},
    "template": pod_template({"kwok.sked.dev/succeed-after": "1s"}),
}

# (job name, spec fields over a valid spec, the bad value the message must quote)
BAD_SCHEDULES = [
    ("minute-61", {"schedule": "61 * * * *"}, "61 * * * *"),
    ("three-fields", {"schedule": "* * *"}, "* * *"),
    (
        "unknown-zone",
        {"schedule": "*/2 * * * * *", "timeZone": "America/Nowhere"},
        "America/Nowhere",
    ),
    ("cron-tz-prefix", {"schedule": "CRON_TZ=UTC 0 * * * *"}, "CRON_TZ=UTC"),
]

# A field the CRD passes through but Pod validation rejects.
BAD_TEMPLATE = {
    "spec": {
        "containers": [{"name": "main", "image": "busybox:1.37", "imagePullPolicy": "Sometimes"}]
    }
}


@dataclasses.dataclass
class BadInput:
    """One namespace with a healthy job and the bad ones next to it, shared by this module."""

    jobs: Jobs
    operator: OperatorProcess
    created: float
    log_offset: int

    def assert_no_traceback(self) -> None:
        new_lines = operator_log(self.operator)[self.log_offset :]
        assert "Traceback" not in new_lines


@pytest.fixture(scope="module")
def bad_input(operator: OperatorProcess, api_client: client.ApiClient) -> Iterator[BadInput]:
    log_offset = len(operator_log(operator))
    with namespace(api_client, "bad") as name:
        jobs = Jobs(api_client, name)
        jobs.create("healthy", HEALTHY)
        wait_until(lambda: jobs.pods("healthy"), timeout=15, message="a Pod of the healthy job")
        for job_name, fields, _ in BAD_SCHEDULES:
            jobs.create(job_name, {**HEALTHY, **fields})
        jobs.create("never-fires", {**HEALTHY, "schedule": "0 0 30 2 *"})
        jobs.create("bad-template", {**HEALTHY, "template": BAD_TEMPLATE})
        yield BadInput(jobs, operator, time.monotonic(), log_offset)


def true_condition(jobs: Jobs, name: str, kind: str) -> dict[str, Any] | None:
    condition = jobs.condition(name, kind)
    return condition if condition and condition["status"] == "True" else None


def wait_quiet_period(bad_input: BadInput) -> None:
    """Sleep until QUIET_SECONDS have passed since the bad jobs were created."""
    remaining = bad_input.created + QUIET_SECONDS - time.monotonic()
    if remaining > 0:
        time.sleep(remaining)


@pytest.mark.parametrize(
    ("name", "bad_value"),
    [(name, bad_value) for name, _, bad_value in BAD_SCHEDULES],
    ids=[name for name, _, _ in BAD_SCHEDULES],
)
def test_bad_schedule_reported_once(bad_input: BadInput, name: str, bad_value: str) -> None:
    jobs = bad_input.jobs
    condition = wait_until(
        lambda: true_condition(jobs, name, "InvalidSpec"),
        timeout=15,
        message=f"InvalidSpec True on {name}",
    )
    assert bad_value in condition["message"]
    assert condition["reason"] == "InvalidSchedule"

    wait_quiet_period(bad_input)
    status = jobs.status(name)
    assert status.get("nextScheduleTime") is None
    assert jobs.event_reasons(name).count("InvalidSchedule") == 1
    assert jobs.pods(name) == []
    bad_input.assert_no_traceback()


def test_healthy_job_keeps_running(bad_input: BadInput) -> None:
    jobs = bad_input.jobs
    for job_name, _, _ in BAD_SCHEDULES:
        wait_until(
            lambda job_name=job_name: true_condition(jobs, job_name, "InvalidSpec"),
            timeout=15,
            message=f"InvalidSpec True on {job_name}",
        )
    runs_before = len(jobs.status("healthy").get("runs", []))

    def two_more_runs() -> bool:
        return len(jobs.status("healthy").get("runs", [])) >= runs_before + 2

    wait_until(two_more_runs, timeout=15, message="two more runs of the healthy job")
    assert true_condition(jobs, "healthy", "Ready") is not None
    assert true_condition(jobs, "healthy", "InvalidSpec") is None
    bad_input.assert_no_traceback()


def test_never_firing_schedule_is_ready(bad_input: BadInput) -> None:
    jobs = bad_input.jobs
    ready = wait_until(
        lambda: true_condition(jobs, "never-fires", "Ready"),
        timeout=15,
        message="Ready True on never-fires",
    )
    assert ready["reason"] == "NeverFires"

    wait_quiet_period(bad_input)
    assert jobs.status("never-fires").get("nextScheduleTime") is None
    assert true_condition(jobs, "never-fires", "InvalidSpec") is None
    reasons = jobs.event_reasons("never-fires")
    assert "InvalidSchedule" not in reasons
    assert "InvalidSpec" not in reasons
    bad_input.assert_no_traceback()


def test_rejected_template_reported(bad_input: BadInput) -> None:
    jobs = bad_input.jobs
    # The premise: the API server rejects this Pod, though the CRD schema let it in.
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "dry-run-check"},
        "spec": {**BAD_TEMPLATE["spec"], "restartPolicy": "Never"},
    }
    with pytest.raises(client.ApiException) as rejected:
        jobs.core.create_namespaced_pod(jobs.namespace, pod, dry_run="All")
    assert rejected.value.status == 422

    condition = wait_until(
        lambda: true_condition(jobs, "bad-template", "InvalidSpec"),
        timeout=15,
        message="InvalidSpec True on bad-template",
    )
    assert "imagePullPolicy" in condition["message"]
    assert "Sometimes" in condition["message"]
    assert "API server" in condition["message"]

    wait_quiet_period(bad_input)
    assert jobs.status("bad-template").get("nextScheduleTime") is None
    assert jobs.event_reasons("bad-template").count("InvalidSpec") == 1
    assert jobs.pods("bad-template") == []
    bad_input.assert_no_traceback()


def test_fixed_schedule_clears_invalid_spec(jobs: Jobs) -> None:
    jobs.create("fixable", {**HEALTHY, "schedule": "61 * * * *"})
    wait_until(
        lambda: true_condition(jobs, "fixable", "InvalidSpec"),
        timeout=15,
        message="InvalidSpec True",
    )

    jobs.patch_spec("fixable", {"schedule": "*/2 * * * * *"})

    def valid() -> dict[str, Any] | None:
        condition = jobs.condition("fixable", "InvalidSpec")
        return condition if condition and condition["status"] == "False" else None

    wait_until(valid, timeout=10, message="InvalidSpec False after the fix")
    ready = true_condition(jobs, "fixable", "Ready")
    assert ready is not None
    assert ready["reason"] == "Scheduled"
    assert jobs.status("fixable").get("nextScheduleTime")
    wait_until(lambda: jobs.pods("fixable"), timeout=10, message="a Pod after the fix")
