"""Wall time and peak memory of `licrt compress` / `licrt decompress`, as a user runs them.

Each command runs in its own process under GNU time (``/usr/bin/time -v``),
so the peak resident memory is the whole process's, Python included.

    python bench/cli_cost.py photo.png --out bench/results/cli-cost.json [--bundle DIR]
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
from pathlib import Path

from PIL import Image

from report import save_report  # a sibling script: python puts bench/ on the path


def timed(command: list[str], expect_failure: bool = False) -> dict:
    """Wall time and peak memory of one command; it must succeed, or fail with status 1 when expected to."""
    result = subprocess.run(["/usr/bin/time", "-v", *command], capture_output=True, text=True)
    if result.returncode != (1 if expect_failure else 0):
        raise RuntimeError(f"{command} exited with status {result.returncode}: {result.stderr}")
    elapsed = re.search(r"Elapsed \(wall clock\) time.*: (?:(\d+):)?(\d+):([\d.]+)", result.stderr)
    hours, minutes, seconds = (float(g) if g else 0.0 for g in elapsed.groups())
    peak_kb = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", result.stderr).group(1))
    return {"seconds": hours * 3600 + minutes * 60 + seconds, "peak_rss_mb": peak_kb / 1024}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("image", type=Path)
    parser.add_argument("--bundle", type=Path, help="default: licrt's default bundle")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    bundle = ["--bundle", str(args.bundle)] if args.bundle else []
    width, height = Image.open(args.image).size
    with tempfile.TemporaryDirectory() as folder:
        coded, decoded = Path(folder) / "photo.lic", Path(folder) / "photo.png"
        compress = timed(["licrt", "compress", str(args.image), str(coded), *bundle])
        decompress = timed(["licrt", "decompress", str(coded), str(decoded), *bundle])
        size = coded.stat().st_size
    save_report("cli_cost.py", argv, args.out,
                image={"path": str(args.image), "width": width, "height": height, "megapixels": width * height / 1e6},
                bytes=size, bpp=8 * size / (width * height), compress=compress, decompress=decompress)
    return 0


if __name__ == "__main__":
    sys.exit(main())
