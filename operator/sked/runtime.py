"""Start the operator: the API client, the Lease, the Controller's loop and kopf's watches."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import time

import kopf

from sked import handlers
from sked.controller import DEFAULT_STATUS_BATCH_SECONDS, Controller
from sked.kube import KubeClient
from sked.leader import LeaderElector, LeadershipLost, LeaseSettings
from sked.metrics import HealthServer, Metrics
from sked.planner import SuccessEvents

logger = logging.getLogger(__name__)

# The scheduler loop turns at least every 5 s; this long without a turn means it is stuck.
LOOP_STALL_SECONDS = 60

# A graceful stop waits at most this long for batched status writes; the
# next leader adopts the Pods of any it could not write.
FLUSH_TIMEOUT_SECONDS = 5

# Cancelled tasks get this long to end when the operator stops.
STOP_TIMEOUT_SECONDS = 10


async def run_operator(
    *,
    namespaces: list[str],
    kubeconfig: str | None,
    identity: str,
    metrics_host: str = "0.0.0.0",
    metrics_port: int = 8080,
    per_job_labels: bool = True,
    lease: LeaseSettings | None = None,
    failing_threshold: int = 3,
    status_batch_seconds: float = DEFAULT_STATUS_BATCH_SECONDS,
    success_events: SuccessEvents = SuccessEvents.RECOVERY,
) -> int:
    """Run until SIGINT or SIGTERM; return the process exit code.

    With ``lease`` set, the process first waits to acquire the Lease and does
    nothing else meanwhile: no watches, no writes. It exits with 1 as soon as
    it loses the Lease, so a stale leader never acts.
    """
    if kubeconfig:
        # kopf reads the same file for its own watches.
        os.environ["KUBECONFIG"] = kubeconfig
    metrics = Metrics(per_job_labels=per_job_labels)
    kube = await KubeClient.connect(
        kubeconfig=kubeconfig,
        on_error=lambda verb, code: metrics.api_errors.labels(verb, code).inc(),
    )
    controller = Controller(
        kube,
        identity=identity,
        metrics=metrics,
        failing_threshold=failing_threshold,
        status_batch_seconds=status_batch_seconds,
        success_events=success_events,
    )
    elector = None
    if lease is not None:
        elector = LeaderElector(
            kube, lease, identity, on_change=lambda leading: metrics.leader.set(int(leading))
        )
    else:
        metrics.leader.set(1)

    def liveness() -> str | None:
        if not controller.running:
            return None  # A follower runs no scheduler loop; its Lease loop keeps it honest.
        stalled = time.monotonic() - controller.last_tick
        if stalled > LOOP_STALL_SECONDS:
            return f"the scheduler loop has not run for {stalled:.0f}s"
        return None

    def ready() -> bool:
        # A healthy follower is ready too, so a Deployment of replicas becomes Available.
        return controller.primed or (elector is not None and not elector.leading)

    health = HealthServer(
        metrics, liveness=liveness, readiness=ready, host=metrics_host, port=metrics_port
    )
    await health.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    logger.info(
        "sked starting as %s, watching %s", identity, ", ".join(namespaces) or "all namespaces"
    )
    try:
        if elector is not None and not await _wait_for_lease(elector, stop):
            logger.info("sked stopped before it became the leader")
            return 0
        return await _lead(controller, elector, namespaces, stop)
    finally:
        await health.stop()
        await kube.close()


async def _wait_for_lease(elector: LeaderElector, stop: asyncio.Event) -> bool:
    """Wait until the Lease is ours (True) or a stop signal came first (False)."""
    acquiring = asyncio.create_task(elector.acquire())
    stopping = asyncio.create_task(stop.wait())
    await asyncio.wait({acquiring, stopping}, return_when=asyncio.FIRST_COMPLETED)
    stopping.cancel()
    if acquiring.done():
        return True
    acquiring.cancel()
    return False


async def _lead(
    controller: Controller,
    elector: LeaderElector | None,
    namespaces: list[str],
    stop: asyncio.Event,
) -> int:
    """Schedule as the leader until stopped or the Lease is lost; return the exit code."""
    settings = kopf.OperatorSettings()
    handlers.configure(settings)
    await controller.prime(namespaces or None)
    scheduler = asyncio.create_task(controller.run(), name="scheduler")
    kopf_stop = asyncio.Event()
    kopf_ready = asyncio.Event()
    watcher = asyncio.create_task(
        kopf.operator(
            standalone=True,
            clusterwide=not namespaces,
            namespaces=namespaces,
            settings=settings,
            memo=kopf.Memo(controller=controller),
            stop_flag=kopf_stop,
            ready_flag=kopf_ready,
        ),
        name="kopf",
    )
    # kopf installs SIGINT and SIGTERM handlers of its own once it runs; take them
    # back, so a signal stops scheduling first and the Lease is released at once.
    ready_wait = asyncio.create_task(kopf_ready.wait())
    await asyncio.wait({ready_wait, watcher}, timeout=30, return_when=asyncio.FIRST_COMPLETED)
    ready_wait.cancel()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    stopping = asyncio.create_task(stop.wait(), name="signal")
    tasks = {scheduler, watcher, stopping}
    if elector is not None:
        tasks.add(asyncio.create_task(elector.hold(), name="lease"))
    done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)

    # Stop scheduling first: after a lost Lease another replica may already act.
    scheduler.cancel()
    code = 0
    for task in done:
        error = None if task is stopping or task.cancelled() else task.exception()
        if isinstance(error, LeadershipLost):
            logger.error("stopping at once: %s", error)
            code = 1
        elif error is not None:
            logger.error("%s stopped with an error", task.get_name(), exc_info=error)
            code = 1
    logger.info("sked stopping")
    for task in tasks - {watcher}:
        task.cancel()
    _, still_running = await asyncio.wait(tasks - {watcher}, timeout=STOP_TIMEOUT_SECONDS)
    if still_running:
        # A task that ignores its cancel could go on creating Pods after the
        # Lease is gone, and asyncio.run would wait for it forever. End the
        # process instead: a stale leader must never act.
        names = ", ".join(sorted(task.get_name() for task in still_running))
        logger.critical("%s did not stop within %ds; exiting at once", names, STOP_TIMEOUT_SECONDS)
        logging.shutdown()
        os._exit(1)
    await controller.stop()
    if code == 0:
        # Still the leader: write the batched run progress, so the next leader
        # reads it from status instead of adopting the Pods.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(FLUSH_TIMEOUT_SECONDS):
                await controller.flush()
    # Nothing schedules any more, so the Lease can go to a follower before the
    # watches finish closing.
    if elector is not None and code == 0:
        await elector.release()
    kopf_stop.set()
    with contextlib.suppress(asyncio.CancelledError, Exception):
        await asyncio.wait_for(watcher, 10)
    logger.info("sked stopped")
    return code
