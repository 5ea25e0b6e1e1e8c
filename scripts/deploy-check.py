#!/usr/bin/env python3
"""Offline checks of the Helm chart in deploy/helm/tidemill (run by
`make deploy-check`, part of `make test`; scripts/deploy-check.sh prepares
helm and a Python venv first).

For the default values and every deploy/helm/tidemill/ci/*-values.yaml:
  1. `helm template` renders it;
  2. every core kind validates strictly against Kubernetes' own schema
     (kubernetes-validate, for the Kubernetes version below); the custom kinds
     (KEDA ScaledObject, ServiceMonitor) against the CRD schemas vendored in
     deploy/schemas/ (their source and version are named in each file); any
     other kind fails;
  3. the chart's promises hold (see check_* below).
Then values that cannot work together must fail to render, naming the value.
"""
import json
import os
import pathlib
import re
import subprocess
import sys
import tomllib

import jsonschema
import kubernetes_validate
import yaml

ROOT = pathlib.Path(__file__).resolve().parent.parent
CHART = ROOT / "deploy" / "helm" / "tidemill"
SCHEMAS = ROOT / "deploy" / "schemas"
KUBERNETES_VERSION = "1.32.0"
HELM = os.environ.get("HELM", "helm")

CRDS = {
    ("keda.sh/v1alpha1", "ScaledObject"): "keda.sh_scaledobject_v1alpha1.json",
    ("monitoring.coreos.com/v1", "ServiceMonitor"): "monitoring.coreos.com_servicemonitor_v1.json",
}

failures: list[str] = []


def fail(variant: str, message: str) -> None:
    failures.append(f"{variant}: {message}")


def render(values: list[pathlib.Path], extra: list[str] = ()) -> subprocess.CompletedProcess:
    args = [HELM, "template", "tm", str(CHART)]
    for v in values:
        args += ["-f", str(v)]
    args += list(extra)
    return subprocess.run(args, capture_output=True, text=True)


def validate_schema(variant: str, doc: dict) -> None:
    key = (doc.get("apiVersion"), doc.get("kind"))
    where = f"{doc.get('kind')}/{doc.get('metadata', {}).get('name')}"
    if key in CRDS:
        schema = json.loads((SCHEMAS / CRDS[key]).read_text())
        errors = sorted(jsonschema.Draft7Validator(schema).iter_errors(doc), key=str)
        for e in errors:
            fail(variant, f"{where}: {'.'.join(map(str, e.path))}: {e.message}")
        return
    try:
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
    except kubernetes_validate.SchemaNotFoundError:
        fail(variant, f"{where}: no schema for {key} (unknown kinds are failures)")
    except kubernetes_validate.ValidationError as e:
        fail(variant, f"{where}: {'.'.join(map(str, e.path))}: {e.message}")


def pod_spec(docs: list[dict]) -> tuple[dict, dict]:
    (workload,) = [d for d in docs if d["kind"] in ("StatefulSet", "Deployment")]
    return workload, workload["spec"]["template"]["spec"]


def seconds(duration: str) -> int:
    m = re.fullmatch(r"(\d+)s", duration)
    if not m:
        raise ValueError(f"unexpected duration {duration!r}")
    return int(m.group(1))


def check_pod(variant: str, docs: list[dict], values: dict) -> None:
    workload, pod = pod_spec(docs)
    (c,) = pod["containers"]
    env = {e["name"]: e for e in c.get("env", [])}
    # terminationGracePeriodSeconds above shutdown.grace, always.
    grace = seconds(env["TIDEMILL__SHUTDOWN__GRACE"]["value"])
    if not pod["terminationGracePeriodSeconds"] > grace:
        fail(variant, f"terminationGracePeriodSeconds {pod['terminationGracePeriodSeconds']} is not above shutdown.grace {grace}s")
    # Hardened pod.
    psc, csc = pod.get("securityContext", {}), c.get("securityContext", {})
    expect = {
        "pod runAsNonRoot": psc.get("runAsNonRoot") is True,
        "pod seccomp RuntimeDefault": psc.get("seccompProfile", {}).get("type") == "RuntimeDefault",
        "no service-account token": pod.get("automountServiceAccountToken") is False,
        "readOnlyRootFilesystem": csc.get("readOnlyRootFilesystem") is True,
        "no privilege escalation": csc.get("allowPrivilegeEscalation") is False,
        "all capabilities dropped": csc.get("capabilities", {}).get("drop") == ["ALL"],
        "memory limit": "memory" in c.get("resources", {}).get("limits", {}),
        "cpu and memory requests": {"cpu", "memory"} <= set(c.get("resources", {}).get("requests", {})),
    }
    for what, ok in expect.items():
        if not ok:
            fail(variant, f"pod not hardened: {what}")
    # Probes on the health endpoints, readiness on /readyz.
    probes = {p: c.get(p, {}).get("httpGet", {}).get("path") for p in
              ("startupProbe", "readinessProbe", "livenessProbe")}
    if probes != {"startupProbe": "/livez", "readinessProbe": "/readyz", "livenessProbe": "/livez"}:
        fail(variant, f"probes: {probes}")
    # Config from the ConfigMap, rolled on change.
    annotations = workload["spec"]["template"]["metadata"].get("annotations", {})
    if not re.fullmatch(r"[0-9a-f]{64}", annotations.get("checksum/config", "")):
        fail(variant, "no checksum/config annotation: a config change would not roll the pods")
    # Secrets only by reference, never inlined.
    for name, e in env.items():
        if re.search(r"URL|PASSWORD|SECRET|SASL", name) and "value" in e:
            fail(variant, f"env {name} carries a value inline; it must come from a Secret")
    # Static membership: the instance id is the pod's name, StatefulSet only.
    instance = env.get("TIDEMILL__INSTANCE_ID")
    if values.get("staticMembership", True):
        if workload["kind"] != "StatefulSet":
            fail(variant, "static membership on a Deployment")
        if not instance or instance.get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") != "metadata.name":
            fail(variant, "TIDEMILL__INSTANCE_ID is not the pod name")
    elif instance:
        fail(variant, "TIDEMILL__INSTANCE_ID set with staticMembership off")


