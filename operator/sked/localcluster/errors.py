"""Exceptions raised by the local control plane.

LocalClusterError
├── BinaryNotFoundError     a binary is missing and cannot be built here
├── ClusterStartError       a process exited or a readiness check timed out
└── ClusterRunningError     the folder already belongs to a running cluster
"""


class LocalClusterError(Exception):
    """Base class of every error raised by ``sked.localcluster``."""


class BinaryNotFoundError(LocalClusterError):
    """A control-plane binary is missing and cannot be built."""


class ClusterStartError(LocalClusterError):
    """A process of the cluster exited early or did not become ready in time."""


class ClusterRunningError(LocalClusterError):
    """Processes recorded in the cluster's folder are still running."""
