#!/usr/bin/env bash
# Run sked on a kind cluster: real kubelets and containers, unlike the local control plane.
#
# Usage: hack/kind.sh up|deploy|e2e|down
#   up      create the kind cluster from deploy/kind/cluster.yaml (kept if it exists)
#   deploy  build the image, load it into the cluster, apply the CRD and install the chart
#   e2e     run a ScheduledJob every 10 seconds and wait for a successful run
#   down    delete the kind cluster
#
# Needs docker with a running daemon and kind; deploy also needs helm, deploy and e2e
# need kubectl. Settings: KIND_CLUSTER (default sked), IMAGE (default sked:dev),
# RELEASE_NAMESPACE (default sked-system), HELM (default: the helm that
# hack/build-control-plane.sh builds, else helm on PATH).
set -euo pipefail

# The script's folder without dirname, so the checks below still run on a bare PATH.
script_dir=${BASH_SOURCE[0]%/*}
[[ "$script_dir" == "${BASH_SOURCE[0]}" ]] && script_dir=.
ROOT=$(cd "$script_dir/.." && pwd)
KIND_CLUSTER=${KIND_CLUSTER:-sked}
IMAGE=${IMAGE:-sked:dev}
RELEASE_NAMESPACE=${RELEASE_NAMESPACE:-sked-system}
SKED_CACHE=${SKED_CACHE:-${XDG_CACHE_HOME:-${HOME:-.}/.cache}/sked}
HELM_VERSION=${HELM_VERSION:-v3.21.4}
E2E_NAMESPACE=sked-e2e
E2E_TIMEOUT_SECONDS=${E2E_TIMEOUT_SECONDS:-180}

log() { printf 'kind.sh: %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }

need_docker() {
  command -v docker >/dev/null 2>&1 \
    || die "docker not found on PATH; install Docker (https://docs.docker.com/get-docker/) and try again"
  docker info >/dev/null 2>&1 \
    || die "docker is installed but its daemon does not respond; start Docker and try again"
}

need_kind() {
  command -v kind >/dev/null 2>&1 \
    || die "kind not found on PATH; install it (https://kind.sigs.k8s.io/docs/user/quick-start/) and try again"
}

need_kubectl() {
  command -v kubectl >/dev/null 2>&1 || die "kubectl not found on PATH; install it and try again"
}

find_helm() {
  if [[ -n "${HELM:-}" ]]; then
    printf '%s\n' "$HELM"
  elif [[ -x "$SKED_CACHE/bin/helm-$HELM_VERSION/helm" ]]; then
    printf '%s\n' "$SKED_CACHE/bin/helm-$HELM_VERSION/helm"
  elif command -v helm >/dev/null 2>&1; then
    command -v helm
  else
    die "helm not found; run 'bash hack/build-control-plane.sh helm' or install helm 3"
  fi
}

cluster_exists() {
  kind get clusters 2>/dev/null | grep -qx "$KIND_CLUSTER"
}

need_cluster() {
  cluster_exists || die "kind cluster $KIND_CLUSTER does not exist; run 'hack/kind.sh up' first"
}

kubectl_kind() { kubectl --context "kind-$KIND_CLUSTER" "$@"; }

cmd_up() {
  need_docker
  need_kind
  if cluster_exists; then
    log "kind cluster $KIND_CLUSTER already exists; keeping it"
    return 0
  fi
  kind create cluster --name "$KIND_CLUSTER" --config "$ROOT/deploy/kind/cluster.yaml"
  log "kind cluster $KIND_CLUSTER is up; its kubeconfig context is kind-$KIND_CLUSTER"
}

cmd_deploy() {
  need_docker
  need_kind
  need_kubectl
  local helm
  helm=$(find_helm)
  need_cluster
  log "building $IMAGE"
  docker build -t "$IMAGE" "$ROOT"
  kind load docker-image "$IMAGE" --name "$KIND_CLUSTER"
  kubectl_kind apply --server-side -f "$ROOT/crds/"
  "$helm" upgrade --install sked "$ROOT/helm/sked" \
    --kube-context "kind-$KIND_CLUSTER" \
    --namespace "$RELEASE_NAMESPACE" --create-namespace \
    --set image.repository="${IMAGE%:*}" --set image.tag="${IMAGE##*:}" \
    --set image.pullPolicy=Never \
    --wait --timeout 5m
  log "sked is deployed in namespace $RELEASE_NAMESPACE"
}

cmd_e2e() {
  need_docker
  need_kind
  need_kubectl
  need_cluster
  kubectl_kind create namespace "$E2E_NAMESPACE" --dry-run=client -o yaml | kubectl_kind apply -f -
  kubectl_kind -n "$E2E_NAMESPACE" apply -f "$ROOT/examples/every-ten-seconds.yaml"
  log "waiting up to ${E2E_TIMEOUT_SECONDS}s for a successful run of every-ten-seconds"
  local deadline=$((SECONDS + E2E_TIMEOUT_SECONDS)) succeeded=""
  while ((SECONDS < deadline)); do
    succeeded=$(kubectl_kind -n "$E2E_NAMESPACE" get scheduledjob every-ten-seconds \
      -o jsonpath='{.status.lastSuccessfulTime}')
    [[ -n "$succeeded" ]] && break
    sleep 2
  done
  kubectl_kind -n "$E2E_NAMESPACE" get scheduledjob,pods
  log "leader: $(kubectl_kind -n "$RELEASE_NAMESPACE" get lease sked-leader \
    -o jsonpath='{.spec.holderIdentity}' 2>/dev/null || echo 'none')"
  if [[ -z "$succeeded" ]]; then
    kubectl_kind -n "$E2E_NAMESPACE" describe scheduledjob every-ten-seconds >&2 || true
    die "no successful run within ${E2E_TIMEOUT_SECONDS}s; see the ScheduledJob above and the operator's logs"
  fi
  kubectl_kind delete namespace "$E2E_NAMESPACE" --wait=false
  log "e2e passed: a run succeeded at $succeeded"
}

cmd_down() {
  need_docker
  need_kind
  kind delete cluster --name "$KIND_CLUSTER"
}

case "${1:-}" in
  up) cmd_up ;;
  deploy) cmd_deploy ;;
  e2e) cmd_e2e ;;
  down) cmd_down ;;
  *)
    log "usage: hack/kind.sh up|deploy|e2e|down"
    exit 2
    ;;
esac
