"""Combine the results files of several ``python -m bench`` invocations into one.

A full set of repetitions rarely fits in one sitting on a small machine, so the runs of
a benchmark can come from separate invocations: ``python -m bench merge A B --out C``.
Repetitions are appended and renumbered per side; B1's pooled lags and B5's trials are
concatenated. B0 and B4 results, which contain one run (per side), become a list of
runs. Every run keeps the commit it was measured at, and the merged file lists its
sources, so a table can show which code each number comes from.
"""

from __future__ import annotations

import copy
from typing import Any

# Benchmarks whose result contains a list of runs with "side", "rep" and "together".
RUN_LISTS = ("quick", "B1", "B3", "B6")


class MergeError(ValueError):
    """Two results cannot be combined, for example B1 runs with different job counts."""


def _tag(runs: list[dict[str, Any]], commit: str) -> None:
    for run in runs:
        run.setdefault("commit", commit)


def _append_runs(into: list[dict[str, Any]], more: list[dict[str, Any]], commit: str) -> None:
    """Append ``more`` to ``into``, numbering reps on from the last one per side and mode."""
    for run in copy.deepcopy(more):
        run.setdefault("commit", commit)
        used_reps = [
            other["rep"]
            for other in into
            if other["side"] == run["side"] and other.get("together") == run.get("together")
        ]
        run["rep"] = max(used_reps, default=-1) + 1
        into.append(run)


def _reps(runs: list[dict[str, Any]]) -> int:
    counts: dict[str, int] = {}
    for run in runs:
        if not run.get("together"):
            counts[run["side"]] = counts.get(run["side"], 0) + 1
    return max(counts.values(), default=0)


def _same_shape(name: str, old: dict[str, Any], new: dict[str, Any], keys: tuple[str, ...]) -> None:
    for key in keys:
        if old.get(key) != new.get(key):
            raise MergeError(
                f"{name}: invalid merge of runs with {key}={old.get(key)!r} and "
                f"{key}={new.get(key)!r}: merge only files measured with the same options"
            )


def _merge_one(name: str, old: dict[str, Any], new: dict[str, Any], commit: str) -> dict[str, Any]:
    if "error" in new:
        return old
    if "error" in old:
        return _first(name, new, commit)
    merged = copy.deepcopy(old)
    if name in RUN_LISTS:
        _same_shape(name, old, new, ("jobs", "idle", "slots", "outage_hours"))
        _append_runs(merged["runs"], new["runs"], commit)
        merged["reps"] = _reps(merged["runs"])
        if "lags" in new:
            for side, values in new["lags"].items():
                merged.setdefault("lags", {}).setdefault(side, []).extend(values)
    elif name == "B2":
        _same_shape(name, old, new, ("qps",))
        for size, runs in new["runs"].items():
            _append_runs(merged["runs"].setdefault(size, []), runs, commit)
        merged["sizes"] = sorted({*merged["sizes"], *new["sizes"]})
        merged["reps"] = max(_reps(runs) for runs in merged["runs"].values())
    elif name == "B0":
        _same_shape(name, old, new, ("step_seconds",))
        merged = _merge_curves(old, new, commit)
    elif name == "B4":
        _same_shape(name, old, new, ("sizes", "restarts", "settle_seconds", "idle_seconds"))
        merged.pop("sides", None)
        merged["runs"] = idle_runs(old)
        _append_runs(merged["runs"], idle_runs(new), commit)
        merged["reps"] = _reps(merged["runs"])
    elif name == "B5":
        _same_shape(name, old, new, ("jobs", "kill_before_due_seconds"))
        for side, trials in new["results"].items():
            more = copy.deepcopy(trials)
            _tag(more, commit)
            merged["results"].setdefault(side, []).extend(more)
        merged["trials"] = min(len(trials) for trials in merged["results"].values())
    else:
        return _first(name, new, commit)
    merged["wall_seconds"] = round(old.get("wall_seconds", 0) + new.get("wall_seconds", 0), 1)
    return merged


