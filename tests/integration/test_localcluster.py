"""Smoke tests of the local control plane and of the kwok Stages that sked's tests rely on."""

from __future__ import annotations

import datetime
import ipaddress
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest
from kubernetes import client, config

from sked.localcluster import PROCESS_NAMES, LocalCluster
from sked.localcluster.binaries import DEFAULT_KUBERNETES_VERSION
from sked.localcluster.processes import pid_belongs_to

pytestmark = pytest.mark.integration

T = TypeVar("T")

# Generous against a loaded CI machine; a Stage normally lands within a second.
TIMEOUT_SECONDS = 30.0
# Time the scheduler and kube-controller-manager get to reconnect after a restart.
RECONNECT_SECONDS = 150.0

FAKE_NODES = {
    # name: (region, zone, instance type, cpu, memory)
    "kwok-eu-west-a-small": ("eu-west", "eu-west-a", "small", "4", "8Gi"),
    "kwok-eu-west-b-large": ("eu-west", "eu-west-b", "large", "16", "64Gi"),
    "kwok-us-east-a-small": ("us-east", "us-east-a", "small", "4", "8Gi"),
    "kwok-us-east-a-gpu": ("us-east", "us-east-a", "gpu", "8", "32Gi"),
}


def wait_for(
    description: str, probe: Callable[[], T | None], timeout: float = TIMEOUT_SECONDS
) -> T:
    """Poll ``probe`` until it returns something truthy, and return that."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {description}")
        time.sleep(0.2)


@pytest.fixture(scope="module")
def api_client(local_cluster: LocalCluster) -> Iterator[client.ApiClient]:
    api = config.new_client_from_config(config_file=str(local_cluster.kubeconfig))
    yield api
    api.close()


@pytest.fixture(scope="module")
def core(api_client: client.ApiClient) -> client.CoreV1Api:
    return client.CoreV1Api(api_client)


@pytest.fixture
def namespace(core: client.CoreV1Api) -> Iterator[str]:
    """A fresh namespace, deleted after the test."""
    name = f"test-{uuid.uuid4().hex[:8]}"
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    # ServiceAccount admission rejects Pods until the `default` ServiceAccount exists.
    wait_for(
        f"ServiceAccount default in {name}",
        lambda: any(
            account.metadata.name == "default"
            for account in core.list_namespaced_service_account(name).items
        ),
    )
    yield name
    core.delete_namespace(name)


def make_pod(
    name: str,
    annotations: dict[str, str] | None = None,
    *,
    owner: client.V1OwnerReference | None = None,
    resources: client.V1ResourceRequirements | None = None,
    tolerations: list[client.V1Toleration] | None = None,
    node_selector: dict[str, str] | None = None,
) -> client.V1Pod:
    return client.V1Pod(
        metadata=client.V1ObjectMeta(
            name=name,
            annotations=annotations,
            owner_references=[owner] if owner else None,
        ),
        spec=client.V1PodSpec(
            restart_policy="Never",
            containers=[client.V1Container(name="main", image="busybox", resources=resources)],
            tolerations=tolerations,
            node_selector=node_selector,
        ),
    )


def pod_in_phase(
    core: client.CoreV1Api, namespace: str, name: str, phase: str
) -> Callable[[], client.V1Pod | None]:
    def probe() -> client.V1Pod | None:
        pod = core.read_namespaced_pod(name, namespace)
        return pod if pod.status.phase == phase else None

    return probe


def test_version_reports_kubernetes_release(api_client: client.ApiClient) -> None:
    expected = os.environ.get("KUBERNETES_VERSION", DEFAULT_KUBERNETES_VERSION)

    version = client.VersionApi(api_client).get_code()

    assert version.git_version == expected


def test_kubeconfig_uses_sked_local_context(local_cluster: LocalCluster) -> None:
    contexts, current = config.list_kube_config_contexts(str(local_cluster.kubeconfig))

    assert current["name"] == "sked-local"
    assert [context["name"] for context in contexts] == ["sked-local"]


@pytest.mark.parametrize("name", sorted(FAKE_NODES))
def test_fake_node_ready_with_topology_labels(core: client.CoreV1Api, name: str) -> None:
    region, zone, instance_type, cpu, memory = FAKE_NODES[name]

    node = core.read_node(name)

    ready = [c.status for c in node.status.conditions if c.type == "Ready"]
    assert ready == ["True"]
    assert node.metadata.labels["topology.kubernetes.io/region"] == region
    assert node.metadata.labels["topology.kubernetes.io/zone"] == zone
    assert node.metadata.labels["node.kubernetes.io/instance-type"] == instance_type
    assert node.metadata.labels["kubernetes.io/hostname"] == name
    assert node.metadata.labels["type"] == "kwok"
    assert node.metadata.annotations["kwok.x-k8s.io/node"] == "fake"
    assert node.status.capacity["cpu"] == cpu
    assert node.status.capacity["memory"] == memory
    assert int(node.status.capacity["pods"]) >= 250


def test_only_gpu_node_has_gpus_and_taint(core: client.CoreV1Api) -> None:
    nodes = {node.metadata.name: node for node in core.list_node(label_selector="type=kwok").items}

    assert set(nodes) == set(FAKE_NODES)
    gpu = nodes.pop("kwok-us-east-a-gpu")
    assert gpu.status.capacity["nvidia.com/gpu"] == "4"
    assert gpu.metadata.labels["nvidia.com/gpu.present"] == "true"
    assert [(t.key, t.value, t.effect) for t in gpu.spec.taints] == [
        ("nvidia.com/gpu", "present", "NoSchedule")
    ]
    for node in nodes.values():
        assert "nvidia.com/gpu" not in node.status.capacity
        assert not node.spec.taints


def test_new_namespace_gets_default_service_account(core: client.CoreV1Api) -> None:
    name = f"test-{uuid.uuid4().hex[:8]}"
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    try:
        account = wait_for(
            "the default ServiceAccount",
            lambda: next(iter(core.list_namespaced_service_account(name).items), None),
        )
        assert account.metadata.name == "default"
    finally:
        core.delete_namespace(name)


def test_pod_without_annotations_runs(core: client.CoreV1Api, namespace: str) -> None:
    core.create_namespaced_pod(namespace, make_pod("plain"))

    pod = wait_for("Pod plain Running", pod_in_phase(core, namespace, "plain", "Running"))

    [status] = pod.status.container_statuses
    assert status.ready is True
    assert status.state.running.started_at is not None
    assert pod.status.pod_ip
    ready = [c.status for c in pod.status.conditions if c.type == "Ready"]
    assert ready == ["True"]


def test_succeed_after_ends_pod_succeeded(core: client.CoreV1Api, namespace: str) -> None:
    core.create_namespaced_pod(
        namespace, make_pod("succeeds", {"kwok.sked.dev/succeed-after": "1s"})
    )

    pod = wait_for("Pod succeeds Succeeded", pod_in_phase(core, namespace, "succeeds", "Succeeded"))

    [status] = pod.status.container_statuses
    terminated = status.state.terminated
    assert terminated.exit_code == 0
    assert terminated.reason == "Completed"
    assert terminated.started_at is not None
    assert terminated.finished_at is not None
    # Both timestamps have whole seconds, so a 1 s run never shows less than 1 s.
    assert terminated.finished_at - terminated.started_at >= datetime.timedelta(seconds=1)


def test_fail_after_ends_pod_failed_with_exit_code(core: client.CoreV1Api, namespace: str) -> None:
    annotations = {
        "kwok.sked.dev/fail-after": "1s",
        "kwok.sked.dev/exit-code": "3",
        "kwok.sked.dev/reason": "Error",
        "kwok.sked.dev/message": 'disk "/data" is full',
    }
    core.create_namespaced_pod(namespace, make_pod("fails", annotations))

    pod = wait_for("Pod fails Failed", pod_in_phase(core, namespace, "fails", "Failed"))

    [status] = pod.status.container_statuses
    terminated = status.state.terminated
    assert terminated.exit_code == 3
    assert terminated.reason == "Error"
    assert terminated.message == 'disk "/data" is full'
    assert terminated.finished_at is not None


def test_fail_after_defaults_to_exit_code_1(core: client.CoreV1Api, namespace: str) -> None:
    core.create_namespaced_pod(namespace, make_pod("fails", {"kwok.sked.dev/fail-after": "0s"}))

    pod = wait_for("Pod fails Failed", pod_in_phase(core, namespace, "fails", "Failed"))

    terminated = pod.status.container_statuses[0].state.terminated
    assert terminated.exit_code == 1
    assert terminated.reason == "Error"


def test_pending_reason_keeps_pod_pending(core: client.CoreV1Api, namespace: str) -> None:
    core.create_namespaced_pod(
        namespace, make_pod("stuck", {"kwok.sked.dev/pending-reason": "ImagePullBackOff"})
    )

    def waiting_reason() -> str | None:
        statuses = core.read_namespaced_pod("stuck", namespace).status.container_statuses
        waiting = statuses[0].state.waiting if statuses else None
        return waiting.reason if waiting else None

    assert wait_for("a waiting container", waiting_reason) == "ImagePullBackOff"
    # kwok applies Stages in the order of the watch events, so once a Pod created later
    # runs, kwok has had its chance to start the first one.
    core.create_namespaced_pod(namespace, make_pod("later"))
    wait_for("Pod later Running", pod_in_phase(core, namespace, "later", "Running"))
    pod = core.read_namespaced_pod("stuck", namespace)
    assert pod.status.phase == "Pending"
    assert pod.status.container_statuses[0].state.waiting.reason == "ImagePullBackOff"
    assert pod.status.container_statuses[0].state.waiting.message


def test_gpu_pod_lands_on_gpu_node(core: client.CoreV1Api, namespace: str) -> None:
    gpu = {"nvidia.com/gpu": "1"}
    pod = make_pod(
        "trains",
        resources=client.V1ResourceRequirements(requests=gpu, limits=gpu),
        tolerations=[
            client.V1Toleration(key="nvidia.com/gpu", operator="Exists", effect="NoSchedule")
        ],
    )
    core.create_namespaced_pod(namespace, pod)

    running = wait_for("Pod trains Running", pod_in_phase(core, namespace, "trains", "Running"))

    assert running.spec.node_name == "kwok-us-east-a-gpu"


def test_zone_pod_avoids_tainted_gpu_node(core: client.CoreV1Api, namespace: str) -> None:
    pod = make_pod("zonal", node_selector={"topology.kubernetes.io/zone": "us-east-a"})
    core.create_namespaced_pod(namespace, pod)

    running = wait_for("Pod zonal Running", pod_in_phase(core, namespace, "zonal", "Running"))

    assert running.spec.node_name == "kwok-us-east-a-small"


def test_pod_owned_by_configmap_is_garbage_collected(
    core: client.CoreV1Api, namespace: str
) -> None:
    owner = core.create_namespaced_config_map(
        namespace, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="owner"))
    )
    reference = client.V1OwnerReference(
        api_version="v1", kind="ConfigMap", name="owner", uid=owner.metadata.uid
    )
    core.create_namespaced_pod(namespace, make_pod("owned", owner=reference))
    wait_for("Pod owned Running", pod_in_phase(core, namespace, "owned", "Running"))

    core.delete_namespaced_config_map("owner", namespace)

    def pod_is_gone() -> bool:
        names = [pod.metadata.name for pod in core.list_namespaced_pod(namespace).items]
        return "owned" not in names

    wait_for("Pod owned to be deleted", pod_is_gone)


def test_rbac_rejects_anonymous_requests(local_cluster: LocalCluster) -> None:
    configuration = client.Configuration()
    configuration.host = local_cluster.server
    configuration.ssl_ca_cert = str(local_cluster.workdir / "pki" / "ca.crt")
    with (
        client.ApiClient(configuration) as anonymous,
        pytest.raises(client.ApiException) as raised,
    ):
        client.CoreV1Api(anonymous).list_namespaced_pod("kube-system")

    assert raised.value.status in (401, 403)


def test_rbac_rejects_unprivileged_service_account(
    local_cluster: LocalCluster, core: client.CoreV1Api, namespace: str
) -> None:
    core.create_namespaced_service_account(
        namespace, client.V1ServiceAccount(metadata=client.V1ObjectMeta(name="nobody"))
    )
    token = core.create_namespaced_service_account_token(
        "nobody", namespace, client.AuthenticationV1TokenRequest(spec=client.V1TokenRequestSpec())
    ).status.token
    configuration = client.Configuration()
    configuration.host = local_cluster.server
    configuration.ssl_ca_cert = str(local_cluster.workdir / "pki" / "ca.crt")
    configuration.api_key = {"authorization": f"Bearer {token}"}

    with client.ApiClient(configuration) as unprivileged:
        review = client.AuthenticationV1Api(unprivileged).create_self_subject_review(
            client.V1SelfSubjectReview()
        )
        with pytest.raises(client.ApiException) as raised:
            client.CoreV1Api(unprivileged).list_namespaced_secret(namespace)

    assert review.status.user_info.username == f"system:serviceaccount:{namespace}:nobody"
    assert raised.value.status == 403


def listening_addresses(pid: int) -> list[str]:
    """Return ``address:port`` of every TCP socket that process ``pid`` listens on."""
    inodes = set()
    for descriptor in Path(f"/proc/{pid}/fd").iterdir():
        target = os.readlink(descriptor)
        if target.startswith("socket:["):
            inodes.add(target[len("socket:[") : -1])
    addresses = []
    for table, width in (("tcp", 4), ("tcp6", 16)):
        for line in Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]:
            fields = line.split()
            local, state, inode = fields[1], fields[3], fields[9]
            if state != "0A" or inode not in inodes:  # 0A is TCP_LISTEN.
                continue
            host, port = local.split(":")
            # /proc prints each 32-bit word of the address in host byte order.
            raw = b"".join(
                int(host[i : i + 8], 16).to_bytes(4, sys.byteorder) for i in range(0, width * 2, 8)
            )
            addresses.append(f"{ipaddress.ip_address(raw)}:{int(port, 16)}")
    return addresses


def test_processes_listen_on_loopback_only(local_cluster: LocalCluster) -> None:
    listening = {
        name: listening_addresses(process.pid) for name, process in local_cluster.processes.items()
    }

    assert sorted(listening) == sorted(PROCESS_NAMES)
    for name, addresses in listening.items():
        assert addresses, f"{name} listens on no TCP port"
        for address in addresses:
            host = ipaddress.ip_address(address.rsplit(":", 1)[0])
            assert host.is_loopback, f"{name} listens on {address}"


@pytest.mark.parametrize("graceful", [True, False], ids=["sigterm", "sigkill"])
def test_restarts_keep_data_and_readiness(
    local_cluster: LocalCluster, core: client.CoreV1Api, namespace: str, graceful: bool
) -> None:
    core.create_namespaced_config_map(
        namespace, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="survivor"))
    )
    old_pids = {name: process.pid for name, process in local_cluster.processes.items()}

    local_cluster.restart_etcd(graceful=graceful)
    local_cluster.restart_apiserver(graceful=graceful)

    new_pids = {name: process.pid for name, process in local_cluster.processes.items()}
    assert new_pids["etcd"] != old_pids["etcd"]
    assert new_pids["kube-apiserver"] != old_pids["kube-apiserver"]
    assert new_pids["kwok"] == old_pids["kwok"]
    assert core.read_namespaced_config_map("survivor", namespace).metadata.name == "survivor"
    # The other components reconnect on their own: the scheduler binds Pods and kwok
    # starts them, and kube-controller-manager gives a new namespace its ServiceAccount.
    # Their watches back off while the API server is away, so reconnecting has taken
    # over a minute after two restarts in a row. Later tests rely on both components.
    core.create_namespaced_pod(namespace, make_pod("after-restart"))
    wait_for(
        "Pod after-restart Running",
        pod_in_phase(core, namespace, "after-restart", "Running"),
        timeout=RECONNECT_SECONDS,
    )
    probe = f"{namespace}-probe"
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=probe)))
    try:
        wait_for(
            f"ServiceAccount default in {probe}",
            lambda: core.list_namespaced_service_account(probe).items,
            timeout=RECONNECT_SECONDS,
        )
    finally:
        core.delete_namespace(probe)


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sked.localcluster", *args],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


def test_cli_up_is_idempotent_and_down_stops(tmp_path: Path) -> None:
    workdir = tmp_path / "cli-cluster"
    try:
        first = run_cli("up", "--dir", str(workdir))
        assert first.returncode == 0, first.stderr
        assert f"export KUBECONFIG={workdir / 'kubeconfig'}" in first.stdout
        pids = json.loads((workdir / "pids.json").read_text())
        assert sorted(pids) == sorted(PROCESS_NAMES)
        assert all(pid_belongs_to(pid, str(workdir)) for pid in pids.values())
        status = run_cli("status", "--dir", str(workdir))
        assert status.returncode == 0, status.stdout + status.stderr

        second = run_cli("up", "--dir", str(workdir))
        assert second.returncode == 0, second.stderr
        assert "already up" in second.stdout
    finally:
        down = run_cli("down", "--dir", str(workdir))

    assert down.returncode == 0, down.stderr
    assert not any(pid_belongs_to(pid, str(workdir)) for pid in pids.values())
    assert run_cli("status", "--dir", str(workdir)).returncode == 1
    assert run_cli("down", "--dir", str(workdir)).returncode == 0
