"""Files crossing between a float32 bundle and its calibration: every image, every level, both ways.

Each image is compressed by one bundle and decompressed by both; a row
records the file size, both decodes' PSNR, or the other bundle's refusal.

Example::

    python bench/precision_crossing.py ../shared/data/kodak --bundle default-int8 \\
        --out bench/results/precision-crossing-int8.json
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from tqdm import tqdm

from licrt.calibration.report import crossings
from licrt.runtime import Codec
from licrt.runtime.bundle import DEFAULT_BUNDLE
from licrt.runtime.images import list_images

from report import dataset_names, save_report  # a sibling script: python puts bench/ on the path


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("images", type=Path)
    parser.add_argument("--reference", type=Path, default=DEFAULT_BUNDLE, help="the float32 bundle")
    parser.add_argument("--bundle", type=Path, required=True, help="its calibration")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    reference, calibrated = Codec.open(args.reference), Codec.open(args.bundle)
    images = list_images(args.images)
    rows = [dataclasses.asdict(crossing) for image in tqdm(images, desc="crossing", unit="image")
            for crossing in crossings(reference, calibrated, image)]
    decoded = [row for row in rows if row["refusal"] is None]
    save_report("precision_crossing.py", argv, args.out,
                reference="default" if args.reference == DEFAULT_BUNDLE else args.reference.name,
                bundle=args.bundle.name, same_contract=reference.bundle.contract == calibrated.bundle.contract,
                images=dataset_names(args.images, images), files=len(rows), decoded_by_the_other=len(decoded),
                refused=len(rows) - len(decoded),
                largest_psnr_difference_db=max((abs(row["other_psnr"] - row["own_psnr"]) for row in decoded),
                                               default=None),
                rows=rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
