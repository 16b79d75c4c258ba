"""What well-formed files claiming huge images cost `licrt decompress` before they are refused.

Two forged files, with valid checks throughout (header, and one section per
tile of the grid the default bundle would use, each with the smallest payload
its coder writes):

* 200,000² pixels, over the default limit: refused from the header;
* 16,384² pixels, at the default limit: the output image is reserved but
  its pages are committed only as tiles are written, and the first tile's
  digest stops decoding.

Each runs as `licrt decompress` under GNU time, beside the same command on a
one-byte file (start-up alone) and on a real one-tile file (one tile decoded);
Python's allocations while :meth:`Codec.decompress` refuses each are traced.

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

from licrt.runtime import Codec, LicrtError
from licrt.runtime.container import Container, Header, TileSection
from licrt.runtime.codec import grid_overlap
from licrt.runtime.tiling import choose_grid, choose_regions

SIDES = {"200000x200000": 200_000, "16384x16384": 2**14}


def forged_file(codec: Codec, side: int) -> bytes:
    """A file whose header asks for a side² image and is otherwise consistent (its grid is the one the codec
    derives; codec.grid would refuse the size first)."""
    grid = choose_grid(side, side, codec.bundle.bucket_shapes, grid_overlap(codec.bundle))
    regions = choose_regions(grid, codec.limits.max_region_pixels) if grid.windowed else (1, 1)
    passes = 1 + len(codec.bundle.manifest.schedule.steps)
    header = Header(codec.bundle.contract, codec.backend.profile, side, side, grid.bucket, grid.rows, grid.cols,
                    passes, windowed=grid.windowed, regions=regions)
    section = TileSection(bytes(4), (0,) * passes)
    return Container(header, (section,) * header.sections).to_bytes()


def decompress(path: Path, folder: Path, expect_failure: bool = True) -> dict:
    return timed(["licrt", "decompress", str(path), str(folder / f"{path.stem}.png")], expect_failure=expect_failure)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    codec = Codec.open()
    cases = {}
    with tempfile.TemporaryDirectory() as name:
        folder = Path(name)
        (folder / "one-byte.lic").write_bytes(b"\x89")
        parrots = Path(__file__).parents[1] / "tests" / "data" / "parrots_256x256.png"
        (folder / "one-tile.lic").write_bytes(codec.compress(parrots))
        baselines = {"start_up_only": decompress(folder / "one-byte.lic", folder),
                     "one_tile_decoded": decompress(folder / "one-tile.lic", folder, expect_failure=False)}
        for label, side in SIDES.items():
            path = folder / f"{label}.lic"
            path.write_bytes(forged_file(codec, side))
            run = decompress(path, folder)
            tracemalloc.start()
            try:
                codec.decompress(path)
            except LicrtError as exc:
                error = str(exc)
            _, python_peak = tracemalloc.get_traced_memory()
            tracemalloc.stop()
            header = Container.from_bytes(path.read_bytes()).header
            cases[label] = {"file_bytes": path.stat().st_size, "tiles": header.sections, "run": run,
                            "python_allocations_peak_kb": round(python_peak / 1024, 1), "error": error}
    save_report("forged_size.py", argv, args.out, bundle="default", baselines=baselines, cases=cases)
    return 0


if __name__ == "__main__":
    sys.exit(main())
