"""What the decoder's payload check costs: re-encoding each tile's symbols, as a share of decoding.

A payload is accepted only if re-encoding what it decodes to gives it back
byte for byte (``TileCoder._payload``). This times that call inside real
decodes of a folder of images with a bundle, in the same runs as the decodes.

    python bench/payload_check.py kodak/ --limit 6 --out bench/results/payload-check.json [--bundle DIR]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from report import save_report  # a sibling script: python puts bench/ on the path

from licrt.runtime import Codec
from licrt.runtime.images import list_images
from licrt.runtime.scheduler import TileCoder


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("images", type=Path)
    parser.add_argument("--bundle", type=Path, help="default: licrt's default bundle")
    parser.add_argument("--limit", type=int, default=6)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    codec = Codec.open(args.bundle, backend="onnxruntime")
    spent = [0.0]
    payload = TileCoder._payload

    def timed_payload(batches):
        started = time.perf_counter()
        result = payload(batches)
        spent[0] += time.perf_counter() - started
        return result

    rows = []
    for path in list_images(args.images)[: args.limit]:
        data = codec.compress(path)
        codec.decompress(data)  # warm: every stage loaded
        TileCoder._payload = staticmethod(timed_payload)
        spent[0] = 0.0
        started = time.perf_counter()
        codec.decompress(data)
        decode = time.perf_counter() - started
        TileCoder._payload = staticmethod(payload)
        rows.append({"image": path.name, "bytes": len(data), "decode_seconds": round(decode, 4),
                     "payload_check_seconds": round(spent[0], 4), "share": round(spent[0] / decode, 4)})
        print(rows[-1], flush=True)
    save_report("payload_check.py", argv, args.out, bundle=str(args.bundle or "default"), images=rows,
                mean_share=round(sum(r["share"] for r in rows) / len(rows), 4))
    return 0


if __name__ == "__main__":
    sys.exit(main())
