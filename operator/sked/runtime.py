"""Start the operator: the API client, the Controller's loop and kopf's watches."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import time

import kopf

from sked import handlers
from sked.controller import Controller
from sked.kube import KubeClient
from sked.metrics import HealthServer, Metrics

logger = logging.getLogger(__name__)


# The scheduler loop turns at least every 5 s; this long without a turn means it is stuck.
LOOP_STALL_SECONDS = 60


async def run_operator(
    *,
    namespaces: list[str],
    kubeconfig: str | None,
    identity: str,
    metrics_host: str = "0.0.0.0",
    metrics_port: int = 8080,
    per_job_labels: bool = True,
) -> int:
    """Run until SIGINT or SIGTERM; return the process exit code."""
    if kubeconfig:
        # kopf reads the same file for its own watches.
        os.environ["KUBECONFIG"] = kubeconfig
    metrics = Metrics(per_job_labels=per_job_labels)
    kube = await KubeClient.connect(
        kubeconfig=kubeconfig,
        on_error=lambda verb, code: metrics.api_errors.labels(verb, code).inc(),
    )
    controller = Controller(kube, identity=identity, metrics=metrics)

    def liveness() -> str | None:
        stalled = time.monotonic() - controller.last_tick
        if stalled > LOOP_STALL_SECONDS:
            return f"the scheduler loop has not run for {stalled:.0f}s"
        return None

    health = HealthServer(
        metrics,
        liveness=liveness,
        readiness=lambda: controller.primed,
        host=metrics_host,
        port=metrics_port,
    )
    await health.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)

    logger.info(
        "sked starting as %s, watching %s", identity, ", ".join(namespaces) or "all namespaces"
    )
    settings = kopf.OperatorSettings()
    handlers.configure(settings)
    await controller.prime(namespaces or None)
    scheduler = asyncio.create_task(controller.run(), name="scheduler")
    kopf_stop = asyncio.Event()
    watcher = asyncio.create_task(
        kopf.operator(
            standalone=True,
            clusterwide=not namespaces,
            namespaces=namespaces,
            settings=settings,
            memo=kopf.Memo(controller=controller),
            stop_flag=kopf_stop,
        ),
        name="kopf",
    )
    stopper = asyncio.create_task(stop.wait())
    done, _ = await asyncio.wait({scheduler, watcher, stopper}, return_when=asyncio.FIRST_COMPLETED)
    code = 0
    for task in done:
        if task is not stopper and task.exception() is not None:
            logger.error("%s stopped with an error", task.get_name(), exc_info=task.exception())
            code = 1
    logger.info("sked stopping")
    kopf_stop.set()
    scheduler.cancel()
    stopper.cancel()
    with contextlib.suppress(asyncio.CancelledError, Exception):
        await asyncio.wait_for(watcher, 10)
    with contextlib.suppress(asyncio.CancelledError):
        await scheduler
    await controller.stop()
    await health.stop()
    await kube.close()
    logger.info("sked stopped")
    return code
