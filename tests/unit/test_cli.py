"""`sked run` rejects bad option values before it contacts any cluster."""

from __future__ import annotations

import pytest

from sked.cli import main


@pytest.mark.parametrize("value", ["-1", "nan", "inf"])
def test_run_rejects_bad_batch_delay(value, capsys):
    assert main(["run", "--no-leader-elect", "--status-batch-seconds", value]) == 2
    assert "--status-batch-seconds must be" in capsys.readouterr().err


@pytest.mark.parametrize("value", ["-1", "65536"])
def test_run_rejects_bad_metrics_port(value, capsys):
    assert main(["run", "--no-leader-elect", "--metrics-port", value]) == 2
    assert "--metrics-port must be 0 to 65535" in capsys.readouterr().err


def test_run_rejects_unknown_success_events(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["run", "--success-events", "bogus"])
    assert exit_info.value.code == 2
    assert "invalid choice" in capsys.readouterr().err
