#!/usr/bin/env bash
# Build the local control plane's binaries from Go modules and cache them by
# version, so only the first run on a machine pays for the build.
#
# Usage: hack/build-control-plane.sh [component ...]
# Components: etcd kubernetes kwok helm promtool toxiproxy (default: the first four).
# Prints nothing on a cache hit. The binaries land in $SKED_CACHE/bin/<component>-<version>/.
set -euo pipefail

SKED_CACHE=${SKED_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/sked}
KUBERNETES_VERSION=${KUBERNETES_VERSION:-v1.33.13}
ETCD_VERSION=${ETCD_VERSION:-v3.5.33}
KWOK_VERSION=${KWOK_VERSION:-v0.8.0}
HELM_VERSION=${HELM_VERSION:-v3.21.4}
PROMTOOL_VERSION=${PROMTOOL_VERSION:-v0.314.0}
TOXIPROXY_VERSION=${TOXIPROXY_VERSION:-v2.12.0}

# A newer go line in a module must fail loudly here instead of fetching another toolchain.
export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=-buildvcs=false

log() { printf 'build-control-plane: %s\n' "$*" >&2; }

# finish DIR: mark a finished build, so an interrupted one is redone next time.
finish() { touch "$1/.complete"; log "done: $1"; }

build_etcd() {
  local out="$SKED_CACHE/bin/etcd-$ETCD_VERSION"
  [[ -f "$out/.complete" ]] && return 0
  log "building etcd $ETCD_VERSION (about a minute)"
  local src="$SKED_CACHE/src/etcd-$ETCD_VERSION"
  mkdir -p "$src" "$out"
  # etcd's server module carries replace directives, so `go install` rejects it;
  # a wrapper module whose main calls etcdmain.Main builds it instead.
  cat >"$src/main.go" <<'GO'
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
GO
  cat >"$src/go.mod" <<GOMOD
module sked.local/etcd

go 1.23

require go.etcd.io/etcd/server/v3 $ETCD_VERSION
GOMOD
  (cd "$src" && go mod tidy && go build -trimpath -ldflags "-s -w" -o "$out/etcd" .)
  finish "$out"
}

build_kubernetes() {
  local out="$SKED_CACHE/bin/kubernetes-$KUBERNETES_VERSION"
  [[ -f "$out/.complete" ]] && return 0
  log "building kube-apiserver, kube-controller-manager, kube-scheduler $KUBERNETES_VERSION (15 to 30 minutes on 2 cores)"
  local src="$SKED_CACHE/src/kubernetes-$KUBERNETES_VERSION"
  local staging_version="v0.${KUBERNETES_VERSION#v1.}"
  mkdir -p "$src" "$out"
  # k8s.io/kubernetes requires its staging modules at v0.0.0 and replaces them
  # with local folders, so a wrapper must point each one at its published tag.
  {
    printf 'module sked.local/kubernetes\n\ngo 1.24\n\nrequire k8s.io/kubernetes %s\n\nreplace (\n' "$KUBERNETES_VERSION"
    for module in api apiextensions-apiserver apimachinery apiserver cli-runtime client-go \
      cloud-provider cluster-bootstrap code-generator component-base component-helpers \
      controller-manager cri-api cri-client csi-translation-lib dynamic-resource-allocation \
      endpointslice externaljwt kms kube-aggregator kube-controller-manager kube-proxy \
      kube-scheduler kubectl kubelet metrics mount-utils pod-security-admission \
      sample-apiserver sample-cli-plugin sample-controller; do
      printf '\tk8s.io/%s => k8s.io/%s %s\n' "$module" "$module" "$staging_version"
    done
    printf ')\n'
  } >"$src/go.mod"
  local major=${KUBERNETES_VERSION#v}
  major=${major%%.*}
  local minor=${KUBERNETES_VERSION#v*.}
  minor=${minor%%.*}
  local ldflags="-s -w"
  for package in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ldflags+=" -X $package.gitVersion=$KUBERNETES_VERSION -X $package.gitMajor=$major"
    ldflags+=" -X $package.gitMinor=$minor -X $package.gitTreeState=clean"
  done
  (
    cd "$src"
    go mod download k8s.io/kubernetes
    go build -mod=mod -trimpath -ldflags "$ldflags" -o "$out/" \
      k8s.io/kubernetes/cmd/kube-apiserver \
      k8s.io/kubernetes/cmd/kube-controller-manager \
      k8s.io/kubernetes/cmd/kube-scheduler
  )
  finish "$out"
}

# go_install NAME VERSION PACKAGE BINARY: build a module that `go install` accepts.
go_install() {
  local name=$1 version=$2 package=$3 binary=$4
  local out="$SKED_CACHE/bin/$name-$version"
  [[ -f "$out/.complete" ]] && return 0
  log "building $name $version"
  mkdir -p "$out"
  GOBIN="$out" go install -trimpath -ldflags "-s -w" "$package@$version"
  [[ "$binary" == "$name" ]] || mv "$out/$binary" "$out/$name"
  finish "$out"
}

build_kwok() { go_install kwok "$KWOK_VERSION" sigs.k8s.io/kwok/cmd/kwok kwok; }
build_toxiproxy() {
  go_install toxiproxy "$TOXIPROXY_VERSION" github.com/Shopify/toxiproxy/v2/cmd/server server
}

build_helm() {
  local out="$SKED_CACHE/bin/helm-$HELM_VERSION"
  [[ -f "$out/.complete" ]] && return 0
  log "building helm $HELM_VERSION"
  mkdir -p "$out"
  GOBIN="$out" go install -trimpath \
    -ldflags "-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION" \
    "helm.sh/helm/v3/cmd/helm@$HELM_VERSION"
  finish "$out"
}

build_promtool() {
  local out="$SKED_CACHE/bin/promtool-$PROMTOOL_VERSION"
  [[ -f "$out/.complete" ]] && return 0
  log "building promtool $PROMTOOL_VERSION"
  local src="$SKED_CACHE/src/promtool-$PROMTOOL_VERSION"
  mkdir -p "$src" "$out"
  # Prometheus pins cloud.google.com/go with a replace line that a dependent
  # module has to repeat.
  cat >"$src/go.mod" <<GOMOD
module sked.local/promtool

go 1.24

require github.com/prometheus/prometheus $PROMTOOL_VERSION

replace cloud.google.com/go => cloud.google.com/go v0.123.0
GOMOD
  (cd "$src" && go build -mod=mod -trimpath -ldflags "-s -w" -o "$out/promtool" \
    github.com/prometheus/prometheus/cmd/promtool)
  finish "$out"
}

components=("$@")
[[ ${#components[@]} -gt 0 ]] || components=(etcd kubernetes kwok helm)
for component in "${components[@]}"; do
  case "$component" in
    etcd | kubernetes | kwok | helm | promtool | toxiproxy) "build_$component" ;;
    *) log "unknown component '$component'; expected etcd, kubernetes, kwok, helm, promtool or toxiproxy"; exit 2 ;;
  esac
done
