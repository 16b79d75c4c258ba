"""Entroformer decoding on a Kodak-size image: time per serial step, totals, peak memory, cache exactness.

For each variant a full-size model with random weights (or a checkpoint) is
exported for one bucket; an image is compressed and decompressed through the
licrt CLI in separate processes (wall time and peak RSS from GNU time); the
serial step graph is timed alone; and its cached parameters are compared with
a full causal recompute in PyTorch (teacher forcing on the decoded ŷ).

    python bench/entroformer_decode.py --image kodak/kodim23.png --shape 512x768 \
        --out bench/results/entroformer-decode-cpu.json
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime
import torch

from licrt.export import registry
from licrt.export.bundle_writer import write_bundle
from licrt.export.cli import parse_shape
from licrt.export.entroformer.model import quantize
from licrt.runtime.backends import open_backend
from licrt.runtime.bundle import Bundle
from licrt.runtime.images import read_image
from licrt.runtime.tiling import pad

from cli_cost import timed  # sibling scripts: python puts bench/ on the path
from report import save_report


def cached_vs_full(model, bundle: Bundle, x: torch.Tensor) -> float:
    """Max |step-graph parameters − full-recompute parameters| over all positions of x's latent."""
    with torch.no_grad():
        y = model.analysis(x)
        y_hat = quantize(y)
        hyper = model.cit_hd(quantize(model.hyper_analysis(y)))
        scales, means = model.parameters_from(hyper, model.cit_ar(y_hat))
    bucket = bundle.manifest.buckets[0]
    step = bundle.manifest.schedule.steps[0]
    graph = bucket.stages[step.name]
    runner = open_backend("onnxruntime").load(bundle, step.name, graph)
    shapes = {spec.name: spec.shape for spec in graph.inputs}
    caches = {name: np.zeros(shapes[name], np.float32) for name in step.caches}
    feed = {"hyper": hyper.numpy(), "y_hat": y_hat.numpy()}
    width, worst = y_hat.shape[3], 0.0
    for position in range(y_hat.shape[2] * width):
        out = runner.run({**feed, "position": np.array([position]), **caches})
        for name in step.caches:
            caches[name][..., int(out["row_index"][0]), :] = out[f"{name}_row"]
        i, j = divmod(position, width)
        worst = max(worst, float(np.abs(out["means"][0] - means[0, :, i, j].numpy()).max()),
                    float(np.abs(out["scales"][0] - scales[0, :, i, j].numpy()).max()))
    return worst


def step_seconds(bundle: Bundle, repeats: int = 50) -> float:
    """Mean wall time of one run of the serial step graph, caches full."""
    bucket = bundle.manifest.buckets[0]
    step = bundle.manifest.schedule.steps[0]
    graph = bucket.stages[step.name]
    runner = open_backend("onnxruntime").load(bundle, step.name, graph)
    feed = {spec.name: np.random.default_rng(0).standard_normal(spec.shape).astype(np.float32)
            for spec in graph.inputs if spec.dtype == "float32"}
    tokens = bucket.stages["g_s"].inputs[0].shape[2] * bucket.stages["g_s"].inputs[0].shape[3]
    feed["position"] = np.array([tokens - 1])
    runner.run(feed)
    started = time.perf_counter()
    for _ in range(repeats):
        runner.run(feed)
    return (time.perf_counter() - started) / repeats


def measure(codec_id: str, shape: tuple[int, int], image_path: Path, folder: Path) -> dict:
    torch.manual_seed(0)
    model = registry.build(codec_id).eval()
    started = time.perf_counter()
    write_bundle(model, [shape], folder / codec_id, progress=False)
    export_seconds = time.perf_counter() - started
    coded, decoded = folder / f"{codec_id}.lic", folder / f"{codec_id}.png"
    bundle_args = ["--bundle", str(folder / codec_id)]
    compress = timed(["licrt", "compress", str(image_path), str(coded), *bundle_args])
    decompress = timed(["licrt", "decompress", str(coded), str(decoded), *bundle_args])
    bundle = Bundle.open(folder / codec_id)
    result = {"export_seconds": export_seconds, "bytes": coded.stat().st_size, "compress": compress,
              "decompress": decompress}
    if bundle.manifest.schedule.steps[0].raster:
        height, width = bundle.manifest.buckets[0].stages["g_s"].inputs[0].shape[2:]
        result["steps"] = height * width
        result["step_seconds"] = step_seconds(bundle)
        image = pad(read_image(image_path), *shape, bundle.manifest.padding)
        x = torch.from_numpy(image.transpose(2, 0, 1)[None] / np.float32(255)).float()
        result["cached_vs_full_recompute_max_error"] = cached_vs_full(model, bundle, x)
    return result


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image", type=Path, required=True)
    parser.add_argument("--shape", type=parse_shape, required=True, help="the bucket, e.g. 512x768")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as folder:
        results = {codec_id: measure(codec_id, args.shape, args.image, Path(folder))
                   for codec_id in ("entroformer", "entroformer-serial")}
    save_report("entroformer_decode.py", argv, args.out,
                versions={"torch": torch.__version__, "onnxruntime": onnxruntime.__version__},
                weights="random (torch.manual_seed(0)), full size", results=results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
