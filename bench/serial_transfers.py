"""Serial decoding with its state on the backend's device: bytes moved between host and device per raster step.

A serial (raster) context step runs once per latent position. Through
:meth:`StageRunner.run` every run sends all its inputs (ẑ's hyper features,
ŷ, both key/value caches) and returns all its outputs; with the state held
(:meth:`StageRunner.hold`, what the scheduler does) a run sends the position
and the ŷ values decoded since the last one and returns the entropy
parameters, and the cache rows are stored on the device. Both ways are run
here on the same bundle and backend: ``held`` decodes real files, ``run``
repeats the step through ``run()`` with the same shapes.

Example::

    python bench/serial_transfers.py ../shared/data/kodak --count 2 --bundle serial-small-256 \\
        --backends onnxruntime,torch --out bench/results/serial-transfers.json
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from PIL import Image

from licrt.runtime import Codec
from licrt.runtime.backends.base import Backend, StageRunner
from licrt.runtime.bundle import Bundle
from licrt.runtime.images import list_images
from licrt.runtime.manifest import StageGraph
from licrt.runtime.schedule import RASTER_POSITION

from cross_backend import backend as make_backend  # sibling scripts: python puts bench/ on the path
from report import dataset_names, save_report


class Keeping(Backend):
    """backend, remembering the runners it hands the scheduler (they run unwrapped)."""

    name = "keeping"

    def __init__(self, backend: Backend):
        self.backend = backend
        self.runners: list[tuple[str, StageRunner]] = []

    @property
    def profile(self) -> str:
        return self.backend.profile

    def load(self, bundle, name: str, graph: StageGraph) -> StageRunner:
        runner = self.backend.load(bundle, name, graph)
        self.runners.append((name, runner))
        return runner


def through_run(runner: StageRunner, graph: StageGraph, steps: int) -> dict:
    """Bytes and seconds per step when every step goes through ``run()``."""
    feed = {spec.name: np.zeros(spec.shape, np.dtype(spec.dtype)) for spec in graph.inputs}
    start = time.perf_counter()
    for position in range(steps):
        runner.run({**feed, RASTER_POSITION: np.array([position])})
    seconds = time.perf_counter() - start
    return {"to_device_bytes": runner.transfers.to_device / steps, "to_host_bytes": runner.transfers.to_host / steps,
            "ms": 1e3 * seconds / steps}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("images", type=Path)
    parser.add_argument("--count", type=int, default=1, help="the first N images, center-cropped to the bucket")
    parser.add_argument("--bundle", type=Path, required=True, help="a serial (raster) bundle with one bucket")
    parser.add_argument("--backends", default="onnxruntime")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    bundle = Bundle.open(args.bundle)
    (bucket,) = bundle.manifest.buckets
    (step,) = [s for s in bundle.manifest.schedule.steps if s.raster]
    paths = list_images(args.images)[: args.count]
    images = []
    for path in paths:
        image = np.asarray(Image.open(path).convert("RGB"))
        top, left = (image.shape[0] - bucket.height) // 2, (image.shape[1] - bucket.width) // 2
        images.append(image[top: top + bucket.height, left: left + bucket.width])
    rows = []
    for name in args.backends.split(","):
        keeping = Keeping(make_backend(name))
        codec = Codec(bundle, keeping)
        files = [codec.compress(image) for image in images]  # also loads the runners and warms them up
        before = moved(keeping, step.name)
        start = time.perf_counter()
        for data in files:
            codec.decompress(data)
        seconds = time.perf_counter() - start
        after = moved(keeping, step.name)
        graph = next(runner.graph for stage, runner in keeping.runners if stage == step.name)
        steps = len(files) * bucket_positions(graph)
        once = sum(spec.elements * np.dtype(spec.dtype).itemsize for spec in graph.inputs
                   if spec.name != RASTER_POSITION)  # held once per image
        held = {"to_device_bytes_once_per_image": once,
                "to_device_bytes": (after[0] - before[0] - once * len(files)) / steps,
                "to_host_bytes": (after[1] - before[1]) / steps,
                "decode_ms_per_step_all_stages": 1e3 * seconds / steps}
        plain = through_run(keeping.backend.load(bundle, step.name, graph), graph, min(steps, 64))
        rows.append({"backend": keeping.profile, "steps_per_image": steps // len(files), "held": held, "run": plain,
                     "to_device_ratio": plain["to_device_bytes"] / held["to_device_bytes"]})
        print(rows[-1], flush=True)
    save_report("serial_transfers.py", argv, args.out, bundle=args.bundle.name,
                images=dataset_names(args.images, paths), raster_step=step.name,
                inputs={spec.name: [spec.dtype, list(spec.shape)] for spec in graph.inputs}, backends=rows)
    return 0


def moved(keeping: Keeping, stage: str) -> tuple[int, int]:
    """Bytes the stage's runners moved so far: to the device, to the host."""
    runners = [runner for name, runner in keeping.runners if name == stage]
    return sum(r.transfers.to_device for r in runners), sum(r.transfers.to_host for r in runners)


def bucket_positions(graph: StageGraph) -> int:
    """Latent positions of the bucket: the y_hat input's height × width."""
    (y_hat,) = [spec for spec in graph.inputs if spec.name == "y_hat"]
    return y_hat.shape[2] * y_hat.shape[3]


if __name__ == "__main__":
    raise SystemExit(main())
