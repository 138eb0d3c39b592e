"""Pod names and label values derived from a ScheduledJob's name."""

from __future__ import annotations

import datetime as dt
import re

import pytest

from sked import naming

# DNS-1123 label, the rule for Pod names.
DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
# Kubernetes label values: empty, or alphanumeric at both ends with -, _ and . between.
LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")

SLOT = dt.datetime(2024, 5, 1, 11, 0, tzinfo=dt.UTC)
NEXT_SLOT = dt.datetime(2024, 5, 1, 12, 0, tzinfo=dt.UTC)


def object_name(length: int) -> str:
    """Return a valid object name (DNS-1123 subdomain) of ``length`` characters."""
    text = ("abc-def.ghi0123" * 20)[:length]
    # A name must start and end with an alphanumeric character.
    return text[:-1] + "z" if length > 1 else "z"


def test_pod_name_short_name_is_readable():
    # 2024-05-01T11:00:00Z is 1714561200 seconds after the Unix epoch.
    assert naming.pod_name("backup", SLOT, 1) == "backup-1714561200-1"


def test_pod_name_is_valid_for_every_length():
    for length in range(1, 254):
        name = naming.pod_name(object_name(length), SLOT, 1)

        assert len(name) <= 63, name
        assert DNS_LABEL.match(name), name


def test_pod_name_is_valid_for_large_attempt():
    name = naming.pod_name("x" * 253, SLOT, 100)

    assert len(name) <= 63
    assert DNS_LABEL.match(name)
    assert name.endswith("-1714561200-100")


@pytest.mark.parametrize(
    "job_name",
    ["Nightly.Backup", "UPPER", "a.b", "dots.and.more.dots." * 10 + "end", "-lead", "x" * 253],
    ids=[
        "mixed-case-dots",
        "upper-case",
        "one-dot",
        "long-with-dots",
        "leading-dash",
        "max-length",
    ],
)
def test_pod_name_is_valid_for_unusual_names(job_name):
    name = naming.pod_name(job_name, SLOT, 1)

    assert len(name) <= 63
    assert DNS_LABEL.match(name)


def test_pod_name_is_stable():
    job_name = "report-" + "x" * 100

    assert naming.pod_name(job_name, SLOT, 2) == naming.pod_name(job_name, SLOT, 2)


def test_pod_name_shared_prefix_differs():
    prefix = "p" * 60
    first = naming.pod_name(prefix + "-first", SLOT, 1)
    second = naming.pod_name(prefix + "-second", SLOT, 1)

    assert first != second


@pytest.mark.parametrize(
    ("first", "second"),
    [("a.b", "a-b"), ("A-b", "a-b"), ("a_b", "a-b")],
    ids=["dot-vs-dash", "upper-vs-lower", "underscore-vs-dash"],
)
def test_pod_name_rewritten_characters_do_not_collide(first, second):
    assert naming.pod_name(first, SLOT, 1) != naming.pod_name(second, SLOT, 1)


@pytest.mark.parametrize("job_name", ["backup", "b" * 253], ids=["short", "long"])
def test_pod_name_differs_by_slot_and_attempt(job_name):
    names = {
        naming.pod_name(job_name, SLOT, 1),
        naming.pod_name(job_name, SLOT, 2),
        naming.pod_name(job_name, NEXT_SLOT, 1),
        naming.pod_name(job_name, NEXT_SLOT, 2),
    }

    assert len(names) == 4


def test_pod_name_ignores_sub_second_part():
    assert naming.pod_name("backup", SLOT.replace(microsecond=500), 1) == naming.pod_name(
        "backup", SLOT, 1
    )


def test_slot_key_is_unix_seconds():
    berlin = dt.timezone(dt.timedelta(hours=2))

    assert naming.slot_key(SLOT) == "1714561200"
    assert naming.slot_key(SLOT.astimezone(berlin)) == "1714561200"


def test_label_value_is_valid_for_every_length():
    for length in range(1, 254):
        value = naming.label_value(object_name(length))

        assert len(value) <= 63, value
        assert LABEL_VALUE.match(value), value


def test_label_value_keeps_short_names():
    assert naming.label_value("nightly.backup") == "nightly.backup"
    assert naming.label_value("n" * 63) == "n" * 63


def test_label_value_shared_prefix_differs():
    prefix = "p" * 60

    assert naming.label_value(prefix + "-first") != naming.label_value(prefix + "-second")


def test_label_value_is_stable():
    name = "q" * 200

    assert naming.label_value(name) == naming.label_value(name)
