#!/usr/bin/env python3
"""Sanity-check the files in docker/ without a Docker engine (`make docker-check`).

* every docker/*.yml / *.yaml parses as YAML;
* docker-compose.yml defines the expected services, every service has an image
  or a build, and the local files it mounts or builds from exist;
* otel-collector.yaml wires each pipeline to defined receivers/exporters, and
  traces reach Jaeger;
* prometheus.yml scrapes tidemill; Grafana's provisioning files parse;
* grafana/tidemill.json parses, every panel has a query, and every tidemill_*
  metric it queries is one that src/observe/metrics/ renders;
* the Dockerfile has several FROM stages, a non-root USER, an ENTRYPOINT.

Needs PyYAML (Debian: python3-yaml). Exits non-zero with a list of problems.
"""

import json
import re
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
DOCKER = ROOT / "docker"
EXPECTED_SERVICES = {
    "kafka", "postgres", "mariadb", "otel-collector", "jaeger", "tidemill", "prometheus", "grafana",
}

problems = []


def load_yaml(path):
    try:
        with path.open(encoding="utf-8") as f:
            data = yaml.safe_load(f)
    except yaml.YAMLError as e:
        problems.append(f"{path.relative_to(ROOT)}: invalid YAML: {e}")
        return None
    if not isinstance(data, dict):
        problems.append(f"{path.relative_to(ROOT)}: top level is not a mapping")
        return None
    return data


def check_compose(path):
    compose = load_yaml(path)
    if compose is None:
        return
    services = compose.get("services") or {}
    missing = EXPECTED_SERVICES - services.keys()
    if missing:
        problems.append(f"docker-compose.yml: missing services: {', '.join(sorted(missing))}")
    for name, svc in services.items():
        if not isinstance(svc, dict) or not ("image" in svc or "build" in svc):
            problems.append(f"docker-compose.yml: service {name!r} has neither image nor build")
            continue
        if name == "tidemill":
            hardened = {
                "read_only: true": svc.get("read_only") is True,
                "non-root user": str(svc.get("user", "")).split(":")[0] not in ("", "0", "root"),
                "cap_drop ALL": svc.get("cap_drop") == ["ALL"],
            }
            for what, ok in hardened.items():
                if not ok:
                    problems.append(f"docker-compose.yml: tidemill is not hardened: {what}")
        build = svc.get("build")
        if isinstance(build, dict):
            context = (path.parent / build.get("context", ".")).resolve()
            dockerfile = context / build.get("dockerfile", "Dockerfile")
            if not dockerfile.is_file():
                problems.append(f"docker-compose.yml: {name}: Dockerfile {dockerfile} not found")
        for dep in svc.get("depends_on") or []:
            if dep not in services:
                problems.append(f"docker-compose.yml: {name} depends on unknown service {dep!r}")
        # Bind mounts of files/dirs relative to the compose file must exist.
        for vol in svc.get("volumes") or []:
            src = vol.split(":", 1)[0] if isinstance(vol, str) else vol.get("source", "")
            if src.startswith("."):
                target = (path.parent / src).resolve()
                # ../config is written by the application side; only warn.
                if not target.exists():
                    msg = f"docker-compose.yml: {name}: mounted path {src} does not exist"
                    if target == ROOT / "config":
                        print(f"docker-check: note: {msg}", file=sys.stderr)
                    else:
                        problems.append(msg)


def check_otel(path):
    cfg = load_yaml(path)
    if cfg is None:
        return
    pipelines = (cfg.get("service") or {}).get("pipelines") or {}
    if "traces" not in pipelines:
        problems.append("otel-collector.yaml: no traces pipeline")
    for pname, pipe in pipelines.items():
        for kind in ("receivers", "processors", "exporters"):
            for comp in pipe.get(kind) or []:
                if comp not in (cfg.get(kind) or {}):
                    problems.append(f"otel-collector.yaml: pipeline {pname} uses undefined {kind[:-1]} {comp!r}")


def check_traces_reach_jaeger(path):
    cfg = load_yaml(path)
    if cfg is None:
        return
    traces = ((cfg.get("service") or {}).get("pipelines") or {}).get("traces") or {}
    exporters = cfg.get("exporters") or {}
    if not any("jaeger" in str((exporters.get(e) or {}).get("endpoint", "")) for e in traces.get("exporters") or []):
        problems.append("otel-collector.yaml: the traces pipeline exports to no jaeger endpoint")


