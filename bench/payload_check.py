"""What the decoder's payload check costs: re-encoding each tile's symbols, as a share of decoding.

A payload is accepted only if it is exactly what the encoder writes for what
it decodes to: the decoder writes that to an *echo* range encoder as it
decodes, from the very tables it decodes with. This times every write to the
echo inside real decodes of a folder of images with a bundle.

    python bench/payload_check.py kodak/ --limit 6 --out bench/results/payload-check.json [--bundle DIR]
"""

from __future__ import annotations

import argparse
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import constriction

from report import save_report  # a sibling script: python puts bench/ on the path

from licrt.runtime import Codec
from licrt.runtime.images import list_images


@contextmanager
def timed_echo(spent: list[float]):
    """Make every range encoder made meanwhile (a decoder's echo) add the time written to it to spent[0]."""
    range_encoder = constriction.stream.queue.RangeEncoder

    class TimedEncoder:
        def __init__(self):
            self.encoder = range_encoder()

        def encode(self, *args):
            started = time.perf_counter()
            self.encoder.encode(*args)
            spent[0] += time.perf_counter() - started

        def get_compressed(self):
            return self.encoder.get_compressed()

    constriction.stream.queue.RangeEncoder = TimedEncoder
    try:
        yield
    finally:
        constriction.stream.queue.RangeEncoder = range_encoder


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("images", type=Path)
    parser.add_argument("--bundle", type=Path, help="default: licrt's default bundle")
    parser.add_argument("--limit", type=int, default=6)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    codec = Codec.open(args.bundle, backend="onnxruntime")
    rows = []
    for path in list_images(args.images)[: args.limit]:
        data = codec.compress(path)
        codec.decompress(data)  # warm: every stage loaded
        spent = [0.0]
        with timed_echo(spent):
            started = time.perf_counter()
            codec.decompress(data)
            decode = time.perf_counter() - started
        rows.append({"image": path.name, "bytes": len(data), "decode_seconds": round(decode, 4),
                     "payload_check_seconds": round(spent[0], 4), "share": round(spent[0] / decode, 4)})
        print(rows[-1], flush=True)
    save_report("payload_check.py", argv, args.out, bundle=str(args.bundle or "default"), images=rows,
                mean_share=round(sum(r["share"] for r in rows) / len(rows), 4))
    return 0


if __name__ == "__main__":
    sys.exit(main())
