"""Profile sked with py-spy during a burst of due jobs, or during a restart.

``python -m bench.profile --jobs 1000`` starts a rig and sked alone and creates the
jobs. It records sked with py-spy from 2 s before the due time until 10 s after every
Pod exists. ``python -m bench.profile --restart 10000`` creates that many daily jobs
that do not fire, restarts sked and records it from its start until /readyz returns
200. Both print the functions on the stack in most samples, by their own time and by
their total time. py-spy must be installed in the same environment (``pip install
py-spy``) and may need ptrace permission, which root has.
"""

from __future__ import annotations

import asyncio
import collections
import datetime as dt
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.audit import Window
from bench.rig import SKED_USER, Rig, SkedProcess
from bench.scheduled import _create, next_minute, pods_of, wait_quiet
from bench.workloads import SKED, daily_at_unused_hour, manifests, once_at, shapes


def top_functions(raw: Path, count: int = 25) -> dict[str, list[tuple[str, float]]]:
    """Read py-spy's collapsed stacks; return the top functions by own and by total share."""
    own: collections.Counter[str] = collections.Counter()
    total: collections.Counter[str] = collections.Counter()
    samples = 0
    for line in raw.read_text().splitlines():
        stack, _, number = line.rpartition(" ")
        if not stack or not number.isdigit():
            continue
        weight = int(number)
        samples += weight
        frames = stack.split(";")
        own[frames[-1]] += weight
        for frame in set(frames):
            total[frame] += weight
    return {
        "own": [(frame, n / samples) for frame, n in own.most_common(count)],
        "total": [(frame, n / samples) for frame, n in total.most_common(count)],
    }


def _record(pid: int, raw: Path) -> subprocess.Popen[bytes]:
    """Start py-spy on ``pid`` at 100 samples per second, writing collapsed stacks to ``raw``."""
    py_spy = str(Path(sys.executable).with_name("py-spy"))
    return subprocess.Popen(
        [
            py_spy,
            "record",
            "--pid",
            str(pid),
            "--format",
            "raw",
            "--rate",
            "100",
            "--output",
            str(raw),
            "--nonblocking",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
    )


def _finish(spy: subprocess.Popen[bytes]) -> None:
    spy.send_signal(2)  # SIGINT makes py-spy write its output and exit.
    spy.wait(30)


def _ready_sked(rig: Rig, namespace: str) -> SkedProcess:
    """Create ``namespace``, start sked on it and return sked once it is ready."""
    rig.create_namespace(namespace)
    sked = rig.sked("sked-profile", [namespace])
    sked.start()
    sked.wait_ready()
    return sked


def run(rig: Rig, *, jobs: int, output: Path) -> dict[str, Any]:
    namespace = "profile-sked"
    sked = _ready_sked(rig, namespace)
    due = next_minute(time.time() + jobs / 150 + 20)
    schedule = once_at(dt.datetime.fromtimestamp(due, tz=dt.UTC))
    asyncio.run(_create(rig, manifests(SKED, namespace, shapes("p", jobs, schedule), "profile")))
    time.sleep(max(0.0, due - 2 - time.time()))
    raw = output / "sked-profile.txt"
    spy = _record(sked.pid, raw)
    deadline = due + 600
    while time.time() < deadline and len(pods_of(rig, namespace, [due], due - 60)) < jobs:
        time.sleep(1)
    all_seen = time.time() - due
    time.sleep(10)
    _finish(spy)
    sked.stop()
    summary = f"{jobs} jobs: all Pods seen {all_seen:.1f} s after the due time"
    return {"jobs": jobs, "summary": summary, "profile": str(raw), **top_functions(raw)}


def run_restart(rig: Rig, *, objects: int, output: Path) -> dict[str, Any]:
    """Create ``objects`` idle jobs, restart sked and profile it until it is ready."""
    namespace = "profile-restart"
    sked = _ready_sked(rig, namespace)
    daily = daily_at_unused_hour(dt.datetime.now(dt.UTC))
    window = Window(rig.cluster.audit_log_path, sked_users={SKED_USER}, namespaces={namespace})
    work = shapes("idle", objects, daily)
    asyncio.run(_create(rig, manifests(SKED, namespace, work, "profile")))
    # sked writes each new object's status once, so wait for that before the restart.
    wait_quiet({SKED: window}, timeout=900)
    sked.stop()
    sked = rig.sked("sked-profile-restart", [namespace])
    sked.start()
    raw = output / "sked-restart-profile.txt"
    spy = _record(sked.pid, raw)
    ready = sked.wait_ready()
    _finish(spy)
    sked.stop()
    summary = f"{objects} idle jobs: ready {ready:.1f} s after the start"
    return {"objects": objects, "summary": summary, "profile": str(raw), **top_functions(raw)}


def _option(argv: list[str], name: str) -> int | None:
    return int(argv[argv.index(name) + 1]) if name in argv else None


def main(argv: list[str]) -> int:
    jobs = _option(argv, "--jobs")
    restart_objects = _option(argv, "--restart")
    folder = Path(".local/bench/profile")
    shutil.rmtree(folder, ignore_errors=True)
    with Rig(folder) as rig:
        if restart_objects is not None:
            result = run_restart(rig, objects=restart_objects, output=folder)
        else:
            result = run(rig, jobs=jobs or 1000, output=folder)
    print(result["summary"])
    for kind in ("own", "total"):
        print(f"\nby {kind} time:")
        for frame, share in result[kind]:
            print(f"  {share:6.1%}  {frame}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
