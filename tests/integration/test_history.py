"""History limits on runs and Pods, and deleting a ScheduledJob with or without the operator."""

from __future__ import annotations

from typing import Any

import pytest
from kubernetes import client
from prometheus_client.parser import text_string_to_metric_families

from tests.integration.helpers_extra import start_operator
from tests.integration.support import Jobs, OperatorProcess, pod_template, wait_until

pytestmark = pytest.mark.integration


def runs_in_phase(jobs: Jobs, name: str, phase: str) -> list[dict[str, Any]]:
    return [run for run in jobs.status(name).get("runs", []) if run["phase"] == phase]


def pods_in_phase(jobs: Jobs, name: str, phase: str) -> list[client.V1Pod]:
    return [
        pod
        for pod in jobs.pods(name)
        if pod.status.phase == phase and pod.metadata.deletion_timestamp is None
    ]


def succeeded_total(operator: OperatorProcess, namespace: str, name: str) -> float:
    """Return sked_runs_finished_total for the succeeded runs of one ScheduledJob."""
    labels = {"namespace": namespace, "scheduledjob": name, "result": "succeeded"}
    for family in text_string_to_metric_families(operator.scrape()):
        for sample in family.samples:
            if sample.name == "sked_runs_finished_total" and sample.labels == labels:
                return sample.value
    return 0.0


def test_history_limits_trim_runs_and_pods(jobs: Jobs, operator: OperatorProcess) -> None:
    jobs.create(
        "trimmed",
        {
            "schedule": "*/2 * * * * *",
            "retry": {"limit": 0},
            "history": {"successfulRunsLimit": 2, "failedRunsLimit": 1},
            "template": pod_template({"kwok.sked.dev/succeed-after": "1s"}),
        },
    )

    def succeeded_runs(count: int) -> bool:
        return succeeded_total(operator, jobs.namespace, "trimmed") >= count

    wait_until(lambda: succeeded_runs(4), timeout=30, message="four succeeded runs")

    # From now on every run fails, so both limits come into play.
    jobs.patch_spec("trimmed", {"template": pod_template({"kwok.sked.dev/fail-after": "1s"})})

    def failed_events(count: int) -> bool:
        return jobs.event_reasons("trimmed").count("RetriesExhausted") >= count

    wait_until(lambda: failed_events(3), timeout=30, message="three failed runs")

    assert len(runs_in_phase(jobs, "trimmed", "Succeeded")) == 2
    assert len(runs_in_phase(jobs, "trimmed", "Failed")) == 1

    # Pods of dropped runs are deleted, so the finished Pods settle at the limits.
    def pods_at_limits() -> bool:
        succeeded = pods_in_phase(jobs, "trimmed", "Succeeded")
        failed = pods_in_phase(jobs, "trimmed", "Failed")
        return len(succeeded) == 2 and len(failed) == 1

    wait_until(pods_at_limits, timeout=10, message="2 Succeeded and 1 Failed Pods")

    # Every remaining Pod belongs to a run that status still contains.
    status = jobs.status("trimmed")
    in_status = {attempt["podName"] for run in status["runs"] for attempt in run["attempts"]}
    remaining = {
        pod.metadata.name for pod in jobs.pods("trimmed") if pod.metadata.deletion_timestamp is None
    }
    assert remaining <= in_status
    assert len(status["runs"]) <= 2 + 1 + status["activeCount"]


def test_deleted_job_pods_garbage_collected(jobs: Jobs) -> None:
    jobs.create(
        "doomed",
        {"schedule": "*/2 * * * * *", "concurrencyPolicy": "Allow", "template": pod_template()},
    )
    wait_until(lambda: len(jobs.pods("doomed")) >= 2, timeout=20, message="two Pods")

    jobs.delete("doomed")

    wait_until(lambda: jobs.pods("doomed") == [], timeout=60, message="no Pods of the job")


def test_delete_works_while_operator_stopped(jobs: Jobs, operator: OperatorProcess) -> None:
    jobs.create(
        "orphaned",
        {"schedule": "*/2 * * * * *", "concurrencyPolicy": "Allow", "template": pod_template()},
    )
    wait_until(lambda: jobs.pods("orphaned"), timeout=20, message="a Pod")

    # Nothing that would hold the deletion or show as drift: no finalizer, no kopf marks.
    metadata = jobs.get("orphaned")["metadata"]
    assert not metadata.get("finalizers")
    kopf_keys = [key for key in metadata.get("annotations") or {} if "kopf" in key]
    assert kopf_keys == []

    operator.stop()
    try:
        jobs.delete("orphaned")

        def job_gone() -> bool:
            try:
                jobs.get("orphaned")
            except client.ApiException as error:
                return error.status == 404
            return False

        wait_until(job_gone, timeout=10, message="the ScheduledJob to be deleted")
        wait_until(lambda: jobs.pods("orphaned") == [], timeout=60, message="no Pods of the job")
    finally:
        start_operator(operator)
