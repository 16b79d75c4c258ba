"""Entroformer decoding on a Kodak-size image: time per serial step, totals, peak memory, cache exactness.

For each variant a full-size model with random weights (or a checkpoint) is
exported for one bucket; an image is compressed and decompressed through the
licrt CLI on ONNX Runtime in separate processes (wall time and peak RSS from
GNU time); the serial step graph is timed alone, at the first and at the last
position, and profiled (ONNX Runtime's kernel time per operator type); and its
cached parameters are compared with a full causal recompute in PyTorch
(teacher forcing on the decoded ŷ).

    python bench/entroformer_decode.py --image kodak/kodim23.png --shape 512x768 \
        --out bench/results/entroformer-decode-cpu.json
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import onnxruntime
import torch

from licrt.export import registry
from licrt.export.bundle_writer import write_bundle
from licrt.export.cli import parse_shape
from licrt.export.entroformer.model import quantize
from licrt.runtime.backends import open_backend
from licrt.runtime.backends.onnxruntime import OnnxRuntimeBackend
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


def step_feed(bundle: Bundle, position: int) -> dict[str, np.ndarray]:
    """Random inputs of the serial step graph at a position (the caches' contents do not change its work)."""
    graph = bundle.manifest.buckets[0].stages[bundle.manifest.schedule.steps[0].name]
    feed = {spec.name: np.random.default_rng(0).standard_normal(spec.shape).astype(np.float32)
            for spec in graph.inputs if spec.dtype == "float32"}
    return {**feed, "position": np.array([position])}


def step_seconds(bundle: Bundle, position: int, repeats: int = 50) -> float:
    """Mean wall time of one run of the serial step graph at a position."""
    step = bundle.manifest.schedule.steps[0]
    runner = open_backend("onnxruntime").load(bundle, step.name, bundle.manifest.buckets[0].stages[step.name])
    feed = step_feed(bundle, position)
    runner.run(feed)
    started = time.perf_counter()
    for _ in range(repeats):
        runner.run(feed)
    return (time.perf_counter() - started) / repeats


def step_profile(bundle: Bundle, position: int, repeats: int = 20) -> dict[str, float]:
    """Where a step's time goes: ONNX Runtime's kernel time per operator type, as shares (largest first)."""
    step = bundle.manifest.schedule.steps[0]
    graph = bundle.manifest.buckets[0].stages[step.name]
    options = OnnxRuntimeBackend().session_options(bundle)
    options.enable_profiling = True
    options.profile_file_prefix = str(Path(tempfile.mkdtemp()) / "step")
    session = onnxruntime.InferenceSession(bundle.path(graph.file).read_bytes(), options)
    feed = step_feed(bundle, position)
    for _ in range(repeats):
        session.run(None, feed)
    trace = Path(session.end_profiling())
    kernels = defaultdict(float)
    for event in json.loads(trace.read_text()):
        if event.get("cat") == "Node" and event["name"].endswith("_kernel_time"):
            kernels[event["args"]["op_name"]] += event["dur"]
    shutil.rmtree(trace.parent)
    total = sum(kernels.values())
    return {op: time_us / total for op, time_us in sorted(kernels.items(), key=lambda item: -item[1])}


def measure(codec_id: str, shape: tuple[int, int], image_path: Path, folder: Path) -> dict:
    torch.manual_seed(0)
    model = registry.build(codec_id).eval()
    started = time.perf_counter()
    write_bundle(model, [shape], folder / codec_id, progress=False)
    export_seconds = time.perf_counter() - started
    coded, decoded = folder / f"{codec_id}.lic", folder / f"{codec_id}.png"
    bundle_args = ["--bundle", str(folder / codec_id), "--backend", "onnxruntime"]
    compress = timed(["licrt", "compress", str(image_path), str(coded), *bundle_args])
    decompress = timed(["licrt", "decompress", str(coded), str(decoded), *bundle_args])
    bundle = Bundle.open(folder / codec_id)
    result = {"export_seconds": export_seconds, "bytes": coded.stat().st_size, "compress": compress,
              "decompress": decompress}
    if bundle.manifest.schedule.steps[0].raster:
        height, width = bundle.manifest.buckets[0].stages["g_s"].inputs[0].shape[2:]
        result["steps"] = height * width
        result["step_seconds"] = step_seconds(bundle, height * width - 1)
        result["step_seconds_at_position_1"] = step_seconds(bundle, 1)
        result["step_kernel_time_shares"] = step_profile(bundle, height * width - 1)
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
    save_report("entroformer_decode.py", argv, args.out, weights="random (torch.manual_seed(0)), full size",
                results=results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
