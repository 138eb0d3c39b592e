"""Failover under faults: no slot runs twice and none is dropped.

Three ``sked run`` replicas share one Lease and reach the API server through a proxy.
While ScheduledJobs fire every few seconds, the test kills the leader with SIGKILL. Some
kills land just after a due time, between a Pod's create and the status write that names
it. The test also stops the leader with SIGTERM and restarts kube-apiserver and etcd.
Once it silences every open watch stream for good while new requests still pass, so the
leader keeps its Lease and must notice the dead watches by itself. At the end every slot
due in the window must have exactly one Pod or be counted in status.missedRuns, and
status.runs must name the Pods.

The short form runs under ``-m integration`` with short Lease timings. The full form runs
under ``-m chaos`` with the default timings (15, 10 and 2 s), more jobs and more faults.
Set SKED_CHAOS_SEED to repeat an order of faults; the seed is printed either way.
"""

from __future__ import annotations

import dataclasses
import os
import random
import signal
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from sked.handlers import WATCH_CLIENT_TIMEOUT
from sked.localcluster import LocalCluster
from tests.integration.chaos_support import (
    FreezingProxy,
    LeaderMonitor,
    LeaseRecord,
    OperatorReplicas,
    PodCreationRecorder,
    PodRecord,
    SecondsSchedule,
    SlotAccount,
    account_slots,
    median_and_max,
    unix_seconds,
    wait_for_namespace_deleted,
    write_proxied_kubeconfig,
)
from tests.integration.support import (
    GROUP,
    PLURAL,
    VERSION,
    Jobs,
    OperatorProcess,
    namespace,
    pod_template,
    wait_until,
)

LEASE_NAME = "sked-chaos"
HISTORY_LIMIT = 100
STARTING_DEADLINE_SECONDS = 30
# A connection open when the watches are silenced goes silent once its client has sent
# nothing for this long, so a request waiting for its response is not cut off.
QUIET_SECONDS = 3.0
# Every connection open at the start of the silence is silent this long after it. The
# slowest to go silent is one whose client sent a request just before the start and one
# more just before the first quiet period ended: it takes two quiet periods.
ALL_SILENT_AFTER_SECONDS = 2 * QUIET_SECONDS + 1

SIGKILL_AFTER_DUE = "SIGKILL just after a due time"
SIGKILL_AT_RANDOM = "SIGKILL at a random moment"
SIGTERM = "SIGTERM"
APISERVER_RESTART = "kube-apiserver restart"
ETCD_RESTART = "etcd restart"
WATCH_SILENCE = "watch silence"


@dataclasses.dataclass(frozen=True)
class ChaosPlan:
    """One form of the test: the jobs, the Lease timings and how many faults of each kind."""

    name: str
    schedules: tuple[SecondsSchedule, ...]
    lease_duration: float
    renew_deadline: float
    retry_period: float
    faults: dict[str, int]
    min_seconds: float
    """The window, from the first job's creation to the end, lasts at least this long."""
    apiserver_graceful: bool = True

    @property
    def operator_args(self) -> list[str]:
        return [
            f"--lease-name={LEASE_NAME}",
            f"--lease-duration={self.lease_duration:g}",
            f"--renew-deadline={self.renew_deadline:g}",
            f"--retry-period={self.retry_period:g}",
        ]


SHORT = ChaosPlan(
    name="short",
    schedules=tuple(
        SecondsSchedule(step, offset)
        for step, offset in [(5, 0), (5, 1), (6, 0), (10, 0), (10, 3), (12, 0), (15, 0), (20, 0)]
    ),
    lease_duration=6,
    renew_deadline=4,
    retry_period=1,
    faults={SIGKILL_AFTER_DUE: 2, SIGKILL_AT_RANDOM: 1, SIGTERM: 1, APISERVER_RESTART: 1},
    min_seconds=90,
)

