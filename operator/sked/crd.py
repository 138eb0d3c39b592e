"""Generate the ScheduledJob CRD from the pydantic models in ``sked.spec``.

``python -m sked.crd`` prints the CRD as YAML; ``make crds`` writes it to
``crds/`` and a unit test fails when the file is out of date. The converter
turns pydantic's JSON Schema into a Kubernetes structural schema: references
are inlined, optional fields lose their ``null`` branch (unset means
omitted), constants become one-value enums, and models that accept extra
fields keep them with ``x-kubernetes-preserve-unknown-fields``.
"""

from __future__ import annotations

import sys
from typing import Any

import yaml

from sked.spec import GROUP, KIND, PLURAL, VERSION, ScheduledJobSpec, ScheduledJobStatus

_DROPPED_KEYS = {"title", "additionalProperties", "$defs"}


def _resolve(node: dict[str, Any], definitions: dict[str, Any]) -> dict[str, Any]:
    if "$ref" in node:
        target = dict(definitions[node["$ref"].rsplit("/", 1)[-1]])
        local = {key: value for key, value in node.items() if key != "$ref"}
        target.update(local)
        return target
    return node


def _collapse_union(node: dict[str, Any], definitions: dict[str, Any]) -> dict[str, Any]:
    """Turn ``X | None`` into X, and ``str | int`` into an int-or-string node."""
    branches = [branch for branch in node["anyOf"] if branch.get("type") != "null"]
    kinds = sorted(_resolve(branch, definitions).get("type", "") for branch in branches)
    if kinds == ["integer", "string"]:
        # A Kubernetes quantity: a number or a string, checked by the string's pattern.
        merged = {k: v for k, v in node.items() if k not in ("anyOf", "default", "title")}
        merged["x-kubernetes-int-or-string"] = True
        string = next(b for b in branches if b.get("type") == "string")
        if "pattern" in string:
            merged["pattern"] = string["pattern"]
        return merged
    if len(branches) != 1:
        raise ValueError(f"cannot express a union in a structural schema: {node}")
    merged = {key: value for key, value in node.items() if key != "anyOf"}
    merged.update(_resolve(branches[0], definitions))
    if merged.get("default", ...) is None:
        del merged["default"]
    return merged


def _structural(node: dict[str, Any], definitions: dict[str, Any]) -> dict[str, Any]:
    """Convert one JSON Schema node, recursively, into its structural form."""
    node = _resolve(node, definitions)
    if "anyOf" in node:
        node = _collapse_union(node, definitions)
        if node.get("x-kubernetes-int-or-string"):
            return node
    result: dict[str, Any] = {}
    for key, value in node.items():
        if key in _DROPPED_KEYS:
            continue
        if key == "const":
            result["enum"] = [value]
        elif key == "properties":
            result["properties"] = {
                name: _structural(child, definitions) for name, child in value.items()
            }
        elif key == "items":
            result["items"] = _structural(value, definitions)
        else:
            result[key] = value
    if node.get("additionalProperties") is True:
        result["x-kubernetes-preserve-unknown-fields"] = True
    if "properties" in result and "type" not in result:
        result["type"] = "object"
    return result


def _schema(model: type[Any]) -> dict[str, Any]:
    raw = model.model_json_schema(mode="validation")
    return _structural(raw, raw.get("$defs", {}))


def build_crd() -> dict[str, Any]:
    """Return the CustomResourceDefinition of ScheduledJob as a dict."""
    spec_schema = _schema(ScheduledJobSpec)
    status_schema = _schema(ScheduledJobStatus)
    # kopf keeps its own bookkeeping in status.kopf instead of annotations,
    # so GitOps tools see no drift in metadata.
    status_schema["properties"]["kopf"] = {
        "type": "object",
        "x-kubernetes-preserve-unknown-fields": True,
    }
    columns = [
        ("Schedule", "string", ".spec.schedule", 0),
        ("TimeZone", "string", ".spec.timeZone", 0),
        ("Suspend", "boolean", ".spec.suspend", 0),
        ("Active", "integer", ".status.activeCount", 0),
        ("Last Schedule", "date", ".status.lastScheduleTime", 0),
        # A future time printed as a date shows <invalid>, so this one is a string.
        ("Next Schedule", "string", ".status.nextScheduleTime", 0),
        ("Last Result", "string", ".status.lastResult", 0),
        ("Last Region", "string", ".status.lastRegion", 1),
        ("Age", "date", ".metadata.creationTimestamp", 0),
    ]
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{PLURAL}.{GROUP}"},
        "spec": {
            "group": GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": KIND,
                "listKind": f"{KIND}List",
                "plural": PLURAL,
                "singular": KIND.lower(),
                "shortNames": ["sj"],
                "categories": ["all"],
            },
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": [
                        {"name": name, "type": kind, "jsonPath": path, "priority": priority}
                        for name, kind, path, priority in columns
                    ],
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "description": "A Pod template run on a cron schedule, with retries.",
                            "required": ["spec"],
                            "properties": {
                                "apiVersion": {"type": "string"},
                                "kind": {"type": "string"},
                                "metadata": {"type": "object"},
                                "spec": spec_schema,
                                "status": status_schema,
                            },
                        }
                    },
                }
            ],
        },
    }


class _PlainDumper(yaml.SafeDumper):
    """A YAML dumper that repeats shared lists instead of writing anchors and aliases."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def render() -> str:
    """Return the CRD as the YAML document written to crds/."""
    header = "# Generated by `make crds` from operator/sked/spec.py; do not edit by hand.\n"
    return header + yaml.dump(build_crd(), Dumper=_PlainDumper, sort_keys=False, width=100)


if __name__ == "__main__":
    sys.stdout.write(render())
