#!/usr/bin/env python3
"""Prints the PrometheusRule (Prometheus operator) that carries alerts.yaml's groups:
    python3 deploy/monitoring/prometheusrule.py > deploy/monitoring/prometheusrule.yaml
alerts.yaml stays the one source; scripts/check-deploy.sh checks the two agree."""
import sys
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent


def _block(dumper, text):
    """Multi-line strings (PromQL) as YAML block scalars, as alerts.yaml writes them."""
    style = "|" if "\n" in text else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", text, style=style)


yaml.SafeDumper.add_representer(str, _block)


def rule():
    groups = yaml.safe_load((HERE / "alerts.yaml").read_text())["groups"]
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {"name": "lectern", "labels": {"app.kubernetes.io/name": "lectern"}},
        "spec": {"groups": groups},
    }


if __name__ == "__main__":
    if sys.argv[1:] == ["--check"]:
        current = yaml.safe_load((HERE / "prometheusrule.yaml").read_text())
        if current != rule():
            sys.exit("deploy/monitoring/prometheusrule.yaml differs from alerts.yaml: run "
                     "python3 deploy/monitoring/prometheusrule.py > deploy/monitoring/prometheusrule.yaml")
        print("prometheusrule.yaml carries alerts.yaml's rules")
    else:
        sys.stdout.write("# Generated from alerts.yaml by prometheusrule.py: edit alerts.yaml.\n")
        yaml.safe_dump(rule(), sys.stdout, sort_keys=False, width=100)
