"""Decode anywhere: files encoded on one backend, decoded on every other, with the guard on and off.

Two tables for one bundle, written as JSON:

* ``pairs``: every (encoding backend, decoding backend): files decoded, PSNR of
  the reconstruction against the encoding backend's own decode, and what the
  guard's side streams cost (bits per pixel and share of the file). A decoded
  file's symbols and coding decisions are the encoder's: the per-pass digests
  and the re-encoding check say so, or decoding stops.
* ``fault_injection``: files encoded with ONNX Runtime (what they cost: side
  streams, and coded data against −Σ log2 p plus side streams), decoded
  (symbols only) by ONNX Runtime with every float it computes nudged by up to
  ε_inj relative.

Example::

    python bench/cross_backend.py ../shared/data/kodak --backends onnxruntime,onnxruntime-noopt,torch \\
        --every 3 --out bench/results/cross-backend-default.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

from licrt.runtime import Codec
from licrt.runtime.backends import open_backend
from licrt.runtime.backends.perturbed import PerturbedBackend
from licrt.runtime.bundle import DEFAULT_BUNDLE, Bundle
from licrt.runtime.errors import BitstreamError
from licrt.evaluation.metrics import psnr
from licrt.runtime.images import list_images

from report import dataset_names, save_report  # a sibling script: python puts bench/ on the path


def backend(name: str):
    """A backend by name; ``torch-tf32`` is the torch backend on CUDA with TF32 allowed."""
    if name in ("torch", "torch-tf32"):
        from licrt.export.torch_backend import TorchBackend

        return TorchBackend(tf32=name == "torch-tf32")
    return open_backend(name)


def pair_table(bundle: Bundle, images: list[Path], backends: list[str], guard: bool) -> list[dict]:
    codecs = {name: Codec(bundle, backend(name), guard=guard) for name in backends}
    rows = []
    for encoder_name, encoder in codecs.items():
        files = [encoder.compress(image) for image in tqdm(images, desc=f"encode {encoder_name}")]
        references = [encoder.decompress(data) for data in files]
        for decoder_name, decoder in codecs.items():
            decoded, psnrs = 0, []
            for data, reference in zip(tqdm(files, desc=f"  decode {decoder_name}"), references, strict=True):
                try:
                    image = reference if decoder is encoder else decoder.decompress(data)
                except BitstreamError:
                    continue
                decoded += 1
                psnrs.append(psnr(reference, image))
            pixels = sum(int(np.prod(r.shape[:2])) for r in references)
            side = sum(encoder.inspect(data).side_bits for data in files) if guard else 0.0
            rows.append({
                "encoder": encoder_name,
                "decoder": decoder_name,
                "decoded": decoded,
                "files": len(files),
                # None where every decoded image is identical to the encoder's own decode.
                "min_psnr_vs_same_backend_db": None if not psnrs or min(psnrs) == np.inf else min(psnrs),
                "side_stream_bpp": side / pixels,
                "side_stream_percent_of_file": 100 * side / (8 * sum(map(len, files))),
                "bpp": 8 * sum(map(len, files)) / pixels,
            })
            print(json.dumps(rows[-1]), flush=True)
    return rows


def fault_table(bundle: Bundle, images: list[Path], epsilons: list[float], guard: bool) -> dict:
    reference = open_backend("onnxruntime")
    encoder = Codec(bundle, reference, guard=guard)
    files = [encoder.compress(image) for image in tqdm(images, desc=f"encode (guard {'on' if guard else 'off'})")]
    reports = [encoder.inspect(data) for data in files]
    file_bits = 8 * sum(map(len, files))
    pixels = sum(report.grid.height * report.grid.width for report in reports)
    side = sum(report.side_bits for report in reports)
    estimate = sum(sum(report.bits_per_pass.values()) for report in reports) + side
    coded = file_bits - 8 * sum(report.container.framing for report in reports)
    print(f"{len(files)} files: {file_bits / pixels:.4f} bpp, side streams {100 * side / file_bits:.3f} % of them")
    costs = {"files": len(files), "bpp": file_bits / pixels, "side_stream_percent_of_file": 100 * side / file_bits,
             "side_stream_bpp": side / pixels, "coded_data_vs_estimate_percent": 100 * (coded / estimate - 1)}
    rows = []
    for epsilon in epsilons:
        decoder = Codec(bundle, PerturbedBackend(reference, epsilon), guard=guard)
        decoded = 0
        for data in tqdm(files, desc=f"  ε_inj {epsilon:g}"):
            try:
                decoder.inspect(data)
                decoded += 1
            except BitstreamError:
                pass
        rows.append({"epsilon_injected": epsilon, "decoded": decoded, "files": len(files)})
        print(json.dumps(rows[-1]), flush=True)
    return {"cost": costs, "decoded": rows}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("images", type=Path, help="folder of images (e.g. Kodak)")
    parser.add_argument("--bundle", type=Path, help="default: licrt's default bundle")
    parser.add_argument("--backends", default="onnxruntime,onnxruntime-noopt,torch")
    parser.add_argument("--every", type=int, default=1, help="cross-backend pairs on every N-th image only")
    parser.add_argument("--fault-every", type=int, default=1, help="fault injection on every N-th image only")
    parser.add_argument("--fault-epsilons", default="3e-6,1e-5,2e-5,5e-5,1e-4",
                        help="comma-separated; empty for none")
    parser.add_argument("--guard", default="on,off", help="guard settings to measure: on, off or both")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    bundle = Bundle.open(args.bundle or DEFAULT_BUNDLE)
    images = list_images(args.images)
    backends = args.backends.split(",")
    epsilons = [float(e) for e in args.fault_epsilons.split(",") if e]
    start = time.perf_counter()
    result = {
        "profiles": {name: backend(name).profile for name in backends},
        "bundle": "default" if args.bundle is None else args.bundle.name,
        "guard": {"epsilon": bundle.manifest.guard_epsilon, "margin": bundle.manifest.guard_margin,
                  "mean_step": bundle.manifest.mean_step, "scales": int(bundle.scale_table.scales.size)},
        "images": dataset_names(args.images, images),
        "pair_images": dataset_names(args.images, images[:: args.every]),
        "fault_images": dataset_names(args.images, images[:: args.fault_every]),
    }
    for setting in args.guard.split(","):
        guard, key = setting == "on", f"guard_{setting}"
        result[key] = {"pairs": pair_table(bundle, images[:: args.every], backends, guard)}
        if epsilons:
            result[key]["fault_injection"] = fault_table(bundle, images[:: args.fault_every], epsilons, guard)
    save_report("cross_backend.py", argv, args.out, **result, seconds=round(time.perf_counter() - start))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
