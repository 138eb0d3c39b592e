"""Build the Pod of one attempt from a ScheduledJob's template."""

from __future__ import annotations

import copy
import datetime as dt
from typing import Any

from sked import naming
from sked.placement import apply_placement
from sked.spec import GROUP, KIND, VERSION, ScheduledJobSpec


def build_pod(
    *,
    namespace: str,
    job_name: str,
    job_uid: str,
    spec: ScheduledJobSpec,
    slot: dt.datetime,
    attempt: int,
    trigger: str | None = None,
    step: int = 0,
) -> dict[str, Any]:
    """Return the Pod manifest for ``attempt`` of the run at ``slot``.

    The Pod always lands in the ScheduledJob's namespace, whatever the
    template says, and is owned by the ScheduledJob, so deleting the
    ScheduledJob lets the garbage collector remove its Pods.
    """
    template = spec.template
    pod_spec = template.spec.model_dump(mode="json", exclude_none=True)
    pod_spec["restartPolicy"] = "Never"
    for container in pod_spec.get("containers", []):
        # A real kubelet then puts the tail of the output in the terminated message.
        container.setdefault("terminationMessagePolicy", "FallbackToLogsOnError")
    apply_placement(pod_spec, spec.placement, step=step)
    if spec.activeDeadlineSeconds is not None:
        # The operator enforces the spec's value, so the Pod carries the same one.
        pod_spec["activeDeadlineSeconds"] = spec.activeDeadlineSeconds

    metadata = copy.deepcopy(template.metadata)
    labels = dict(metadata.get("labels") or {})
    labels[naming.LABEL_SCHEDULEDJOB] = naming.label_value(job_name)
    name = naming.pod_name(job_name, slot, attempt, trigger=trigger, step=step)
    labels[naming.LABEL_POD] = name
    annotations = dict(metadata.get("annotations") or {})
    annotations[naming.ANNOTATION_SCHEDULED_TIME] = slot.astimezone(dt.UTC).strftime(
        "%Y-%m-%dT%H:%M:%SZ"
    )
    annotations[naming.ANNOTATION_ATTEMPT] = str(attempt)
    if trigger is not None:
        annotations[naming.ANNOTATION_RUN_NOW] = trigger
    if step:
        annotations[naming.ANNOTATION_PLACEMENT_STEP] = str(step)
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": labels,
            "annotations": annotations,
            "ownerReferences": [
                {
                    "apiVersion": f"{GROUP}/{VERSION}",
                    "kind": KIND,
                    "name": job_name,
                    "uid": job_uid,
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ],
        },
        "spec": pod_spec,
    }


def template_overrides(spec: ScheduledJobSpec) -> list[str]:
    """Return the placement settings that the template's own values override."""
    pod_spec = spec.template.spec.model_dump(mode="json", exclude_none=True)
    return apply_placement(pod_spec, spec.placement)
