"""Helpers for the failover tests: operator replicas, a proxy that silences watches, recorders.

- `OperatorReplicas` runs several ``sked run`` processes and starts each again when it exits,
  as a Deployment replaces its Pods.
- `FreezingProxy` sits between the replicas and the API server and can make the connections
  open at one moment go silent while new connections still pass.
- `PodCreationRecorder` and `LeaderMonitor` watch the cluster directly, not through the proxy,
  from threads of their own: every Pod creation with its slot and attempt, every holder of
  the Lease, and the ``sked_leader`` gauge of every replica.
- `SecondsSchedule` and `account_slots` compute which slots were due and how each one was
  handled, without the operator's own schedule code.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import json
import os
import signal
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client, config
from kubernetes.watch.watch import iter_resp_lines

from tests.integration.support import free_port

LABEL_SCHEDULEDJOB = "sked.dev/scheduledjob"
ANNOTATION_SCHEDULED_TIME = "sked.dev/scheduled-time"
ANNOTATION_ATTEMPT = "sked.dev/attempt"


def parse_time(value: str) -> dt.datetime:
    """Parse an RFC 3339 time as the API server writes it, such as 2025-01-02T03:04:05.123456Z."""
    return dt.datetime.fromisoformat(value.replace("Z", "+00:00"))


def unix_seconds(value: str) -> float:
    return parse_time(value).timestamp()


def new_api_client(kubeconfig: Path) -> client.ApiClient:
    """Return a client of its own, because the threads here must not share one."""
    return config.new_client_from_config(config_file=str(kubeconfig))


def write_proxied_kubeconfig(source: Path, target: Path, server: str) -> Path:
    """Copy a kubeconfig with every cluster's server URL replaced by ``server``.

    The API server's certificate names 127.0.0.1, so TLS through a proxy on 127.0.0.1
    still verifies. The source must embed its certificates (``*-data`` keys).
    """
    kubeconfig = yaml.safe_load(source.read_text())
    for cluster in kubeconfig["clusters"]:
        cluster["cluster"]["server"] = server
    target.write_text(yaml.safe_dump(kubeconfig))
    return target


def wait_for_namespace_deleted(api_client: client.ApiClient, name: str, timeout: float) -> bool:
    """Wait until namespace ``name`` is gone; return False if it still exists after ``timeout``."""
    core = client.CoreV1Api(api_client)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            core.read_namespace(name)
        except client.ApiException as error:
            if error.status == 404:
                return True
            raise
        time.sleep(1)
    return False


# ---------------------------------------------------------------------------------------
# A TCP proxy that can silence the connections open at one moment
# ---------------------------------------------------------------------------------------


@dataclasses.dataclass(eq=False)
class _Connection:
    opened_at: float
    last_client_bytes: float
    client_writer: asyncio.StreamWriter
    upstream_writer: asyncio.StreamWriter | None = None
    marked: bool = False
    silent_since: float | None = None
    ended_at: float | None = None


@dataclasses.dataclass(frozen=True)
class SilencedConnection:
    """A connection the proxy silenced; times are time.monotonic() values."""

    opened_at: float
    silent_since: float
    ended_by_client_at: float | None
    """When the client closed it or sent a new request on it; None while it is still open."""


class FreezingProxy:
    """A TCP proxy on 127.0.0.1 whose open connections can be made to go silent.

    Bytes pass unchanged in both directions, so TLS ends at the API server and a client
    verifies the server's certificate as without the proxy. After
    `silence_open_connections`, every connection open at that moment goes silent as soon
    as its client has sent nothing for ``quiet`` seconds: an open watch stream or an idle
    keep-alive connection, but not a request waiting for its response. Connections
    accepted later pass as before.

    A silent connection drops what the server sends and hides the server's close, so its
    client sees a stream that stays open and delivers nothing, as behind a broken NAT or
    load balancer. If the client sends anything on it (a new request on a kept-alive
    connection), the proxy closes it without forwarding a byte, so the client retries on
    a new connection and no request is half sent.
    """

    def __init__(self, upstream_host: str, upstream_port: int) -> None:
        self.upstream = (upstream_host, upstream_port)
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="proxy", daemon=True)
        self._server: asyncio.Server | None = None
        self._connections: set[_Connection] = set()
        self._silenced: list[_Connection] = []
        self._quiet = 3.0
        self._ticker: asyncio.Task[None] | None = None

    def __enter__(self) -> FreezingProxy:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def start(self) -> None:
        self._thread.start()
        self._call(self._start())

    def stop(self) -> None:
        if self._thread.is_alive():
            self._call(self._stop())
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=10)
            self._loop.close()

    def silence_open_connections(self, *, quiet: float = 3.0) -> int:
        """Mark every open connection to go silent; return how many were open."""
        return int(self._call(self._mark_open_connections(quiet)))

    def silenced(self) -> list[SilencedConnection]:
        """Return every connection silenced so far."""

        async def collect() -> list[SilencedConnection]:
            return [
                SilencedConnection(
                    opened_at=connection.opened_at,
                    silent_since=connection.silent_since or 0.0,
                    ended_by_client_at=connection.ended_at,
                )
                for connection in self._silenced
            ]

        return list(self._call(collect()))

    def _call(self, coroutine: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout=30)

    async def _start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = int(self._server.sockets[0].getsockname()[1])
        self._ticker = asyncio.create_task(self._silence_quiet_connections())

    async def _stop(self) -> None:
        if self._ticker is not None:
            self._ticker.cancel()
        if self._server is not None:
            self._server.close()
        for connection in list(self._connections):
            self._close(connection)

    async def _mark_open_connections(self, quiet: float) -> int:
        self._quiet = quiet
        for connection in self._connections:
            connection.marked = True
        return len(self._connections)

    async def _silence_quiet_connections(self) -> None:
        while True:
            await asyncio.sleep(0.2)
            now = time.monotonic()
            for connection in self._connections:
                if not connection.marked or connection.silent_since is not None:
                    continue
                if now - connection.last_client_bytes >= self._quiet:
                    connection.silent_since = now
                    self._silenced.append(connection)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        now = time.monotonic()
        connection = _Connection(opened_at=now, last_client_bytes=now, client_writer=writer)
        self._connections.add(connection)
        try:
            upstream_reader, connection.upstream_writer = await asyncio.wait_for(
                asyncio.open_connection(*self.upstream), timeout=5
            )
        except (OSError, TimeoutError):
            # The API server is down (restarting): the client sees a reset and retries.
            self._close(connection)
            return
        await asyncio.gather(
            self._client_to_upstream(connection, reader),
            self._upstream_to_client(connection, upstream_reader),
        )

    async def _client_to_upstream(
        self, connection: _Connection, reader: asyncio.StreamReader
    ) -> None:
        upstream = connection.upstream_writer
        assert upstream is not None
        with contextlib.suppress(OSError):
            while data := await reader.read(65536):
                if connection.silent_since is not None:
                    break  # A new request on a silent connection: close it unsent.
                connection.last_client_bytes = time.monotonic()
                upstream.write(data)
                await upstream.drain()
        if connection.silent_since is not None and connection.ended_at is None:
            connection.ended_at = time.monotonic()
        self._close(connection)

    async def _upstream_to_client(
        self, connection: _Connection, reader: asyncio.StreamReader
    ) -> None:
        with contextlib.suppress(OSError):
            while data := await reader.read(65536):
                if connection.silent_since is not None:
                    continue
                connection.client_writer.write(data)
                await connection.client_writer.drain()
        if connection.silent_since is not None:
            # The server ended the stream; the client must not learn it from the proxy.
            if connection.upstream_writer is not None:
                connection.upstream_writer.close()
            return
        self._close(connection)

    def _close(self, connection: _Connection) -> None:
        self._connections.discard(connection)
        for writer in (connection.client_writer, connection.upstream_writer):
            if writer is not None:
                with contextlib.suppress(OSError, RuntimeError):
                    writer.close()


# ---------------------------------------------------------------------------------------
# Operator replicas, started again when they exit
# ---------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class ReplicaExit:
    """One exit of one replica process; ``at`` is time.time()."""

    identity: str
    code: int | None
    at: float
    sent_signal: str | None
    """The signal the test sent it, or None when it exited by itself."""
    lost_lease: bool
    """Its log reports a lost Lease, the one reason for which a replica may exit by itself."""


@dataclasses.dataclass
class Replica:
    index: int
    metrics_port: int
    log_path: Path
    identity: str = ""
    generation: int = 0
    process: subprocess.Popen[bytes] | None = None
    sent_signal: str | None = None
    restart_at: float | None = None

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None


class OperatorReplicas:
    """Several ``sked run`` processes with distinct identities, each started again on exit.

    A replica that exits, killed by the test or by itself, is started again after
    ``restart_delay`` seconds under a new identity, as a Deployment replaces a Pod that
    is gone. A new identity cannot take the old one's Lease back at once, so a follower
    takes over after the Lease expires, which is the failover under test. (A container
    restarted inside the same Pod keeps its name and takes its Lease back at once.) Each
    replica keeps one metrics port and one log file across its restarts.
    """

    def __init__(
        self,
        kubeconfig: Path,
        log_dir: Path,
        *,
        count: int = 3,
        args: Iterable[str] = (),
        restart_delay: float = 1.0,
        name_prefix: str = "sked-replica",
    ) -> None:
        self.kubeconfig = kubeconfig
        self.args = list(args)
        self.restart_delay = restart_delay
        self.name_prefix = name_prefix
        self.replicas = [
            Replica(index=i, metrics_port=free_port(), log_path=log_dir / f"replica-{i}.log")
            for i in range(count)
        ]
        self.exits: list[ReplicaExit] = []
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._supervise, name="replicas", daemon=True)

    def __enter__(self) -> OperatorReplicas:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def start(self) -> None:
        with self._lock:
            for replica in self.replicas:
                self._spawn(replica)
        self._thread.start()

    def stop(self, timeout: float = 20) -> None:
        """Stop every replica with SIGTERM (SIGKILL after ``timeout``) and stop restarting."""
        self._stopping.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)
        with self._lock:
            for replica in self.replicas:
                if replica.running:
                    assert replica.process is not None
                    replica.process.send_signal(signal.SIGTERM)
            deadline = time.monotonic() + timeout
            for replica in self.replicas:
                if replica.process is None:
                    continue
                try:
                    replica.process.wait(max(0.1, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    replica.process.kill()
                    replica.process.wait(5)

    def by_identity(self, identity: str) -> Replica | None:
        """Return the running replica with ``identity`` unless the test already signalled it."""
        with self._lock:
            for replica in self.replicas:
                if replica.identity == identity and replica.running and not replica.sent_signal:
                    return replica
        return None

    def send_signal(self, identity: str, sig: signal.Signals) -> float | None:
        """Send ``sig`` to the running replica with ``identity``; return time.time() of it.

        Returns None when no such replica runs, because it exited meanwhile.
        """
        with self._lock:
            for replica in self.replicas:
                if replica.identity == identity and replica.running:
                    assert replica.process is not None
                    replica.sent_signal = sig.name
                    sent_at = time.time()
                    replica.process.send_signal(sig)
                    return sent_at
        return None

    def leader_gauges(self) -> dict[str, float | None]:
        """Return the ``sked_leader`` gauge of every running replica; None when unreadable."""
        with self._lock:
            running = [(r.identity, r.metrics_port) for r in self.replicas if r.running]
        return {identity: scrape_leader_gauge(port) for identity, port in running}

    def log_since_start(self, identity: str) -> str:
        """Return the log of the process that had ``identity``, from its start on."""
        for replica in self.replicas:
            text = replica.log_path.read_text(errors="replace")
            header = f"=== {identity} starting"
            start = text.find(header)
            if start >= 0:
                end = text.find("=== ", start + len(header))
                return text[start : end if end >= 0 else len(text)]
        return ""

    def log_tails(self, lines: int = 40) -> str:
        sections = []
        for replica in self.replicas:
            text = replica.log_path.read_text(errors="replace") if replica.log_path.exists() else ""
            tail = "\n".join(text.splitlines()[-lines:])
            sections.append(f"==> {replica.log_path.name} <==\n{tail}")
        return "\n\n".join(sections)

    def _spawn(self, replica: Replica) -> None:
        replica.generation += 1
        replica.identity = f"{self.name_prefix}-{replica.index}-{replica.generation}"
        replica.sent_signal = None
        replica.restart_at = None
        environment = dict(
            os.environ,
            KUBECONFIG=str(self.kubeconfig),
            PYTHONUNBUFFERED="1",
            POD_NAME=replica.identity,
        )
        with replica.log_path.open("ab") as log:
            log.write(f"=== {replica.identity} starting at {time.time():.3f}\n".encode())
            log.flush()
            replica.process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "sked.cli",
                    "run",
                    "--metrics-host=127.0.0.1",
                    f"--metrics-port={replica.metrics_port}",
                    *self.args,
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=environment,
            )

    def _supervise(self) -> None:
        while not self._stopping.wait(0.1):
            with self._lock:
                now = time.time()
                for replica in self.replicas:
                    process = replica.process
                    if process is None or process.poll() is None:
                        continue
                    if replica.restart_at is None:
                        self.exits.append(
                            ReplicaExit(
                                identity=replica.identity,
                                code=process.returncode,
                                at=now,
                                sent_signal=replica.sent_signal,
                                lost_lease="lost Lease" in self.log_since_start(replica.identity),
                            )
                        )
                        replica.restart_at = now + self.restart_delay
                    elif now >= replica.restart_at:
                        self._spawn(replica)


def scrape_leader_gauge(port: int, timeout: float = 1.0) -> float | None:
    """Return the ``sked_leader`` value from a replica's /metrics, or None if unreadable."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=timeout) as reply:
            text = reply.read().decode()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith("sked_leader "):
            return float(line.split()[1])
    return None


