"""The recorder: one process that logs when each benchmark Pod and Job was first seen.

It watches Pods and Jobs that carry the benchmark label in every namespace, metadata
only, and appends one JSON line per new object to its output file:

    {"kind": "pod", "seen": 1767000000.123, "namespace": ..., "name": ...,
     "slot": 1767000000, "job": "<owning Job or null>", "created": "<creationTimestamp>",
     "listed": false}

``seen`` is this process's clock when the watch event arrived, in seconds with
millisecond precision. creationTimestamp has whole seconds only, which is too coarse for
lags under a second. ``slot`` is the due time the object was created for: sked's
``sked.dev/scheduled-time`` annotation on Pods, CronJob's
``batch.kubernetes.io/cronjob-scheduled-timestamp`` on Jobs. A CronJob's Pod gets its
slot from its Job when the results are read. Objects that already exist when a watch
(re)starts come from a list and are marked ``listed``, with ``seen`` set to the list time.

Run it as ``python -m bench.recorder --kubeconfig FILE --label KEY --output FILE``. It
prints ``ready`` on stdout once both watches run, and stops on SIGTERM.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

from bench.api import METADATA_ONLY, METADATA_ONLY_LIST, RECORDER_AGENT, Api, ApiError, Credentials

SKED_SLOT_ANNOTATION = "sked.dev/scheduled-time"
CRONJOB_SLOT_ANNOTATION = "batch.kubernetes.io/cronjob-scheduled-timestamp"
WATCH_TIMEOUT_SECONDS = 290

RESOURCES = {"pod": "/api/v1/pods", "job": "/apis/batch/v1/jobs"}


def parse_time(text: str | None) -> float | None:
    if not text:
        return None
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def record_of(kind: str, metadata: dict[str, Any], seen: float, *, listed: bool) -> dict[str, Any]:
    """Return the output line for one object's metadata."""
    annotations = metadata.get("annotations") or {}
    slot = parse_time(
        annotations.get(SKED_SLOT_ANNOTATION) or annotations.get(CRONJOB_SLOT_ANNOTATION)
    )
    owner = None
    for reference in metadata.get("ownerReferences") or []:
        if reference.get("controller"):
            owner = reference.get("name")
    return {
        "kind": kind,
        "seen": round(seen, 3),
        "namespace": metadata.get("namespace"),
        "name": metadata.get("name"),
        "slot": slot,
        "owner": owner,
        "created": metadata.get("creationTimestamp"),
        "listed": listed,
    }


class Recorder:
    """Watches one resource and writes a line for every object it has not seen before."""

    def __init__(
        self, api: Api, kind: str, label: str, emit: Callable[[dict[str, Any]], None]
    ) -> None:
        self.api = api
        self.kind = kind
        self.path = RESOURCES[kind]
        self.label = label
        self.emit = emit
        self.known: set[tuple[str, str]] = set()
        self.ready = threading.Event()

    def _list(self) -> str:
        """Record the objects that exist now and return the list's resourceVersion."""
        page = self.api.request(
            "GET",
            self.path,
            params={"labelSelector": self.label, "resourceVersion": "0"},
            accept=METADATA_ONLY_LIST,
        )
        seen = time.time()
        for item in page.get("items") or []:
            self._note(item.get("metadata") or {}, seen, listed=True)
        return str((page.get("metadata") or {}).get("resourceVersion", ""))

    def _note(self, metadata: dict[str, Any], seen: float, *, listed: bool) -> None:
        key = (metadata.get("namespace", ""), metadata.get("name", ""))
        if key in self.known:
            return
        self.known.add(key)
        self.emit(record_of(self.kind, metadata, seen, listed=listed))

    def run(self) -> None:
        """Watch until the process ends; any unexpected error ends the whole process."""
        try:
            self._watch()
        except BaseException:
            traceback.print_exc()
            os._exit(2)

    def _watch(self) -> None:
        version = self._list()
        while True:
            params = {
                "labelSelector": self.label,
                "resourceVersion": version,
                "allowWatchBookmarks": "true",
                "timeoutSeconds": WATCH_TIMEOUT_SECONDS,
            }
            self.ready.set()
            try:
                for seen, line in self.api.watch_lines(
                    self.path, params=params, accept=METADATA_ONLY
                ):
                    # Only additions matter, and the type comes first in every event, so
                    # the other events are skipped without parsing their objects.
                    if line.startswith(b'{"type":"ADDED"'):
                        metadata = json.loads(line)["object"].get("metadata") or {}
                        self._note(metadata, seen, listed=False)
                        version = str(metadata.get("resourceVersion") or version)
                    elif line.startswith(b'{"type":"ERROR"'):
                        version = self._list()  # 410 Gone: the version is too old.
                        break
                    else:
                        version = _resource_version(line) or version
            except (OSError, ApiError) as error:
                print(f"watch of {self.kind}s ended with {error}; listing again", file=sys.stderr)
                version = self._list()


def _resource_version(line: bytes) -> str | None:
    """Find the object's resourceVersion without parsing the whole event."""
    marker = b'"resourceVersion":"'
    start = line.find(marker)
    if start < 0:
        return None
    start += len(marker)
    return line[start : line.index(b'"', start)].decode()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.recorder", description=__doc__)
    parser.add_argument("--kubeconfig", type=Path, required=True)
    parser.add_argument("--label", required=True, help="label selector, such as bench.sked.dev/run")
    parser.add_argument("--output", type=Path, required=True, help="JSON lines file to append to")
    args = parser.parse_args(argv)

    api = Api(Credentials.from_kubeconfig(args.kubeconfig), user_agent=RECORDER_AGENT)
    lock = threading.Lock()
    output: TextIO = args.output.open("a", buffering=1)

    def emit(line: dict[str, Any]) -> None:
        text = json.dumps(line, separators=(",", ":"))
        with lock:
            output.write(text + "\n")

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    recorders = [Recorder(api, kind, args.label, emit) for kind in RESOURCES]
    for recorder in recorders:
        threading.Thread(target=recorder.run, name=recorder.kind, daemon=True).start()
    for recorder in recorders:
        recorder.ready.wait()
    print("ready", flush=True)
    threading.Event().wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
