"""The ``sked`` command: ``sked run`` starts the operator, ``sked version`` prints the version."""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import socket
import sys

from sked import __version__


def _identity() -> str:
    """Return the Pod name in a cluster, or host and process id outside one."""
    return os.environ.get("POD_NAME") or f"{socket.gethostname()}-{os.getpid()}"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sked", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser("run", help="start the operator in the foreground")
    run.add_argument(
        "--namespace",
        "-n",
        action="append",
        dest="namespaces",
        default=[],
        help="watch only this namespace (repeat for several); default: all namespaces",
    )
    run.add_argument("--kubeconfig", help="kubeconfig file; default: in-cluster, then $KUBECONFIG")
    run.add_argument(
        "--metrics-host",
        default=os.environ.get("SKED_METRICS_HOST", "0.0.0.0"),
        help="address for /metrics, /healthz and /readyz (default: 0.0.0.0)",
    )
    run.add_argument(
        "--metrics-port",
        type=int,
        default=int(os.environ.get("SKED_METRICS_PORT", "8080")),
        help="port for /metrics, /healthz and /readyz (default: 8080)",
    )
    run.add_argument(
        "--no-per-job-metrics",
        dest="per_job_labels",
        action="store_false",
        help="drop the namespace and scheduledjob labels, keeping totals, for large installations",
    )
    run.add_argument(
        "--leader-elect",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="hold a Lease so only one replica schedules (default: on)",
    )
    run.add_argument(
        "--lease-name", default="sked-leader", help="Lease name (default: sked-leader)"
    )
    run.add_argument(
        "--lease-namespace",
        default=os.environ.get("POD_NAMESPACE", "default"),
        help="namespace of the Lease (default: $POD_NAMESPACE, else default)",
    )
    run.add_argument("--lease-duration", type=float, default=15.0, help="seconds (default 15)")
    run.add_argument("--renew-deadline", type=float, default=10.0, help="seconds (default 10)")
    run.add_argument("--retry-period", type=float, default=2.0, help="seconds (default 2)")
    run.add_argument(
        "--log-format",
        choices=["text", "json"],
        default=os.environ.get("SKED_LOG_FORMAT", "text"),
        help="plain text lines (default) or one JSON object per line",
    )
    run.add_argument(
        "--failing-threshold",
        type=int,
        default=3,
        help="failed runs in a row that turn the Failing condition on (default 3)",
    )
    run.add_argument(
        "--status-batch-seconds",
        type=float,
        default=10.0,
        help="longest delay of a status write that records only run progress (a Pod "
        "created, bound or running); results are written at once; 0 writes every change "
        "at once (default 10)",
    )
    run.add_argument(
        "--success-events",
        choices=["recovery", "all"],
        default="recovery",
        help="post a RunSucceeded Event for every successful run (all) or only for one that "
        "ends a streak of failures (recovery, the default)",
    )
    run.add_argument(
        "--log-level",
        default=os.environ.get("SKED_LOG_LEVEL", "info"),
        choices=["debug", "info", "warning", "error"],
        help="log level (default: info)",
    )

    preview = commands.add_parser(
        "next", help="print the next due times of a ScheduledJob from a file or the cluster"
    )
    preview.add_argument("target", help="a YAML file, or the name of a ScheduledJob")
    preview.add_argument("--namespace", "-n", default=None, help="namespace of NAME")
    preview.add_argument("--count", type=int, default=5, help="how many instants (default 5)")
    preview.add_argument(
        "--from",
        dest="start",
        default=None,
        help="ISO 8601 instant to start after, such as 2024-03-09T12:00:00Z (default: now)",
    )

    trigger = commands.add_parser("trigger", help="start one run of a ScheduledJob now")
    trigger.add_argument("name", help="the ScheduledJob")
    trigger.add_argument("--namespace", "-n", default=None, help="its namespace")

    commands.add_parser("version", help="print the version and exit")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "version":
        print(f"sked {__version__}")
        return 0
    if args.command in ("next", "trigger"):
        from sked import commands

        return commands.main(args)
    from sked.logs import configure_logging

    configure_logging(level=args.log_level.upper(), json_lines=args.log_format == "json")
    if args.kubeconfig:
        # The kubernetes package, which kopf may log in through, reads the
        # variable when it is imported, so set it before the import below.
        os.environ["KUBECONFIG"] = args.kubeconfig
    from sked.errors import ConfigurationError
    from sked.leader import LeaseSettings
    from sked.planner import SuccessEvents
    from sked.runtime import run_operator

    if args.failing_threshold < 1:
        print(f"sked: --failing-threshold must be at least 1 (got {args.failing_threshold})")
        return 2
    if not 0 <= args.status_batch_seconds < math.inf:
        print(
            "sked: --status-batch-seconds must be a number of seconds, 0 or more "
            f"(got {args.status_batch_seconds:g})",
            file=sys.stderr,
        )
        return 2
    if not 0 <= args.metrics_port <= 65535:
        print(f"sked: --metrics-port must be 0 to 65535 (got {args.metrics_port})", file=sys.stderr)
        return 2
    lease = None
    if args.leader_elect:
        lease = LeaseSettings(
            namespace=args.lease_namespace,
            name=args.lease_name,
            duration=args.lease_duration,
            renew_deadline=args.renew_deadline,
            retry_period=args.retry_period,
        )
        try:
            lease.check()
        except ConfigurationError as error:
            print(f"sked: {error}", file=sys.stderr)
            return 2

    try:
        return asyncio.run(
            run_operator(
                namespaces=args.namespaces,
                kubeconfig=args.kubeconfig,
                identity=_identity(),
                metrics_host=args.metrics_host,
                metrics_port=args.metrics_port,
                per_job_labels=args.per_job_labels,
                lease=lease,
                failing_threshold=args.failing_threshold,
                status_batch_seconds=args.status_batch_seconds,
                success_events=SuccessEvents(args.success_events),
            )
        )
    except KeyboardInterrupt:
        return 0


if __name__ == "__main__":
    sys.exit(main())