def check_config(variant: str, docs: list[dict]) -> None:
    (cm,) = [d for d in docs if d["kind"] == "ConfigMap"]
    try:
        config = tomllib.loads(cm["data"]["tidemill.toml"])
    except tomllib.TOMLDecodeError as e:
        fail(variant, f"the ConfigMap's tidemill.toml does not parse: {e}")
        return
    if not config.get("pipelines"):
        fail(variant, "the ConfigMap's tidemill.toml declares no pipeline")


def check_others(variant: str, docs: list[dict], values: dict) -> None:
    kinds = [d["kind"] for d in docs]
    pdbs = [d for d in docs if d["kind"] == "PodDisruptionBudget"]
    if len(pdbs) != 1 or pdbs[0]["spec"].get("maxUnavailable") != 1:
        fail(variant, "a PodDisruptionBudget with maxUnavailable 1 is expected")
    if not any(d["kind"] == "Service" and d["metadata"]["name"].endswith("-metrics") for d in docs):
        fail(variant, "no metrics Service")
    autoscaling = values.get("autoscaling", {})
    scaled = [d for d in docs if d["kind"] == "ScaledObject"]
    if autoscaling.get("enabled"):
        if len(scaled) != 1:
            fail(variant, "autoscaling enabled but no ScaledObject")
            return
        spec = scaled[0]["spec"]
        if spec["maxReplicaCount"] > autoscaling["partitions"]:
            fail(variant, "maxReplicaCount above the partition count")
        window = spec["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]["scaleDown"]["stabilizationWindowSeconds"]
        if window <= 0:
            fail(variant, "no scale-down stabilisation window")
        for t in spec["triggers"]:
            for k, v in t["metadata"].items():
                if not isinstance(v, str):
                    fail(variant, f"trigger {t['type']} metadata {k} is {type(v).__name__}, not a string")
        workload, _ = pod_spec(docs)
        if "replicas" in workload["spec"]:
            fail(variant, "replicas set while KEDA owns the replica count")
    elif scaled:
        fail(variant, "a ScaledObject without autoscaling.enabled")
    if values.get("serviceMonitor", {}).get("enabled") != ("ServiceMonitor" in kinds):
        fail(variant, "ServiceMonitor rendered iff serviceMonitor.enabled")


def variants() -> list[tuple[str, list[pathlib.Path]]]:
    out = [("defaults", [])]
    for f in sorted((CHART / "ci").glob("*-values.yaml")):
        out.append((f.name.removesuffix("-values.yaml"), [f]))
    return out


def merged_values(files: list[pathlib.Path]) -> dict:
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    for f in files:
        for k, v in (yaml.safe_load(f.read_text()) or {}).items():
            if isinstance(v, dict) and isinstance(values.get(k), dict):
                values[k] = {**values[k], **v}
            else:
                values[k] = v
    return values


# Values that cannot work: each must fail the render with this text.
MUST_FAIL = [
    (["--set", "autoscaling.enabled=true", "--set", "autoscaling.maxReplicas=13",
      "--set", "autoscaling.partitions=12"], "autoscaling.maxReplicas (13) is above autoscaling.partitions (12)"),
    (["--set", "workload=Deployment"], "staticMembership needs workload: StatefulSet"),
    (["--set", "terminationGraceMargin=0"], "terminationGraceMargin must be above 0"),
    (["--set", "workload=DaemonSet"], "is not StatefulSet or Deployment"),
]


def main() -> int:
    rendered = 0
    for name, files in variants():
        out = render(files)
        if out.returncode != 0:
            fail(name, f"helm template failed: {out.stderr.strip()}")
            continue
        docs = [d for d in yaml.safe_load_all(out.stdout) if d]
        values = merged_values(files)
        for doc in docs:
            validate_schema(name, doc)
        check_pod(name, docs, values)
        check_config(name, docs)
        check_others(name, docs, values)
        rendered += 1
        print(f"deploy-check: {name}: {', '.join(sorted(d['kind'] for d in docs))}")
    for extra, message in MUST_FAIL:
        out = render([], extra)
        if out.returncode == 0 or message not in out.stderr:
            fail("must fail", f"{' '.join(extra)} should fail with {message!r}; got: {out.stderr.strip() or 'success'}")
    if failures:
        for f in failures:
            print(f"deploy-check: FAIL {f}", file=sys.stderr)
        return 1
    print(f"deploy-check: {rendered} variants valid (Kubernetes {KUBERNETES_VERSION} schemas, "
          f"vendored CRD schemas), {len(MUST_FAIL)} bad value sets refused")
    return 0


if __name__ == "__main__":
    sys.exit(main())
