"""Turn a results file into Markdown tables and PNG plots for docs/benchmarks.md.

Every table cell for a side is the median over repetitions with the minimum and maximum
in brackets; the ratio divides sked's median by CronJob's. Targets are ratios of sked to
CronJob, checked against those medians.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.merge import commits, curve_runs, idle_runs
from bench.stats import percentile, ratio, spread
from bench.workloads import CRONJOB, SKED

# (benchmark, metric) -> (comparison, target ratio of sked to CronJob)
TARGETS = {
    ("B1", "lag_p99"): ("<=", 0.25),
    ("B2", "runs_per_second"): (">=", 3.0),
    ("B3", "writes_per_run"): ("<=", 0.3),
    ("B4", "rss_slope_mib_per_1000"): ("<=", 2.0),
    ("B5", "last_pod_after_due"): ("<=", 1.0),
    ("B6", "all_caught_up_seconds"): ("<=", 0.5),
}


def _number(value: float | None, digits: int = 2) -> str:
    if value is None:
        return "–"
    if abs(value) >= 100:
        return f"{value:.0f}"
    return f"{value:.{digits}f}"


def _cell(values: list[float | None], digits: int = 2) -> str:
    summary = spread(values)
    if summary["median"] is None:
        return "–"
    if summary["n"] == 1:
        return _number(summary["median"], digits)
    low, high = _number(summary["min"], digits), _number(summary["max"], digits)
    return f"{_number(summary['median'], digits)} [{low}–{high}]"


def _verdict(benchmark: str, metric: str, value: float | None) -> str:
    target = TARGETS.get((benchmark, metric))
    if target is None:
        return ""
    comparison, bound = target
    if value is None:
        return f"target {comparison} {bound:g}: not measured"
    met = value <= bound if comparison == "<=" else value >= bound
    return f"target {comparison} {bound:g}: {'met' if met else 'missed'}"


def _row(
    benchmark: str,
    label: str,
    metric: str,
    sked: list[float | None],
    cron: list[float | None],
    digits: int = 2,
) -> str:
    value = ratio(spread(sked)["median"], spread(cron)["median"])
    return (
        f"| {label} | {_cell(sked, digits)} | {_cell(cron, digits)} | {_number(value)} | "
        f"{_verdict(benchmark, metric, value)} |"
    )


HEADER = "| metric | sked | CronJob | ratio | target |\n|---|---|---|---|---|"


def _by_side(
    runs: list[dict[str, Any]],
    pick: Callable[[dict[str, Any]], float | None],
    *,
    together: bool = False,
) -> dict[str, list[float | None]]:
    values: dict[str, list[float | None]] = {SKED: [], CRONJOB: []}
    for run in runs:
        if run["together"] == together:
            values[run["side"]].append(pick(run))
    return values


def _slot_median(run: dict[str, Any], key: str) -> float | None:
    return spread([slot[key] for slot in run["per_slot"]])["median"]


# (label, metric, benchmark whose target applies, digits, value of one run)
Metric = tuple[str, str, str, int, Callable[[dict[str, Any]], float | None]]

LAG_METRICS: list[Metric] = [
    ("lag p50, s", "lag_p50", "B1", 3, lambda r: r["lag_p50"]),
    ("lag p99, s", "lag_p99", "B1", 3, lambda r: r["lag_p99"]),
    ("lag max, s", "lag_max", "B1", 3, lambda r: r["lag_max"]),
]
BURST_METRICS: list[Metric] = [
    (
        "time until all Pods exist, s",
        "all_seen",
        "B2",
        2,
        lambda r: _slot_median(r, "last_seen_seconds"),
    ),
    ("runs/s", "runs_per_second", "B2", 1, lambda r: _slot_median(r, "runs_per_second")),
    ("missed slots", "missed", "B2", 0, lambda r: r["missed"]),
]
COST_METRICS: list[Metric] = [
    ("API writes per run", "writes_per_run", "B3", 2, lambda r: r["writes_per_run"]),
    ("API reads per run", "reads_per_run", "B3", 2, lambda r: r["reads_per_run"]),
]


def _owned_by(benchmark: str, metrics: list[Metric]) -> list[Metric]:
    """Return ``metrics`` checked against ``benchmark``'s targets, which may be none."""
    return [(label, key, benchmark, digits, pick) for label, key, _, digits, pick in metrics]


RUNS_METRIC: Metric = ("runs seen", "runs", "", 0, lambda r: r["runs"])


def scheduled_tables(name: str, runs: list[dict[str, Any]], metrics: list[Metric]) -> list[str]:
    """Return one table per mode (one side at a time, both together) with ``metrics``."""
    lines = []
    rows: list[Metric] = [*metrics, ("controller CPU, s", "cpu", name, 1, _controller_cpu)]
    for together in (False, True):
        if not any(run["together"] == together for run in runs):
            continue
        title = "Both sides at the same time" if together else "One side at a time, interleaved"
        lines += ["", f"{title}:", "", HEADER]
        for label, metric, benchmark, digits, pick in rows:
            values = _by_side(runs, pick, together=together)
            lines.append(_row(benchmark, label, metric, values[SKED], values[CRONJOB], digits))
    lines += _void_notes(runs)
    return lines


