"""The command line: ``python -m bench quick``, ``all [--only B2]``, ``merge`` and ``report``.

Every benchmark runs on a fresh local control plane in its own folder under ``--out``
(default ``.local/bench/<UTC time>``), and its results are merged into
``<out>/results.json`` as soon as it ends, so an interrupted ``all`` keeps what it
finished. ``merge`` pools the repetitions of several results files, and ``report``
turns a results file into the tables and plots of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.metadata
import json
import logging
import platform
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench import merge, report
from bench.cases import catch_up, create_latency, failover, idle, scheduled_runs
from bench.procstat import machine
from bench.rig import REPOSITORY, Rig

logger = logging.getLogger("bench")

BENCHMARKS = ("B0", "B1", "B2", "B3", "B4", "B5", "B6")


def _sizes(text: str) -> list[int]:
    return [int(part) for part in text.split(",") if part]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    quick = commands.add_parser(
        "quick", help="small forms of B1 to B3 (about 25 minutes on 2 cores)"
    )
    full = commands.add_parser("all", help="every benchmark at full size, or those of --only")
    for command in (quick, full):
        command.add_argument(
            "--out", type=Path, default=None, help="results folder (default .local/bench/<time>)"
        )
        command.add_argument(
            "--reps", type=int, default=3, help="interleaved repetitions per side (default 3)"
        )
    full.add_argument(
        "--only",
        default=",".join(BENCHMARKS),
        help="comma-separated list such as B0,B2 (default: all)",
    )
    full.add_argument(
        "--b0-rates",
        type=_sizes,
        default=[50, 100, 200, 400, 800, 1600],
        help="B0 rates in creates per second (default 50,100,200,400,800,1600)",
    )
    full.add_argument("--b1-slots", type=int, default=10, help="B1 minutes measured (default 10)")
    full.add_argument(
        "--b1-jobs", type=int, default=1000, help="B1 every-minute jobs (default 1000)"
    )
    full.add_argument("--b1-idle", type=int, default=5000, help="B1 idle daily jobs (default 5000)")
    full.add_argument(
        "--b2-sizes",
        type=_sizes,
        default=[100, 1000, 5000],
        help="B2 values of K (default 100,1000,5000)",
    )
    full.add_argument(
        "--b2-qps",
        type=float,
        default=None,
        help="B2 client QPS of the cronjob and job controllers (default 20, theirs)",
    )
    full.add_argument("--b3-slots", type=int, default=10, help="B3 runs per job (default 10)")
    full.add_argument(
        "--b4-sizes",
        type=_sizes,
        default=[1000, 10000],
        help="B4 object counts (default 1000,10000)",
    )
    full.add_argument("--b5-trials", type=int, default=10, help="B5 trials per side (default 10)")
    full.add_argument(
        "--b6-reps", type=int, default=None, help="B6 repetitions per side (default --reps)"
    )
    full.add_argument(
        "--no-together", action="store_true", help="skip B1's run with both sides at once"
    )

    pool = commands.add_parser(
        "merge", help="pool the repetitions of several results files, oldest first"
    )
    pool.add_argument("results", type=Path, nargs="+")
    pool.add_argument("--out", type=Path, required=True, help="merged results file to write")

    show = commands.add_parser(
        "report", help="print the tables of a results file and draw its plots"
    )
    show.add_argument("results", type=Path)
    show.add_argument(
        "--plots",
        type=Path,
        default=REPOSITORY / "docs" / "benchmarks",
        help="folder for the PNG files",
    )
    return parser


def environment() -> dict[str, Any]:
    """Return the machine and the versions a result depends on."""
    from sked.localcluster import find_binaries

    binaries = find_binaries()
    kubernetes = subprocess.run(
        [str(binaries.kube_apiserver), "--version"], capture_output=True, text=True, check=False
    ).stdout.strip()
    return {
        "machine": machine(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "kubernetes": kubernetes,
        "kwok": binaries.kwok.parent.name,
        "etcd": binaries.etcd.parent.name,
        "packages": {
            name: importlib.metadata.version(name)
            for name in ("kopf", "croniter", "kubernetes_asyncio", "pydantic")
        },
        "sked_commit": current_commit(),
    }


def current_commit() -> str:
    """Return the short hash of the checked-out sked commit."""
    return subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"],
        capture_output=True,
        text=True,
        cwd=REPOSITORY,
        check=False,
    ).stdout.strip()


class Results:
    """``results.json`` in the output folder, rewritten after each benchmark."""

    def __init__(self, folder: Path, command: list[str]) -> None:
        self.folder = folder
        self.path = folder / "results.json"
        self.data: dict[str, Any] = json.loads(self.path.read_text()) if self.path.exists() else {}
        self.data.setdefault("environment", environment())
        self.data.setdefault("commands", []).append(" ".join(command))
        self.data.setdefault("benchmarks", {})
        self._save()

    def add(self, name: str, result: dict[str, Any], *, started: float, commit: str) -> None:
        # The environment is written when the file is created, so a later invocation
        # that adds to the file records its own commit here.
        result["commit"] = commit
        result["wall_seconds"] = round(time.time() - started, 1)
        result["load_average_after"] = machine()["load_average"]
        self.data["benchmarks"][name] = result
        self._save()

    def _save(self) -> None:
        self.path.write_text(json.dumps(self.data, indent=1, default=str))


def with_rig(folder: Path, action: Callable[[Rig], dict[str, Any]]) -> dict[str, Any]:
    """Run ``action`` on a fresh rig in ``folder``, which is emptied first."""
    shutil.rmtree(folder, ignore_errors=True)
    rig = Rig(folder)
    rig.start()
    try:
        return action(rig)
    finally:
        rig.stop()


def run_benchmarks(
    args: argparse.Namespace, plan: dict[str, Callable[[Rig], dict[str, Any]]]
) -> Path:
    folder = args.out or REPOSITORY / ".local" / "bench" / dt.datetime.now(dt.UTC).strftime(
        "%Y%m%dT%H%M%SZ"
    )
    folder.mkdir(parents=True, exist_ok=True)
    results = Results(folder, sys.argv)
    for name, action in plan.items():
        logger.info("%s starting; results go to %s", name, results.path)
        started = time.time()
        # The commit checked out at the start, since a long benchmark can outlast it.
        commit = current_commit()
        try:
            results.add(name, with_rig(folder / name, action), started=started, commit=commit)
        except Exception as error:
            logger.exception("%s failed", name)
            failure = {"error": f"{type(error).__name__}: {error}"}
            results.add(name, failure, started=started, commit=commit)
        logger.info("%s finished after %.0f s", name, time.time() - started)
    return results.path


def _merge(files: list[Path], out: Path) -> int:
    parts = []
    for path in files:
        try:
            parts.append((path.as_posix(), json.loads(path.read_text())))
        except (OSError, ValueError) as error:
            print(f"failed to read results file {path}: {error}; check the path", file=sys.stderr)
            return 2
    try:
        merged = merge.merge(parts)
    except merge.MergeError as error:
        print(error, file=sys.stderr)
        return 2
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(merged, indent=1, default=str))
    print(f"merged {len(parts)} files into {out}")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    if args.command == "report":
        print(report.render(json.loads(args.results.read_text()), plots=args.plots))
        return 0
    if args.command == "merge":
        return _merge(args.results, args.out)
    reps = args.reps
    if args.command == "quick":
        plan = {"quick": lambda rig: scheduled_runs.run_quick(rig, reps=reps)}
    else:
        chosen = {name.strip().upper() for name in args.only.split(",")}
        unknown = chosen - set(BENCHMARKS)
        if unknown:
            print(
                f"unknown benchmark(s) {sorted(unknown)}: choose from {', '.join(BENCHMARKS)}",
                file=sys.stderr,
            )
            return 2
        every: dict[str, Callable[[Rig], dict[str, Any]]] = {
            "B0": lambda rig: create_latency.run(rig, rates=args.b0_rates),
            "B2": lambda rig: scheduled_runs.run_burst(
                rig, sizes=args.b2_sizes, reps=reps, qps=args.b2_qps
            ),
            "B4": lambda rig: idle.run(rig, sizes=args.b4_sizes),
            "B6": lambda rig: catch_up.run(rig, reps=args.b6_reps or reps),
            "B5": lambda rig: failover.run(rig, trials=args.b5_trials),
            "B3": lambda rig: scheduled_runs.run_cost(rig, slots=args.b3_slots, reps=reps),
            "B1": lambda rig: scheduled_runs.run_lag(
                rig,
                jobs=args.b1_jobs,
                idle=args.b1_idle,
                slots=args.b1_slots,
                reps=reps,
                together=not args.no_together,
            ),
        }
        plan = {name: action for name, action in every.items() if name in chosen}
    path = run_benchmarks(args, plan)
    print(f"results: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
