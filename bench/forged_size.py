"""What a well-formed file claiming a 200,000² image costs `licrt decompress` before it is refused.

Writes a file with valid checks throughout (header, and one section per tile
of the grid the default bundle would use, each with the smallest payload its
coder writes), then times `licrt decompress` on it under GNU time, beside
the same command on a one-byte file (start-up alone), and measures what
Python allocates while :meth:`Codec.decompress` refuses it.

    python bench/forged_size.py --out bench/results/forged-size.json
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import tracemalloc
from pathlib import Path

from cli_cost import timed  # a sibling script: python puts bench/ on the path
from report import save_report

from licrt.runtime import Codec, LimitError
from licrt.runtime.container import Container, Header, TileSection
from licrt.runtime.tiling import choose_grid

SIDE = 200_000


def forged_file(codec: Codec) -> bytes:
    grid = choose_grid(SIDE, SIDE, codec.bundle.bucket_shapes)
    passes = 1 + len(codec.bundle.manifest.schedule.steps)
    header = Header(codec.bundle.fingerprint, codec.backend.profile, SIDE, SIDE, grid.bucket, grid.rows, grid.cols,
                    passes)
    section = TileSection(bytes(4), (0,) * passes)
    return Container(header, (section,) * (grid.rows * grid.cols)).to_bytes()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    codec = Codec.open()
    data = forged_file(codec)
    with tempfile.TemporaryDirectory() as folder:
        forged, start_up = Path(folder) / "forged.lic", Path(folder) / "one-byte.lic"
        forged.write_bytes(data)
        start_up.write_bytes(b"\x89")
        refusal = timed(["licrt", "decompress", str(forged), str(Path(folder) / "a.png")], expect_failure=True)
        baseline = timed(["licrt", "decompress", str(start_up), str(Path(folder) / "b.png")], expect_failure=True)
        tracemalloc.start()
        try:
            codec.decompress(forged)
        except LimitError as exc:
            message = str(exc)
        _, python_peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    header = Container.from_bytes(data).header
    save_report("forged_size.py", argv, args.out,
                file={"bytes": len(data), "height": header.height, "width": header.width, "tiles": header.tiles},
                refusal=refusal, start_up_only=baseline,
                extra_seconds=round(refusal["seconds"] - baseline["seconds"], 3),
                extra_peak_rss_mb=round(refusal["peak_rss_mb"] - baseline["peak_rss_mb"], 1),
                python_allocations_peak_kb=round(python_peak / 1024, 1), error=message)
    return 0


if __name__ == "__main__":
    sys.exit(main())
