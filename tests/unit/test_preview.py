"""``sked next`` and ``next_runs``: upcoming due instants with DST rules, H and jitter."""

from __future__ import annotations

import datetime as dt
import itertools
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from sked.cli import main
from sked.errors import InvalidSpecError
from sked.preview import next_runs
from sked.schedule import jitter, parse_schedule

TEMPLATE = {"spec": {"containers": [{"name": "main", "image": "busybox"}]}}


def utc(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text).replace(tzinfo=dt.UTC)


def manifest(name: str = "report", namespace: str | None = "prod", **spec: Any) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": name}
    if namespace is not None:
        metadata["namespace"] = namespace
    return {
        "apiVersion": "sked.dev/v1alpha1",
        "kind": "ScheduledJob",
        "metadata": metadata,
        "spec": {"template": TEMPLATE, **spec},
    }


def write(tmp_path: Path, *documents: dict[str, Any], name: str = "job.yaml") -> str:
    path = tmp_path / name
    path.write_text(yaml.safe_dump_all(documents))
    return str(path)


def run_next(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, list[str], str]:
    code = main(["next", *args])
    captured = capsys.readouterr()
    return code, captured.out.splitlines(), captured.err


# -- next_runs --------------------------------------------------------------------


def test_next_runs_pairs_instant_and_local_slot():
    job = manifest(schedule="30 2 * * *", timeZone="America/New_York")

    found = list(next_runs(job, after=utc("2024-03-09T17:00"), count=2))

    assert [due for due, _ in found] == [utc("2024-03-10T07:00"), utc("2024-03-11T06:30")]
    assert [local.isoformat() for _, local in found] == [
        "2024-03-10T03:00:00-04:00",
        "2024-03-11T02:30:00-04:00",
    ]


def test_next_runs_stops_at_count():
    job = manifest(schedule="* * * * *")

    assert len(list(next_runs(job, after=utc("2024-01-01T00:00"), count=7))) == 7


def test_next_runs_of_never_firing_schedule():
    job = manifest(schedule="0 0 30 2 *")

    assert list(next_runs(job, after=utc("2024-01-01T00:00"), count=3)) == []


def test_next_runs_rejects_invalid_spec():
    job = manifest(schedule="0 * * * *", schedules=["0 9 * * *"])

    with pytest.raises(InvalidSpecError, match="report"):
        list(next_runs(job, after=utc("2024-01-01T00:00"), count=1))


def test_next_runs_hashes_namespace_and_name():
    job = manifest(name="nightly", namespace="prod", schedule="H H * * *")
    expected = parse_schedule("H H * * *", "UTC", hash_id="prod/nightly")
    start = utc("2024-01-01T00:00")

    found = [due for due, _ in next_runs(job, after=start, count=3)]

    assert found == list(itertools.islice(expected.iter_after(start), 3))


def test_next_runs_defaults_to_default_namespace():
    job = manifest(name="nightly", namespace=None, schedule="H H * * *")
    expected = parse_schedule("H H * * *", "UTC", hash_id="default/nightly")
    start = utc("2024-01-01T00:00")

    found = [due for due, _ in next_runs(job, after=start, count=1)]

    assert found == [expected.next_after(start)]


def test_next_runs_applies_jitter():
    job = manifest(name="report", namespace="prod", schedule="0 * * * *", jitterSeconds=600)
    schedule = parse_schedule("0 * * * *", "UTC")

    found = list(next_runs(job, after=utc("2024-01-01T00:00"), count=24))

    delays = set()
    for due, local in found:
        slot = local.astimezone(dt.UTC)
        assert slot.minute == 0
        delay = due - slot
        assert dt.timedelta(0) <= delay < dt.timedelta(seconds=600)
        assert delay == jitter(schedule, slot, key="prod/report", jitter_seconds=600)
        delays.add(delay)
    assert len(delays) > 1


# -- sked next --------------------------------------------------------------------


def test_command_prints_utc_and_local(tmp_path, capsys):
    path = write(tmp_path, manifest(schedule="30 2 * * *", timeZone="America/New_York"))

    code, lines, err = run_next(capsys, path, "--count", "2", "--from", "2024-03-09T12:00-05:00")

    assert code == 0
    assert err == ""
    assert lines == [
        "2024-03-10T07:00:00Z  2024-03-10T03:00:00-04:00",
        "2024-03-11T06:30:00Z  2024-03-11T02:30:00-04:00",
    ]


