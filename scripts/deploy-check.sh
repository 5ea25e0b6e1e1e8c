#!/usr/bin/env bash
# make deploy-check: validate the Helm chart offline (scripts/deploy-check.py
# says what is checked). Installs what it needs when missing, once:
#   * helm v4.3.2, built from the Go module proxy into $(go env GOPATH)/bin
#     (there is no other registry for it here; ~5 min the first time);
#   * a Python venv in target/deploy-venv with kubernetes-validate and
#     jsonschema (pinned below) from PyPI.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

HELM_VERSION=v4.3.2
KUBERNETES_VALIDATE_VERSION=1.37.0
JSONSCHEMA_VERSION=4.26.0
VENV=target/deploy-venv

helm_bin() {
    if command -v helm >/dev/null; then
        command -v helm
        return
    fi
    local gobin
    command -v go >/dev/null || { echo "deploy-check: needs helm, or go to build it" >&2; return 1; }
    gobin="$(go env GOPATH)/bin"
    if [[ ! -x $gobin/helm ]]; then
        echo "deploy-check: building helm $HELM_VERSION from the Go module proxy (first run only)..." >&2
        GOFLAGS=-mod=mod go install "helm.sh/helm/v4/cmd/helm@$HELM_VERSION" >&2
    fi
    echo "$gobin/helm"
}

venv() {
    local stamp="$VENV/.complete-$KUBERNETES_VALIDATE_VERSION-$JSONSCHEMA_VERSION"
    [[ -f $stamp ]] && return
    echo "deploy-check: preparing $VENV (kubernetes-validate $KUBERNETES_VALIDATE_VERSION, jsonschema $JSONSCHEMA_VERSION)..." >&2
    rm -rf "$VENV"
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q --disable-pip-version-check \
        "kubernetes-validate==$KUBERNETES_VALIDATE_VERSION" "jsonschema==$JSONSCHEMA_VERSION" PyYAML >&2
    touch "$stamp"
}

HELM="$(helm_bin)"
venv
"$HELM" lint --quiet deploy/helm/tidemill >/dev/null
HELM="$HELM" "$VENV/bin/python" scripts/deploy-check.py
