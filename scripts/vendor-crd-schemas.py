#!/usr/bin/env python3
"""Regenerates deploy/schemas/*.json: the OpenAPI v3 schemas of the custom
resources the Helm chart can render (KEDA's ScaledObject, prometheus-operator's
ServiceMonitor), taken from their Go modules on the Go module proxy (the
modules ship the CRD manifests). Run by hand when bumping a version:

    python3 scripts/vendor-crd-schemas.py

Needs `go` (for `go mod download`) and PyYAML.
"""
import json
import pathlib
import subprocess
import tempfile

import yaml

ROOT = pathlib.Path(__file__).resolve().parent.parent
OUT = ROOT / "deploy" / "schemas"

# (module, version, path inside the module, output file, CRD version served)
SOURCES = [
    ("github.com/kedacore/keda/v2", "v2.18.1",
     "config/crd/bases/keda.sh_scaledobjects.yaml",
     "keda.sh_scaledobject_v1alpha1.json", "v1alpha1"),
    ("github.com/prometheus-operator/prometheus-operator", "v0.85.0",
     "example/prometheus-operator-crd/monitoring.coreos.com_servicemonitors.yaml",
     "monitoring.coreos.com_servicemonitor_v1.json", "v1"),
]


def module_dir(module: str, version: str) -> pathlib.Path:
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(["go", "mod", "init", "vendor-crds"], cwd=tmp, check=True,
                       capture_output=True)
        out = subprocess.run(["go", "mod", "download", "-json", f"{module}@{version}"],
                             cwd=tmp, check=True, capture_output=True, text=True)
    return pathlib.Path(json.loads(out.stdout)["Dir"])


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    for module, version, path, out, served in SOURCES:
        crd = yaml.safe_load((module_dir(module, version) / path).read_text())
        (schema,) = [v["schema"]["openAPIV3Schema"] for v in crd["spec"]["versions"]
                     if v["name"] == served]
        schema["x-tidemill-source"] = f"Go module {module}@{version}, {path} ({served})"
        (OUT / out).write_text(json.dumps(schema, indent=1, sort_keys=True) + "\n")
        print(f"wrote deploy/schemas/{out} from {module}@{version}")


if __name__ == "__main__":
    main()
