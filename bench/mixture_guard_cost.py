"""What a mixture codec's decision grids cost: information bits and the guard's side streams, per setting.

A mixture element takes nine decisions (each component's scale, mean
fraction slot and weight); the guard records those within its tolerance of
a boundary, at ~11 bits each. Finer grids code closer to the model's
probabilities but put more decisions near a boundary. This compresses the
images once with the bundle, records every pass's mixture parameters and
symbols (ŷ does not depend on the grids), then prices them under each
setting: mean fraction slices ``PER_SCALE:MOST`` (per_scale/σ slices, at
most MOST; see ``licrt.export.entropy_models.fraction_bins``) × weight grid
G (see :class:`~licrt.runtime.guard.MixtureGuard`), with the bundle's tables'
scales and guard tolerance.

Example::

    python bench/mixture_guard_cost.py ../shared/data/kodak --bundle econtextformer-small \\
        --slices 8:64,4:16,2:8,1:8 --weight-grids 61,31,17 --out bench/results/mixture-guard-cost.json
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from tqdm import tqdm

from licrt.export.entropy_models import fraction_bins, gaussian_tables
from licrt.runtime import Codec
from licrt.runtime.entropy import tables_from_arrays
from licrt.runtime.guard import MixtureGuard, side_stream_bits
from licrt.runtime.images import list_images
from licrt.runtime.latent_coding import MixtureCoding
from licrt.runtime.mixture import MixtureTables
from licrt.runtime.schedule import MIXTURE_PARAMETERS

from report import dataset_names, save_report  # a sibling script: python puts bench/ on the path


def record_passes(codec: Codec, images: list[Path]) -> tuple[list[list[tuple]], list[int]]:
    """Each image's passes as (weights, means, scales, symbols), and its file size, from the encoder's coding."""
    passes: list[tuple] = []
    decide, symbols = MixtureCoding.decide, MixtureCoding.symbols

    def recording_decide(self, parameters, pinned, pin_near):
        if pin_near:  # the encoder's decisions
            passes.append(tuple(parameters[name].reshape(self.components, -1).copy() for name in MIXTURE_PARAMETERS))
        return decide(self, parameters, pinned, pin_near)

    def recording_symbols(self, values, decided, rounding):
        coded = symbols(self, values, decided, rounding)
        passes[-1] += (coded.copy(),)
        return coded

    MixtureCoding.decide, MixtureCoding.symbols = recording_decide, recording_symbols
    recorded, sizes = [], []
    try:
        for image in tqdm(images, desc="compress", unit="image"):
            passes.clear()
            sizes.append(len(codec.compress(image)))
            recorded.append(list(passes))
    finally:
        MixtureCoding.decide, MixtureCoding.symbols = decide, symbols
    return recorded, sizes


def price(recorded: list[list[tuple]], table_scales: np.ndarray, slices: tuple[float, int], weight_grid: int,
          tolerance: float, components: int) -> dict:
    """Information and side-stream bytes of every image under one setting, and the decisions the guard pins."""
    tables, scale_table = tables_from_arrays(gaussian_tables(table_scales, fraction_bins(table_scales, *slices)))
    tables = MixtureTables(tables)
    guard = MixtureGuard(scale_table, tolerance, components, weight_grid)
    information, side, pinned = [], [], np.zeros(3, np.int64)
    for passes in recorded:
        bits = side_bits = 0.0
        for weights, means, scales, symbols in passes:
            decided = guard.decide(weights, means, scales, pin_near=True)
            size = weights.shape[1]
            near = np.sort(decided.near)
            bits += tables.information_bits(symbols, decided)
            side_bits += side_stream_bits(near, guard.kinds * size)
            component = near[near < 2 * components * size] % (2 * size)  # each component: scales, then means
            pinned += [np.sum(component < size), np.sum(component >= size), np.sum(near >= 2 * components * size)]
        information.append(bits / 8)
        side.append(side_bits / 8)
    return {"fraction_slices": list(slices), "weight_grid": weight_grid,
            "information_bytes": [round(b, 1) for b in information], "side_stream_bytes": [round(b, 1) for b in side],
            "pinned": dict(zip(("scales", "means", "weights"), pinned.tolist(), strict=True))}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("images", type=Path)
    parser.add_argument("--bundle", required=True)
    parser.add_argument("--every", type=int, default=1)
    parser.add_argument("--slices", default="8:64,2:8")
    parser.add_argument("--weight-grids", default="61,31")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)

    codec = Codec.open(args.bundle, backend="onnxruntime")
    manifest = codec.bundle.manifest
    if manifest.schedule.components < 2:
        parser.error(f"{args.bundle} codes one Gaussian per element, not a mixture")
    images = list_images(args.images)[:: args.every]
    recorded, sizes = record_passes(codec, images)
    table_scales = codec.bundle.scale_table.scales
    slices = [(float(per_scale), int(most)) for per_scale, most in (s.split(":") for s in args.slices.split(","))]
    settings = [(s, int(grid)) for s in slices for grid in args.weight_grids.split(",")]
    results = []
    for slices, grid in tqdm(settings, desc="settings"):
        result = price(recorded, table_scales, slices, grid, manifest.guard_tolerance, manifest.schedule.components)
        coded = sum(result["information_bytes"]) + sum(result["side_stream_bytes"])
        result.update(coded_bytes=round(coded), side_share=round(sum(result["side_stream_bytes"]) / coded, 4))
        results.append(result)
        print(f"slices {slices[0]:g}/σ ≤ {slices[1]:2d}, weights /{grid:2d}: {coded:9,.0f} B coded, "
              f"side streams {100 * result['side_share']:.1f} %, pinned {result['pinned']}")
    bundle_setting = {"weight_grid": manifest.weight_grid,
                      "fraction_bins": codec.bundle.scale_table.fraction_bins.tolist()}
    save_report("mixture_guard_cost.py", argv, args.out, images=dataset_names(args.images, images),
                codec=manifest.codec, bundle_setting=bundle_setting, tolerance=manifest.guard_tolerance,
                file_bytes=sizes, results=results)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