def test_command_applies_skip_rule(tmp_path, capsys):
    path = write(
        tmp_path,
        manifest(
            schedule="30 2 * * *",
            timeZone="America/New_York",
            daylightSaving={"skippedTime": "Skip"},
        ),
    )

    code, lines, _ = run_next(capsys, path, "--count", "1", "--from", "2024-03-09T17:00:00Z")

    assert code == 0
    assert lines == ["2024-03-11T06:30:00Z  2024-03-11T02:30:00-04:00"]


def test_command_applies_twice_rule(tmp_path, capsys):
    path = write(
        tmp_path,
        manifest(
            schedule="30 2 * * *",
            timeZone="Europe/Berlin",
            daylightSaving={"repeatedTime": "Twice"},
        ),
    )

    code, lines, _ = run_next(capsys, path, "--count", "3", "--from", "2024-10-26T12:00:00Z")

    assert code == 0
    assert lines == [
        "2024-10-27T00:30:00Z  2024-10-27T02:30:00+02:00",
        "2024-10-27T01:30:00Z  2024-10-27T02:30:00+01:00",
        "2024-10-28T01:30:00Z  2024-10-28T02:30:00+01:00",
    ]


def test_command_hourly_across_jump(tmp_path, capsys):
    path = write(tmp_path, manifest(schedule="0 * * * *", timeZone="America/New_York"))

    code, lines, _ = run_next(capsys, path, "--count", "6", "--from", "2022-03-12T22:00:30-05:00")

    assert code == 0
    assert lines == [
        "2022-03-13T04:00:00Z  2022-03-12T23:00:00-05:00",
        "2022-03-13T05:00:00Z  2022-03-13T00:00:00-05:00",
        "2022-03-13T06:00:00Z  2022-03-13T01:00:00-05:00",
        "2022-03-13T07:00:00Z  2022-03-13T03:00:00-04:00",
        "2022-03-13T08:00:00Z  2022-03-13T04:00:00-04:00",
        "2022-03-13T09:00:00Z  2022-03-13T05:00:00-04:00",
    ]


def test_command_count_defaults_to_five(tmp_path, capsys):
    path = write(tmp_path, manifest(schedule="0 9 * * *"))

    code, lines, _ = run_next(capsys, path, "--from", "2024-05-01T00:00:00Z")

    assert code == 0
    assert [line.split()[0] for line in lines] == [
        f"2024-05-0{day}T09:00:00Z" for day in range(1, 6)
    ]


def test_command_union_of_schedules(tmp_path, capsys):
    path = write(tmp_path, manifest(schedules=["0 9 * * *", "0 9 * * 1", "0 12 * * 1"]))

    # 2024-05-05 is a Sunday. Monday 09:00 is named twice and printed once.
    code, lines, _ = run_next(capsys, path, "--count", "3", "--from", "2024-05-05T10:00:00Z")

    assert code == 0
    assert [line.split()[0] for line in lines] == [
        "2024-05-06T09:00:00Z",
        "2024-05-06T12:00:00Z",
        "2024-05-07T09:00:00Z",
    ]


def test_command_hashed_minute_from_file(tmp_path, capsys):
    path = write(tmp_path, manifest(name="nightly", namespace="prod", schedule="H 3 * * *"))
    start = utc("2024-05-01T00:00")
    expected = parse_schedule("H 3 * * *", "UTC", hash_id="prod/nightly").next_after(start)
    assert expected is not None

    code, lines, _ = run_next(capsys, path, "--count", "1", "--from", "2024-05-01T00:00:00Z")

    assert code == 0
    assert lines[0].split()[0] == expected.strftime("%Y-%m-%dT%H:%M:%SZ")
    assert lines[0].startswith("2024-05-01T03:")


def test_command_jitter_shifts_utc_column(tmp_path, capsys):
    path = write(tmp_path, manifest(schedule="0 * * * *", jitterSeconds=1800))

    code, lines, _ = run_next(capsys, path, "--count", "12", "--from", "2024-05-01T00:00:00Z")

    assert code == 0
    assert len(lines) == 12
    for hour, line in enumerate(lines, start=1):
        due_text, local_text = line.split("  ")
        due = dt.datetime.fromisoformat(due_text.replace("Z", "+00:00"))
        slot = utc(f"2024-05-01T{hour:02d}:00")
        assert local_text == slot.isoformat()
        assert slot <= due < slot + dt.timedelta(seconds=1800)


