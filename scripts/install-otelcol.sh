#!/usr/bin/env bash
# scripts/install-otelcol.sh: make sure the test bed's OpenTelemetry Collector
# exists, and print its path. It is built once, from the Go module proxy (the
# only registry it comes from here), with the collector's own builder (ocb):
# the OTLP receiver (gRPC and HTTP) and the OTLP/HTTP exporter, nothing else
# (~2 min the first time, then cached outside the checkout):
#   $TIDEMILL_OTELCOL_DIR (default ~/.cache/tidemill/otelcol-$COLLECTOR)/otelcol-tidemill
# tests/otlp_collector.rs runs it between tidemill and a receiver in the test.
set -euo pipefail

COLLECTOR=0.165.0   # collector modules v0.165.0 go with confmap providers v1.71.0
PROVIDERS=1.71.0
DIR="${TIDEMILL_OTELCOL_DIR:-$HOME/.cache/tidemill/otelcol-$COLLECTOR}"
BIN="$DIR/otelcol-tidemill"

if [[ -x $BIN ]]; then
    echo "$BIN"
    exit 0
fi
command -v go >/dev/null || {
    echo "install-otelcol: needs Go (1.24 or newer) to build the collector" >&2
    exit 1
}
mkdir -p "$DIR"
gobin="$DIR/gobin"
echo "install-otelcol: building the OpenTelemetry Collector $COLLECTOR (first run only)..." >&2
GOBIN="$gobin" GOFLAGS=-mod=mod go install "go.opentelemetry.io/collector/cmd/builder@v$COLLECTOR" >&2
cat >"$DIR/manifest.yaml" <<MANIFEST
dist:
  name: otelcol-tidemill
  description: OpenTelemetry Collector for tidemill's tests (OTLP in, OTLP/HTTP out)
  output_path: $DIR/build
receivers:
  - gomod: go.opentelemetry.io/collector/receiver/otlpreceiver v$COLLECTOR
exporters:
  - gomod: go.opentelemetry.io/collector/exporter/otlphttpexporter v$COLLECTOR
providers:
  - gomod: go.opentelemetry.io/collector/confmap/provider/fileprovider v$PROVIDERS
  - gomod: go.opentelemetry.io/collector/confmap/provider/envprovider v$PROVIDERS
MANIFEST
"$gobin/builder" --config "$DIR/manifest.yaml" >&2
mv "$DIR/build/otelcol-tidemill" "$BIN.tmp"
mv "$BIN.tmp" "$BIN"
rm -rf "$DIR/build"
echo "$BIN"