# Steps of 10 s and more keep a job below HISTORY_LIMIT runs for 15 minutes.
FULL = ChaosPlan(
    name="full",
    schedules=tuple(
        SecondsSchedule(step, offset)
        for step, offset in [
            (10, 0),
            (10, 0),
            (10, 2),
            (10, 5),
            (10, 7),
            (12, 0),
            (12, 3),
            (12, 6),
            (15, 0),
            (15, 4),
            (15, 9),
            (15, 11),
            (20, 0),
            (20, 5),
            (20, 10),
            (20, 13),
            (30, 0),
            (30, 10),
            (30, 15),
            (30, 21),
        ]
    ),
    lease_duration=15,
    renew_deadline=10,
    retry_period=2,
    faults={
        SIGKILL_AFTER_DUE: 5,
        SIGKILL_AT_RANDOM: 6,
        SIGTERM: 3,
        APISERVER_RESTART: 1,
        ETCD_RESTART: 1,
    },
    min_seconds=300,
    apiserver_graceful=False,
)


@dataclasses.dataclass
class Fault:
    """One fault the test injected; ``at`` is time.time() when it began."""

    kind: str
    at: float
    identity: str = ""
    """The replica signalled, for SIGKILL and SIGTERM."""
    slot: int | None = None
    """The due time a SIGKILL followed, as Unix seconds."""
    seconds: float = 0.0
    """How long a restart took until the API server was ready again."""


@dataclasses.dataclass
class Silence:
    """The watch silence and how the leader recovered from it; times are time.time()."""

    started: float
    open_connections: int
    leader: LeaseRecord
    job_watch_back: float
    """When the first Pod of a ScheduledJob created during the silence was seen."""
    pod_watch_back: float
    """When status first showed a run Succeeded whose Pod was created during the silence."""
    leaders_during: list[LeaseRecord]


def sleep_until(instant: float) -> None:
    time.sleep(max(0.0, instant - time.time()))