# ---------------------------------------------------------------------------------------
# The Lease and the gauges, sampled from a thread
# ---------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class LeaseRecord:
    """One state of the Lease: its holder and the times it wrote, as Unix seconds."""

    seen_at: float
    holder: str
    acquired_at: float | None
    renewed_at: float | None
    transitions: int


class LeaderMonitor:
    """Samples the Lease and every replica's ``sked_leader`` gauge from its own thread.

    It keeps each change of holder or acquire time, and every moment at which more than
    one replica reported 1. Such a moment counts only when a second scrape confirms it,
    because the replicas are scraped one after another and a handover may fall between.
    """

    def __init__(
        self,
        kubeconfig: Path,
        namespace: str,
        lease_name: str,
        replicas: OperatorReplicas,
        *,
        interval: float = 0.25,
    ) -> None:
        self._coordination = client.CoordinationV1Api(new_api_client(kubeconfig))
        self.namespace = namespace
        self.lease_name = lease_name
        self.replicas = replicas
        self.interval = interval
        self.history: list[LeaseRecord] = []
        self.overlaps: list[tuple[float, dict[str, float | None]]] = []
        self.read_errors = 0
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._sample, name="lease-monitor", daemon=True)

    def __enter__(self) -> LeaderMonitor:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stopping.set()
        self._thread.join(timeout=10)

    def read_lease(self) -> LeaseRecord | None:
        """Read the Lease now; None when it does not exist yet or cannot be read."""
        try:
            lease = self._coordination.read_namespaced_lease(
                self.lease_name, self.namespace, _request_timeout=5
            )
        except Exception:  # Not found yet, or the API server is restarting.
            with self._lock:
                self.read_errors += 1
            return None
        spec = lease.spec
        if spec is None:
            return None
        return LeaseRecord(
            seen_at=time.time(),
            holder=spec.holder_identity or "",
            acquired_at=spec.acquire_time.timestamp() if spec.acquire_time else None,
            renewed_at=spec.renew_time.timestamp() if spec.renew_time else None,
            transitions=spec.lease_transitions or 0,
        )

    def acquisition_after(self, instant: float, *, other_than: str) -> LeaseRecord | None:
        """Return the first holder after ``instant`` that is not ``other_than``."""
        with self._lock:
            for record in self.history:
                if (
                    record.holder
                    and record.holder != other_than
                    and record.acquired_at is not None
                    and record.acquired_at >= instant
                ):
                    return record
        return None

    def holders_between(self, start: float, end: float) -> list[LeaseRecord]:
        with self._lock:
            return [r for r in self.history if start <= r.seen_at <= end and r.holder]

    def _sample(self) -> None:
        turn = 0
        while not self._stopping.wait(self.interval):
            turn += 1
            record = self.read_lease()
            if record is not None:
                with self._lock:
                    last = self.history[-1] if self.history else None
                    if last is None or (last.holder, last.acquired_at) != (
                        record.holder,
                        record.acquired_at,
                    ):
                        self.history.append(record)
            if turn % 2 == 0:
                self._check_gauges()

    def _check_gauges(self) -> None:
        gauges = self.replicas.leader_gauges()
        claimed = [identity for identity, value in gauges.items() if value == 1]
        if len(claimed) < 2:
            return
        confirmed = self.replicas.leader_gauges()
        if sum(1 for identity in claimed if confirmed.get(identity) == 1) >= 2:
            with self._lock:
                self.overlaps.append((time.time(), confirmed))


