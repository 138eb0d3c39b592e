"""Profile sked with py-spy while K jobs fall due in the same second.

``python -m bench.profile --jobs 1000`` starts a rig and sked alone and creates the
jobs. It records sked with py-spy from 2 s before the due time until 10 s after every
Pod exists, then prints the functions on the stack in most samples, by their own time
and by their total time. py-spy must be installed in the same environment (``pip
install py-spy``) and may need ptrace permission, which root has.
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

from bench.rig import Rig
from bench.scheduled import _create, next_minute, pods_of
from bench.workloads import SKED, manifests, once_at, shapes


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


def run(rig: Rig, *, jobs: int, output: Path) -> dict[str, Any]:
    namespace = "profile-sked"
    rig.create_namespace(namespace)
    sked = rig.sked("sked-profile", [namespace])
    sked.start()
    sked.wait_ready()
    due = next_minute(time.time() + jobs / 150 + 20)
    schedule = once_at(dt.datetime.fromtimestamp(due, tz=dt.UTC))
    asyncio.run(_create(rig, manifests(SKED, namespace, shapes("p", jobs, schedule), "profile")))
    time.sleep(max(0.0, due - 2 - time.time()))
    raw = output / "sked-profile.txt"
    py_spy = str(Path(sys.executable).with_name("py-spy"))
    spy = subprocess.Popen(
        [
            py_spy,
            "record",
            "--pid",
            str(sked.pid),
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
    deadline = due + 600
    while time.time() < deadline and len(pods_of(rig, namespace, [due], due - 60)) < jobs:
        time.sleep(1)
    all_seen = time.time() - due
    time.sleep(10)
    spy.send_signal(2)  # SIGINT makes py-spy write its output and exit.
    spy.wait(30)
    sked.stop()
    return {"jobs": jobs, "all_seen_seconds": all_seen, "profile": str(raw), **top_functions(raw)}


def main(argv: list[str]) -> int:
    jobs = int(argv[argv.index("--jobs") + 1]) if "--jobs" in argv else 1000
    folder = Path(".local/bench/profile")
    shutil.rmtree(folder, ignore_errors=True)
    with Rig(folder) as rig:
        result = run(rig, jobs=jobs, output=folder)
    print(f"{jobs} jobs: all Pods seen {result['all_seen_seconds']:.1f} s after the due time")
    for kind in ("own", "total"):
        print(f"\nby {kind} time:")
        for frame, share in result[kind]:
            print(f"  {share:6.1%}  {frame}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