class Chaos:
    """Runs one ChaosPlan against replicas that are already started."""

    def __init__(
        self,
        plan: ChaosPlan,
        *,
        cluster: LocalCluster,
        jobs: Jobs,
        proxy: FreezingProxy,
        replicas: OperatorReplicas,
        monitor: LeaderMonitor,
        recorder: PodCreationRecorder,
        rng: random.Random,
    ) -> None:
        self.plan = plan
        self.cluster = cluster
        self.jobs = jobs
        self.proxy = proxy
        self.replicas = replicas
        self.monitor = monitor
        self.recorder = recorder
        self.rng = rng
        self.schedules: dict[str, SecondsSchedule] = {}
        self.created: dict[str, float] = {}
        self.faults: list[Fault] = []
        self.silence: Silence | None = None
        self.settled_checks = 0

    # -- jobs -----------------------------------------------------------------------

    def create_job(self, name: str, schedule: SecondsSchedule) -> None:
        body = self.jobs.create(
            name,
            {
                "schedule": schedule.expression,
                "concurrencyPolicy": "Allow",
                "startingDeadlineSeconds": STARTING_DEADLINE_SECONDS,
                "history": {
                    "successfulRunsLimit": HISTORY_LIMIT,
                    "failedRunsLimit": HISTORY_LIMIT,
                },
                "template": pod_template({"kwok.sked.dev/succeed-after": "1s"}),
            },
        )
        self.schedules[name] = schedule
        self.created[name] = unix_seconds(body["metadata"]["creationTimestamp"])

    def create_jobs(self) -> None:
        for index, schedule in enumerate(self.plan.schedules):
            self.create_job(f"job-{index:02d}-every-{schedule.step}s", schedule)

    def statuses(self) -> dict[str, dict[str, Any]]:
        listed: Any = self.jobs.custom.list_namespaced_custom_object(
            GROUP, VERSION, self.jobs.namespace, PLURAL
        )
        return {item["metadata"]["name"]: item.get("status") or {} for item in listed["items"]}

    def next_busy_second(self, after: float) -> int:
        """Return the first second after ``after`` at which at least three jobs fall due."""
        second = int(after) + 1
        while sum(s.fires_at(second) for s in self.schedules.values()) < 3:
            second += 1
        return second

    # -- the leader -----------------------------------------------------------------

    def wait_for_one_leader(self) -> LeaseRecord:
        """Wait until one running replica holds the Lease, alone reports sked_leader 1, and
        has created a Pod since it acquired the Lease."""

        def settled() -> LeaseRecord | None:
            lease = self.monitor.read_lease()
            if lease is None or not lease.holder or lease.acquired_at is None:
                return None
            if self.replicas.by_identity(lease.holder) is None:
                return None
            gauges = self.replicas.leader_gauges()
            if gauges.get(lease.holder) != 1:
                return None
            if any(value != 0 for name, value in gauges.items() if name != lease.holder):
                return None
            if self.recorder.first_seen_after(lease.acquired_at) is None:
                return None
            return lease

        lease = wait_until(
            settled,
            timeout=2 * self.plan.lease_duration + 60,
            message=lambda: "one leader that creates Pods\n" + self.describe(),
        )
        self.settled_checks += 1
        return lease

    def describe(self) -> str:
        """Return the Lease, the gauges and the recorder's state, for failure messages."""
        pods = self.recorder.pods()
        return "\n".join(
            [
                f"Lease: {self.monitor.read_lease()}",
                f"gauges: {self.replicas.leader_gauges()}",
                f"last Pod seen: {pods[-1] if pods else None}; now {time.time():.3f}",
                f"Pod recorder: {self.recorder.broken_watches} broken watches, "
                f"{self.recorder.relists} lists, last error {self.recorder.last_error}",
                self.replicas.log_tails(),
            ]
        )

    # -- faults -----------------------------------------------------------------------

    def inject(self, kind: str) -> None:
        if kind == SIGKILL_AFTER_DUE:
            self.signal_leader(signal.SIGKILL, kind, after_due=True)
        elif kind in (SIGKILL_AT_RANDOM, SIGTERM):
            sig = signal.SIGKILL if kind == SIGKILL_AT_RANDOM else signal.SIGTERM
            self.signal_leader(sig, kind, after_due=False)
        elif kind == APISERVER_RESTART:
            self.restart(
                kind, lambda: self.cluster.restart_apiserver(graceful=self.plan.apiserver_graceful)
            )
        elif kind == ETCD_RESTART:
            self.restart(kind, lambda: self.cluster.restart_etcd(graceful=True))
        elif kind == WATCH_SILENCE:
            self.silence_watches()
        else:
            raise ValueError(f"unknown fault {kind!r}")

    def signal_leader(self, sig: signal.Signals, kind: str, *, after_due: bool) -> None:
        while True:
            lease = self.wait_for_one_leader()
            slot = None
            if after_due:
                # 30 to 250 ms after the due time: the leader is creating that slot's Pods
                # or writing their status, so some Pods exist that no status names yet.
                slot = self.next_busy_second(time.time() + 1.5)
                sleep_until(slot + self.rng.uniform(0.03, 0.25))
            else:
                time.sleep(self.rng.uniform(0.5, 4.0))
            # The leader may have exited while the test waited, after an API outage.
            at = self.replicas.send_signal(lease.holder, sig)
            if at is not None:
                break
        self.faults.append(Fault(kind=kind, at=at, identity=lease.holder, slot=slot))

    def restart(self, kind: str, action: Callable[[], None]) -> None:
        self.wait_for_one_leader()
        time.sleep(self.rng.uniform(0.5, 3.0))
        at = time.time()
        action()
        self.faults.append(Fault(kind=kind, at=at, seconds=time.time() - at))

    def silence_watches(self) -> None:
        """Silence every open connection, then wait until the same leader watches again.

        The silence is for good: the silenced connections never deliver another byte, so
        only the leader's own watch timeouts can bring its caches back. A ScheduledJob
        created during the silence gets a Pod only once the leader watches ScheduledJobs
        again. A run whose Pod was created during the silence shows Succeeded in status
        only once the leader watches Pods again, because nothing else reads Pod phases.
        """
        lease = self.wait_for_one_leader()
        self.wait_for_pod_watch(after=lease.acquired_at or 0.0)
        started = time.time()
        open_connections = self.proxy.silence_open_connections(quiet=QUIET_SECONDS)
        self.faults.append(Fault(kind=WATCH_SILENCE, at=started))
        sleep_until(started + ALL_SILENT_AFTER_SECONDS)
        probe = "created-while-silent"
        self.create_job(probe, SecondsSchedule(5))

        def job_watch_back() -> float | None:
            pods = [pod for pod in self.recorder.pods() if pod.job == probe]
            return pods[0].seen_at if pods else None

        job_seen = wait_until(
            job_watch_back,
            timeout=WATCH_CLIENT_TIMEOUT + 60,
            interval=1,
            message="a Pod of the ScheduledJob created during the watch silence",
        )
        pod_seen = self.wait_for_pod_watch(after=started + ALL_SILENT_AFTER_SECONDS)
        self.silence = Silence(
            started=started,
            open_connections=open_connections,
            leader=lease,
            job_watch_back=job_seen,
            pod_watch_back=pod_seen,
            leaders_during=self.monitor.holders_between(started, time.time()),
        )

    def wait_for_pod_watch(self, *, after: float) -> float:
        """Wait until status shows Succeeded for a run whose slot is after ``after``."""

        def succeeded_run() -> float | None:
            for status in self.statuses().values():
                for run in status.get("runs") or []:
                    slot = unix_seconds(run["scheduledTime"])
                    if slot >= after and run.get("phase") == "Succeeded":
                        return time.time()
            return None

        return float(
            wait_until(
                succeeded_run,
                timeout=WATCH_CLIENT_TIMEOUT + 60,
                interval=1,
                message="status to show a run Succeeded that the Pod watch reported",
            )
        )

    def fault_order(self) -> list[str]:
        """Return the faults in a random order, the watch silence in the middle."""
        kinds = [kind for kind, count in self.plan.faults.items() for _ in range(count)]
        self.rng.shuffle(kinds)
        kinds.insert(len(kinds) // 2, WATCH_SILENCE)
        return kinds

    # -- the end ----------------------------------------------------------------------

    def catch_up(self) -> tuple[dict[str, dict[str, Any]], dict[str, int]]:
        """Wait until the leader handled every slot due before now and every run ended.

        Returns the statuses and, per job, the last slot of the window.
        """
        self.wait_for_one_leader()
        first_created = min(self.created.values())
        end = first_created + self.plan.min_seconds
        if self.silence is not None:
            # Slots after the silence plus the watch timeout must run too.
            end = max(end, self.silence.started + WATCH_CLIENT_TIMEOUT + QUIET_SECONDS)
        sleep_until(end)
        snapshot_at = time.time() - 1
        until = {
            name: schedule.slots(snapshot_at - 3600, snapshot_at)[-1]
            for name, schedule in self.schedules.items()
        }

        def caught_up() -> dict[str, dict[str, Any]] | None:
            statuses = self.statuses()
            pods = self.recorder.pods()
            for name, last_slot in until.items():
                status = statuses.get(name, {})
                last = status.get("lastScheduleTime")
                if last is None or unix_seconds(last) < last_slot:
                    return None
                for run in status.get("runs") or []:
                    ended = run.get("phase") in ("Succeeded", "Failed")
                    if unix_seconds(run["scheduledTime"]) <= last_slot and not ended:
                        return None
                for pod in pods:
                    if pod.job == name and pod.slot <= last_slot and pod.phase != "Succeeded":
                        return None
            return statuses

        statuses = wait_until(
            caught_up,
            timeout=60,
            interval=1,
            message="every job to handle its due slots and every run to end",
        )
        return statuses, until


@dataclasses.dataclass
class Report:
    """What one run of a plan found, printed before anything is asserted."""

    plan: ChaosPlan
    seed: int
    seconds: float
    faults: list[Fault]
    accounts: list[SlotAccount]
    status_problems: list[str]
    gaps: dict[str, list[float]]
    takeovers: dict[str, list[float]]
    unmeasured: list[str]
    silence: Silence | None
    silenced_connections: int
    silenced_ended_by_client: list[float]
    adopted_pods: int
    overlaps: list[tuple[float, dict[str, float | None]]]
    unexpected_exits: list[str]
    sigterm_exit_codes: list[int | None]
    exits: Counter[str]
    settled_checks: int
    recorder_relists: int
    lease_transitions: int

    @property
    def duplicates(self) -> int:
        return sum(len(account.duplicated) for account in self.accounts)

    @property
    def lost(self) -> int:
        return sum(account.lost for account in self.accounts)

    @property
    def overcounted(self) -> int:
        return sum(account.overcounted for account in self.accounts)

    def text(self) -> str:
        kinds = Counter(fault.kind for fault in self.faults)
        due = sum(len(account.expected) for account in self.accounts)
        with_pod = sum(len(account.with_pod) for account in self.accounts)
        missed = sum(account.missed_runs for account in self.accounts)
        lines = [
            f"failover chaos, {self.plan.name} form: seed {self.seed}, {self.seconds:.0f}s, "
            f"{len(self.accounts)} ScheduledJobs, Lease {self.plan.lease_duration:g}/"
            f"{self.plan.renew_deadline:g}/{self.plan.retry_period:g}s",
            f"faults injected: {len(self.faults)} ("
            + ", ".join(f"{count} {kind}" for kind, count in sorted(kinds.items()))
            + ")",
        ]
        for kind in ("SIGKILL", "SIGTERM"):
            lines.append(
                f"failover gap after {kind} (first Pod after the kill minus the later of the "
                f"kill and its due time): {median_and_max(self.gaps.get(kind, []))}"
            )
            lines.append(
                f"  Lease taken over after {kind}: {median_and_max(self.takeovers.get(kind, []))}"
            )
        lines += [f"  not measured: {item}" for item in self.unmeasured]
        lines.append(
            f"Pods a killed leader created before it logged their status write: {self.adopted_pods}"
        )
        if self.silence is not None:
            silence = self.silence
            ended = median_and_max(self.silenced_ended_by_client)
            lines.append(
                f"watch silence: {silence.open_connections} connections open, "
                f"{self.silenced_connections} went silent; the leader's ScheduledJob watch "
                f"was back after {silence.job_watch_back - silence.started:.1f}s and its Pod "
                f"watch after at most {silence.pod_watch_back - silence.started:.1f}s "
                f"(watch client timeout {WATCH_CLIENT_TIMEOUT}s); silent connections the "
                f"clients ended, time after the silence began: {ended}"
            )
        lines += [
            f"slots due: {due}, with a Pod: {with_pod}, counted in missedRuns: {missed}",
            f"duplicated slots: {self.duplicates}, lost slots: {self.lost}, "
            f"misses counted for slots that ran: {self.overcounted}",
            f"one leader confirmed {self.settled_checks} times (Lease holder alone with "
            f"sked_leader 1); moments with two gauges at 1: {len(self.overlaps)}; "
            f"leaseTransitions: {self.lease_transitions}",
            "replica exits: " + ", ".join(f"{n} {k}" for k, n in sorted(self.exits.items())),
            f"Pod recorder lists after a broken watch: {self.recorder_relists}",
        ]
        return "\n".join(lines)


def failover_gaps(chaos: Chaos) -> tuple[dict[str, list[float]], dict[str, list[float]], list[str]]:
    """Measure, per signal, each kill's failover gap and how soon the Lease changed hands."""
    gaps: dict[str, list[float]] = {}
    takeovers: dict[str, list[float]] = {}
    unmeasured = []
    for fault in chaos.faults:
        if not fault.identity:
            continue
        kind = SIGTERM if fault.kind == SIGTERM else "SIGKILL"
        successor = chaos.monitor.acquisition_after(fault.at, other_than=fault.identity)
        if successor is None or successor.acquired_at is None:
            unmeasured.append(f"{fault.kind} of {fault.identity}: no later holder seen")
            continue
        first = chaos.recorder.first_seen_after(successor.acquired_at)
        if first is None:
            unmeasured.append(f"{fault.kind} of {fault.identity}: no Pod from the next leader")
            continue
        gaps.setdefault(kind, []).append(first.seen_at - max(fault.at, first.slot))
        takeovers.setdefault(kind, []).append(successor.acquired_at - fault.at)
    return gaps, takeovers, unmeasured


def pods_created_before_status(chaos: Chaos) -> int:
    """Count Pods that a leader killed just after a due time created but never logged.

    The operator logs PodCreated after the status write that names the Pod returns, so
    a Pod without that line was left for the next leader to adopt (or its status write
    landed in the last moment before the kill).
    """
    count = 0
    pods = chaos.recorder.pods()
    for fault in chaos.faults:
        if fault.kind != SIGKILL_AFTER_DUE:
            continue
        log = chaos.replicas.log_since_start(fault.identity)
        for pod in pods:
            if pod.slot == fault.slot and pod.seen_at <= fault.at + 0.5:
                count += f"created Pod {pod.name} " not in log
    return count


def status_problems(
    name: str, status: dict[str, Any], pods: list[PodRecord], last_slot: int
) -> list[str]:
    """Compare the runs in status with the Pods seen, for the slots up to ``last_slot``."""
    problems = []
    by_slot: dict[int, set[str]] = {}
    for pod in pods:
        if pod.slot <= last_slot and pod.deleted_at is None:
            by_slot.setdefault(pod.slot, set()).add(pod.name)
    runs: dict[int, set[str]] = {}
    for run in status.get("runs") or []:
        slot = int(unix_seconds(run["scheduledTime"]))
        if run.get("trigger") or slot > last_slot:
            continue
        runs[slot] = {attempt["podName"] for attempt in run.get("attempts") or []}
        if run.get("phase") != "Succeeded":
            problems.append(f"{name}: run {slot} is {run.get('phase')}, its Pod Succeeded")
    if runs != by_slot:
        only_status = sorted(set(runs) - set(by_slot))
        only_pods = sorted(set(by_slot) - set(runs))
        differing = sorted(s for s in set(runs) & set(by_slot) if runs[s] != by_slot[s])
        problems.append(
            f"{name}: status.runs and Pods differ: runs without a Pod {only_status}, "
            f"Pods without a run {only_pods}, other Pod names {differing}"
        )
    if status.get("missedRunsIsLowerBound"):
        problems.append(f"{name}: missedRunsIsLowerBound is set for a fixed-period schedule")
    return problems


def run_chaos(
    plan: ChaosPlan, cluster: LocalCluster, api_client: client.ApiClient, workdir: Path
) -> Report:
    seed = int(os.environ.get("SKED_CHAOS_SEED") or random.randrange(1 << 30))
    rng = random.Random(seed)
    started = time.monotonic()
    with (
        namespace(api_client, prefix="chaos") as name,
        FreezingProxy("127.0.0.1", int(cluster.server.rsplit(":", 1)[1])) as proxy,
    ):
        kubeconfig = write_proxied_kubeconfig(
            cluster.kubeconfig, workdir / "proxied-kubeconfig", f"https://127.0.0.1:{proxy.port}"
        )
        replicas = OperatorReplicas(
            kubeconfig,
            workdir,
            count=3,
            args=[f"--namespace={name}", f"--lease-namespace={name}", *plan.operator_args],
        )
        recorder = PodCreationRecorder(cluster.kubeconfig, name)
        monitor = LeaderMonitor(cluster.kubeconfig, name, LEASE_NAME, replicas)
        chaos = Chaos(
            plan,
            cluster=cluster,
            jobs=Jobs(api_client, name),
            proxy=proxy,
            replicas=replicas,
            monitor=monitor,
            recorder=recorder,
            rng=rng,
        )
        with recorder, replicas, monitor:
            try:
                chaos.create_jobs()
                for kind in chaos.fault_order():
                    chaos.inject(kind)
                statuses, until = chaos.catch_up()
            except BaseException:
                print(replicas.log_tails())
                raise
            finally:
                replicas.stop()
        lease = monitor.read_lease()
        silenced = proxy.silenced()
    # Hundreds of Pods go with the namespace. Later tests and the session's operator, which
    # starts again after this test, should not meet a namespace that is still terminating.
    if not wait_for_namespace_deleted(api_client, name, timeout=120):
        print(f"namespace {name} was still terminating after 120s")

    pods = recorder.pods()
    accounts = []
    problems = []
    for job, schedule in chaos.schedules.items():
        job_pods = [pod for pod in pods if pod.job == job]
        accounts.append(
            account_slots(
                job,
                schedule,
                created=chaos.created[job],
                until=until[job],
                pods=job_pods,
                status=statuses[job],
            )
        )
        problems += status_problems(job, statuses[job], job_pods, until[job])
    gaps, takeovers, unmeasured = failover_gaps(chaos)
    exits = Counter(
        (f"by {e.sent_signal} code {e.code}" if e.sent_signal else f"by itself code {e.code}")
        + (" (lost Lease)" if e.lost_lease else "")
        for e in replicas.exits
    )
    return Report(
        plan=plan,
        seed=seed,
        seconds=time.monotonic() - started,
        faults=chaos.faults,
        accounts=accounts,
        status_problems=problems,
        gaps=gaps,
        takeovers=takeovers,
        unmeasured=unmeasured,
        silence=chaos.silence,
        silenced_connections=len(silenced),
        silenced_ended_by_client=[
            c.ended_by_client_at - c.silent_since for c in silenced if c.ended_by_client_at
        ],
        adopted_pods=pods_created_before_status(chaos),
        overlaps=monitor.overlaps,
        unexpected_exits=[
            f"{e.identity} exited with {e.code}"
            for e in replicas.exits
            if e.sent_signal is None and not e.lost_lease
        ],
        sigterm_exit_codes=[e.code for e in replicas.exits if e.sent_signal == "SIGTERM"],
        exits=exits,
        settled_checks=chaos.settled_checks,
        recorder_relists=recorder.relists,
        lease_transitions=lease.transitions if lease else -1,
    )


def check(report: Report) -> None:
    """Print the report, then assert on everything but timing."""
    text = report.text()
    print("\n" + text)
    kinds = Counter(fault.kind for fault in report.faults)
    for kind, count in report.plan.faults.items():
        assert kinds[kind] == count, f"{kind} injected {kinds[kind]} times\n{text}"

    assert report.duplicates == 0, {a.job: a.duplicated for a in report.accounts if a.duplicated}
    assert report.lost == 0, {a.job: a.without_pod for a in report.accounts if a.lost}
    assert report.overcounted == 0, {
        a.job: (a.missed_runs, a.without_pod) for a in report.accounts if a.overcounted
    }
    for account in report.accounts:
        assert not account.outside, f"{account.job}: Pods for slots never due {account.outside}"
        assert not account.retries, f"{account.job}: retries of Pods that succeed {account.retries}"
        assert not account.deleted, f"{account.job}: Pods deleted {account.deleted}"
        assert len(account.expected) < HISTORY_LIMIT, (
            f"{account.job}: {len(account.expected)} slots were due, more runs than the "
            f"history keeps ({HISTORY_LIMIT}), so status.runs cannot name every Pod"
        )
        if not account.without_pod:
            continue
        # The newest slot that got no Pod is the last one the operator counted as missed.
        last_missed = account.last_missed or {}
        missed_at = last_missed.get("scheduledTime")
        message = f"{account.job}: lastMissed {last_missed}, no Pod for {account.without_pod}"
        assert missed_at is not None, message
        assert unix_seconds(missed_at) == max(account.without_pod), message
        assert last_missed.get("reason") in ("catchUp", "deadline"), message
    assert not report.status_problems, "\n".join(report.status_problems)

    assert not report.overlaps, f"two replicas reported sked_leader 1: {report.overlaps}"
    assert not report.unexpected_exits, report.unexpected_exits
    assert all(code == 0 for code in report.sigterm_exit_codes), report.sigterm_exit_codes
    assert not report.unmeasured, report.unmeasured

    silence = report.silence
    assert silence is not None
    assert report.silenced_connections >= 2, "the leader's two watch streams did not go silent"
    changes = [
        record
        for record in silence.leaders_during
        if (record.holder, record.acquired_at)
        != (silence.leader.holder, silence.leader.acquired_at)
    ]
    assert not changes, f"the Lease changed hands during the watch silence: {changes}"


@pytest.fixture
def session_operator_stopped(operator: OperatorProcess) -> Iterator[None]:
    """Stop the session's operator, which watches every namespace, for the test's length."""
    operator.stop()
    try:
        yield
    finally:
        operator.start()


@pytest.mark.integration
@pytest.mark.timeout(600)
@pytest.mark.usefixtures("crd", "session_operator_stopped")
def test_failover_keeps_every_slot_once(
    local_cluster: LocalCluster, api_client: client.ApiClient, tmp_path: Path
) -> None:
    check(run_chaos(SHORT, local_cluster, api_client, tmp_path))


@pytest.mark.chaos
@pytest.mark.timeout(1800)
@pytest.mark.usefixtures("crd", "session_operator_stopped")
def test_failover_under_full_chaos(
    local_cluster: LocalCluster, api_client: client.ApiClient, tmp_path: Path
) -> None:
    check(run_chaos(FULL, local_cluster, api_client, tmp_path))
