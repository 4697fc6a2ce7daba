#!/usr/bin/env bash
# Builds the sandbox's binaries from the Go module proxy into a cache outside the work tree:
# etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kubectl, kwok and helm.
#
# Each wrapper module under hack/<name>/ is built into
#   $RINGRIFT_CACHE/tools/<name>-<key>/bin
# where <key> hashes the module's go.mod, go.sum, main sources and this script, so a fresh clone
# on the same machine (CI clones afresh) reuses the binaries and any change rebuilds them.
# `hack/build-tools.sh --print-bindir` prints the directory holding links to the current binaries.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cache=${RINGRIFT_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/ringrift-operator}
bindir="$cache/bin"

KUBE_VERSION=v1.36.3
export CGO_ENABLED=0 GOFLAGS=-buildvcs=false GOTOOLCHAIN=local

key_of() { # the cache key of one wrapper module
    (cd "$here/$1" && find . -type f \( -name go.mod -o -name go.sum -o -name '*.go' \) | sort \
        | xargs sha256sum; sha256sum "$here/build-tools.sh" | cut -d' ' -f1; go version) \
        | sha256sum | cut -c1-16
}

build() { # build <module> <package>... : build the module's programs unless cached
    local mod=$1; shift
    local out="$cache/tools/$mod-$(key_of "$mod")"
    if [[ -f "$out/.complete" ]]; then
        echo "build-tools: $mod is current ($out)"
    else
        echo "build-tools: building $mod into $out"
        local start=$SECONDS
        rm -rf "$out" && mkdir -p "$out/bin"
        (cd "$here/$mod" && go build -trimpath -ldflags "${LDFLAGS:-} -s -w" -o "$out/bin/" "$@")
        touch "$out/.complete"
        echo "build-tools: built $mod in $((SECONDS - start)) s"
    fi
    mkdir -p "$bindir"
    for f in "$out"/bin/*; do ln -sfn "$f" "$bindir/$(basename "$f")"; done
}

if [[ ${1:-} == --print-bindir ]]; then echo "$bindir"; exit 0; fi

total=$SECONDS
build etcd ./cmd/etcd
build kwok sigs.k8s.io/kwok/cmd/kwok
build helm helm.sh/helm/v3/cmd/helm
minor=${KUBE_VERSION#v1.}; minor=${minor%%.*}
v=k8s.io/component-base/version
LDFLAGS="-X $v.gitVersion=$KUBE_VERSION -X $v.gitMajor=1 -X $v.gitMinor=$minor \
  -X $v.gitTreeState=clean -X $v.buildDate=1970-01-01T00:00:00Z \
  -X k8s.io/client-go/pkg/version.gitVersion=$KUBE_VERSION \
  -X k8s.io/client-go/pkg/version.gitMajor=1 -X k8s.io/client-go/pkg/version.gitMinor=$minor" \
    build kube k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager \
    k8s.io/kubernetes/cmd/kube-scheduler k8s.io/kubernetes/cmd/kubectl
echo "build-tools: all binaries current in $bindir ($((SECONDS - total)) s)"
