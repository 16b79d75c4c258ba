"""Whether to put a mean-shift codec's μ on a grid: what it costs and what it buys.

With a grid, ŷ = symbol + μ̂ is the same float on every backend, so later
passes see identical inputs; but every grid edge is a decision the guard may
have to pin. For the default bundle with its mean grid off and set to 1/8,
1/16 and 1/32: file size, side streams, and how many files still decode under
fault injection (every stage output × (1 + u), |u| ≤ ε_inj).

Example::

    python bench/mean_grid.py ../shared/data/kodak --every 3 --out bench/results/mean-grid.json
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shlex
import sys
from pathlib import Path

from licrt.runtime import Codec
from licrt.runtime.backends.onnxruntime import OnnxRuntimeBackend
from licrt.runtime.backends.perturbed import PerturbedBackend
from licrt.runtime.bundle import DEFAULT_BUNDLE, Bundle
from licrt.runtime.errors import BitstreamError
from licrt.runtime.images import list_images


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("images", type=Path)
    parser.add_argument("--every", type=int, default=1)
    parser.add_argument("--steps", default="none,0.125,0.0625,0.03125")
    parser.add_argument("--fault-epsilons", default="1e-5,2e-5")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    images = list_images(args.images)[:: args.every]
    reference = OnnxRuntimeBackend()
    rows = []
    for text in args.steps.split(","):
        bundle = Bundle.open(DEFAULT_BUNDLE)
        step = None if text == "none" else float(text)
        bundle.manifest = dataclasses.replace(bundle.manifest, mean_step=step)
        codec = Codec(bundle, reference)
        files = [codec.compress(image) for image in images]
        side = sum(sum(codec.inspect(data).side_bits_per_pass.values()) for data in files)
        decoded = {}
        for epsilon in map(float, args.fault_epsilons.split(",")):
            decoder = Codec(bundle, PerturbedBackend(reference, epsilon))
            decoded[f"{epsilon:g}"] = 0
            for data in files:
                try:
                    decoder.inspect(data)
                    decoded[f"{epsilon:g}"] += 1
                except BitstreamError:
                    pass
        rows.append({"mean_step": step, "bytes": sum(map(len, files)), "side_stream_bits": side,
                     "decoded_under_fault_injection": decoded})
        print(json.dumps(rows[-1]), flush=True)
    base = rows[0]["bytes"]
    for row in rows:
        row["file_size_vs_first_percent"] = 100 * (row["bytes"] / base - 1)
        row["side_streams_percent_of_file"] = 100 * row["side_stream_bits"] / (8 * row["bytes"])
    result = {
        "command": "python bench/mean_grid.py " + shlex.join(sys.argv[1:] if argv is None else argv),
        "bundle": "default",
        "images": [f"{args.images.name}/{path.name}" for path in images],
        "files": len(images),
        "rows": rows,
    }
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
