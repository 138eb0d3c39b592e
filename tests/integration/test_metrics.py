"""Metrics, failure details and the Failing condition after a known scenario."""

from __future__ import annotations

import datetime as dt
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.integration.support import Jobs, OperatorProcess, pod_template, wait_until

pytestmark = pytest.mark.integration


def one_shot_schedules(*slots: dt.datetime) -> list[str]:
    """Return 6-field schedules that each fire at one of ``slots`` (once a year)."""
    return [f"{s.second} {s.minute} {s.hour} {s.day} {s.month} *" for s in slots]


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Parse Prometheus text into {(sample name, sorted labels): value}."""
    parsed: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            parsed[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return parsed


def value(parsed: dict[Any, float], name: str, **labels: str) -> float:
    return parsed.get((name, tuple(sorted(labels.items()))), 0.0)


def finished(jobs: Jobs, name: str, count: int) -> bool:
    runs = jobs.status(name).get("runs", [])
    return sum(1 for run in runs if run["phase"] in ("Succeeded", "Failed")) >= count


def test_metrics_after_known_scenario(jobs: Jobs, operator: OperatorProcess) -> None:
    start = dt.datetime.now(dt.UTC).replace(microsecond=0) + dt.timedelta(seconds=5)
    first, second = start, start + dt.timedelta(seconds=4)
    history = {"successfulRunsLimit": 10, "failedRunsLimit": 10}
    jobs.create(
        "job-a",
        {
            "schedules": one_shot_schedules(first, second),
            "history": history,
            "template": pod_template({"kwok.sked.dev/succeed-after": "1s"}),
        },
    )
    jobs.create(
        "job-b",
        {
            "schedules": one_shot_schedules(first),
            "history": history,
            "retry": {"limit": 1, "backoff": {"initialSeconds": 1}},
            "template": pod_template(
                {
                    "kwok.sked.dev/fail-after": "1s",
                    "kwok.sked.dev/exit-code": "7",
                    "kwok.sked.dev/message": "line one\nconnection refused",
                }
            ),
        },
    )
    jobs.create(
        "job-c",
        {
            "schedules": one_shot_schedules(first, second),
            "concurrencyPolicy": "Forbid",
            "history": history,
            "template": pod_template({"kwok.sked.dev/succeed-after": "30s"}),
        },
    )
    wait_until(lambda: finished(jobs, "job-a", 2), timeout=40, message="two runs of job-a")
    wait_until(lambda: finished(jobs, "job-b", 1), timeout=40, message="the run of job-b")
    wait_until(
        lambda: jobs.status("job-c").get("missedRuns") == 1,
        timeout=40,
        message="one missed slot of job-c",
    )

    parsed = samples(operator.scrape())
    ns = jobs.namespace
    a = {"namespace": ns, "scheduledjob": "job-a"}
    b = {"namespace": ns, "scheduledjob": "job-b"}
    c = {"namespace": ns, "scheduledjob": "job-c"}
    assert value(parsed, "sked_runs_finished_total", **a, result="succeeded") == 2
    assert value(parsed, "sked_attempts_started_total", **a) == 2
    assert value(parsed, "sked_runs_finished_total", **b, result="failed") == 1
    assert value(parsed, "sked_attempts_started_total", **b) == 2
    assert value(parsed, "sked_missed_slots_total", **c, reason="concurrency") == 1
    assert value(parsed, "sked_run_duration_seconds_count", **a, result="succeeded") == 2
    assert value(parsed, "sked_run_duration_seconds_count", **b, result="failed") == 1
    assert value(parsed, "sked_schedule_lag_created_seconds_count", **a) == 2
    assert value(parsed, "sked_schedule_lag_created_seconds_count", **b) == 1
    assert value(parsed, "sked_schedule_lag_running_seconds_count", **a) == 2
    assert value(parsed, "sked_active_runs", **c) == 1

    failed = jobs.status("job-b")["runs"][0]
    assert failed["phase"] == "Failed"
    assert failed["reason"] == "RetriesExhausted"
    for attempt in failed["attempts"]:
        assert attempt["exitCode"] == 7
        assert attempt["message"].endswith("connection refused")


def test_metrics_pass_promtool(jobs: Jobs, operator: OperatorProcess) -> None:
    cache = Path(os.environ.get("SKED_CACHE", Path.home() / ".cache" / "sked"))
    found = sorted(cache.glob("bin/promtool-*/promtool"))
    promtool = str(found[-1]) if found else shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool is not built: run `bash hack/build-control-plane.sh promtool`")
    jobs.create(
        "linted",
        {
            "schedule": "*/2 * * * * *",
            "template": pod_template({"kwok.sked.dev/succeed-after": "1s"}),
        },
    )
    wait_until(lambda: finished(jobs, "linted", 1), timeout=30, message="a finished run")
    result = subprocess.run(
        [promtool, "check", "metrics"],
        input=operator.scrape(),
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_failing_condition_after_three_failures(jobs: Jobs) -> None:
    jobs.create(
        "flaky",
        {
            "schedule": "*/3 * * * * *",
            "retry": {"limit": 0},
            "history": {"failedRunsLimit": 5},
            "template": pod_template({"kwok.sked.dev/fail-after": "1s"}),
        },
    )

    def failing_is(expected: str) -> dict[str, Any] | None:
        condition = jobs.condition("flaky", "Failing")
        return condition if condition and condition["status"] == expected else None

    condition = wait_until(lambda: failing_is("True"), timeout=40, message="Failing True")
    assert condition["reason"] == "ConsecutiveFailures"
    assert jobs.status("flaky")["consecutiveFailures"] >= 3
    failed = [run for run in jobs.status("flaky")["runs"] if run["phase"] == "Failed"]
    assert len(failed) >= 3

    # A JSON patch that removes the annotation making Pods fail; the client
    # drops the null a merge patch would need for that.
    annotations = "/spec/template/metadata/annotations"
    jobs.custom.patch_namespaced_custom_object(
        "sked.dev",
        "v1alpha1",
        jobs.namespace,
        "scheduledjobs",
        "flaky",
        [
            {"op": "remove", "path": f"{annotations}/kwok.sked.dev~1fail-after"},
            {"op": "add", "path": f"{annotations}/kwok.sked.dev~1succeed-after", "value": "1s"},
        ],
        _content_type="application/json-patch+json",
    )
    wait_until(lambda: failing_is("False"), timeout=40, message="Failing False after a success")
    assert jobs.status("flaky")["consecutiveFailures"] == 0
    # The success that ends the streak is an Event; routine successes are not.
    recovered = wait_until(
        lambda: [e for e in jobs.events("flaky") if e.reason == "RunSucceeded"],
        timeout=10,
        message="a RunSucceeded Event",
    )
    assert len(recovered) == 1
    assert "failed run(s) in a row" in recovered[0].message
