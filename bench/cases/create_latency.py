"""B0: open-loop Pod creates at rising rates, with no controller running.

Each step sends creates at a fixed rate for a fixed time, whatever the responses do (open
loop), so a slow server shows as latency, not as a lower rate. Latency is measured from
the moment a request was due to be sent, which also counts the time it waited in the
client. The Pods name a Node that does not exist, so neither kwok nor the scheduler acts
on them and only kube-apiserver and etcd are measured.
"""

from __future__ import annotations

import asyncio
import logging
import resource
import time
from typing import Any

from bench.api import ApiError, AsyncApi
from bench.rig import Rig
from bench.stats import percentile

logger = logging.getLogger(__name__)

NAMESPACE = "b0-create"
STEP_SECONDS = 10.0
# The loader keeps at most this many requests open. The API server's default limit on
# mutating requests in flight is 200, so more would only queue there.
CONNECTIONS = 400


def _pod(index: int, rate: int) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": f"load-{rate}-{index:06d}", "namespace": NAMESPACE},
        "spec": {
            "nodeName": "bench-no-such-node",
            "containers": [{"name": "main", "image": "busybox:1.37"}],
        },
    }


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def _step(api: AsyncApi, rate: int, seconds: float) -> dict[str, Any]:
    count = int(rate * seconds)
    latencies: list[float] = []
    errors: dict[int, int] = {}
    path = f"/api/v1/namespaces/{NAMESPACE}/pods"
    start = time.monotonic() + 0.5
    cpu_before = _cpu_seconds()

    async def one(index: int) -> None:
        due = start + index / rate
        await asyncio.sleep(max(0.0, due - time.monotonic()))
        try:
            await api.request("POST", path, _pod(index, rate))
        except ApiError as error:
            errors[error.status] = errors.get(error.status, 0) + 1
            return
        latencies.append(time.monotonic() - due)

    await asyncio.gather(*(one(index) for index in range(count)))
    elapsed = time.monotonic() - start
    return {
        "rate": rate,
        "sent": count,
        "ok": len(latencies),
        "errors": errors,
        "p50": percentile(latencies, 0.5),
        "p99": percentile(latencies, 0.99),
        "max": max(latencies) if latencies else None,
        "achieved_rate": len(latencies) / elapsed if elapsed else None,
        "loader_core_share": (_cpu_seconds() - cpu_before) / elapsed if elapsed else None,
    }


def run(rig: Rig, *, rates: list[int], step_seconds: float = STEP_SECONDS) -> dict[str, Any]:
    """Run one step per rate, lowest first, and stop after the first whose p99 passes 1 s."""
    rig.create_namespace(NAMESPACE)

    async def steps() -> list[dict[str, Any]]:
        results = []
        async with AsyncApi(rig.admin.credentials, connections=CONNECTIONS) as api:
            for rate in rates:
                result = await _step(api, rate, step_seconds)
                logger.info(
                    "B0 %d/s: p50 %.3f s, p99 %.3f s", rate, result["p50"] or 0, result["p99"] or 0
                )
                results.append(result)
                await asyncio.sleep(3)
                if (result["p99"] or 0) > 1.0:
                    break
        return results

    results = asyncio.run(steps())
    crossing = next((step["rate"] for step in results if (step["p99"] or 0) > 1.0), None)
    return {"steps": results, "p99_over_1s_at_rate": crossing, "step_seconds": step_seconds}
