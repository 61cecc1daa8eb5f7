#!/usr/bin/env python3
"""Render charts/tenant-operator offline with Helm's own engine, like `helm template`.

Helm itself is not installed on the development machines and CI. This uses the PyPI package
`helm-python-sdk` (`pip install helm-python-sdk`), which bundles Helm v4's Go SDK as a shared
library. Used by tests/packaging.rs to compare the chart with deploy/.

    scripts/render-chart.py [--values FILE]... [--name NAME] [--namespace NS] [--lint]

Exit status 3 when helm-python-sdk is not installed, so callers can tell "cannot render"
from "the chart is broken".
"""

import argparse
import json
import os
import sys

try:
    import helm_python
    from helm_python import Chart
except ImportError:  # pragma: no cover
    print("helm-python-sdk is not installed (pip install helm-python-sdk)", file=sys.stderr)
    sys.exit(3)


def main() -> int:
    here = os.path.dirname(os.path.abspath(__file__))
    default_chart = os.path.join(here, "..", "charts", "tenant-operator")
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chart", default=default_chart)
    parser.add_argument("--values", action="append", default=[], help="values file (YAML)")
    parser.add_argument("--set-json", action="append", default=[], metavar="JSON",
                        help="a JSON object merged over the values")
    parser.add_argument("--name", default="tenant-operator")
    parser.add_argument("--namespace", default="tenant-operator")
    parser.add_argument("--lint", action="store_true", help="run helm lint first")
    args = parser.parse_args()

    chart = Chart.load(args.chart)
    values: dict = {}
    for path in args.values:
        with open(path, encoding="utf-8") as f:
            values = merge(values, helm_python.values_from_yaml(f.read()) or {})
    for doc in args.set_json:
        values = merge(values, json.loads(doc))

    if args.lint:
        # Helm's severities: 1 info, 2 warning, 3 error. Warnings fail too: they are how
        # Helm reports templates that render to invalid YAML or a missing schema field.
        result = helm_python.lint(args.chart, values=values or None)
        problems = [m for m in result.get("messages", []) if m.get("severity", 0) >= 2]
        problems += [{"error": e} for e in result.get("errors", [])]
        if problems:
            for p in problems:
                print(f"lint: {p}", file=sys.stderr)
            return 1
    chart.validate_schema(values or None)
    manifests = chart.render(values or None, name=args.name, namespace=args.namespace,
                             is_install=True)
    for path in sorted(manifests):
        text = manifests[path]
        if not path.endswith((".yaml", ".yml")) or not text.strip():
            continue
        print(f"---\n# Source: {path}")
        print(text.strip())
    return 0


def merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


if __name__ == "__main__":
    sys.exit(main())
