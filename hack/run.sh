#!/usr/bin/env bash
# `make run`: run the operator against the current kubeconfig's cluster, or,
# when none responds (or SKED_LOCAL=1), against a local control plane that
# this script starts and stops.
set -euo pipefail
: "${BIN:=.venv/bin}" "${CLUSTER_DIR:=.local/cluster}"
# On a workstation the metrics and probe endpoints stay on loopback.
export SKED_METRICS_HOST="${SKED_METRICS_HOST:-127.0.0.1}"

if [[ "${SKED_LOCAL:-0}" != 1 ]] && kubectl version --request-timeout=5s >/dev/null 2>&1; then
  echo "Using the cluster of kubeconfig context '$(kubectl config current-context)'."
  kubectl apply --server-side -f crds/
  exec "$BIN/sked" run
fi

echo "No cluster answers through the current kubeconfig; starting a local control plane."
"$BIN/python" -m sked.localcluster up --dir "$CLUSTER_DIR"
trap '"$BIN/python" -m sked.localcluster down --dir "$CLUSTER_DIR"' EXIT
export KUBECONFIG="$PWD/$CLUSTER_DIR/kubeconfig"
kubectl apply --server-side -f crds/
kubectl wait --for=condition=Established --timeout=60s crd/scheduledjobs.sked.dev
kubectl apply -f examples/
cat <<MESSAGE

The local control plane is up and the examples are applied. In another shell:

    export KUBECONFIG=$KUBECONFIG
    kubectl get sj -w

Press Ctrl-C to stop the operator and the control plane.

MESSAGE
"$BIN/sked" run
