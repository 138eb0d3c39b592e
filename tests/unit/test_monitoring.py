"""The alerting rules and dashboard under deploy/monitoring, checked with promtool."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

MONITORING = Path(__file__).resolve().parents[2] / "deploy" / "monitoring"


def find_promtool() -> str:
    cache = Path(os.environ.get("SKED_CACHE", Path.home() / ".cache" / "sked"))
    built = sorted(cache.glob("bin/promtool-*/promtool"))
    found = str(built[-1]) if built else shutil.which("promtool")
    if found is None:
        pytest.skip("promtool is not built: run `make control-plane`")
    return found


def test_alert_rules_pass_promtool_check() -> None:
    result = subprocess.run(
        [find_promtool(), "check", "rules", str(MONITORING / "alerts.yaml")],
        capture_output=True,
        text=True,
        check=False,
    )

    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 6 rules found" in result.stdout


def test_alert_rules_pass_promtool_tests() -> None:
    result = subprocess.run(
        [find_promtool(), "test", "rules", str(MONITORING / "alerts-test.yaml")],
        capture_output=True,
        text=True,
        check=False,
    )

    assert result.returncode == 0, result.stdout + result.stderr


def test_dashboard_queries_known_metrics() -> None:
    dashboard = json.loads((MONITORING / "dashboard.json").read_text())
    expressions = [
        target["expr"] for panel in dashboard["panels"] for target in panel.get("targets", [])
    ]
    titles = {panel["title"] for panel in dashboard["panels"]}

    assert {"Runs finished by result", "Next runs", "Leader", "Active runs"} <= titles
    assert any("sked_schedule_lag_created_seconds_bucket" in expr for expr in expressions)
    assert all("sked_" in expr for expr in expressions)
