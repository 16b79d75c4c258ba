"""Peak memory per tile megapixel: ``licrt compress`` and ``licrt decompress`` of images that are one tile each,
every command in a process of its own, on each backend asked for.

Peak resident memory is what the kernel reports for the finished process
(``wait4``), start-up included: what a user's machine must have free. The
images should be exactly one bucket's shape (Kodak's 512×768, a 1088×1920
crop), so that a tile is the image and the memory per tile megapixel of
licrt versions with other tilings compares. ``--licrt DIR`` measures the
licrt package in DIR (a folder holding a checkout named ``licrt``, with its
own default bundle) instead of the one installed.

Example::

    python bench/tile_memory.py ../shared/data/kodak/kodim01.png ../shared/data/wikipedia_photos/006.png@1088x1920 \\
        --backend onnxruntime --backend openvino --label 0.6 --out bench/results/tile-memory/after.json
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

from PIL import Image

from any_size import load  # a sibling script: python puts bench/ on the path
from report import save_report

CLI = "from licrt.runtime.cli import main; raise SystemExit(main())"


def peak_mib(environment: dict, *args: str) -> float:
    """Run the licrt command line with args in a process of its own; its peak resident memory in MiB."""
    process = subprocess.Popen([sys.executable, "-c", CLI, *args], env=environment, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE)
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode:
        raise SystemExit(f"licrt {' '.join(args)} failed: {process.stderr.read().decode().strip()}")
    return usage.ru_maxrss / 1024  # kilobytes on Linux


def checkout(folder: Path) -> dict:
    """The licrt a --licrt folder holds: its version and commit (the folder's path stays out of the report)."""
    package = folder / "licrt"
    version = tomllib.loads((package / "pyproject.toml").read_text())["project"]["version"]
    commit = subprocess.run(["git", "-C", str(package), "rev-parse", "HEAD"], capture_output=True, text=True)
    return {"version": version, "commit": commit.stdout.strip() or None}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("images", nargs="+", help="PATH or PATH@HxW (its top-left crop), one bucket's shape")
    parser.add_argument("--backend", action="append", help="repeatable (default: auto)")
    parser.add_argument("--bundle", help="bundle directory (default: the bundled default model)")
    parser.add_argument("--licrt", type=Path, help="a folder holding the licrt package to measure (default: installed)")
    parser.add_argument("--label", default="", help="what this run measures, e.g. the licrt version")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()

    bundle = ["--bundle", args.bundle] if args.bundle else []
    environment = dict(os.environ)
    if args.licrt:
        environment["PYTHONPATH"] = os.pathsep.join(filter(None, [str(args.licrt.resolve()),
                                                                  environment.get("PYTHONPATH")]))
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        for spec in args.images:
            pixels = load(spec)
            source = Path(scratch, "image.png")
            Image.fromarray(pixels).save(source)
            megapixels = pixels.shape[0] * pixels.shape[1] / 1e6
            for backend in args.backend or ["auto"]:
                coded, decoded = Path(scratch, "image.lic"), Path(scratch, "decoded.png")
                options = ["--force", *bundle, "--backend", backend]
                compress = peak_mib(environment, "compress", *options, str(source), str(coded))
                decompress = peak_mib(environment, "decompress", *options, str(coded), str(decoded))
                rows.append({"image": Path(spec).name, "megapixels": megapixels, "backend": backend,
                             "compress_peak_mib": compress, "decompress_peak_mib": decompress,
                             "mib_per_megapixel": max(compress, decompress) / megapixels})
                print(f"{rows[-1]['image']} {backend}: {compress:.0f} / {decompress:.0f} MiB, "
                      f"{rows[-1]['mib_per_megapixel']:.0f} MiB per MP", file=sys.stderr)
    argv = [("CHECKOUT" if args.licrt and argument == str(args.licrt) else argument) for argument in sys.argv[1:]]
    measured = checkout(args.licrt) if args.licrt else "installed"
    save_report("tile_memory.py", argv, args.out, label=args.label, measured_licrt=measured, images=rows)


if __name__ == "__main__":
    main()
