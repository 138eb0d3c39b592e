"""The manifests under examples/ apply to the API server, and the quick one runs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.integration.support import GROUP, PLURAL, VERSION, Jobs, wait_until

pytestmark = pytest.mark.integration

EXAMPLES_DIR = Path(__file__).resolve().parents[2] / "examples"
EXAMPLE_FILES = sorted(EXAMPLES_DIR.glob("*.yaml"))


def manifests(path: Path) -> list[dict[str, Any]]:
    return [document for document in yaml.safe_load_all(path.read_text()) if document]


def test_examples_found() -> None:
    assert EXAMPLE_FILES, f"no examples in {EXAMPLES_DIR.name}/"


@pytest.mark.parametrize("path", EXAMPLE_FILES, ids=[path.stem for path in EXAMPLE_FILES])
def test_example_applies(jobs: Jobs, path: Path) -> None:
    documents = manifests(path)
    assert documents
    for manifest in documents:
        assert manifest["apiVersion"] == f"{GROUP}/{VERSION}"
        assert manifest["kind"] == "ScheduledJob"
        created = jobs.custom.create_namespaced_custom_object(
            GROUP, VERSION, jobs.namespace, PLURAL, manifest, dry_run="All"
        )
        assert created["metadata"]["name"] == manifest["metadata"]["name"]
        assert created["spec"]["schedule"] == manifest["spec"]["schedule"]


def test_every_ten_seconds_example_succeeds(jobs: Jobs) -> None:
    (manifest,) = manifests(EXAMPLES_DIR / "every-ten-seconds.yaml")
    name = manifest["metadata"]["name"]
    jobs.custom.create_namespaced_custom_object(GROUP, VERSION, jobs.namespace, PLURAL, manifest)

    def succeeded_run() -> list[dict[str, Any]]:
        runs = jobs.status(name).get("runs", [])
        return [run for run in runs if run["phase"] == "Succeeded"]

    (run, *_) = wait_until(succeeded_run, timeout=30, message="a Succeeded run")
    assert run["attempts"][0]["exitCode"] == 0
    assert jobs.status(name)["lastResult"] == "Succeeded"
