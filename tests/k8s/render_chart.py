"""Renders a Helm chart offline with Helm's own engine (the Go SDK, through helm-python-sdk),
as `helm template` and `helm lint` would, and prints the result as one JSON object:

    {"manifests": {"<chart>/templates/x.yaml": "<rendered text>", ...},
     "crds": {"<file>": "<text>", ...},
     "lint": {"messages": [...], "errors": [...]}}

Usage: render_chart.py CHART_DIR RELEASE NAMESPACE [VALUES_JSON]
A template or value error exits 1 with Helm's message on stderr.
"""

import json
import sys

from helm_python.chart import Chart, lint


def main() -> int:
    if len(sys.argv) not in (4, 5):
        print(__doc__, file=sys.stderr)
        return 2
    path, release, namespace = sys.argv[1:4]
    values = json.loads(sys.argv[4]) if len(sys.argv) == 5 else {}
    try:
        chart = Chart.load(path)
        manifests = chart.render(
            values=values, name=release, namespace=namespace, is_install=True
        )
        crds = {c["name"]: c["data"] for c in chart.crds}
        report = lint(path, values, namespace=namespace, strict=True)
    except Exception as e:  # Helm's errors carry the template and line
        print(f"{type(e).__name__}: {e}", file=sys.stderr)
        return 1
    json.dump({"manifests": manifests, "crds": crds, "lint": report}, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