def test_command_several_documents(tmp_path, capsys):
    config_map = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "other"}}
    path = write(
        tmp_path,
        manifest(name="first", schedule="0 9 * * *"),
        config_map,
        manifest(name="second", schedule="0 18 * * *"),
    )

    code, lines, _ = run_next(capsys, path, "--count", "1", "--from", "2024-05-01T00:00:00Z")

    assert code == 0
    assert lines == [
        "# first",
        "2024-05-01T09:00:00Z  2024-05-01T09:00:00+00:00",
        "# second",
        "2024-05-01T18:00:00Z  2024-05-01T18:00:00+00:00",
    ]


def test_command_reads_json(tmp_path, capsys):
    path = tmp_path / "job.json"
    path.write_text(json.dumps(manifest(schedule="0 9 * * *")))

    code, lines, _ = run_next(capsys, str(path), "--count", "1", "--from", "2024-05-01T00:00Z")

    assert code == 0
    assert lines == ["2024-05-01T09:00:00Z  2024-05-01T09:00:00+00:00"]


def test_command_never_firing_schedule(tmp_path, capsys):
    path = write(tmp_path, manifest(schedule="0 0 30 2 *"))

    code, lines, _ = run_next(capsys, path, "--from", "2024-05-01T00:00:00Z")

    assert code == 0
    assert lines == ["(the schedule never fires)"]


# -- sked next: errors -------------------------------------------------------------


def assert_failed(code: int, lines: list[str], err: str, *fragments: str) -> None:
    assert code == 2
    assert lines == []
    assert err.startswith("sked: ")
    assert "Traceback" not in err
    for fragment in fragments:
        assert fragment in err


def test_command_invalid_schedule(tmp_path, capsys):
    path = write(tmp_path, manifest(schedule="61 * * * *"))

    code, lines, err = run_next(capsys, path, "--from", "2024-05-01T00:00:00Z")

    assert_failed(code, lines, err, "61 * * * *")


def test_command_wrong_field_count(tmp_path, capsys):
    path = write(tmp_path, manifest(schedule="* * *"))

    code, lines, err = run_next(capsys, path)

    assert_failed(code, lines, err, "'* * *'", "5 fields")


def test_command_unknown_zone(tmp_path, capsys):
    path = write(tmp_path, manifest(schedule="0 9 * * *", timeZone="Mars/Olympus_Mons"))

    code, lines, err = run_next(capsys, path)

    assert_failed(code, lines, err, "Mars/Olympus_Mons", "time zone")


def test_command_invalid_spec(tmp_path, capsys):
    path = write(tmp_path, manifest(schedule="0 9 * * *", schedules=["0 12 * * *"]))

    code, lines, err = run_next(capsys, path)

    assert_failed(code, lines, err, "report", "exactly one")


def test_command_count_below_one(tmp_path, capsys):
    path = write(tmp_path, manifest(schedule="0 9 * * *"))

    code, lines, err = run_next(capsys, path, "--count", "0")

    assert_failed(code, lines, err, "--count")


def test_command_start_without_offset(tmp_path, capsys):
    path = write(tmp_path, manifest(schedule="0 9 * * *"))

    code, lines, err = run_next(capsys, path, "--from", "2024-05-01T00:00")

    assert_failed(code, lines, err, "2024-05-01T00:00", "offset")


def test_command_start_not_a_time(tmp_path, capsys):
    path = write(tmp_path, manifest(schedule="0 9 * * *"))

    code, lines, err = run_next(capsys, path, "--from", "yesterday")

    assert_failed(code, lines, err, "yesterday")


def test_command_file_without_scheduled_job(tmp_path, capsys):
    path = write(tmp_path, {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}})

    code, lines, err = run_next(capsys, path)

    assert_failed(code, lines, err, "ScheduledJob")


def test_command_missing_file(tmp_path, capsys):
    code, lines, err = run_next(capsys, str(tmp_path / "absent.yaml"))

    assert_failed(code, lines, err, "absent.yaml")


def test_command_invalid_yaml(tmp_path, capsys):
    path = tmp_path / "job.yaml"
    path.write_text("kind: ScheduledJob\nspec: [unclosed\n")

    code, lines, err = run_next(capsys, str(path))

    assert_failed(code, lines, err)


def test_command_yaml_list_document(tmp_path, capsys):
    path = tmp_path / "job.yaml"
    path.write_text("- kind: ScheduledJob\n")

    code, lines, err = run_next(capsys, str(path))

    assert_failed(code, lines, err, "ScheduledJob")
