"""Start, watch and stop the control plane's processes.

Each process runs in its own session and so in its own process group. A Ctrl-C in the
terminal therefore reaches only the Python process, which then stops the cluster in order,
and a signal sent to the group also reaches any child the process started.

A process recorded by a detached cluster is stopped by pid, and only if its command line
names the cluster's folder, so a pid reused by an unrelated program is never signalled.
"""

from __future__ import annotations

import contextlib
import datetime
import logging
import os
import shlex
import signal
import socket
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

logger = logging.getLogger(__name__)

# kube-apiserver drains its requests on SIGTERM, which takes a few seconds under load;
# beyond this a process gets SIGKILL.
STOP_TIMEOUT_SECONDS = 15.0


class ManagedProcess:
    """One control-plane process: its command line, its log file and its `Popen`."""

    def __init__(self, name: str, argv: Sequence[str], log_path: Path) -> None:
        self.name = name
        self.argv = list(argv)
        self.log_path = log_path
        self.popen: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return None if self.popen is None else self.popen.pid

    def start(self) -> None:
        """Start the process with its output appended to its log file."""
        if self.is_running():
            raise RuntimeError(f"{self.name} is already running with pid {self.pid}")
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log_file:
            stamp = datetime.datetime.now().astimezone().isoformat(timespec="seconds")
            header = f"\n=== {stamp} starting {self.name}: {shlex.join(self.argv)}\n"
            log_file.write(header.encode())
            log_file.flush()
            self.popen = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        logger.info("Started %s with pid %d; its log is %s", self.name, self.pid, self.log_path)

    def is_running(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def exit_code(self) -> int | None:
        """Return the exit code, or None while the process runs or before it started."""
        return None if self.popen is None else self.popen.poll()

    def stop(self, timeout: float = STOP_TIMEOUT_SECONDS) -> None:
        """Send SIGTERM to the process group, then SIGKILL after ``timeout`` seconds."""
        if self.popen is None or self.popen.poll() is not None:
            return
        pid = self.popen.pid
        _signal_group(pid, signal.SIGTERM)
        try:
            self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            logger.warning(
                "%s (pid %d) did not exit within %.0f s of SIGTERM; sending SIGKILL",
                self.name,
                pid,
                timeout,
            )
            _signal_group(pid, signal.SIGKILL)
            self.popen.wait()
        logger.info("Stopped %s (pid %d, exit code %s)", self.name, pid, self.popen.returncode)

    def kill(self) -> None:
        """Send SIGKILL to the process group at once, as a crash would end it."""
        if self.popen is None or self.popen.poll() is not None:
            return
        _signal_group(self.popen.pid, signal.SIGKILL)
        self.popen.wait()
        logger.info("Killed %s (pid %d)", self.name, self.popen.pid)

    def forget(self) -> None:
        """Drop the `Popen` without stopping the process, which then outlives Python."""
        if self.popen is not None:
            # Marks the child as reaped so `Popen.__del__` does not warn that it still runs.
            self.popen.returncode = 0
        self.popen = None


def _signal_group(pid: int, signum: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signum)


def pick_free_ports(count: int) -> list[int]:
    """Return ``count`` distinct TCP ports that are free on 127.0.0.1 right now.

    All sockets stay bound until every port is chosen, so the ports differ. Another program
    may still take a port before the component binds it; start-up then fails with that
    component's log naming the port.
    """
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind(("127.0.0.1", 0))
            sockets.append(sock)
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def port_is_free(port: int) -> bool:
    """Return True when ``port`` can be bound on 127.0.0.1."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def pid_belongs_to(pid: int, marker: str) -> bool:
    """Return True when process ``pid`` runs and its command line contains ``marker``."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    # A zombie has an empty command line, so it never matches and is never signalled.
    if "\nState:\tZ" in status:
        return False
    return marker.encode() in cmdline


def stop_pid(name: str, pid: int, marker: str, timeout: float = STOP_TIMEOUT_SECONDS) -> bool:
    """Stop a process that this Python process did not start, as `ManagedProcess.stop` does.

    Returns False, without signalling anything, when ``pid`` no longer runs a command line
    that contains ``marker``.
    """
    if not pid_belongs_to(pid, marker):
        return False
    _signal_group(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while pid_belongs_to(pid, marker):
        if time.monotonic() > deadline:
            logger.warning(
                "%s (pid %d) did not exit within %.0f s of SIGTERM; sending SIGKILL",
                name,
                pid,
                timeout,
            )
            _signal_group(pid, signal.SIGKILL)
            break
        time.sleep(0.1)
    logger.info("Stopped %s (pid %d)", name, pid)
    return True


def tail(path: Path, lines: int) -> str:
    """Return the last ``lines`` lines of a text file, or an empty string if it is missing."""
    try:
        with path.open("rb") as log_file:
            log_file.seek(0, os.SEEK_END)
            size = log_file.tell()
            # Component log lines are rarely longer than 1 KiB.
            log_file.seek(max(0, size - 1024 * (lines + 1)))
            data = log_file.read()
    except FileNotFoundError:
        return ""
    return "\n".join(data.decode(errors="replace").splitlines()[-lines:])
