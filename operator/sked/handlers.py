"""kopf wiring: watch ScheduledJobs and their Pods and feed them to the Controller.

Only ``on.event`` handlers are used. They keep no handler progress, so kopf
writes nothing to the ScheduledJobs it watches: no annotations and no
finalizers, which keeps GitOps tools from seeing drift. Its progress and
diff-base storage still point at ``status.kopf`` in case a later handler
needs them, and that field has a place in the CRD schema.
"""

from __future__ import annotations

import logging
from typing import Any

import kopf

from sked import naming
from sked.controller import Controller
from sked.kube import LIST_PAGE_SIZE
from sked.spec import GROUP, PLURAL, VERSION

logger = logging.getLogger(__name__)

# Watch requests end on the server after this long and are opened again, so a
# stream that went silent is noticed well before kopf's inactivity timeout.
WATCH_SERVER_TIMEOUT = 60
WATCH_CLIENT_TIMEOUT = 90
WATCH_INACTIVITY_TIMEOUT = 120
WORKER_IDLE_SECONDS = 0.2


def configure(settings: kopf.OperatorSettings) -> None:
    """Apply sked's kopf settings: status-only storage, watch timeouts, no kopf Events."""
    settings.persistence.progress_storage = kopf.StatusProgressStorage(field="status.kopf.progress")
    settings.persistence.diffbase_storage = kopf.StatusDiffBaseStorage(field="status.kopf.diffbase")
    settings.posting.enabled = False
    settings.watching.server_timeout = WATCH_SERVER_TIMEOUT
    settings.watching.client_timeout = WATCH_CLIENT_TIMEOUT
    settings.watching.inactivity_timeout = WATCH_INACTIVITY_TIMEOUT
    settings.watching.connect_timeout = 10
    # The first list of a watch comes in pages, as the Controller's own lists do.
    settings.watching.chunk_size = LIST_PAGE_SIZE
    # kopf keeps a worker per object until it has seen no event for this long
    # (5 s by default). The handlers here only feed the Controller's caches, so
    # a new worker costs less than keeping thousands of them after the first
    # list: with 1,000 ScheduledJobs the default left about 15 MiB more in RSS.
    settings.queueing.idle_timeout = WORKER_IDLE_SECONDS
    # Watch only the Pods sked created, filtered on the API server.
    settings.watching.label_selectors["v1", "pods"] = naming.LABEL_SCHEDULEDJOB
    # Scanning would need cluster-wide list and watch on CRDs and Namespaces.
    settings.scanning.disabled = True


@kopf.on.event(GROUP, VERSION, PLURAL)
async def scheduledjob_event(*, event: kopf.RawEvent, memo: Any, **_: Any) -> None:
    controller: Controller = memo["controller"]
    controller.job_event(dict(event["object"]), event.get("type"))
    controller.note_watch_activity()


@kopf.on.event("v1", "pods", labels={naming.LABEL_SCHEDULEDJOB: kopf.PRESENT})
async def pod_event(*, event: kopf.RawEvent, memo: Any, **_: Any) -> None:
    controller: Controller = memo["controller"]
    controller.pod_event(dict(event["object"]), event.get("type"))
    controller.note_watch_activity()
