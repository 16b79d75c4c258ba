"""Which ONNX Runtime settings change the floats a bundle's stage graphs compute.

Encodes one image with the reference settings while recording every stage's
first input, then reruns each stage on exactly those inputs under other thread
counts and graph optimisation levels, and reports the largest difference per
stage. A setting that changes no bit need not be part of a backend's profile
(the string a file records about the floats that encoded it).

    python bench/float_profile.py kodim01.png --out bench/results/float-profile.json [--bundle DIR]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from report import save_report  # sibling scripts: python puts bench/ on the path

from licrt.runtime import Bundle, Codec
from licrt.runtime.backends.onnxruntime import OnnxRuntimeBackend
from licrt.runtime.bundle import DEFAULT_BUNDLE
from licrt.runtime.images import read_image
from licrt.runtime.tiling import choose_grid
from licrt.runtime.backends.watched import WatchedBackend

SETTINGS = {
    "threads=1 opt=all": {"threads": 1, "graph_optimization": "all"},
    "threads=2 opt=all": {"threads": 2, "graph_optimization": "all"},
    "threads=4 opt=all": {"threads": 4, "graph_optimization": "all"},
    "threads=2 opt=extended": {"threads": 2, "graph_optimization": "extended"},
    "threads=2 opt=basic": {"threads": 2, "graph_optimization": "basic"},
    "threads=2 opt=disabled": {"threads": 2, "graph_optimization": "disabled"},
}
REFERENCE = "threads=1 opt=all"


def recorded_feeds(bundle: Bundle, image: np.ndarray) -> dict[str, dict[str, np.ndarray]]:
    """Every stage's first input while the reference settings encode and decode the image."""
    feeds: dict[str, dict[str, np.ndarray]] = {}

    def record(stage, feed, run):
        feeds.setdefault(stage, {k: v.copy() for k, v in feed.items()})
        return run(feed)

    reference = OnnxRuntimeBackend(providers=["CPUExecutionProvider"], **SETTINGS[REFERENCE])
    codec = Codec(bundle, WatchedBackend(reference, record))
    codec.decompress(codec.compress(image))
    return feeds


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("image", type=Path)
    parser.add_argument("--bundle", type=Path, help="default: licrt's default bundle")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    bundle = Bundle.open(args.bundle or DEFAULT_BUNDLE)
    image = read_image(args.image)
    grid = choose_grid(*image.shape[:2], bundle.bucket_shapes)
    if grid.rows * grid.cols != 1:
        parser.error("pick an image that fits one bucket")
    bucket = bundle.manifest.buckets[grid.bucket]
    feeds = recorded_feeds(bundle, image)
    outputs = {}
    for label, settings in SETTINGS.items():
        backend = OnnxRuntimeBackend(providers=["CPUExecutionProvider"], **settings)
        outputs[label] = {
            stage: backend.load(bundle, stage, bucket.stages[stage]).run(feed)
            for stage, feed in feeds.items()
        }
        print(label, flush=True)
    differences = {}
    for label, stages in outputs.items():
        differences[label] = {
            stage: max(float(np.max(np.abs(value - outputs[REFERENCE][stage][name])))
                       for name, value in result.items())
            for stage, result in stages.items()
        }
    save_report("float_profile.py", argv, args.out,
                bundle=str(args.bundle or "default"), image=str(args.image), bucket=bucket.name, reference=REFERENCE,
                bit_identical={label: all(v == 0 for v in stages.values()) for label, stages in differences.items()},
                max_abs_difference=differences)
    return 0


if __name__ == "__main__":
    sys.exit(main())
