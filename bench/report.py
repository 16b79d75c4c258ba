"""What every benchmark writes: its command, the machine, library versions and results, as JSON."""

from __future__ import annotations

import json
import shlex
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from licrt.runtime.benchmark import machine, versions


def save_report(script: str, argv: list[str] | None, out: Path, **fields) -> dict:
    """Write the report to out (creating its folder), print it and return it."""
    report = {
        "command": shlex.join(["python", f"bench/{script}", *(sys.argv[1:] if argv is None else argv)]),
        "machine": machine(),
        "versions": versions(),
        **fields,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1) + "\n")
    print(json.dumps(report, indent=1))
    return report


def dataset_names(folder: Path, paths: Sequence[Path]) -> list[str]:
    """Images named within their dataset (``kodak/kodim01.png``), never by this machine's paths."""
    return [f"{folder.name}/{path.name}" for path in paths]


def timed_round_trip(codec, image):
    """Compress then decompress an image: (file bytes, decoded pixels, compress seconds, decompress seconds)."""
    start = time.perf_counter()
    data = codec.compress(image)
    compressed = time.perf_counter()
    decoded = codec.decompress(data)
    return data, decoded, compressed - start, time.perf_counter() - compressed
