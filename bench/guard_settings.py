"""The guard's settings on the default bundle: what each costs and what it buys.

Two settings: the margin (decisions within ε × margin of a boundary are
pinned), and a mean-shift codec's mean grid (with one, ŷ = symbol + μ̂ is the
same float on every backend, so later passes see identical inputs, but every
grid edge is a decision the guard may have to pin). For every combination:
file size, side streams, and how many files decode under fault injection
(every stage output × (1 + u), |u| ≤ ε_inj).

Examples::

    python bench/guard_settings.py ../shared/data/kodak --margins 2,3,4 --out bench/results/guard-margin.json
    python bench/guard_settings.py ../shared/data/kodak --every 3 --mean-steps none,0.125,0.0625,0.03125 \\
        --out bench/results/guard-mean-grid.json
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

from licrt.runtime import Codec
from licrt.runtime.backends.onnxruntime import OnnxRuntimeBackend
from licrt.runtime.backends.perturbed import PerturbedBackend
from licrt.runtime.bundle import DEFAULT_BUNDLE, Bundle
from licrt.runtime.errors import BitstreamError
from licrt.runtime.images import list_images

from report import dataset_names, save_report  # a sibling script: python puts bench/ on the path


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("images", type=Path)
    parser.add_argument("--every", type=int, default=1)
    parser.add_argument("--mean-steps", default="none")
    parser.add_argument("--margins", default="3")
    parser.add_argument("--fault-epsilons", default="1e-5,2e-5")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    images = list_images(args.images)[:: args.every]
    reference = OnnxRuntimeBackend()
    rows = []
    settings = [(None if step == "none" else float(step), float(margin))
                for step in args.mean_steps.split(",") for margin in args.margins.split(",")]
    for step, margin in settings:
        bundle = Bundle.open(DEFAULT_BUNDLE)
        bundle.manifest = dataclasses.replace(bundle.manifest, mean_step=step, guard_margin=margin)
        codec = Codec(bundle, reference)
        files = [codec.compress(image) for image in images]
        side = sum(codec.inspect(data).side_bits for data in files)
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
        rows.append({"mean_step": step, "margin": margin, "bytes": sum(map(len, files)), "side_stream_bits": side,
                     "decoded_under_fault_injection": decoded})
        print(json.dumps(rows[-1]), flush=True)
    base = rows[0]["bytes"]
    for row in rows:
        row["file_size_vs_first_percent"] = 100 * (row["bytes"] / base - 1)
        row["side_streams_percent_of_file"] = 100 * row["side_stream_bits"] / (8 * row["bytes"])
    save_report("guard_settings.py", argv, args.out, bundle="default",
                epsilon=Bundle.open(DEFAULT_BUNDLE).manifest.guard_epsilon, images=dataset_names(args.images, images),
                files=len(images), rows=rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
