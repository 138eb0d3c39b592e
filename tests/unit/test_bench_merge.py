"""Results of separate benchmark invocations pool into one set of repetitions."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from bench import report
from bench.merge import MergeError, commits, merge


def run(side: str, rep: int, p99: float, *, together: bool = False) -> dict[str, Any]:
    return {"side": side, "rep": rep, "together": together, "lag_p99": p99, "runs": 10}


def results(commit: str, benchmarks: dict[str, Any]) -> dict[str, Any]:
    return {
        "environment": {"sked_commit": commit},
        "commands": [f"python -m bench all at {commit}"],
        "benchmarks": benchmarks,
    }


def lag(runs: list[dict[str, Any]], lags: dict[str, list[float]]) -> dict[str, Any]:
    return {"jobs": 1000, "idle": 5000, "slots": 10, "reps": 1, "runs": runs, "lags": lags}


def test_merge_renumbers_reps_pools_lags():
    old = results(
        "aaa",
        {
            "B1": lag(
                [run("sked", 0, 7.0), run("cronjob", 0, 200.0)], {"sked": [1.0], "cronjob": [9.0]}
            )
        },
    )
    new = results(
        "bbb",
        {
            "B1": lag(
                [
                    run("sked", 0, 6.0),
                    run("cronjob", 0, 210.0),
                    run("sked", 1, 6.5),
                    run("cronjob", 1, 190.0),
                    run("sked", 0, 8.0, together=True),
                ],
                {"sked": [2.0, 3.0], "cronjob": [8.0]},
            )
        },
    )

    merged = merge([("old.json", old), ("new.json", new)])["benchmarks"]["B1"]

    sked = [
        (r["rep"], r["commit"]) for r in merged["runs"] if r["side"] == "sked" and not r["together"]
    ]
    assert sked == [(0, "aaa"), (1, "bbb"), (2, "bbb")]
    together = [r for r in merged["runs"] if r["together"]]
    assert [(r["rep"], r["commit"]) for r in together] == [(0, "bbb")]
    assert merged["reps"] == 3
    assert merged["lags"] == {"sked": [1.0, 2.0, 3.0], "cronjob": [9.0, 8.0]}
    assert commits(merged) == ["aaa", "bbb"]


def test_merge_rejects_different_shapes():
    small = lag([run("sked", 0, 1.0)], {})
    small["jobs"] = 100
    with pytest.raises(MergeError, match="jobs=1000 and jobs=100"):
        merge(
            [
                ("a", results("aaa", {"B1": lag([run("sked", 0, 1.0)], {})})),
                ("b", results("bbb", {"B1": small})),
            ]
        )


def burst(size: str, sides: list[tuple[str, float]]) -> dict[str, Any]:
    runs = [
        {
            "side": side,
            "rep": 0,
            "together": False,
            "missed": 0,
            "usage": {},
            "per_slot": [{"last_seen_seconds": 1000 / rate, "runs_per_second": rate}],
        }
        for side, rate in sides
    ]
    return {"sizes": [int(size)], "reps": 1, "qps": None, "runs": {size: runs}}


def test_merge_pools_burst_sizes(tmp_path: Path):
    first = results("aaa", {"B2": burst("1000", [("sked", 170.0), ("cronjob", 4.0)])})
    second = results("bbb", {"B2": burst("1000", [("sked", 190.0), ("cronjob", 5.0)])})
    third = results("ccc", {"B2": burst("5000", [("sked", 150.0), ("cronjob", 4.5)])})

    merged = merge([("1", first), ("2", second), ("3", third)])
    burst_result = merged["benchmarks"]["B2"]

    assert burst_result["sizes"] == [1000, 5000]
    assert [r["rep"] for r in burst_result["runs"]["1000"]] == [0, 0, 1, 1]
    text = report.render(merged, plots=tmp_path)
    assert "Measured at commit aaa, bbb, ccc." in text
    # Median runs/s over the two reps at K = 1,000: 180 for sked and 4.5 for CronJob.
    assert "| runs/s | 180 [170–190] | 4.5 [4.0–5.0] | 40.00 |" in text


def test_merge_concatenates_failover_trials():
    def trials(commit: str, gaps: list[float]) -> dict[str, Any]:
        rows = [{"last_pod_after_due": gap} for gap in gaps]
        return results(
            commit,
            {
                "B5": {
                    "jobs": 20,
                    "trials": len(gaps),
                    "kill_before_due_seconds": 3.0,
                    "results": {"sked": rows, "cronjob": list(rows)},
                }
            },
        )

    merged = merge([("a", trials("aaa", [13.0, 14.0])), ("b", trials("bbb", [12.0]))])
    result = merged["benchmarks"]["B5"]

    assert result["trials"] == 3
    assert [row["commit"] for row in result["results"]["sked"]] == ["aaa", "aaa", "bbb"]
    assert [source["sked_commit"] for source in merged["sources"]] == ["aaa", "bbb"]


def test_merge_skips_failed_benchmark():
    good = results(
        "aaa", {"B6": {"jobs": 1000, "outage_hours": 2.0, "reps": 1, "runs": [run("sked", 0, 1.0)]}}
    )
    failed = results("bbb", {"B6": {"error": "TimeoutError: no leader"}})

    merged = merge([("a", good), ("b", failed)])["benchmarks"]["B6"]

    assert [r["commit"] for r in merged["runs"]] == ["aaa"]


def test_merge_without_files_fails():
    with pytest.raises(MergeError, match="missing results files"):
        merge([])


def test_merge_prefers_benchmark_commit():
    shared = results(
        "aaa",
        {
            "B6": {"jobs": 1000, "outage_hours": 2.0, "reps": 1, "runs": [run("sked", 0, 1.0)]},
            "B1": lag([run("sked", 0, 7.0)], {}),
        },
    )
    shared["benchmarks"]["B1"]["commit"] = "ccc"

    merged = merge([("shared.json", shared)])["benchmarks"]

    assert commits(merged["B1"]) == ["ccc"]
    assert commits(merged["B6"]) == ["aaa"]


def idle(commit: str, sked_slope: float, cron_slope: float) -> dict[str, Any]:
    def side(slope: float, ready: list[float]) -> dict[str, Any]:
        row = {
            "objects": 1000,
            "restart_to_ready_seconds": ready,
            "rss_mib": 100 + slope,
            "idle_core_share": 0.01,
            "rss_slope_mib_per_1000": slope,
        }
        return {"empty": {"rss_mib": 100.0, "idle_core_share": 0.0}, "sizes": [row]}

    benchmark = {
        "sizes": [1000],
        "restarts": 3,
        "settle_seconds": 20.0,
        "idle_seconds": 30.0,
        "sides": {"sked": side(sked_slope, [2.0, 4.0, 3.0]), "cronjob": side(cron_slope, [1.0])},
    }
    return results(commit, {"B4": benchmark})


def test_merge_turns_idle_sides_into_runs(tmp_path: Path):
    merged = merge(
        [
            ("a", idle("aaa", 16.0, 14.0)),
            ("b", idle("bbb", 20.0, 12.0)),
            ("c", idle("ccc", 18.0, 10.0)),
        ]
    )
    result = merged["benchmarks"]["B4"]

    assert "sides" not in result
    assert result["reps"] == 3
    sked = [(r["rep"], r["commit"]) for r in result["runs"] if r["side"] == "sked"]
    assert sked == [(0, "aaa"), (1, "bbb"), (2, "ccc")]
    text = report.render(merged, plots=tmp_path)
    # Median slope over three runs: 18 for sked and 12 for CronJob, so 1.5.
    assert "| 1000 objects: RSS slope, MiB per 1,000 | 18.00 [16.00–20.00] | 12.00" in text
    assert "| 1.50 | target <= 2: met |" in text
    # Each run's restart-to-ready median is 3 s for sked.
    assert "| 1000 objects: restart to ready, s | 3.00 [3.00–3.00] |" in text


def test_merge_rejects_idle_with_other_sizes():
    other = idle("bbb", 20.0, 12.0)
    other["benchmarks"]["B4"]["sizes"] = [10000]

    with pytest.raises(MergeError, match="sizes"):
        merge([("a", idle("aaa", 16.0, 14.0)), ("b", other)])


def curve(commit: str, p99_at_400: float, knee: int | None) -> dict[str, Any]:
    def step(rate: int, p99: float) -> dict[str, Any]:
        return {
            "rate": rate,
            "sent": rate * 10,
            "ok": rate * 10,
            "errors": {},
            "p50": 0.005,
            "p99": p99,
            "achieved_rate": float(rate),
            "loader_core_share": 0.1,
        }

    steps = [step(100, 0.02), step(400, p99_at_400)]
    benchmark = {"steps": steps, "p99_over_1s_at_rate": knee, "step_seconds": 10.0}
    return results(commit, {"B0": benchmark})


def test_merge_pools_create_latency_runs(tmp_path: Path):
    merged = merge(
        [
            ("a", curve("aaa", 0.2, 800)),
            ("b", curve("bbb", 0.4, None)),
            ("c", curve("ccc", 0.3, 800)),
        ]
    )
    result = merged["benchmarks"]["B0"]

    assert [(run["rep"], run["commit"]) for run in result["runs"]] == [
        (0, "aaa"),
        (1, "bbb"),
        (2, "ccc"),
    ]
    text = report.render(merged, plots=tmp_path)
    # Totals of sent and ok over three runs, median p99 0.3 s with the range.
    assert "| 400 | 12000 | 12000 |  | 0.005 [0.005–0.005] | 0.300 [0.200–0.400] |" in text
    assert "p99 passes 1 s at: 800, no rate tried, 800" in text
