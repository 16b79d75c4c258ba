"""Photos as they come, through ``licrt compress`` / ``decompress`` as a user runs them: what comes back.

From one photo (a 512×768 crop) five files are made the way cameras and
editors write them: a phone's JPEG whose pixels lie sideways with EXIF
orientation 6 (rotate 90° clockwise to display), an RGBA PNG with an opaque
alpha channel, a gray PNG, a 16-bit RGB PNG and a PNG with an ICC profile.
Each goes through the ``licrt`` command with the default bundle; the report
gives the shapes and Pillow modes, the PSNR of what came back against the
image as it should display (8-bit), whether the ICC profile came back, and
a side-by-side sheet (input as displayed | decoded).

Example::

    python bench/photos_as_they_come.py ../shared/data/kodak/kodim23.png \\
        --out bench/results/photos-as-they-come.json --sheet bench/results/photos-as-they-come.png
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import imagecodecs
import numpy as np
from PIL import Image, ImageCms, ImageDraw

from licrt.evaluation.metrics import psnr
from licrt.runtime.images import ORIENTATION

from report import save_report  # a sibling script: python puts bench/ on the path


def variants(upright: np.ndarray, folder: Path) -> dict[str, tuple[Path, np.ndarray]]:
    """File → (path, the 8-bit image it should come back as: RGB, or gray for a gray input)."""
    files = {}
    phone = folder / "phone.jpg"
    exif = Image.Exif()
    exif[ORIENTATION] = 6  # stored pixels are the upright image turned 90° counter-clockwise
    Image.fromarray(np.ascontiguousarray(np.rot90(upright, 1))).save(phone, quality=95, exif=exif.tobytes())
    files["phone JPEG, EXIF orientation 6"] = phone, upright
    opaque = folder / "opaque.png"
    Image.fromarray(np.dstack([upright, np.full(upright.shape[:2], 255, np.uint8)]), "RGBA").save(opaque)
    files["RGBA PNG, opaque"] = opaque, upright
    gray = folder / "gray.png"
    luma = np.asarray(Image.fromarray(upright).convert("L"))
    Image.fromarray(luma).save(gray)
    files["gray PNG"] = gray, luma
    deep = folder / "deep.png"
    samples = upright.astype(np.uint16) * 257  # 16 bits whose high byte is the 8-bit image
    deep.write_bytes(imagecodecs.png_encode(samples))
    files["16-bit RGB PNG"] = deep, upright
    tagged = folder / "icc.png"
    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    Image.fromarray(upright).save(tagged, icc_profile=srgb)
    files["PNG with an sRGB ICC profile"] = tagged, upright
    return files


def licrt(*arguments) -> None:
    subprocess.run([sys.executable, "-m", "licrt.runtime.cli", *map(str, arguments)], check=True,
                   capture_output=True)


def sheet(rows: list[tuple[str, np.ndarray, np.ndarray]], path: Path, height: int = 240) -> None:
    """Input as displayed | decoded, one row per file, labelled."""
    def scaled(image):
        return Image.fromarray(image).resize((round(image.shape[1] * height / image.shape[0]), height))

    pictures = [(label, scaled(a), scaled(b)) for label, a, b in rows]
    width = max(a.width + b.width for _, a, b in pictures) + 30
    canvas = Image.new("RGB", (width, len(rows) * (height + 26) + 4), "white")
    draw = ImageDraw.Draw(canvas)
    for index, (label, before, after) in enumerate(pictures):
        top = index * (height + 26) + 22
        draw.text((10, top - 18), f"{label}: input as displayed | decoded", fill="black")
        canvas.paste(before, (10, top))
        canvas.paste(after, (20 + before.width, top))
    canvas.save(path, optimize=True)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("photo", type=Path)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--sheet", type=Path, required=True)
    args = parser.parse_args(argv)
    photo = np.asarray(Image.open(args.photo).convert("RGB"))
    upright = np.ascontiguousarray(np.rot90(photo[:512, :768], -1) if photo.shape[0] < photo.shape[1]
                                   else photo[:768, :512])  # a portrait 768×512 shot
    rows, shown = [], []
    with tempfile.TemporaryDirectory() as folder:
        for label, (path, expected) in variants(upright, Path(folder)).items():
            licrt("compress", path, path.with_suffix(".lic"))
            licrt("decompress", path.with_suffix(".lic"), path.with_suffix(".out.png"))
            with Image.open(path) as given, Image.open(path.with_suffix(".out.png")) as back:
                decoded, pixels = np.asarray(back), back.size[0] * back.size[1]
                icc_in, icc_out = given.info.get("icc_profile"), back.info.get("icc_profile")
                rows.append({"file": label, "input_stored": list(given.size[::-1]), "input_mode": given.mode,
                             "decoded": list(decoded.shape), "decoded_mode": back.mode,
                             "expected": list(expected.shape),
                             "psnr_vs_expected_db": psnr(expected, decoded) if decoded.shape == expected.shape
                             else None,
                             "icc_profile": None if icc_in is None else {"bytes": len(icc_in),
                                                                         "kept": icc_out == icc_in},
                             "bpp": 8 * path.with_suffix(".lic").stat().st_size / pixels})
            shown.append((label, expected, decoded))
            print(rows[-1], flush=True)
    sheet(shown, args.sheet)
    save_report("photos_as_they_come.py", argv, args.out, photo=args.photo.name, sheet=args.sheet.name, files=rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
