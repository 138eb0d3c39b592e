"""Turn a ScheduledJob's placement into resource requests, node affinity and tolerations.

The template's own affinity, node selector and tolerations are kept: every
required term of the template gets the placement's expressions added, so a
node must satisfy both. Where the template already sets a resource request,
the template wins and the caller reports it.
"""

from __future__ import annotations

from typing import Any

from sked.spec import Placement, PlacementMode

REGION_LABEL = "topology.kubernetes.io/region"
ZONE_LABEL = "topology.kubernetes.io/zone"
INSTANCE_TYPE_LABEL = "node.kubernetes.io/instance-type"

_RESOURCE_NAMES = {"cpu": "cpu", "memory": "memory", "ephemeralStorage": "ephemeral-storage"}


def pinned_region(placement: Placement | None, step: int) -> str | None:
    """Return the region a fallback step pins the Pod to, or None when nothing is pinned."""
    if placement is None or placement.fallbackAfterSeconds is None:
        return None
    if placement.mode is not PlacementMode.REQUIRED or len(placement.regions) < 2:
        return None
    return placement.regions[min(step, len(placement.regions) - 1)]


def fallback_steps(placement: Placement | None) -> int:
    """Return how many regions an attempt may try, 1 when there is no fallback chain."""
    if placement is None or pinned_region(placement, 0) is None:
        return 1
    return len(placement.regions)


def _apply_resources(pod_spec: dict[str, Any], placement: Placement) -> list[str]:
    resources = placement.resources
    containers = pod_spec.get("containers") or []
    if resources is None or not containers:
        return []
    main = containers[0]
    block = main.setdefault("resources", {})
    requests = block.setdefault("requests", {})
    limits = block.setdefault("limits", {})
    kept = []
    for field, name in _RESOURCE_NAMES.items():
        value = getattr(resources, field)
        if value is None:
            continue
        # The API server copies a limit into a missing request, so a limit alone
        # already sets it.
        if name in requests or name in limits:
            kept.append(name)
        else:
            requests[name] = str(value)
    if resources.gpu:
        gpu = resources.gpuResource
        if gpu in requests or gpu in limits:
            kept.append(gpu)
        else:
            requests[gpu] = str(resources.gpu)
            limits[gpu] = str(resources.gpu)
        tolerations = pod_spec.setdefault("tolerations", [])
        if not any(t.get("key") == gpu for t in tolerations):
            # GPU nodes are usually tainted with the resource name, so that only
            # Pods that ask for GPUs land there.
            tolerations.append({"key": gpu, "operator": "Exists", "effect": "NoSchedule"})
    if not limits:
        del block["limits"]
    return kept


def _required_expressions(placement: Placement, step: int) -> list[dict[str, Any]]:
    expressions = []
    pinned = pinned_region(placement, step)
    if pinned is not None:
        expressions.append({"key": REGION_LABEL, "operator": "In", "values": [pinned]})
    elif placement.mode is PlacementMode.REQUIRED and placement.regions:
        expressions.append({"key": REGION_LABEL, "operator": "In", "values": placement.regions})
    if placement.mode is PlacementMode.REQUIRED and placement.zones:
        expressions.append({"key": ZONE_LABEL, "operator": "In", "values": placement.zones})
    if placement.instanceTypes:
        expressions.append(
            {"key": INSTANCE_TYPE_LABEL, "operator": "In", "values": placement.instanceTypes}
        )
    return expressions


def _preferred_terms(placement: Placement) -> list[dict[str, Any]]:
    """Weighted terms, the first listed place heaviest (100, then 10 less each)."""
    if placement.mode is not PlacementMode.PREFERRED:
        return []
    terms = []
    for label, values in ((REGION_LABEL, placement.regions), (ZONE_LABEL, placement.zones)):
        for index, value in enumerate(values):
            terms.append(
                {
                    "weight": max(1, 100 - 10 * index),
                    "preference": {
                        "matchExpressions": [{"key": label, "operator": "In", "values": [value]}]
                    },
                }
            )
    return terms


def apply_placement(
    pod_spec: dict[str, Any], placement: Placement | None, *, step: int = 0
) -> list[str]:
    """Add the placement to ``pod_spec`` in place; return the resources the template kept."""
    if placement is None:
        return []
    kept = _apply_resources(pod_spec, placement)

    selector = pod_spec.setdefault("nodeSelector", {})
    for key, value in placement.nodeSelector.items():
        if key in selector:
            kept.append(f"nodeSelector {key}")
        else:
            selector[key] = value
    if not selector:
        del pod_spec["nodeSelector"]

    if placement.tolerations:
        pod_spec.setdefault("tolerations", []).extend(placement.tolerations)

    expressions = _required_expressions(placement, step)
    preferred = _preferred_terms(placement)
    if expressions or preferred:
        node_affinity = pod_spec.setdefault("affinity", {}).setdefault("nodeAffinity", {})
        if expressions:
            required = node_affinity.setdefault(
                "requiredDuringSchedulingIgnoredDuringExecution", {}
            )
            terms = required.setdefault("nodeSelectorTerms", [])
            if not terms:
                terms.append({})
            # Terms are ORed, so each one must carry the placement's expressions.
            for term in terms:
                term.setdefault("matchExpressions", []).extend(expressions)
        if preferred:
            node_affinity.setdefault("preferredDuringSchedulingIgnoredDuringExecution", []).extend(
                preferred
            )
    return kept
