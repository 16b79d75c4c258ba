"""Time per stage: compress and decompress images with one backend, warm, and decode the files elsewhere.

For each image: one untimed round (model loading, kernel compilation,
allocator warm-up), then a timed compress and decompress with every stage
run timed on its own (a stage's time includes moving its inputs and outputs
between numpy and the backend, as the scheduler does today), and the rest
(entropy coding, the container, the scheduler) as ``other``. Each file is
then decoded by the ``--decode-with`` backends: whether it decodes, and the
PSNR of their image against the encoder's own (null: identical; the symbols
are the encoder's either way, or decoding stops).

Example (Entroformer on a GPU through the torch backend)::

    python bench/stage_times.py ../shared/data/kodak --count 2 --bundle entroformer-small-512x768 \\
        --backend torch --decode-with onnxruntime \\
        --out bench/results/stage-times-entroformer-small-h200.json
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from licrt.runtime import Codec
from licrt.runtime.backends import open_backend
from licrt.runtime.bundle import DEFAULT_BUNDLE, Bundle
from licrt.runtime.errors import BitstreamError
from licrt.evaluation.metrics import psnr
from licrt.runtime.images import list_images
from licrt.runtime.backends.watched import WatchedBackend
from licrt.runtime.benchmark import StageClock

from cross_backend import backend as make_backend  # sibling scripts: python puts bench/ on the path
from report import dataset_names, save_report


def timed(function, *args):
    start = time.perf_counter()
    result = function(*args)
    return result, time.perf_counter() - start


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("images", type=Path, help="folder of images (e.g. Kodak)")
    parser.add_argument("--count", type=int, default=1, help="the first N images")
    parser.add_argument("--bundle", type=Path, help="default: licrt's default bundle")
    parser.add_argument("--backend", default="onnxruntime", help="onnxruntime, torch, torch-tf32, ...")
    parser.add_argument("--decode-with", default="", help="comma-separated backends that decode the files too")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    bundle = Bundle.open(args.bundle or DEFAULT_BUNDLE)
    images = list_images(args.images)[: args.count]
    clock = StageClock()
    inner = make_backend(args.backend)
    codec = Codec(bundle, WatchedBackend(inner, clock.watch))
    others = {name: Codec(bundle, open_backend(name)) for name in args.decode_with.split(",") if name}
    rows = []
    for path in images:
        codec.decompress(codec.compress(path))  # warm-up
        clock.take(0.0)
        data, seconds = timed(codec.compress, path)
        compress = clock.take(seconds)
        image, seconds = timed(codec.decompress, data)
        decompress = clock.take(seconds)
        elsewhere = {}
        for name, other in others.items():
            try:
                value = psnr(image, other.decompress(data))
                elsewhere[name] = {"decoded": True, "psnr_vs_encoder_db": None if value == float("inf") else value}
            except BitstreamError as error:
                elsewhere[name] = {"decoded": False, "error": str(error)}
        rows.append({"image": dataset_names(args.images, [path])[0], "bytes": len(data),
                     "bpp": 8 * len(data) / (image.shape[0] * image.shape[1]),
                     "compress": compress, "decompress": decompress, "decoded_by": elsewhere})
        print(rows[-1], flush=True)
    save_report("stage_times.py", argv, args.out, backend=inner.profile,
                bundle="default" if args.bundle is None else args.bundle.name, images=rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