# ---------------------------------------------------------------------------------------
# Pod creations, seen by a watch of the test's own
# ---------------------------------------------------------------------------------------


@dataclasses.dataclass
class PodRecord:
    """A Pod of a ScheduledJob as the recorder saw it; times are Unix seconds."""

    uid: str
    name: str
    job: str
    slot: int
    attempt: int
    created: float
    """metadata.creationTimestamp, which has whole seconds only."""
    seen_at: float
    """When the recorder received the Pod's first event; milliseconds after its creation."""
    found_by_list: bool = False
    """True when a list after a broken watch found it, so ``seen_at`` is late."""
    phase: str = "Pending"
    deleted_at: float | None = None


class PodCreationRecorder:
    """Records every Pod with the ScheduledJob label in a namespace, deleted ones included.

    A thread watches the Pods straight from the API server. Every uid is kept with its
    slot and attempt from the moment the ADDED event arrives, so a Pod that is deleted
    later still counts, and a name created twice shows up as two uids. The watch resumes
    from its last resourceVersion after an API server or etcd restart. When the server no
    longer keeps that version, the recorder lists again and flags the Pods found that way.
    """

    def __init__(self, kubeconfig: Path, namespace: str) -> None:
        self._core = client.CoreV1Api(new_api_client(kubeconfig))
        self.namespace = namespace
        self._pods: dict[str, PodRecord] = {}
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="pod-recorder", daemon=True)
        self._resource_version = ""
        self.broken_watches = 0
        self.relists = 0
        self.last_error = ""

    def __enter__(self) -> PodCreationRecorder:
        self._list()
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stopping.set()
        self._thread.join(timeout=20)

    def pods(self) -> list[PodRecord]:
        """Return a copy of every Pod seen so far, oldest first."""
        with self._lock:
            return sorted(
                (dataclasses.replace(pod) for pod in self._pods.values()),
                key=lambda pod: pod.seen_at,
            )

    def first_seen_after(self, instant: float) -> PodRecord | None:
        """Return a copy of the first Pod seen at or after ``instant``."""
        with self._lock:
            after = [pod for pod in self._pods.values() if pod.seen_at >= instant]
            first = min(after, key=lambda pod: pod.seen_at, default=None)
            return dataclasses.replace(first) if first is not None else None

    def _note(self, body: dict[str, Any], event_type: str, *, by_list: bool = False) -> None:
        metadata = body.get("metadata") or {}
        annotations = metadata.get("annotations") or {}
        slot = annotations.get(ANNOTATION_SCHEDULED_TIME)
        attempt = annotations.get(ANNOTATION_ATTEMPT)
        if slot is None or attempt is None:
            return
        uid = metadata["uid"]
        phase = (body.get("status") or {}).get("phase", "Pending")
        with self._lock:
            pod = self._pods.get(uid)
            if pod is None:
                pod = PodRecord(
                    uid=uid,
                    name=metadata["name"],
                    job=(metadata.get("labels") or {}).get(LABEL_SCHEDULEDJOB, ""),
                    slot=int(unix_seconds(slot)),
                    attempt=int(attempt),
                    created=unix_seconds(metadata["creationTimestamp"]),
                    seen_at=time.time(),
                    found_by_list=by_list,
                )
                self._pods[uid] = pod
            pod.phase = phase
            if event_type == "DELETED" and pod.deleted_at is None:
                pod.deleted_at = time.time()

    def _list(self) -> None:
        response: Any = self._core.list_namespaced_pod(
            self.namespace,
            label_selector=LABEL_SCHEDULEDJOB,
            _preload_content=False,
            _request_timeout=10,
        )
        listed = json.loads(response.data)
        for pod in listed.get("items", []):
            self._note(pod, "ADDED", by_list=True)
        self._resource_version = str(listed["metadata"]["resourceVersion"])

    def _watch(self) -> None:
        while not self._stopping.is_set():
            try:
                expired = self._stream_once()
            except Exception as error:  # Refused or reset while the API server restarts.
                self.broken_watches += 1
                self.last_error = repr(error)
                self._stopping.wait(0.2)
                continue
            if expired:
                # The resourceVersion is older than the API server keeps: list again.
                self._relist()

    def _stream_once(self) -> bool:
        """Follow one watch request to its end; return True when the server returned 410."""
        # A short server-side timeout lets the thread notice the stop flag.
        response: Any = self._core.list_namespaced_pod(
            self.namespace,
            label_selector=LABEL_SCHEDULEDJOB,
            resource_version=self._resource_version,
            allow_watch_bookmarks=True,
            watch=True,
            timeout_seconds=5,
            _preload_content=False,
            _request_timeout=15,
        )
        try:
            for line in iter_resp_lines(response):
                event = json.loads(line)
                body = event["object"]
                if event["type"] == "ERROR":
                    self.last_error = str(body.get("message"))
                    return int(body.get("code") or 0) == 410
                version = (body.get("metadata") or {}).get("resourceVersion")
                if version:
                    self._resource_version = str(version)
                if event["type"] in ("ADDED", "MODIFIED", "DELETED"):
                    self._note(body, event["type"])
                if self._stopping.is_set():
                    break
        finally:
            response.release_conn()
        return False

    def _relist(self) -> None:
        while not self._stopping.is_set():
            try:
                self._list()
                self.relists += 1
                return
            except Exception:  # Still restarting; try again shortly.
                self._stopping.wait(0.5)


