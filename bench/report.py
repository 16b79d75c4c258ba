"""What every benchmark writes: its command, the machine, library versions and results, as JSON."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from licrt.runtime.evaluation.report import machine


def save_report(script: str, argv: list[str] | None, out: Path, **fields) -> dict:
    """Write the report to out (creating its folder), print it and return it."""
    report = {
        "command": " ".join(["python", f"bench/{script}", *(argv or sys.argv[1:])]),
        "machine": machine(),
        **fields,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1) + "\n")
    print(json.dumps(report, indent=1))
    return report