def _controller_cpu(run: dict[str, Any]) -> float | None:
    prefix = "sked-" if run["side"] == SKED else "cronjob-"
    total = [
        usage["cpu_seconds"] for name, usage in run["usage"].items() if name.startswith(prefix)
    ]
    return sum(total) if total else None


def _void_notes(runs: list[dict[str, Any]]) -> list[str]:
    notes = []
    for run in runs:
        for reason in run.get("void_reasons") or []:
            notes.append(f"- void: {run['side']} rep {run['rep']}: {reason}")
    return ["", *notes] if notes else []


def request_breakdown(runs: list[dict[str, Any]]) -> list[str]:
    """Return requests per run by client, verb and resource, from each side's first rep."""
    lines = ["", "| side | client | verb | resource | per run |", "|---|---|---|---|---|"]
    for side in (SKED, CRONJOB):
        run = next((r for r in runs if r["side"] == side and not r["together"]), None)
        if run is None or not run["runs"]:
            continue
        for row in run["requests"]:
            lines.append(
                f"| {side} | {row['client']} | {row['verb']} | {row['resource'] or '(none)'} | "
                f"{row['requests'] / run['runs']:.2f} |"
            )
    return lines


def lag_plot(lags: dict[str, list[float]] | None, path: Path, title: str) -> None:
    """Draw the lag distribution per side as an empirical CDF on a log time axis."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(7, 4))
    for side, colour in ((SKED, "tab:blue"), (CRONJOB, "tab:orange")):
        values = sorted((lags or {}).get(side, []))
        if not values:
            continue
        shares = [(index + 1) / len(values) for index in range(len(values))]
        p50, p99 = percentile(values, 0.5) or 0.0, percentile(values, 0.99) or 0.0
        label = f"{'sked' if side == SKED else 'CronJob'} (p50 {p50:.3f} s, p99 {p99:.3f} s)"
        axes.step(
            [max(value, 1e-3) for value in values], shares, where="post", label=label, color=colour
        )
    axes.set_xscale("log")
    axes.set_xlabel("due time to Pod first seen, seconds (log scale)")
    axes.set_ylabel("share of runs")
    axes.set_title(title)
    axes.grid(True, which="both", alpha=0.3)
    axes.legend(loc="lower right")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)


def _quick(result: dict[str, Any], plots: Path) -> list[str]:
    runs = result["runs"]
    lines = scheduled_tables("quick", runs, LAG_METRICS + BURST_METRICS + COST_METRICS)
    lines += request_breakdown(runs)
    shape = f"{result['jobs']} every-minute jobs, {result['slots']} slots x {result['reps']} reps"
    title = f"quick: {shape}"
    lag_plot(result.get("lags"), plots / "quick-lag.png", title)
    return lines


def _create_latency(result: dict[str, Any], _plots: Path) -> list[str]:
    # Sent, ok and errors are totals over the runs, and the other columns are medians.
    runs = curve_runs(result)
    lines = [
        "| rate /s | sent | ok | errors | p50, s | p99, s | achieved /s | loader core share |",
        "|---|---|---|---|---|---|---|---|",
    ]
    rates = sorted({step["rate"] for run in runs for step in run["steps"]})
    for rate in rates:
        steps = [step for run in runs for step in run["steps"] if step["rate"] == rate]
        errors: dict[str, int] = {}
        for step in steps:
            for kind, count in (step["errors"] or {}).items():
                errors[kind] = errors.get(kind, 0) + count
        cells = [
            str(rate),
            str(sum(step["sent"] for step in steps)),
            str(sum(step["ok"] for step in steps)),
            str(errors or ""),
            _cell([step["p50"] for step in steps], 3),
            _cell([step["p99"] for step in steps], 3),
            _cell([step["achieved_rate"] for step in steps], 0),
            _cell([step["loader_core_share"] for step in steps]),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    knees = [str(run["p99_over_1s_at_rate"] or "no rate tried") for run in runs]
    lines.append(f"\np99 passes 1 s at: {', '.join(knees)}")
    return lines


def _lag(result: dict[str, Any], plots: Path) -> list[str]:
    # Writes per run are B3's target. Here a controller that falls behind starts fewer
    # runs, so the ratio compares different work and gets no verdict.
    metrics = _owned_by("B1", [RUNS_METRIC, *LAG_METRICS, *COST_METRICS])
    lines = scheduled_tables("B1", result["runs"], metrics)
    title = f"B1: {result['jobs']} every-minute + {result['idle']} daily jobs"
    lag_plot(result.get("lags"), plots / "b1-lag.png", title)
    return lines


def _burst(result: dict[str, Any], _plots: Path) -> list[str]:
    lines = []
    for size, runs in result["runs"].items():
        lines += ["", f"K = {size}:", *scheduled_tables("B2", runs, BURST_METRICS)]
    return lines


def _cost(result: dict[str, Any], _plots: Path) -> list[str]:
    metrics = [*_owned_by("B3", LAG_METRICS), *COST_METRICS]
    return scheduled_tables("B3", result["runs"], metrics) + request_breakdown(result["runs"])


def render(results: dict[str, Any], *, plots: Path) -> str:
    """Return the Markdown of every benchmark in ``results``; draw the plots into ``plots``."""
    renderers: dict[str, Callable[[dict[str, Any], Path], list[str]]] = {
        "quick": _quick,
        "B0": _create_latency,
        "B1": _lag,
        "B2": _burst,
        "B3": _cost,
        "B4": lambda result, _plots: _idle_table(result),
        "B5": lambda result, _plots: _failover_table(result),
        "B6": lambda result, _plots: _catch_up_table(result),
    }
    lines: list[str] = []
    for name, result in results["benchmarks"].items():
        lines += ["", f"## {name}", ""]
        if "error" in result:
            lines.append(f"failed: {result['error']}")
            continue
        if result.get("recovered"):
            lines.append(f"Recovered: {result['recovered']}.")
        measured_at = commits(result)
        if measured_at:
            lines += [f"Measured at commit {', '.join(measured_at)}.", ""]
        lines += renderers[name](result, plots)
    return "\n".join(lines)


def _idle_table(result: dict[str, Any]) -> list[str]:
    runs = idle_runs(result)
    lines = [HEADER]
    empty_rss = _by_side(runs, lambda run: run["empty"]["rss_mib"])
    lines.append(
        _row("B4", "RSS with no objects, MiB", "rss", empty_rss[SKED], empty_rss[CRONJOB], 1)
    )
    metrics: list[tuple[str, str, int, Callable[[dict[str, Any]], float | None]]] = [
        ("RSS, MiB", "rss", 1, lambda r: r["rss_mib"]),
        ("RSS slope, MiB per 1,000", "rss_slope_mib_per_1000", 2, _slope),
        ("idle CPU, share of a core", "idle", 3, lambda r: r["idle_core_share"]),
        ("restart to ready, s", "ready", 2, _ready),
    ]
    for index, size in enumerate(result["sizes"]):
        for label, metric, digits, pick in metrics:
            values: dict[str, list[float | None]] = {SKED: [], CRONJOB: []}
            for run in runs:
                values[run["side"]].append(pick(run["sizes"][index]))
            row_label = f"{size} objects: {label}"
            lines.append(_row("B4", row_label, metric, values[SKED], values[CRONJOB], digits))
    lines.append("\nRestart to ready is the median of the restarts at each size.")
    return lines


def _slope(row: dict[str, Any]) -> float | None:
    return row["rss_slope_mib_per_1000"]


def _ready(row: dict[str, Any]) -> float | None:
    return spread(row["restart_to_ready_seconds"])["median"]


def _failover_table(result: dict[str, Any]) -> list[str]:
    rows = result["results"]
    lines = [HEADER]
    for label, metric in (
        ("new leader after the kill, s", "new_leader_after_kill"),
        ("first Pod after the due time, s", "first_pod_after_due"),
        ("last Pod after the due time (gap), s", "last_pod_after_due"),
    ):
        lines.append(
            _row(
                "B5",
                label,
                metric,
                [r[metric] for r in rows[SKED]],
                [r[metric] for r in rows[CRONJOB]],
            )
        )
    lines.append(
        f"\nTrials per side: {len(rows[SKED])} and {len(rows[CRONJOB])}; the leader was killed "
        f"{result['kill_before_due_seconds']:g} s before a due time."
    )
    return lines


def _catch_up_table(result: dict[str, Any]) -> list[str]:
    runs = result["runs"]
    lines = [HEADER]

    def values(side: str, key: str) -> list[float | None]:
        return [run.get(key) for run in runs if run["side"] == side]

    lines.append(
        _row(
            "B6",
            "time until every object ran, s",
            "all_caught_up_seconds",
            values(SKED, "all_caught_up_seconds"),
            values(CRONJOB, "all_caught_up_seconds"),
        )
    )
    lines.append(
        _row(
            "B6",
            "controller CPU, s",
            "cpu",
            values(SKED, "cpu_seconds"),
            values(CRONJOB, "cpu_seconds"),
            1,
        )
    )
    calls = [
        run["croniter_calls_per_object"]["mean"]
        for run in runs
        if run["side"] == SKED and "croniter_calls_per_object" in run
    ]
    missed = [run.get("missed_runs_counted") for run in runs if run["side"] == SKED]
    lines.append(
        f"\nsked: croniter calls per object {_cell(calls)}; missed runs counted in status "
        f"{_cell(missed, 0)} over {result['jobs']} objects."
    )
    return lines
