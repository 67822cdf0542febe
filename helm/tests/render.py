#!/usr/bin/env python3
"""Lints a chart and renders it offline with Helm's own library (helm-python-sdk).

    .tools/bin/python helm/tests/render.py helm/manifold '{"services":{"gateway":{"replicas":3}}}'

Prints one JSON object: the lint report, and either the rendered manifests (template
path -> YAML) or the error Helm gave (schema violations, `fail` in a template). The
integration test `helm` parses the manifests and checks them; this script judges
nothing itself, so a human can run it to see what a value set produces.
"""

import json
import sys

import helm_python as helm

helm.disable_logging()


def main() -> int:
    if len(sys.argv) not in (2, 3, 4):
        print(__doc__, file=sys.stderr)
        return 2
    chart_dir = sys.argv[1]
    values = json.loads(sys.argv[2]) if len(sys.argv) > 2 else {}
    namespace = sys.argv[3] if len(sys.argv) > 3 else "manifold"
    out = {
        "helm_sdk_version": helm.helm_sdk_version(),
        "lint": helm.lint(chart_dir, values, strict=True, namespace=namespace),
        "manifests": None,
        "error": None,
    }
    with helm.Chart.load(chart_dir) as chart:
        try:
            out["manifests"] = chart.render(
                values, name="mf", namespace=namespace, is_install=True
            )
        except helm.HelmError as e:
            out["error"] = f"{type(e).__name__}: {e}"
    json.dump(out, sys.stdout, indent=1, sort_keys=True)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
