"""Command line for the local cluster: ``python -m sked.localcluster up|down|status``.

``up`` starts the cluster and leaves it running after the command returns, ``down`` stops
it by the pids recorded in the cluster's folder, and ``status`` reports on it.
"""

from __future__ import annotations

import argparse
import http.client
import logging
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path

from sked.localcluster import apiclient, certs, configfiles, state
from sked.localcluster.cluster import PROCESS_NAMES, STOP_ORDER, LocalCluster
from sked.localcluster.errors import LocalClusterError

logger = logging.getLogger("sked.localcluster")

DEFAULT_DIR = Path(".local") / "cluster"


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    layout = state.Layout(args.dir)
    try:
        if args.command == "up":
            return _up(layout, args)
        if args.command == "down":
            return _down(layout)
        return _status(layout)
    except LocalClusterError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m sked.localcluster",
        description="Run a local Kubernetes control plane with kwok's fake Nodes.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    up = commands.add_parser(
        "up", help="start the cluster in the background, or report that it already runs"
    )
    down = commands.add_parser("down", help="stop the cluster; succeeds when none runs")
    status = commands.add_parser(
        "status", help="show the cluster's processes; exits 1 unless it is up and ready"
    )
    for command in (up, down, status):
        command.add_argument(
            "--dir",
            type=Path,
            default=DEFAULT_DIR,
            help=f"the cluster folder with data, logs and kubeconfig (default: {DEFAULT_DIR})",
        )
    up.add_argument(
        "--audit-log", action="store_true", help="record every API request in DIR/audit.log"
    )
    up.add_argument(
        "--fsync", action="store_true", help="keep etcd's fsync on (slower, crash-safe)"
    )
    up.add_argument(
        "--kwok-qps",
        type=float,
        default=None,
        help="Pod status changes per second that kwok should sustain",
    )
    up.add_argument(
        "--timeout",
        type=float,
        default=120.0,
        help="seconds to wait for each readiness check (default: 120)",
    )
    return parser


def _up(layout: state.Layout, args: argparse.Namespace) -> int:
    running = state.running_pids(layout)
    if running and set(running) == set(PROCESS_NAMES) and _apiserver_is_ready(layout):
        print(f"The local cluster in {layout.workdir} is already up.")
        _print_connection(layout)
        return 0
    if running:
        logger.info("Stopping the partly running cluster in %s first", layout.workdir)
        state.stop_recorded(layout, STOP_ORDER)

    cluster = LocalCluster(
        layout.workdir,
        fsync=args.fsync,
        audit_log=args.audit_log,
        kwok_qps=args.kwok_qps,
        start_timeout=args.timeout,
    )
    cluster.start()
    cluster.detach()
    print(f"The local cluster in {layout.workdir} is up.")
    _print_connection(layout)
    return 0


def _down(layout: state.Layout) -> int:
    stopped = state.stop_recorded(layout, STOP_ORDER)
    if stopped:
        print(f"Stopped {', '.join(stopped)} of the local cluster in {layout.workdir}.")
    else:
        print(f"No local cluster is running in {layout.workdir}.")
    return 0


def _status(layout: state.Layout) -> int:
    running = state.running_pids(layout)
    for name in PROCESS_NAMES:
        if name in running:
            print(f"{name}: running with pid {running[name]}")
        else:
            print(f"{name}: not running")
    ready = bool(running) and _apiserver_is_ready(layout)
    server = configfiles.read_kubeconfig_server(layout.kubeconfig)
    if ready:
        print(f"kube-apiserver at {server} is ready.")
        _print_connection(layout)
    elif running:
        print(f"kube-apiserver at {server} is not ready; the logs are in {layout.log_dir}.")
    return 0 if ready and set(running) == set(PROCESS_NAMES) else 1


def _apiserver_is_ready(layout: state.Layout) -> bool:
    server = configfiles.read_kubeconfig_server(layout.kubeconfig)
    pki = certs.Pki(layout.pki_dir)
    if server is None or not pki.ca.cert.is_file():
        return False
    try:
        context = apiclient.tls_context(str(pki.ca.cert), pki.client("admin"))
        status, _ = apiclient.get(server + "/readyz", context)
    except (OSError, http.client.HTTPException):
        return False
    return status == 200


def _print_connection(layout: state.Layout) -> None:
    server = configfiles.read_kubeconfig_server(layout.kubeconfig)
    print(f"Server: {server}")
    print(f"Kubeconfig: {layout.kubeconfig}")
    print(f"export KUBECONFIG={shlex.quote(str(layout.kubeconfig))}")


if __name__ == "__main__":
    sys.exit(main())
