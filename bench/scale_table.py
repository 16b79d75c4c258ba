"""What the scale table's density costs: rate against guarded decisions (a mean-shift bundle).

Every boundary between table scales is a decision the guard may record, so a
denser table codes closer to the model's likelihood but writes longer side
streams. For tables of N log-spaced scales from 0.11 to 256, on the scales,
means and latents the bundle's graphs compute for each image: the rate under
the table (−Σ log2 p), and the decisions within the bundle's guard band of a
boundary, priced at what the side streams spent per decision in files coded
with the bundle.

Example::

    python bench/scale_table.py ../shared/data/kodak --every 3 --out bench/results/scale-table.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from licrt.export.entropy_models import gaussian_tables
from licrt.runtime import Codec
from licrt.runtime.backends.onnxruntime import OnnxRuntimeBackend
from licrt.runtime.bundle import DEFAULT_BUNDLE, Bundle
from licrt.runtime.entropy import tables_from_arrays
from licrt.runtime.guard import Guard
from licrt.runtime.images import list_images
from licrt.runtime.backends.watched import WatchedBackend

from report import dataset_names, save_report  # sibling scripts: python puts bench/ on the path


def recorder(bundle: Bundle, elements: list):
    """A watch keeping (σ, μ, y) of every element a step codes."""
    steps = {step.name: step for step in bundle.manifest.schedule.steps}
    latent = {}

    def record(stage, feed, run):
        outputs = run(feed)
        if stage == "g_a":
            latent["y"] = outputs["y"][0]
        elif stage in steps:
            step = steps[stage]
            mask = step.position_mask(*outputs["scales"].shape[2:])
            elements.append((outputs["scales"][0][:, mask].ravel(), outputs["means"][0][:, mask].ravel(),
                             latent["y"][slice(*step.channels)][:, mask].ravel()))
        return outputs

    return record


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("images", type=Path)
    parser.add_argument("--every", type=int, default=1)
    parser.add_argument("--sizes", default="64,56,48,40,32")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    bundle = Bundle.open(DEFAULT_BUNDLE)
    if bundle.manifest.y_quantization != "mean-shift" or bundle.manifest.mean_step is not None:
        parser.error("the bench needs a mean-shift bundle without a mean grid")
    images = list_images(args.images)[:: args.every]
    elements: list = []
    codec = Codec(bundle, WatchedBackend(OnnxRuntimeBackend(), recorder(bundle, elements)))
    files = [codec.compress(image) for image in images]
    file_bits = 8 * sum(map(len, files))
    reports = [Codec(bundle, OnnxRuntimeBackend()).inspect(data) for data in files]
    side_bits = sum(r.side_bits for r in reports)
    guarded = sum(r.guarded for r in reports)
    bits_per_decision = side_bits / guarded
    scales, means, latents = (np.concatenate([e[k] for e in elements]) for k in range(3))
    symbols = np.rint(latents - means).astype(np.int32)
    rows = []
    for size in map(int, args.sizes.split(",")):
        table = np.exp(np.linspace(np.log(0.11), np.log(256.0), size)).astype(np.float32)
        tables, scales_of_table = tables_from_arrays(gaussian_tables(table))
        guard = Guard(scales_of_table, "mean-shift", bundle.manifest.guard_tolerance, None)
        decided = guard.decide(scales, means)
        rows.append({"scales": size, "rate_bits": tables.information_bits(symbols, decided.rows),
                     "guarded_per_image": decided.near.size / len(images),
                     "side_streams_percent_of_file": 100 * decided.near.size * bits_per_decision / file_bits})
    reference = next(r["rate_bits"] for r in rows if r["scales"] == int(args.sizes.split(",")[0]))
    for row in rows:
        row["rate_percent_of_file_vs_first"] = 100 * (row["rate_bits"] - reference) / file_bits
        row["guard_cost_percent_of_file"] = row["rate_percent_of_file_vs_first"] + row["side_streams_percent_of_file"]
        print(json.dumps(row))
    save_report("scale_table.py", argv, args.out, bundle="default", bundle_scales=int(bundle.scale_table.scales.size),
                guard_tolerance=bundle.manifest.guard_tolerance, images=dataset_names(args.images, images),
                file_bits=file_bits, side_stream_bits_per_guarded_decision=bits_per_decision, tables=rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
