"""Fixtures for tests against a real control plane."""

from __future__ import annotations

import os
from collections.abc import Generator, Iterator
from pathlib import Path

import pytest
import yaml
from kubernetes import client, config

from sked.localcluster import LocalCluster
from tests.integration.support import Jobs, OperatorProcess, namespace, wait_until

# ---------------------------------------------------------------------------------------
# Local control plane
#
# One cluster serves the whole session, because a start costs a few seconds. Its folder is
# $SKED_TEST_CLUSTER_DIR when set, which keeps the logs after the run, else a pytest
# temporary folder. A failing test gets the tail of every process's log in its report.
# ---------------------------------------------------------------------------------------

_CLUSTER_KEY = pytest.StashKey[LocalCluster]()


@pytest.fixture(scope="session")
def local_cluster(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LocalCluster]:
    """A started `LocalCluster`, stopped at the end of the session."""
    configured_dir = os.environ.get("SKED_TEST_CLUSTER_DIR")
    workdir = Path(configured_dir) if configured_dir else tmp_path_factory.mktemp("cluster")
    cluster = LocalCluster(workdir)
    try:
        cluster.start()
        request.session.stash[_CLUSTER_KEY] = cluster
        yield cluster
    finally:
        cluster.stop()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    cluster = item.session.stash.get(_CLUSTER_KEY, None)
    if report.failed and cluster is not None and "local_cluster" in item.fixturenames:
        report.sections.append(("local cluster logs", cluster.logs_tail()))
    return report


# ---------------------------------------------------------------------------------------
# The operator
#
# One `sked run` process, started as a user starts it, watches every namespace for the
# whole session. Tests that stop or restart it start it again before they end. Each test
# gets a namespace of its own, so their ScheduledJobs never meet.
# ---------------------------------------------------------------------------------------

_OPERATOR_KEY = pytest.StashKey[OperatorProcess]()
CRD_FILE = Path(__file__).resolve().parents[2] / "crds" / "scheduledjobs.sked.dev.yaml"


@pytest.fixture(scope="session")
def api_client(local_cluster: LocalCluster) -> Iterator[client.ApiClient]:
    """A kubernetes client logged in as the cluster's admin."""
    api = config.new_client_from_config(config_file=str(local_cluster.kubeconfig))
    try:
        yield api
    finally:
        api.close()


@pytest.fixture(scope="session")
def crd(local_cluster: LocalCluster, api_client: client.ApiClient) -> None:
    """The ScheduledJob CRD from crds/, applied and Established."""
    manifest = yaml.safe_load(CRD_FILE.read_text())
    extensions = client.ApiextensionsV1Api(api_client)
    try:
        extensions.create_custom_resource_definition(manifest)
    except client.ApiException as error:
        if error.status != 409:
            raise
        current = extensions.read_custom_resource_definition(manifest["metadata"]["name"])
        manifest["metadata"]["resourceVersion"] = current.metadata.resource_version
        extensions.replace_custom_resource_definition(manifest["metadata"]["name"], manifest)

    def established() -> bool:
        found = extensions.read_custom_resource_definition(manifest["metadata"]["name"])
        return any(
            c.type == "Established" and c.status == "True" for c in found.status.conditions or []
        )

    wait_until(established, timeout=30, message="the CRD to be Established")


@pytest.fixture(scope="session")
def operator(
    request: pytest.FixtureRequest,
    local_cluster: LocalCluster,
    crd: None,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[OperatorProcess]:
    """The operator, running as `sked run` against the local cluster."""
    log_path = tmp_path_factory.mktemp("operator") / "operator.log"
    process = OperatorProcess(local_cluster.kubeconfig, log_path)
    process.start()
    request.session.stash[_OPERATOR_KEY] = process
    try:
        yield process
    finally:
        process.stop()


@pytest.fixture
def jobs(operator: OperatorProcess, api_client: client.ApiClient) -> Iterator[Jobs]:
    """ScheduledJob helpers bound to a fresh namespace; the operator is running."""
    # An earlier test may have restarted the control plane and cost the
    # operator its Lease, so it exited; start it again first.
    if operator.process is None or operator.process.poll() is not None:
        operator.process = None
        operator.start()
    with namespace(api_client) as name:
        yield Jobs(api_client, name)
    if operator.process is None or operator.process.poll() is not None:
        operator.start()


def pytest_exception_interact(
    node: pytest.Item, call: pytest.CallInfo[None], report: pytest.TestReport
) -> None:
    process = node.session.stash.get(_OPERATOR_KEY, None)
    if process is not None:
        report.sections.append(("operator log", process.log_tail()))