# ---------------------------------------------------------------------------------------
# Due slots and how each was handled
# ---------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class SecondsSchedule:
    """A 6-field schedule that fires every ``step`` seconds from ``offset`` in each minute.

    ``step`` divides 60, so the slots are evenly spaced across minute boundaries too.
    """

    step: int
    offset: int = 0

    def __post_init__(self) -> None:
        if 60 % self.step or not 0 <= self.offset < self.step:
            raise ValueError(f"step must divide 60 and offset be below it (got {self})")

    @property
    def expression(self) -> str:
        seconds = f"{self.offset}-59/{self.step}" if self.offset else f"*/{self.step}"
        return f"{seconds} * * * * *"

    def fires_at(self, second: int) -> bool:
        return second % self.step == self.offset

    def slots(self, after: float, until: float) -> list[int]:
        """Return the slots in (after, until] as Unix seconds."""
        first = int(after) + 1
        first += (self.offset - first) % self.step
        return list(range(first, int(until) + 1, self.step))


@dataclasses.dataclass
class SlotAccount:
    """How one ScheduledJob's due slots were handled."""

    job: str
    expected: list[int]
    with_pod: set[int]
    without_pod: list[int]
    duplicated: dict[int, list[str]]
    """Slots with more than one Pod, with the names of those Pods."""
    outside: list[str]
    """Pods for slots that were not due in the window."""
    retries: list[str]
    deleted: list[str]
    missed_runs: int
    last_missed: dict[str, Any] | None

    @property
    def lost(self) -> int:
        """Slots with no Pod that missedRuns does not cover."""
        return max(0, len(self.without_pod) - self.missed_runs)

    @property
    def overcounted(self) -> int:
        """Misses counted beyond the slots that have no Pod."""
        return max(0, self.missed_runs - len(self.without_pod))