def check_prometheus(path):
    cfg = load_yaml(path)
    if cfg is None:
        return
    targets = [
        t
        for job in cfg.get("scrape_configs") or []
        for sc in job.get("static_configs") or []
        for t in sc.get("targets") or []
    ]
    if not any(t.startswith("tidemill:") for t in targets):
        problems.append("prometheus.yml: no scrape target tidemill:PORT")


def rendered_metrics():
    """Metric names src/observe/metrics/ renders (histograms also as _bucket/_sum/_count)."""
    source = "\n".join(
        p.read_text(encoding="utf-8") for p in sorted((ROOT / "src" / "observe" / "metrics").glob("*.rs"))
    )
    names = set(re.findall(r'"(tidemill_[a-z0-9_]+)"', source))
    for n in list(names):
        names.update({f"{n}_bucket", f"{n}_sum", f"{n}_count"})
    return names


def check_dashboard(path):
    rel = path.relative_to(ROOT)
    try:
        dash = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        problems.append(f"{rel}: invalid JSON: {e}")
        return
    panels = dash.get("panels") or []
    if not dash.get("uid") or not dash.get("title") or not panels:
        problems.append(f"{rel}: needs a uid, a title and panels")
    known = rendered_metrics()
    for panel in panels:
        targets = panel.get("targets") or []
        if not targets:
            problems.append(f"{rel}: panel {panel.get('title')!r} has no query")
        for t in targets:
            for name in re.findall(r"tidemill_[a-z0-9_]+", t.get("expr", "")):
                if name not in known:
                    problems.append(f"{rel}: panel {panel.get('title')!r} queries {name}, which tidemill does not export")


def check_dockerfile(path):
    text = path.read_text(encoding="utf-8")
    lines = [l.strip() for l in text.splitlines() if l.strip() and not l.strip().startswith("#")]
    froms = [l for l in lines if re.match(r"(?i)^FROM\s+\S+", l)]
    users = [l for l in lines if re.match(r"(?i)^USER\s+\S+", l)]
    if len(froms) < 2:
        problems.append(f"Dockerfile: expected a multi-stage build (>= 2 FROM), found {len(froms)}")
    if not users:
        problems.append("Dockerfile: no USER line")
    elif re.match(r"(?i)^USER\s+(root|0)(:|\s|$)", users[-1]):
        problems.append("Dockerfile: final USER is root")
    if not any(re.match(r"(?i)^ENTRYPOINT\s", l) for l in lines):
        problems.append("Dockerfile: no ENTRYPOINT")


def main():
    yamls = sorted(list(DOCKER.rglob("*.yml")) + list(DOCKER.rglob("*.yaml")))
    required_files = (
        "docker-compose.yml", "otel-collector.yaml", "Dockerfile", "prometheus.yml",
        "grafana/tidemill.json", "grafana/provisioning/dashboards/tidemill.yml",
        "grafana/provisioning/datasources/prometheus.yml",
    )
    for required in required_files:
        if not (DOCKER / required).is_file():
            problems.append(f"docker/{required} is missing")
    for path in yamls:
        if path == DOCKER / "docker-compose.yml":
            check_compose(path)
        elif path == DOCKER / "otel-collector.yaml":
            check_otel(path)
            check_traces_reach_jaeger(path)
        elif path == DOCKER / "prometheus.yml":
            check_prometheus(path)
        else:
            load_yaml(path)
    for dashboard in sorted((DOCKER / "grafana").glob("*.json")):
        check_dashboard(dashboard)
    if (DOCKER / "Dockerfile").is_file():
        check_dockerfile(DOCKER / "Dockerfile")

    if problems:
        for p in problems:
            print(f"docker-check: {p}", file=sys.stderr)
        sys.exit(1)
    dashboards = sorted((DOCKER / "grafana").glob("*.json"))
    names = ", ".join(str(p.relative_to(DOCKER)) for p in yamls + dashboards + [DOCKER / "Dockerfile"])
    print(f"docker-check: OK ({names})")


if __name__ == "__main__":
    main()
