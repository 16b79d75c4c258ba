"""What the entropy-parameter path would ask of the guard in float16 or INT8, and what the guard would cost.

Every entropy-path stage of a bundle (h_s and each context step) is run on
its real inputs (captured through the float32 pipeline) in float32, float16
and INT8 (activation ranges from the same inputs, every weighted op
quantised). The relative difference of its outputs, |a − b| / |b|, is the
ε the guard would have to cover for files to cross between that precision
and float32; the share of values beyond the largest ε a manifest allows
(1e-3) is what no guard setting covers. The guard's cost at an ε is measured by compressing the images
with the bundle's ε set to it (manifests allow up to 1e-3): side streams in
% of the files.

Example::

    python bench/entropy_path_precision.py ../shared/data/kodak --count 8 \\
        --out bench/results/entropy-path-precision.json
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
from pathlib import Path

import numpy as np

from licrt.calibration.capture import capture_feeds
from licrt.calibration.graph_precision import activation_ranges, quantize_int8, run_on_cpu, to_fp16
from licrt.calibration.policies import FP32_OPS, INT8_OPS
from licrt.export.weights import load_graph
from licrt.runtime import Codec
from licrt.runtime.bundle import DEFAULT_BUNDLE, MANIFEST, Bundle
from licrt.runtime.images import list_images
from licrt.runtime.manifest import FREE_STAGES, MAX_GUARD_EPSILON

from report import dataset_names, save_report  # a sibling script: python puts bench/ on the path


def relative_differences(bundle: Bundle, images: list[Path]) -> dict:
    """Per precision and stage, the median and 99th percentile of |converted − float32| / |float32| over every
    output value, and the share of values beyond the largest ε a manifest allows."""
    level = bundle.manifest.default_level
    stages = [name for name in bundle.manifest.buckets[0].stages if name not in FREE_STAGES]
    feeds = capture_feeds(bundle, images, stages).feeds
    result: dict = {"fp16": {}, "int8": {}}
    for stage in stages:
        differences = {"fp16": [], "int8": []}
        for bucket in bundle.manifest.buckets:
            runs = feeds.get((level, stage, bucket.name))
            if not runs:
                continue
            model = load_graph(bundle.at_level(level), bucket.stages[stage])
            converted = {"fp16": to_fp16(model, FP32_OPS),
                         "int8": quantize_int8(model, activation_ranges(model, runs, INT8_OPS), INT8_OPS)}
            reference = run_on_cpu(model, runs)
            for precision, graph in converted.items():
                for expected, actual in zip(reference, run_on_cpu(graph, runs), strict=True):
                    for b, a in zip(expected, actual, strict=True):
                        if np.issubdtype(b.dtype, np.floating):
                            differences[precision].append((np.abs(a - b) / np.maximum(np.abs(b), 1e-12)).ravel())
        for precision, parts in differences.items():
            values = np.concatenate(parts)
            result[precision][stage] = {"median": float(np.median(values)), "p99": float(np.quantile(values, 0.99)),
                                        "beyond_max_epsilon": float(np.mean(values > MAX_GUARD_EPSILON))}
    return result


def guard_cost(bundle: Bundle, images: list[Path], epsilons: list[float]) -> list[dict]:
    """Side streams and file size with the bundle's guard at each ε."""
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for epsilon in epsilons:
            root = Path(folder) / f"eps-{epsilon:g}"
            shutil.copytree(bundle.root, root)
            manifest = json.loads((root / MANIFEST).read_text())
            manifest["entropy"]["guard"]["epsilon"] = epsilon
            (root / MANIFEST).write_text(json.dumps(manifest))
            codec = Codec.open(root, backend="onnxruntime")
            sizes, side = 0, 0.0
            for image in images:
                data = codec.compress(image)
                sizes += len(data)
                side += codec.inspect(data).side_bits / 8
            rows.append({"epsilon": epsilon, "bytes": sizes, "side_stream_bytes": side,
                         "side_streams_percent_of_file": 100 * side / sizes})
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("images", type=Path)
    parser.add_argument("--bundle", type=Path, default=DEFAULT_BUNDLE)
    parser.add_argument("--count", type=int, default=8)
    parser.add_argument("--epsilons", default=f"1e-5,1e-4,{MAX_GUARD_EPSILON:g}")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    bundle = Bundle.open(args.bundle)
    images = list_images(args.images)[: args.count]
    save_report("entropy_path_precision.py", argv, args.out,
                bundle="default" if args.bundle == DEFAULT_BUNDLE else args.bundle.name,
                level=bundle.manifest.levels[bundle.manifest.default_level].name,
                images=dataset_names(args.images, images),
                relative_difference=relative_differences(bundle, images),
                guard=guard_cost(bundle, images, [float(e) for e in args.epsilons.split(",")]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