def _merge_curves(old: dict[str, Any], new: dict[str, Any], commit: str) -> dict[str, Any]:
    """Return B0's runs of ``old`` followed by those of ``new``, numbered on."""
    merged = {"step_seconds": old["step_seconds"], "runs": curve_runs(old)}
    for run in curve_runs(new):
        run["rep"] = len(merged["runs"])
        run.setdefault("commit", commit)
        merged["runs"].append(run)
    merged["reps"] = len(merged["runs"])
    return merged


def curve_runs(result: dict[str, Any]) -> list[dict[str, Any]]:
    """Return B0's runs: the merged list, or the single run of one invocation."""
    if "runs" in result:
        return copy.deepcopy(result["runs"])
    run = {
        "rep": 0,
        "steps": copy.deepcopy(result["steps"]),
        "p99_over_1s_at_rate": result["p99_over_1s_at_rate"],
    }
    # Without a commit here, merging tags the run with its file's commit.
    if result.get("commit"):
        run["commit"] = result["commit"]
    return [run]


def idle_runs(result: dict[str, Any]) -> list[dict[str, Any]]:
    """Return B4's runs: the merged list, or one run per side from a single invocation."""
    if "runs" in result:
        return copy.deepcopy(result["runs"])
    runs = []
    for side, run in copy.deepcopy(result["sides"]).items():
        run.update(side=side, rep=0, together=False)
        # Without a commit here, merging tags the run with its file's commit.
        if result.get("commit"):
            run["commit"] = result["commit"]
        runs.append(run)
    return runs


def _first(name: str, result: dict[str, Any], commit: str) -> dict[str, Any]:
    """Return a copy of ``result`` with ``commit`` on each of its runs."""
    result = copy.deepcopy(result)
    result.setdefault("commit", commit)
    if "error" in result:
        return result
    if name in RUN_LISTS:
        _tag(result["runs"], commit)
    elif name == "B2":
        for runs in result["runs"].values():
            _tag(runs, commit)
    elif name == "B5":
        for trials in result["results"].values():
            _tag(trials, commit)
    return result


def merge(parts: list[tuple[str, dict[str, Any]]]) -> dict[str, Any]:
    """Return one results document from ``(label, results)`` pairs, oldest first."""
    if not parts:
        raise MergeError("missing results files: name at least one to merge")
    merged: dict[str, Any] = {
        "environment": copy.deepcopy(parts[-1][1]["environment"]),
        "commands": [],
        "sources": [],
        "benchmarks": {},
    }
    for label, results in parts:
        file_commit = results["environment"].get("sked_commit", "unknown")
        merged["commands"] += results.get("commands", [])
        merged["sources"].append(
            {"file": label, "sked_commit": file_commit, "benchmarks": sorted(results["benchmarks"])}
        )
        for name, result in results["benchmarks"].items():
            # A file that several invocations added to names the first one's commit in
            # its environment, so a benchmark's own commit comes first.
            commit = result.get("commit") or file_commit
            if name in merged["benchmarks"]:
                merged["benchmarks"][name] = _merge_one(
                    name, merged["benchmarks"][name], result, commit
                )
            else:
                merged["benchmarks"][name] = _first(name, result, commit)
    return merged


def commits(result: dict[str, Any]) -> list[str]:
    """Return the commits a benchmark's numbers come from, in the order first seen."""
    found: list[str] = []

    def note(item: dict[str, Any]) -> None:
        commit = item.get("commit")
        if commit and commit not in found:
            found.append(commit)

    note(result)
    runs = result.get("runs")
    if isinstance(runs, dict):
        for group in runs.values():
            for run in group:
                note(run)
    elif isinstance(runs, list):
        for run in runs:
            note(run)
    for trials in (result.get("results") or {}).values():
        if isinstance(trials, list):
            for trial in trials:
                note(trial)
    return found
