"""The Late condition when the API server rejects Pods, and JSON log lines."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from sked.localcluster import LocalCluster
from tests.integration.support import Jobs, OperatorProcess, namespace, pod_template, wait_until

pytestmark = pytest.mark.integration


def block_pods(api_client: client.ApiClient, name: str) -> None:
    """Make the API server reject every Pod created in namespace ``name``."""
    admission = client.AdmissionregistrationV1Api(api_client)
    admission.create_validating_admission_policy(
        {
            "metadata": {"name": f"block-{name}"},
            "spec": {
                "failurePolicy": "Fail",
                "matchConstraints": {
                    "resourceRules": [
                        {
                            "apiGroups": [""],
                            "apiVersions": ["v1"],
                            "operations": ["CREATE"],
                            "resources": ["pods"],
                        }
                    ]
                },
                "validations": [{"expression": "false", "message": "Pods are blocked here"}],
            },
        }
    )
    admission.create_validating_admission_policy_binding(
        {
            "metadata": {"name": f"block-{name}"},
            "spec": {
                "policyName": f"block-{name}",
                "validationActions": ["Deny"],
                "matchResources": {
                    "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": name}}
                },
            },
        }
    )


def unblock_pods(api_client: client.ApiClient, name: str) -> None:
    admission = client.AdmissionregistrationV1Api(api_client)
    admission.delete_validating_admission_policy_binding(f"block-{name}")
    admission.delete_validating_admission_policy(f"block-{name}")


def test_late_while_api_server_rejects_pods(jobs: Jobs, api_client: client.ApiClient) -> None:
    jobs.create(
        "blocked",
        {
            "schedule": "*/3 * * * * *",
            "history": {"successfulRunsLimit": 20},
            "template": pod_template({"kwok.sked.dev/succeed-after": "1s"}),
        },
    )
    # The first run passes the template check; then every create is rejected.
    wait_until(lambda: jobs.pods("blocked"), timeout=20, message="a first Pod")
    block_pods(api_client, jobs.namespace)

    def late_is(expected: str) -> dict[str, Any] | None:
        condition = jobs.condition("blocked", "Late")
        return condition if condition and condition["status"] == expected else None

    try:
        condition = wait_until(lambda: late_is("True"), timeout=30, message="Late True")
        assert condition["reason"] == "PodCreateFailed"
        assert "Pods are blocked here" in condition["message"]
        # Events are posted after the status write, so they may trail it.
        wait_until(
            lambda: "PodCreateFailed" in jobs.event_reasons("blocked"),
            timeout=10,
            message="a PodCreateFailed Event",
        )
        blocked_runs = len(jobs.status("blocked")["runs"])
    finally:
        unblock_pods(api_client, jobs.namespace)
    wait_until(lambda: late_is("False"), timeout=40, message="Late False once Pods are allowed")
    assert len(jobs.status("blocked")["runs"]) > blocked_runs
    invalid = jobs.condition("blocked", "InvalidSpec")
    assert invalid is not None
    assert invalid["status"] == "False"


def test_json_log_format(
    local_cluster: LocalCluster, api_client: client.ApiClient, tmp_path: Path
) -> None:
    # A second operator on an empty namespace and a Lease of its own, so it
    # never competes with the session's operator.
    with namespace(api_client, "logs") as empty:
        process = OperatorProcess(
            local_cluster.kubeconfig,
            tmp_path / "operator.log",
            args=("--log-format=json", f"--namespace={empty}", "--lease-name=sked-json-logs"),
        )
        process.start()
        try:
            lines = [line for line in process.log_path.read_text().splitlines() if line.strip()]
        finally:
            process.stop()
    entries = [json.loads(line) for line in lines]
    assert entries
    for entry in entries:
        assert set(entry) >= {"time", "level", "logger", "message"}
    assert any("acquired Lease" in entry["message"] for entry in entries)
