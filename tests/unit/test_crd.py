"""The ScheduledJob CRD generated from the spec models."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from sked import crd

COMMITTED_CRD = Path(__file__).resolve().parents[2] / "crds" / "scheduledjobs.sked.dev.yaml"
NON_STRUCTURAL_KEYS = {"$ref", "anyOf", "const", "title", "additionalProperties"}


@pytest.fixture(scope="module")
def version() -> dict[str, Any]:
    (only,) = crd.build_crd()["spec"]["versions"]
    return only


@pytest.fixture(scope="module")
def schema(version) -> dict[str, Any]:
    return version["schema"]["openAPIV3Schema"]


def schema_nodes(node: dict[str, Any], path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    """Yield every schema node below ``node``, with a JSON-path-like location."""
    yield path or ".", node
    for name, child in node.get("properties", {}).items():
        yield from schema_nodes(child, f"{path}.{name}")
    if "items" in node:
        yield from schema_nodes(node["items"], f"{path}[]")


def test_committed_crd_is_up_to_date():
    committed = COMMITTED_CRD.read_text()

    assert crd.render() == committed, (
        f"{COMMITTED_CRD.name} is out of date with operator/sked/spec.py: run `make crds`"
    )


def test_rendered_crd_parses_back():
    assert yaml.safe_load(crd.render()) == crd.build_crd()


def test_schema_has_no_non_structural_keys(schema):
    offenders = [
        (path, key)
        for path, node in schema_nodes(schema)
        for key in node.keys() & NON_STRUCTURAL_KEYS
    ]

    assert offenders == []


def test_schema_nodes_with_properties_are_objects(schema):
    untyped = [
        path
        for path, node in schema_nodes(schema)
        if "properties" in node and node.get("type") != "object"
    ]

    assert untyped == []


def test_schema_nodes_all_have_a_type(schema):
    # Kubernetes forbids a type on int-or-string nodes (quantities such as cpu: 2 or 500m).
    untyped = [
        path
        for path, node in schema_nodes(schema)
        if "type" not in node and not node.get("x-kubernetes-int-or-string")
    ]

    assert untyped == []


def test_crd_names(version):
    names = crd.build_crd()["spec"]["names"]

    assert names["kind"] == "ScheduledJob"
    assert names["plural"] == "scheduledjobs"
    assert names["shortNames"] == ["sj"]
    assert crd.build_crd()["metadata"]["name"] == "scheduledjobs.sked.dev"


def test_crd_has_status_subresource(version):
    assert version["subresources"] == {"status": {}}


def test_printer_columns(version):
    columns = [
        (c["name"], c["type"], c["jsonPath"])
        for c in version["additionalPrinterColumns"]
        if c["priority"] == 0
    ]

    assert columns == [
        ("Schedule", "string", ".spec.schedule"),
        ("TimeZone", "string", ".spec.timeZone"),
        ("Suspend", "boolean", ".spec.suspend"),
        ("Active", "integer", ".status.activeCount"),
        ("Last Schedule", "date", ".status.lastScheduleTime"),
        ("Next Schedule", "string", ".status.nextScheduleTime"),
        ("Last Result", "string", ".status.lastResult"),
        ("Age", "date", ".metadata.creationTimestamp"),
    ]


def test_wide_output_shows_last_region(version):
    wide = [
        (c["name"], c["jsonPath"]) for c in version["additionalPrinterColumns"] if c["priority"]
    ]

    assert wide == [("Last Region", ".status.lastRegion")]


def test_printer_columns_point_at_schema_fields(version, schema):
    for column in version["additionalPrinterColumns"]:
        top, field = column["jsonPath"].lstrip(".").split(".")
        if top == "metadata":
            continue

        assert field in schema["properties"][top]["properties"], column["jsonPath"]


def test_restart_policy_enum_is_never_only(schema):
    pod_spec = schema["properties"]["spec"]["properties"]["template"]["properties"]["spec"]

    assert pod_spec["properties"]["restartPolicy"]["enum"] == ["Never"]


def test_concurrency_policy_enum(schema):
    policy = schema["properties"]["spec"]["properties"]["concurrencyPolicy"]

    assert policy["enum"] == ["Allow", "Forbid", "Replace"]
    assert policy["default"] == "Forbid"


def test_spec_requires_template_and_schedule(schema):
    spec = schema["properties"]["spec"]
    rules = [validation["rule"] for validation in spec.get("x-kubernetes-validations", [])]

    assert schema["required"] == ["spec"]
    assert "template" in spec["required"]
    # Either schedule is required, or a CEL rule requires schedule or its alternative.
    assert "schedule" in spec["required"] or any("self.schedule" in rule for rule in rules)


def test_template_keeps_unknown_pod_fields(schema):
    template = schema["properties"]["spec"]["properties"]["template"]
    pod_spec = template["properties"]["spec"]
    container = pod_spec["properties"]["containers"]["items"]

    assert template["properties"]["metadata"]["x-kubernetes-preserve-unknown-fields"] is True
    assert pod_spec["x-kubernetes-preserve-unknown-fields"] is True
    assert container["x-kubernetes-preserve-unknown-fields"] is True


def test_spec_rejects_unknown_fields(schema):
    spec = schema["properties"]["spec"]

    assert "x-kubernetes-preserve-unknown-fields" not in spec
    assert "x-kubernetes-preserve-unknown-fields" not in spec["properties"]["retry"]


def test_nested_defaults_are_filled(schema):
    retry = schema["properties"]["spec"]["properties"]["retry"]

    assert retry["default"] == {}
    assert retry["properties"]["backoff"]["default"] == {}
    assert retry["properties"]["limit"]["default"] == 3


def test_optional_fields_have_no_null_default(schema):
    with_null = [
        path for path, node in schema_nodes(schema) if "default" in node and node["default"] is None
    ]

    assert with_null == []
