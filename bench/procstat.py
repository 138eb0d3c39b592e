"""CPU time and resident memory of processes, read from /proc (Linux only)."""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

TICKS_PER_SECOND = os.sysconf("SC_CLK_TCK")
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")

# A process that used this share of one core is taken as saturated: its own queueing then
# shows up in what it measures. Sampling every second cannot tell 95 % from 100 %, so the
# threshold leaves that margin.
SATURATED_CORE_SHARE = 0.9

# Saturated for this many samples in a row, or on average over the window, voids a run. A
# single saturated second during a burst is normal and delays nothing by more than it.
SATURATED_SAMPLES_IN_A_ROW = 5


def cpu_seconds(pid: int) -> float:
    """Return the user plus system CPU time of all threads of ``pid``, in seconds."""
    text = Path(f"/proc/{pid}/stat").read_text()
    # The command name in brackets may contain spaces, so fields count from after it.
    fields = text[text.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / TICKS_PER_SECOND


def rss_bytes(pid: int) -> int:
    """Return the resident set size of ``pid`` in bytes."""
    fields = Path(f"/proc/{pid}/statm").read_text().split()
    return int(fields[1]) * PAGE_SIZE


def machine() -> dict[str, object]:
    """Return the core count, memory and CPU model of this machine."""
    memory_kib = 0
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            memory_kib = int(line.split()[1])
    model = ""
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    return {
        "cores": os.cpu_count(),
        "memory_gib": round(memory_kib / 1024 / 1024, 1),
        "cpu_model": model,
        "load_average": os.getloadavg(),
    }


@dataclass
class Usage:
    """CPU seconds and peak memory of one process over a window."""

    name: str
    cpu_seconds: float = 0.0
    wall_seconds: float = 0.0
    max_rss_bytes: int = 0
    peak_core_share: float = 0.0
    """The highest share of one core used over any one sampling interval."""
    saturated_streak: int = 0
    longest_saturated_streak: int = 0
    """The maximum number of samples in a row at or above `SATURATED_CORE_SHARE`."""

    @property
    def core_share(self) -> float:
        return self.cpu_seconds / self.wall_seconds if self.wall_seconds else 0.0

    @property
    def saturated(self) -> bool:
        return (
            self.core_share >= SATURATED_CORE_SHARE
            or self.longest_saturated_streak >= SATURATED_SAMPLES_IN_A_ROW
        )

    def as_dict(self) -> dict[str, float | bool]:
        return {
            "cpu_seconds": round(self.cpu_seconds, 3),
            "wall_seconds": round(self.wall_seconds, 3),
            "core_share": round(self.core_share, 3),
            "peak_core_share": round(self.peak_core_share, 3),
            "max_rss_mib": round(self.max_rss_bytes / 2**20, 1),
            "longest_saturated_streak": self.longest_saturated_streak,
            "saturated": self.saturated,
        }


@dataclass
class Sampler:
    """Samples the CPU and RSS of named processes every ``interval`` seconds in a thread.

    Processes may come and go: ``watch`` adds one, and one that exits keeps the totals it
    had at its last sample.
    """

    interval: float = 1.0
    _pids: dict[str, int] = field(default_factory=dict)
    _usage: dict[str, Usage] = field(default_factory=dict)
    _last: dict[str, tuple[float, float]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def watch(self, name: str, pid: int) -> None:
        with self._lock:
            self._pids[name] = pid
            self._usage.setdefault(name, Usage(name))
            try:
                self._last[name] = (time.monotonic(), cpu_seconds(pid))
            except OSError:
                self._pids.pop(name)

    def forget(self, name: str) -> None:
        with self._lock:
            self._pids.pop(name, None)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="sampler", daemon=True)
        self._thread.start()

    def stop(self) -> dict[str, Usage]:
        """Take a last sample, stop the thread and return the usage by name."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self._sample()
        return dict(self._usage)

    def snapshot(self) -> dict[str, Usage]:
        self._sample()
        with self._lock:
            return {name: Usage(**vars(usage)) for name, usage in self._usage.items()}

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self._sample()

    def _sample(self) -> None:
        with self._lock:
            for name, pid in list(self._pids.items()):
                try:
                    now, cpu = time.monotonic(), cpu_seconds(pid)
                    rss = rss_bytes(pid)
                except (OSError, ValueError):
                    self._pids.pop(name)
                    continue
                then, cpu_then = self._last[name]
                usage = self._usage[name]
                elapsed = now - then
                usage.cpu_seconds += cpu - cpu_then
                usage.wall_seconds += elapsed
                usage.max_rss_bytes = max(usage.max_rss_bytes, rss)
                if elapsed >= self.interval * 0.5:
                    share = (cpu - cpu_then) / elapsed
                    usage.peak_core_share = max(usage.peak_core_share, share)
                    usage.saturated_streak = (
                        usage.saturated_streak + 1 if share >= SATURATED_CORE_SHARE else 0
                    )
                    usage.longest_saturated_streak = max(
                        usage.longest_saturated_streak, usage.saturated_streak
                    )
                self._last[name] = (now, cpu)
