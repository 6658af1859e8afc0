"""Runs the real Datadog OpenMetrics V2 check (PyPI `datadog-checks-base`, in build/datadog-venv:
its pins clash with tqmon's) once against an endpoint, with the stub aggregator, and prints
what it submitted as JSON: [{name, type, tags, value}], and the check's warnings.

    python datadog_check.py INSTANCE_JSON
"""

from __future__ import annotations

import json
import sys

from datadog_checks.base.checks.openmetrics.v2.base import OpenMetricsBaseCheckV2
from datadog_checks.base.stubs import aggregator

TYPES = {0: "gauge", 1: "rate", 2: "count", 3: "monotonic_count", 4: "counter",
         5: "histogram", 6: "historate"}


def main() -> int:
    instance = json.loads(sys.argv[1])
    check = OpenMetricsBaseCheckV2("openmetrics", {}, [instance])
    error = check.run()
    submitted = [{"name": m.name, "type": TYPES.get(m.type, str(m.type)), "tags": m.tags,
                  "value": m.value}
                 for name in aggregator.metric_names for m in aggregator.metrics(name)]
    print(json.dumps({"metrics": submitted, "warnings": check.warnings, "error": error}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