def account_slots(
    job: str,
    schedule: SecondsSchedule,
    *,
    created: float,
    until: float,
    pods: list[PodRecord],
    status: dict[str, Any],
) -> SlotAccount:
    """Match the slots due in (created, until] against the Pods seen and the missed count.

    A slot is accounted for when it has exactly one Pod. The slots with no Pod must be
    exactly as many as ``status.missedRuns``, because the operator counts a miss only for
    a slot that gets no Pod. So the count cannot cover a slot that ran, and every slot
    without a Pod must be in it.
    """
    expected = schedule.slots(created, until)
    due = set(expected)
    by_slot: dict[int, list[PodRecord]] = {}
    outside = []
    for pod in pods:
        if pod.slot in due:
            by_slot.setdefault(pod.slot, []).append(pod)
        elif pod.slot <= until:
            outside.append(pod.name)
    return SlotAccount(
        job=job,
        expected=expected,
        with_pod=set(by_slot),
        without_pod=[slot for slot in expected if slot not in by_slot],
        duplicated={
            slot: [pod.name for pod in found] for slot, found in by_slot.items() if len(found) > 1
        },
        outside=outside,
        retries=[pod.name for pod in pods if pod.attempt > 1 and pod.slot <= until],
        deleted=[pod.name for pod in pods if pod.deleted_at is not None],
        missed_runs=int(status.get("missedRuns") or 0),
        last_missed=status.get("lastMissed"),
    )


def median_and_max(values: list[float]) -> str:
    if not values:
        return "none"
    return f"median {statistics.median(values):.2f}s, max {max(values):.2f}s (n={len(values)})"
