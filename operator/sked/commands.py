"""The short-lived commands ``sked next`` and ``sked trigger``."""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import sys
import uuid
from pathlib import Path
from typing import Any

import yaml
from kubernetes_asyncio.client.exceptions import ApiException

from sked import naming
from sked.errors import SkedError
from sked.kube import KubeClient
from sked.preview import next_runs


def _fail(message: str) -> int:
    print(f"sked: {message}", file=sys.stderr)
    return 2


def _parse_instant(text: str) -> dt.datetime:
    value = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    if value.tzinfo is None:
        raise ValueError(f"{text!r} has no UTC offset; add Z or +HH:MM")
    return value.astimezone(dt.UTC)


async def _current_namespace_and_client(namespace: str | None) -> tuple[str, KubeClient]:
    kube = await KubeClient.connect()
    return namespace or kube.default_namespace, kube


async def _load_from_cluster(name: str, namespace: str | None) -> dict[str, Any]:
    target, kube = await _current_namespace_and_client(namespace)
    try:
        body: dict[str, Any] = await kube.get_job(target, name)
        return body
    finally:
        await kube.close()


async def _trigger(name: str, namespace: str | None) -> str:
    target, kube = await _current_namespace_and_client(namespace)
    value = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ-") + uuid.uuid4().hex[:6]
    try:
        await kube.patch_job_annotations(target, name, {naming.ANNOTATION_RUN_NOW: value})
    finally:
        await kube.close()
    return f"{target}/{name}: set {naming.ANNOTATION_RUN_NOW}={value}; the run starts at once"


def main(args: argparse.Namespace) -> int:
    try:
        if args.command == "trigger":
            print(asyncio.run(_trigger(args.name, args.namespace)))
            return 0
        return _next(args)
    except ApiException as error:
        return _fail(f"the API server answered {error.status} {error.reason}")
    except (SkedError, ValueError, OSError, yaml.YAMLError) as error:
        return _fail(str(error))


def _next(args: argparse.Namespace) -> int:
    if args.count < 1:
        raise ValueError(f"--count must be at least 1 (got {args.count})")
    start = _parse_instant(args.start) if args.start else dt.datetime.now(dt.UTC)
    path = Path(args.target)
    if path.suffix in (".yaml", ".yml", ".json") or path.exists():
        documents = [doc for doc in yaml.safe_load_all(path.read_text()) if doc]
        manifests = [
            doc for doc in documents if isinstance(doc, dict) and doc.get("kind") == "ScheduledJob"
        ]
        if not manifests:
            raise ValueError(f"no ScheduledJob found in {args.target}")
    else:
        manifests = [asyncio.run(_load_from_cluster(args.target, args.namespace))]
    for manifest in manifests:
        if len(manifests) > 1:
            print(f"# {manifest.get('metadata', {}).get('name')}")
        found = False
        for due, local in next_runs(manifest, after=start, count=args.count):
            found = True
            print(f"{due.strftime('%Y-%m-%dT%H:%M:%SZ')}  {local.isoformat()}")
        if not found:
            print("(the schedule never fires)")
    return 0
