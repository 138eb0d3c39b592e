"""A local Kubernetes control plane for tests, benchmarks and ``make run``.

`LocalCluster` starts etcd, kube-apiserver, kube-controller-manager, kube-scheduler and kwok
on loopback, with fake Nodes that kwok keeps Ready. Pods on those Nodes follow the Stages
in ``kwok-stages.yaml``, which read ``kwok.sked.dev/*`` annotations (see that file). The
command line ``python -m sked.localcluster up|down|status`` runs the same cluster detached.
"""

from sked.localcluster.binaries import Binaries, find_binaries
from sked.localcluster.cluster import DEFAULT_CONTROLLERS, PROCESS_NAMES, LocalCluster, Ports
from sked.localcluster.configfiles import CONTEXT_NAME
from sked.localcluster.errors import (
    BinaryNotFoundError,
    ClusterRunningError,
    ClusterStartError,
    LocalClusterError,
)

__all__ = [
    "CONTEXT_NAME",
    "DEFAULT_CONTROLLERS",
    "PROCESS_NAMES",
    "Binaries",
    "BinaryNotFoundError",
    "ClusterRunningError",
    "ClusterStartError",
    "LocalCluster",
    "LocalClusterError",
    "Ports",
    "find_binaries",
]
