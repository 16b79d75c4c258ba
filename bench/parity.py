"""Runtime vs PyTorch parity: pixels, symbols, and file size vs the model's estimate.

Exports a codec (random init or checkpoint) for one bucket, codes images with
the runtime, and compares with the PyTorch reference coder on the same padded
input. Writes one JSON file with the numbers, versions and the command.

    python bench/parity.py s2c-hybrid-s --random-init --shape 256x256 \
        --image tests/data/parrots_256x256.png --out bench/results/parity-s2c-hybrid-s.json
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np
import onnxruntime
import torch

from licrt.export import registry
from licrt.export.bundle_writer import write_bundle
from licrt.export.checkpoint import load_model
from licrt.export.cli import parse_shape
from licrt.runtime.backends import open_backend
from licrt.runtime.bundle import Bundle
from licrt.runtime.codec import Codec
from licrt.runtime.container import Container
from licrt.runtime.images import read_image
from licrt.runtime.scheduler import TileCoder
from licrt.runtime.stages import BucketStages
from licrt.runtime.tiling import pad

from report import save_report, timed_round_trip  # a sibling script: python puts bench/ on the path


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else float(10 * np.log10(255**2 / mse))


def measure(codec: Codec, model, image_path: Path) -> dict:
    bundle = codec.bundle
    image = read_image(image_path)
    height, width = image.shape[:2]
    data, decoded, encode_seconds, decode_seconds = timed_round_trip(codec, image)
    container = Container.from_bytes(data)
    if container.header.sections != 1:
        raise SystemExit(f"{image_path} needs tiles; parity is measured on single-bucket images")
    bucket = bundle.manifest.buckets[container.header.bucket]
    padded = pad(image, bucket.height, bucket.width, bundle.manifest.padding)
    x = padded.transpose(2, 0, 1)[None].astype(np.float32) / np.float32(255)

    reference = model.reference(torch.from_numpy(x))
    expected = np.rint(np.clip(reference.x_hat[0].numpy(), 0, 1) * 255).astype(np.uint8)
    expected = expected.transpose(1, 2, 0)[:height, :width]

    backend = codec.backend
    coder = TileCoder(bundle, BucketStages(bundle, bucket, backend))
    coded = coder.encode(x, estimate=True)
    names = ["z", *(s.name for s in bundle.manifest.schedule.steps)]
    runtime_symbols = [coded_pass.symbols for coded_pass in coded.passes]
    differing = {n: int(np.sum(a != b)) for n, a, b in zip(names, runtime_symbols, reference.symbols, strict=True)}
    model_bits = sum(reference.bits)
    framing = container.framing
    return {
        "image": str(image_path),
        "size": [height, width],
        "bucket": [bucket.height, bucket.width],
        "psnr_runtime_vs_pytorch_db": psnr(decoded, expected),
        "max_abs_pixel_difference": int(np.abs(decoded.astype(int) - expected.astype(int)).max()),
        "symbols_total": int(sum(s.size for s in reference.symbols)),
        "symbols_differing": sum(differing.values()),
        "symbols_differing_per_pass": {k: v for k, v in differing.items() if v},
        "file_bytes": len(data),
        "framing_bytes": framing,
        "coded_bytes": len(data) - framing,
        "model_estimate_bytes": model_bits / 8,
        "table_estimate_bytes": sum(p.bits + p.side_bits for p in coded.passes) / 8,
        "coded_vs_model_estimate_percent": 100 * ((len(data) - framing) / (model_bits / 8) - 1),
        "deterministic": codec.compress(image) == data,
        "encode_seconds": encode_seconds,
        "decode_seconds": decode_seconds,
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("codec")
    weights = parser.add_mutually_exclusive_group(required=True)
    weights.add_argument("--checkpoint", type=Path)
    weights.add_argument("--random-init", action="store_true")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--shape", type=parse_shape, required=True)
    parser.add_argument("--image", type=Path, action="append", required=True)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)

    if args.checkpoint:
        model = load_model(args.checkpoint, args.codec)
    else:
        torch.manual_seed(args.seed)
        model = registry.build(args.codec)
    model.eval()
    with tempfile.TemporaryDirectory() as folder:
        write_bundle(model, [args.shape], Path(folder) / "bundle")
        codec = Codec(Bundle.open(Path(folder) / "bundle"), open_backend("onnxruntime"))
        results = [measure(codec, model, path) for path in args.image]
    save_report("parity.py", argv, args.out,
                versions={"torch": torch.__version__, "onnxruntime": onnxruntime.__version__, "numpy": np.__version__},
                backend_profile=codec.backend.profile, results=results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
