"""Fixtures for tests against a real control plane."""

from __future__ import annotations

import os
from collections.abc import Generator, Iterator
from pathlib import Path

import pytest

from sked.localcluster import LocalCluster

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
