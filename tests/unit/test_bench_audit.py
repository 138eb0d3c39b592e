"""The benchmark's audit log window keeps counting when kube-apiserver rotates the log."""

from __future__ import annotations

import json
import os
from pathlib import Path

from bench.audit import Window

SKED_USER = "system:serviceaccount:sked-system:sked"


def request(audit_id: str, verb: str = "create") -> bytes:
    event = {
        "auditID": audit_id,
        "verb": verb,
        "user": {"username": SKED_USER},
        "objectRef": {"resource": "pods", "namespace": "b3"},
    }
    return json.dumps(event).encode() + b"\n"


def test_window_counts_across_rotation(tmp_path: Path):
    log = tmp_path / "audit.log"
    log.write_bytes(request("before"))
    window = Window(log, sked_users={SKED_USER})
    with log.open("ab") as handle:
        handle.write(request("a") + request("b"))
    window.read()

    # Rotation: the file is renamed with a time stamp and a new one begins.
    with log.open("ab") as handle:
        handle.write(request("c"))
    rotated = tmp_path / "audit-2026-12-04T22-27-00.267.log"
    os.rename(log, rotated)
    # The new file grows past the old offset before the next read.
    log.write_bytes(request("d", verb="delete") + b"".join(request(f"e{i}") for i in range(5)))

    counts = window.read()

    assert counts.writes({"sked"}) == 9
    assert counts.by_client_verb["sked", "delete"] == 1
    assert counts.by_client_verb["sked", "create"] == 8
