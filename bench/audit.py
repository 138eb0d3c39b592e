"""API requests per client and verb, counted from the API server's audit log.

The local cluster logs every request at level Metadata, which carries the user, the user
agent, the verb, the resource and the namespace. A window starts at a byte offset into the log,
the file's size when it opens, and reads only what was appended since, so a benchmark
never parses the requests of the ones before it.

Each request is counted once by its audit ID. A watch is logged when its response starts
and again when it ends, and it counts at the first of the two that falls in the window.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

READ_VERBS = frozenset({"get", "list", "watch"})
WRITE_VERBS = frozenset({"create", "update", "patch", "delete", "deletecollection"})

# The users of each side. kube-controller-manager runs with
# --use-service-account-credentials, so each controller has a ServiceAccount of its own.
CRONJOB_USERS = {
    "system:serviceaccount:kube-system:cronjob-controller": "cronjob-controller",
    "system:serviceaccount:kube-system:job-controller": "job-controller",
    "system:serviceaccount:kube-system:generic-garbage-collector": "garbage-collector",
}


@dataclass
class Counts:
    """Requests of one window, by client and by (client, verb, resource)."""

    by_client_verb: Counter[tuple[str, str]] = field(default_factory=Counter)
    by_client_verb_resource: Counter[tuple[str, str, str]] = field(default_factory=Counter)

    def writes(self, clients: set[str]) -> int:
        return sum(
            n for (c, v), n in self.by_client_verb.items() if c in clients and v in WRITE_VERBS
        )

    def reads(self, clients: set[str]) -> int:
        return sum(
            n for (c, v), n in self.by_client_verb.items() if c in clients and v in READ_VERBS
        )

    def table(self) -> list[dict[str, object]]:
        """Return one row per (client, verb, resource), most requests first."""
        return [
            {"client": c, "verb": v, "resource": r, "requests": n}
            for (c, v, r), n in self.by_client_verb_resource.most_common()
        ]


def client_name(user: str, user_agent: str, *, sked_users: set[str]) -> str:
    """Name the client behind one request: a controller, sked, kwok, the rig or other."""
    if user in CRONJOB_USERS:
        return CRONJOB_USERS[user]
    if user in sked_users:
        return "sked"
    if user == "kwok":
        return "kwok"
    if user == "system:kube-scheduler":
        return "kube-scheduler"
    if user_agent.startswith("sked-bench-"):
        return user_agent.removeprefix("sked-")
    if (
        user.startswith("system:serviceaccount:kube-system:")
        or user == "system:kube-controller-manager"
    ):
        return "other-controllers"
    return "other"


class Window:
    """The requests appended to the audit log after the window opened.

    `read` parses what was appended since its last call and adds it to `counts`, so a
    benchmark can poll it, for example until the controllers under test go quiet.
    With ``namespaces``, a request on a namespaced object counts only in those
    namespaces; requests with no namespace (cluster-wide lists and watches, Nodes)
    always count, because they serve every namespace at once.
    """

    def __init__(
        self, path: Path, *, sked_users: set[str], namespaces: set[str] | None = None
    ) -> None:
        self.path = path
        self.sked_users = sked_users
        self.namespaces = namespaces
        self.offset = path.stat().st_size if path.exists() else 0
        self._inode = path.stat().st_ino if path.exists() else None
        self.counts = Counts()
        self.last_write_at: dict[str, float] = {}
        """The time `read` last found a write of each client."""
        self._seen: set[str] = set()

    def read(self) -> Counts:
        """Count the complete lines appended since the last call and return the totals."""
        now = time.time()
        inode = self.path.stat().st_ino
        if self._inode is not None and inode != self._inode:
            # kube-apiserver rotated the log: finish the old file, then start the new one.
            rotated = self._rotated()
            if rotated is not None:
                self._read_from(rotated, now)
            self.offset = 0
        self._inode = inode
        self._read_from(self.path, now)
        return self.counts

    def _rotated(self) -> Path | None:
        """Return the newest rotated file (``audit-<time>.log`` next to the log), if any."""
        pattern = f"{self.path.stem}-*{self.path.suffix}"
        candidates = sorted(self.path.parent.glob(pattern), key=lambda p: p.stat().st_mtime)
        return candidates[-1] if candidates else None

    def _read_from(self, path: Path, now: float) -> None:
        with path.open("rb") as log:
            log.seek(self.offset)
            data = log.read()
        end = data.rfind(b"\n") + 1  # A line still being written waits for the next call.
        self.offset += end
        for line in data[:end].splitlines():
            self._count(line, now)

    def _count(self, line: bytes, now: float) -> None:
        try:
            event = json.loads(line)
        except ValueError:
            return
        audit_id = event.get("auditID", "")
        if audit_id in self._seen:
            return
        self._seen.add(audit_id)
        reference = event.get("objectRef") or {}
        namespace = reference.get("namespace")
        if self.namespaces is not None and namespace and namespace not in self.namespaces:
            return
        user = (event.get("user") or {}).get("username", "")
        client = client_name(user, event.get("userAgent", ""), sked_users=self.sked_users)
        verb = event.get("verb", "")
        resource = reference.get("resource", "")
        if reference.get("subresource"):
            resource += "/" + reference["subresource"]
        self.counts.by_client_verb[client, verb] += 1
        self.counts.by_client_verb_resource[client, verb, resource] += 1
        if verb in WRITE_VERBS:
            self.last_write_at[client] = now

    def quiet_since(self, clients: set[str]) -> float:
        """Return the time of the last write of any of ``clients`` found so far, or 0."""
        return max((self.last_write_at.get(client, 0.0) for client in clients), default=0.0)
