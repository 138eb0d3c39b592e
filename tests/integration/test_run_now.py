"""Runs started by hand through the sked.dev/run-now annotation and ``sked trigger``."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from typing import Any

import pytest
from kubernetes import client

from sked.localcluster import LocalCluster
from tests.integration.support import GROUP, PLURAL, VERSION, Jobs, pod_template, wait_until

pytestmark = pytest.mark.integration

RUN_NOW = "sked.dev/run-now"
# 30 February never comes, so every run of this job is one started by hand.
NEVER = "0 0 30 2 *"


def manual_pod_name(job: str, value: str, attempt: int = 1) -> str:
    return f"{job}-m{hashlib.sha256(value.encode()).hexdigest()[:8]}-{attempt}"


def patch_metadata(jobs: Jobs, name: str, metadata: dict[str, Any]) -> None:
    jobs.custom.patch_namespaced_custom_object(
        GROUP, VERSION, jobs.namespace, PLURAL, name, {"metadata": metadata}
    )


def manual_runs(jobs: Jobs, name: str) -> list[dict[str, Any]]:
    return [run for run in jobs.status(name).get("runs", []) if run.get("trigger")]


def create_manual_job(jobs: Jobs, name: str, **spec: Any) -> None:
    jobs.create(
        name,
        {
            "schedule": NEVER,
            "history": {"successfulRunsLimit": 10},
            "template": pod_template({"kwok.sked.dev/succeed-after": "1s"}),
            **spec,
        },
    )

    def handled() -> bool:
        ready = jobs.condition(name, "Ready")
        return ready is not None and ready["status"] == "True"

    wait_until(handled, timeout=20, message=f"{name} to be Ready")


def wait_for_triggers(jobs: Jobs, name: str, expected: list[str]) -> list[dict[str, Any]]:
    def reached() -> list[dict[str, Any]] | None:
        runs = manual_runs(jobs, name)
        return runs if len(runs) >= len(expected) else None

    runs = wait_until(reached, timeout=20, message=f"{len(expected)} manual run(s) of {name}")
    assert [run["trigger"] for run in runs] == expected
    return runs


def test_annotation_starts_one_run(jobs: Jobs) -> None:
    create_manual_job(jobs, "manual")

    patch_metadata(jobs, "manual", {"annotations": {RUN_NOW: "first"}})

    [run] = wait_for_triggers(jobs, "manual", ["first"])
    assert run["attempts"][0]["podName"] == manual_pod_name("manual", "first")
    pods = jobs.pods("manual")
    assert [pod.metadata.name for pod in pods] == [manual_pod_name("manual", "first")]
    assert "-m" in pods[0].metadata.name
    assert pods[0].metadata.annotations[RUN_NOW] == "first"
    assert jobs.status("manual")["lastRunNow"] == "first"

    def succeeded() -> bool:
        return any(run["phase"] == "Succeeded" for run in manual_runs(jobs, "manual"))

    wait_until(succeeded, timeout=20, message="the manual run to succeed")


def test_same_value_again_starts_nothing(jobs: Jobs) -> None:
    create_manual_job(jobs, "manual")
    patch_metadata(jobs, "manual", {"annotations": {RUN_NOW: "first"}})
    wait_for_triggers(jobs, "manual", ["first"])

    # The same value with an unrelated label change, so the operator gets an event.
    patch_metadata(jobs, "manual", {"annotations": {RUN_NOW: "first"}, "labels": {"touch": "1"}})
    patch_metadata(jobs, "manual", {"annotations": {RUN_NOW: "first"}, "labels": {"touch": "2"}})
    # Then a new value: once its run exists, the events before it were handled too.
    patch_metadata(jobs, "manual", {"annotations": {RUN_NOW: "second"}})

    runs = wait_for_triggers(jobs, "manual", ["first", "second"])
    assert runs[1]["attempts"][0]["podName"] == manual_pod_name("manual", "second")
    names = sorted(pod.metadata.name for pod in jobs.pods("manual"))
    assert names == sorted(
        [manual_pod_name("manual", "first"), manual_pod_name("manual", "second")]
    )
    assert jobs.status("manual")["lastRunNow"] == "second"


def test_trigger_command_starts_run(jobs: Jobs, local_cluster: LocalCluster) -> None:
    create_manual_job(jobs, "by-command")
    environment = dict(os.environ, KUBECONFIG=str(local_cluster.kubeconfig))

    finished = subprocess.run(
        [sys.executable, "-m", "sked.cli", "trigger", "by-command", "-n", jobs.namespace],
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert finished.returncode == 0, finished.stderr
    annotations = jobs.get("by-command")["metadata"]["annotations"]
    value = annotations[RUN_NOW]
    assert f"{RUN_NOW}={value}" in finished.stdout
    [run] = wait_for_triggers(jobs, "by-command", [value])
    assert run["attempts"][0]["podName"] == manual_pod_name("by-command", value)


def test_trigger_command_unknown_job(jobs: Jobs, local_cluster: LocalCluster) -> None:
    environment = dict(os.environ, KUBECONFIG=str(local_cluster.kubeconfig))

    finished = subprocess.run(
        [sys.executable, "-m", "sked.cli", "trigger", "absent", "-n", jobs.namespace],
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert finished.returncode == 2
    assert finished.stderr.startswith("sked: ")
    assert "404" in finished.stderr
    assert "Traceback" not in finished.stderr


def test_manual_run_on_suspended_job(jobs: Jobs) -> None:
    create_manual_job(jobs, "paused", schedule="*/2 * * * * *", suspend=True)

    patch_metadata(jobs, "paused", {"annotations": {RUN_NOW: "while-suspended"}})

    [run] = wait_for_triggers(jobs, "paused", ["while-suspended"])
    assert run["attempts"][0]["podName"] == manual_pod_name("paused", "while-suspended")

    def succeeded() -> bool:
        return any(run["phase"] == "Succeeded" for run in manual_runs(jobs, "paused"))

    wait_until(succeeded, timeout=20, message="the manual run of the suspended job to succeed")
    status = jobs.status("paused")
    # Only the run by hand ran: the schedule's own slots stay suspended.
    assert [run.get("trigger") for run in status.get("runs", [])] == ["while-suspended"]
    assert [pod.metadata.name for pod in jobs.pods("paused")] == [
        manual_pod_name("paused", "while-suspended")
    ]
    suspended = jobs.condition("paused", "Suspended")
    assert suspended is not None
    assert suspended["status"] == "True"


def test_manual_run_event_posted(jobs: Jobs) -> None:
    create_manual_job(jobs, "noted")

    patch_metadata(jobs, "noted", {"annotations": {RUN_NOW: "look"}})
    wait_for_triggers(jobs, "noted", ["look"])

    def pod_created_event() -> list[client.CoreV1Event]:
        return [event for event in jobs.events("noted") if event.reason == "PodCreated"]

    [event] = wait_until(pod_created_event, timeout=10, message="a PodCreated Event")
    assert manual_pod_name("noted", "look") in event.message
