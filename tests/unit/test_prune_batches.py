"""The Controller's batched deletes of finished Pods that history dropped.

A stand-in for KubeClient records the delete calls; the requests themselves are
tested against a real API server in tests/integration/test_pruning.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import time
from types import SimpleNamespace
from typing import cast

from kubernetes_asyncio.client.exceptions import ApiException

from sked.controller import Controller, JobRecord
from sked.kube import KubeClient
from sked.planner import Plan, PodView
from sked.spec import ScheduledJobStatus

SLOT = dt.datetime(2026, 5, 1, 11, 0, tzinfo=dt.UTC)


class DeleteCalls:
    """Fake KubeClient that records delete calls and can fail, block or reject them."""

    def __init__(self, *, forbid_collection: bool = False) -> None:
        self.forbid_collection = forbid_collection
        self.fail_next = 0
        self.block: asyncio.Event | None = None
        self.collections: list[tuple[str, list[str]]] = []
        self.single: list[tuple[str, str]] = []

    async def delete_pods_named(self, namespace: str, names: list[str]) -> None:
        if self.block is not None:
            await self.block.wait()
        if self.forbid_collection:
            raise ApiException(status=403, reason="Forbidden")
        if self.fail_next:
            self.fail_next -= 1
            raise ApiException(status=503, reason="Service Unavailable")
        self.collections.append((namespace, list(names)))

    async def delete_pod(self, namespace: str, name: str) -> None:
        self.single.append((namespace, name))


def record(namespace: str, uid: str) -> JobRecord:
    return cast(JobRecord, SimpleNamespace(namespace=namespace, uid=uid))


def pod(name: str, *, labelled: bool = True) -> PodView:
    return PodView(name, SLOT, 1, "Succeeded", labelled=labelled)


def plan_pruning(*names: str) -> Plan:
    return Plan(status=ScheduledJobStatus(), prunes=list(names))


def controller_with(calls: DeleteCalls) -> Controller:
    controller = Controller(cast(KubeClient, calls))
    controller.pods = {
        "uid-a": {"a1": pod("a1"), "a2": pod("a2"), "old": pod("old", labelled=False)},
        "uid-b": {"b1": pod("b1")},
        "uid-c": {"c1": pod("c1")},
    }
    return controller


async def queue_and_flush(controller: Controller) -> list[Plan]:
    plans = [plan_pruning("a1", "a2", "old"), plan_pruning("b1"), plan_pruning("c1")]
    for job, result in zip(
        (record("one", "uid-a"), record("one", "uid-b"), record("two", "uid-c")),
        plans,
        strict=True,
    ):
        controller._queue_prunes(job, result)
    await controller.flush()
    return plans


def test_prunes_share_request_per_namespace():
    calls = DeleteCalls()
    controller = controller_with(calls)

    plans = asyncio.run(queue_and_flush(controller))

    assert sorted(calls.collections) == [("one", ["a1", "a2", "b1"]), ("two", ["c1"])]
    # The unlabelled Pod cannot be selected by label, so it is deleted with the plan's own.
    assert plans[0].deletes == ["old"]
    assert calls.single == []


def test_prunes_skip_names_already_sent():
    calls = DeleteCalls()
    controller = controller_with(calls)
    asyncio.run(queue_and_flush(controller))

    again = plan_pruning("a1", "b1")
    controller._queue_prunes(record("one", "uid-a"), again)

    assert controller._prunes == {}
    assert controller._prune_at is None


def test_prunes_forbidden_collection_fallback():
    calls = DeleteCalls(forbid_collection=True)
    controller = controller_with(calls)

    asyncio.run(queue_and_flush(controller))

    assert calls.collections == []
    assert sorted(calls.single) == [("one", "a1"), ("one", "a2"), ("one", "b1"), ("two", "c1")]


def test_prunes_full_batch_due_at_once():
    calls = DeleteCalls()
    controller = Controller(cast(KubeClient, calls))
    names = [f"p{index}" for index in range(100)]
    controller.pods = {"uid": {name: pod(name) for name in names}}

    controller._queue_prunes(record("one", "uid"), plan_pruning(*names[:99]))
    partial_due = controller._prune_at
    controller._queue_prunes(record("one", "uid"), plan_pruning(names[99]))

    assert partial_due is not None
    assert controller._prune_at is not None
    assert controller._prune_at < partial_due


def test_prunes_failed_request_queued_again():
    calls = DeleteCalls()
    controller = controller_with(calls)

    async def scenario() -> None:
        calls.fail_next = 1
        await queue_and_flush(controller)

    asyncio.run(scenario())

    # The first namespace's request failed: its names wait for a retry after a delay.
    assert controller._prunes == {"one": {"a1", "a2", "b1"}}
    assert controller._prune_at is not None
    assert controller._prune_at > time.time() + 3
    assert calls.collections == [("two", ["c1"])]

    asyncio.run(controller.flush())

    assert calls.collections[-1] == ("one", ["a1", "a2", "b1"])
    assert controller._prunes == {}


def test_prunes_cancelled_delete_queued_again():
    calls = DeleteCalls()
    controller = controller_with(calls)

    async def scenario() -> None:
        calls.block = asyncio.Event()
        task = asyncio.create_task(controller._prune({"one": {"a1", "b1"}}))
        await asyncio.sleep(0)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    asyncio.run(scenario())

    assert controller._prunes == {"one": {"a1", "b1"}}
    assert calls.collections == []
