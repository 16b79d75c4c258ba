"""``licrt``: compress, decompress, inspect and evaluate with a bundle.

Without ``--bundle`` the default bundle shipped with licrt is used. Example::

    licrt compress photo.png photo.lic
    licrt decompress photo.lic photo.png
    licrt info photo.lic
    licrt eval kodak/ --bundle q1 --bundle q2 --bundle q3 --out eval/
    licrt bench kodak/ --count 4 --out bench.json   # every installed backend against PyTorch
    licrt build-engines bundle/   # then: licrt compress --bundle bundle/ --backend tensorrt ...
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from pathlib import Path

from .errors import LicrtError

# Only light imports up here: the heavy ones (numpy, ONNX Runtime, constriction)
# happen inside main(), where Ctrl-C is caught like any other interruption.


class CommandParser(argparse.ArgumentParser):
    """licrt's commands: ``--version``, usage errors in one line (status 2, argparse's) that say where help
    is, and an epilog that may be a function, called only when help is shown (listing codecs imports them)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if " " not in self.prog:  # the command, not its subcommands
            from importlib.metadata import version

            self.add_argument("--version", action="version", version=f"%(prog)s {version('licrt')}")

    def format_help(self) -> str:
        if callable(self.epilog):
            self.epilog = self.epilog()
        return super().format_help()

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _open_codec(args):
    from .codec import Codec
    from .limits import Limits

    limits = Limits(args.max_pixels, args.max_tiles, args.max_region_pixels)
    return Codec.open(args.bundle, backend=args.backend, limits=limits,
                      guard=not getattr(args, "no_guard", False))


def compress(args) -> None:
    from PIL import Image

    from .container import Header
    from .images import check_output, write_atomic

    check_output(args.output, args.input, args.force)
    Image.MAX_IMAGE_PIXELS = None  # licrt holds the image to --max-pixels itself, before decoding its pixels
    codec = _open_codec(args)
    data = codec.compress(args.input, quality=args.quality, progress=True)
    write_atomic(args.output, data)
    header = Header.from_bytes(data)
    print(f"{args.output}: {len(data):,} bytes, {8 * len(data) / (header.height * header.width):.4f} bpp "
          f"({header.width}x{header.height}, quality {header.level + 1} of {len(codec.qualities)}: "
          f"{codec.qualities[header.level]})")


def decompress(args) -> None:
    from .images import check_output, encode_image, image_format, write_atomic

    image_format(args.output)  # an unknown extension fails before any decoding
    check_output(args.output, args.input, args.force)
    photo = _open_codec(args).decompress_photo(args.input, progress=True)
    write_atomic(args.output, encode_image(photo, args.output))
    height, width = photo.pixels.shape[:2]
    print(f"{args.output}: {width}x{height}{' gray' if photo.gray else ''}")


def info(args) -> None:
    from .codec import UNGUARDED, open_compressed

    with open_compressed(args.input) as (_, header, size):
        regions = (f"entropy path in {header.regions[0]}x{header.regions[1]} regions"
                   if header.windowed and header.sections > 1 else "")
        rows = [
            ("file", f"{args.input}"),
            ("size", f"{size:,} bytes, {8 * size / (header.height * header.width):.4f} bpp"),
            ("image", f"{header.width}x{header.height} {'gray' if header.gray else 'RGB'}"
                      + (f", ICC profile {len(header.icc_profile):,} bytes" if header.icc_profile else "")),
            ("grid", f"{header.tile_rows}x{header.tile_cols} {'windows' if header.windowed else 'tiles'}"
                     + (f", {regions}" if regions else "")),
            ("coding contract", header.contract.hex()),
            ("encoder profile", header.profile),
        ]
    codec = _open_codec(args)
    decodes = codec.bundle.contract == header.contract
    level = (f" of {len(codec.qualities)}: {codec.qualities[header.level]}"
             if decodes and header.level < len(codec.qualities) else "")
    rows.insert(-1, ("quality level", f"{header.level + 1}{level}"))
    if not decodes:
        rows.append(("estimate", f"unavailable: {codec.bundle.root} has another coding contract"))
    else:
        report = codec.inspect(args.input)
        manifest = codec.bundle.manifest
        side = report.side_bits / 8
        estimate = sum(report.bits_per_pass.values()) / 8 + side
        coded = size - report.container.framing
        grid = report.grid
        processed = grid.coded_pixels / (header.height * header.width)
        layout = (f"{grid.rows}x{grid.cols} {'windows' if grid.windowed else 'tiles'}, rows "
                  f"{'+'.join(map(str, grid.row_heights))} by columns {'+'.join(map(str, grid.col_widths))} pixels"
                  + (f" overlapping by {grid.overlap}" if grid.windowed else "")
                  + f" ({processed:.2f}× the image's pixels processed)"
                  + (f"; {regions}" if regions else ""))
        rows = [(key, layout if key == "grid" else value) for key, value in rows]
        rows += [
            ("framing", f"{report.container.framing:,} bytes (header and sections)"),
            ("codec", f"{codec.bundle.manifest.codec} ({codec.bundle.root})"),
            ("coded data", f"{coded:,} bytes"),
            ("model estimate", f"{estimate:,.0f} bytes (−Σlog2 p, side streams included); coded data is "
                               f"{100 * (coded / estimate - 1):+.2f} %"),
            ("guard", f"ε = {manifest.guard_epsilon:g} × margin {manifest.guard_margin:g}: side streams "
                      f"{side:,.0f} bytes ({100 * side / size:.2f} % of the file), "
                      f"{report.guarded:,} decisions recorded"
                      + (" (encoded without the guard)" if header.profile.endswith(UNGUARDED) else "")),
        ]
        rows += [
            (f"  {name}", f"{report.bits_per_pass[name] / 8:,.1f} bytes, {report.symbols_per_pass[name]:,} symbols"
                          + (f"; side stream {report.side_bits_per_pass[name] / 8:,.1f} bytes, "
                             f"{report.guarded_per_pass[name]:,} decisions" if name != "z" else ""))
            for name in report.bits_per_pass
        ]
    width = max(len(label) for label, _ in rows)
    for label, value in rows:
        print(f"{label:<{width}}  {value}")


def evaluate(args) -> None:
    import importlib.util

    from .images import list_images

    missing = [name for name in ("imagecodecs", "matplotlib", "scipy") if importlib.util.find_spec(name) is None]
    if missing:
        raise LicrtError(f"licrt eval needs {', '.join(missing)}: pip install 'licrt[eval]'")
    from licrt.evaluation import evaluate as evaluation
    from licrt.evaluation import report
    from licrt.evaluation.anchors import get_anchor

    try:
        anchors = [get_anchor(name) for name in args.anchors.split(",") if name]
    except ValueError as exc:
        raise LicrtError(str(exc)) from None
    images = list_images(args.input)[: args.limit]
    from .codec import Codec

    runs = [(bundle, backend) for bundle in (args.bundle or [None]) for backend in args.backend or ["auto"]]
    codecs = [Codec.open(bundle, backend=backend) for bundle, backend in runs]
    points = evaluation.learned_points(codecs, [backend for _, backend in runs])
    rows = evaluation.evaluate(images, points, anchors, args.out)
    summary = report.write_report(rows, points, anchors, args.input, len(images), args.out,
                                  command=shlex.join(["licrt", *args.argv]))
    for codec, table in summary["bd_rate_percent"].items():
        for anchor, entry in table.items():
            value = entry["psnr"]
            shown = f"n/a: {entry['psnr_unavailable']}" if value is None else f"{value:+.1f} %"
            print(f"BD-rate {codec} vs {anchor} (PSNR): {shown}")
    print(f"wrote {args.out / report.RESULTS}, {args.out / report.SUMMARY}, {args.out / report.PLOT}")


def bench(args) -> None:
    import json

    from .benchmark import Contestant, installed_backends, machine, run_benchmark, table, versions
    from .images import list_images, write_atomic

    images = []
    for path in args.images:
        if not path.exists():
            raise LicrtError(f"{path} does not exist")
        images += list_images(path) if path.is_dir() else [path]
    images = images[: args.count]
    contestants = [Contestant(bundle, backend) for bundle in (args.bundle or [None])
                   for backend in (args.backend or installed_backends())]
    report = {"command": shlex.join(["licrt", *args.argv]), "machine": machine(), "versions": versions(),
              **run_benchmark(contestants, images, args.rounds, args.quality)}
    print(table(report))
    if args.out:
        write_atomic(args.out, (json.dumps(report, indent=1) + "\n").encode())
        print(f"wrote {args.out}")


def calibrate(args) -> None:
    import importlib.util

    from .images import list_images

    missing = [name for name in ("onnx", "onnxconverter_common") if importlib.util.find_spec(name) is None]
    if missing:
        raise LicrtError(f"licrt calibrate needs {', '.join(missing)}: pip install 'licrt[calibration]'")
    from licrt.calibration.calibrate import calibrate_bundle
    from licrt.calibration.policies import POLICIES
    from licrt.calibration.report import crossings

    from .bundle import DEFAULT_BUNDLE, Bundle
    from .codec import Codec

    source = Bundle.open(args.bundle or DEFAULT_BUNDLE)
    images = list_images(args.images)[: args.limit] if args.images else []
    policy = POLICIES[args.policy]
    result = calibrate_bundle(source, args.precision, policy, args.out, images, budget=args.budget,
                              force=args.force)
    calibrated = Bundle.open(args.out)
    stages = ", ".join(result.manifest.precision)
    print(f"wrote {args.out}: {stages} in {args.precision} (policy {policy.name}), every quality level"
          + (f", activation ranges from {len(images)} images" if args.precision == "int8" else ""))
    for stage, choices in result.choices.items():
        kept = len({name for choice in choices for name in choice.kept_float})
        noise = ", ".join(f"{100 * choice.noise:.2f} %" for choice in choices)
        print(f"  {stage}: {choices[0].quantized + len(choices[0].kept_float) - kept} weighted ops in int8, {kept} "
              f"kept float32; noise {noise} of the codec's own at each level (budget {100 * args.budget:g} %)")
    shared = calibrated.contract == source.contract
    print(f"coding contract {calibrated.contract.hex()}: "
          + ("the float32 bundle's, files cross between them" if shared else
             "its own (the entropy path changed): it decodes only its own files"))
    if images:
        for crossing in crossings(Codec.open(source), Codec.open(calibrated), images[0]):
            print(f"  {crossing.line()}")


def build_engines(args) -> None:
    from tqdm import tqdm

    from .backends.tensorrt import TensorRTBackend
    from .bundle import DEFAULT_BUNDLE, Bundle

    backend = TensorRTBackend(cache=args.cache, timing_cache=args.timing_cache)
    bundle = Bundle.open(args.bundle or DEFAULT_BUNDLE)
    plans = [(bundle.at_level(level), graph) for level in range(len(bundle.manifest.levels))
             for bucket in bundle.manifest.buckets for graph in bucket.stages.values()]
    cached = sum(backend.plan_path(*plan).is_file() for plan in plans)
    for plan in tqdm(plans, desc="build-engines", unit="engine"):
        backend.build(*plan)
    print(f"{len(plans)} engines for {backend.profile}, every quality level ({cached} were cached) in "
          f"{backend.cache}")


def _count(text: str) -> int:
    """A positive count, written plainly or as a power of two (2**28)."""
    base, _, exponent = text.partition("**")
    try:
        value = int(base) ** int(exponent) if exponent else int(base)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not positive")
    return value


def _fraction(text: str) -> float:
    """A non-negative fraction, e.g. 0.01."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r} is not a non-negative fraction")
    return value


def build_parser() -> argparse.ArgumentParser:
    from .backends import PERTURBED, backend_names
    from .limits import DEFAULT_MAX_PIXELS, DEFAULT_MAX_REGION_PIXELS, DEFAULT_MAX_TILES

    backend_help = (f"{', '.join(backend_names())}, or {PERTURBED}:EPSILON[:NAME]; default auto: ONNX Runtime, on its "
                    "CUDA provider where installed, else the CPU")
    parser = CommandParser(prog="licrt", description="Learned image compression runtime.")
    commands = parser.add_subparsers(dest="command", required=True)

    def command(name, function, help_text, input_help, output_help=None):
        sub = commands.add_parser(name, help=help_text, description=help_text)
        sub.add_argument("input", type=Path, help=input_help)
        if output_help:
            sub.add_argument("output", type=Path, help=output_help)
            sub.add_argument("--force", action="store_true", help="overwrite the output if it exists "
                                                                   "(never the input)")
        sub.add_argument("--bundle", type=Path, help="bundle written by export-onnx (default: licrt's own)")
        sub.add_argument("--backend", default="auto", metavar="NAME", help=backend_help)
        sub.add_argument("--max-pixels", type=_count, default=DEFAULT_MAX_PIXELS, metavar="N",
                         help=f"refuse images of more pixels (default {DEFAULT_MAX_PIXELS:,} = 2**28)")
        sub.add_argument("--max-tiles", type=_count, default=DEFAULT_MAX_TILES, metavar="N",
                         help=f"refuse images coded in more tiles (default {DEFAULT_MAX_TILES:,} = 2**14)")
        sub.add_argument("--max-region-pixels", type=_count, default=DEFAULT_MAX_REGION_PIXELS, metavar="N",
                         help="code a large image's entropy path in regions of at most this many pixels, and refuse "
                              f"files coded in larger ones: what bounds memory (default {DEFAULT_MAX_REGION_PIXELS:,}"
                              " = 2**24)")
        sub.set_defaults(function=function)

    command("compress", compress, "compress an image", "image file (PNG, JPEG, ...)", "output .lic file")
    commands.choices["compress"].add_argument(
        "--quality", type=_count, metavar="N",
        help="the bundle's quality level, 1 = lowest rate (default: the bundle's default level; the file records "
             "it, decompress needs no flag)")
    commands.choices["compress"].add_argument(
        "--no-guard", action="store_true",
        help="record no guarded decisions: the file then decodes only where the floats match this backend's")
    command("decompress", decompress, "decompress to an image", ".lic file", "output image (.png, ...)")
    command("info", info, "describe a compressed file", ".lic file")

    sub = commands.add_parser("eval", help="evaluate bundles against classical codecs",
                              description="Code every image of a folder with each bundle (real files) and "
                                          "with classical anchors; write results.csv, summary.json (with "
                                          "BD-rates) and rd.png. Resumes an interrupted run.")
    sub.add_argument("input", type=Path, help="folder of images")
    sub.add_argument("--bundle", type=Path, action="append", help="a bundle (repeat for rate points)")
    sub.add_argument("--anchors", default="jpeg,webp,avif,jxl", help="comma-separated (default: all four)")
    sub.add_argument("--out", type=Path, required=True, help="output folder")
    sub.add_argument("--limit", type=int, help="only the first N images")
    sub.add_argument("--backend", action="append", metavar="NAME",
                     help=f"repeatable: each backend's curves of their own, measured against the first; {backend_help}")
    sub.set_defaults(function=evaluate)

    sub = commands.add_parser("bench", help="time bundles on backends side by side",
                              description="Compress and decompress the same images with every bundle on every "
                                          "backend, each pair in a process of its own, in turns; report start-up "
                                          "cost, time per stage, end-to-end time, peak memory and speed against "
                                          "the PyTorch reference (the torch backend) as a table and as JSON.")
    sub.add_argument("images", type=Path, nargs="+", help="image files or folders")
    sub.add_argument("--bundle", type=Path, action="append", help="a bundle (repeatable; default: licrt's own)")
    sub.add_argument("--backend", action="append", metavar="NAME",
                     help="a backend (repeatable; default: onnxruntime and, where installed, openvino and torch)")
    sub.add_argument("--count", type=_count, help="only the first N images")
    sub.add_argument("--rounds", type=_count, default=3, help="timed rounds per image (default 3; medians)")
    sub.add_argument("--quality", type=_count, metavar="N", help="the bundles' quality level (default: theirs)")
    sub.add_argument("--out", type=Path, help="write the report as JSON here")
    sub.set_defaults(function=bench)

    from licrt.calibration.policies import DEFAULT_BUDGET, DEFAULT_POLICY, POLICIES

    sub = commands.add_parser("calibrate", help="convert a bundle's stage graphs to float16 or INT8",
                              description="Write a bundle whose stages named by a precision policy compute in "
                                          "float16 or INT8 (Q/DQ, activation ranges from calibration images run "
                                          "through the bundle); the other stages and the tables are copied. "
                                          "Measure what it costs with licrt eval IMAGES --bundle FLOAT32 "
                                          "--bundle OUT.")
    sub.add_argument("--bundle", type=Path, help="the float32 bundle (default: licrt's own)")
    sub.add_argument("--images", type=Path, help="folder of calibration images (needed for int8)")
    sub.add_argument("--precision", choices=("fp16", "int8"), required=True)
    sub.add_argument("--policy", choices=sorted(POLICIES), default=DEFAULT_POLICY,
                     help="; ".join(f"{p.name}: {p.summary}" for p in POLICIES.values())
                          + f" (default {DEFAULT_POLICY})")
    sub.add_argument("--limit", type=_count, default=32, help="calibration images used (default 32)")
    sub.add_argument("--budget", type=_fraction, default=DEFAULT_BUDGET, metavar="FRACTION",
                     help="int8: the noise a stage may add, as a fraction of the codec's own there (the latents' "
                          "rounding, or for g_s the images' distortion); ops that do not fit stay float32 "
                          f"(default {DEFAULT_BUDGET:g})")
    sub.add_argument("--out", type=Path, required=True, help="bundle directory to write")
    sub.add_argument("--force", action="store_true", help="replace --out if it exists")
    sub.set_defaults(function=calibrate)

    sub = commands.add_parser("build-engines", help="build a bundle's TensorRT engines (needs licrt[gpu])",
                              description="Build one TensorRT plan per stage graph, bucket and quality level, "
                                          "for this GPU and TensorRT, into the engine cache; --backend tensorrt "
                                          "then uses them. "
                                          "Precision is the graphs' own (strongly typed networks).")
    sub.add_argument("bundle", type=Path, nargs="?", help="bundle written by export-onnx (default: licrt's own)")
    sub.add_argument("--cache", type=Path, help="engine folder (default: $LICRT_ENGINE_CACHE or "
                                                "~/.cache/licrt/engines)")
    sub.add_argument("--timing-cache", type=Path, metavar="PATH",
                     help="TensorRT timing cache to read and update (faster rebuilds on this GPU)")
    sub.set_defaults(function=build_engines)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    interrupted, restore = _note_interrupts()
    try:
        args = build_parser().parse_args(argv)
        args.argv = argv
        args.function(args)
    except KeyboardInterrupt:
        return _report_interruption()
    except BrokenPipeError:  # the reader stopped early (licrt info … | head): nothing left to say
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except LicrtError as exc:
        print(f"licrt: error: {exc}", file=sys.stderr)
        return 1
    except BaseException as exc:
        # Ctrl-C inside an extension's import surfaces as something else: ONNX Runtime's import fails with the
        # KeyboardInterrupt as its cause, constriction's panics (a BaseException naming it).
        if not (interrupted() or _interrupted(exc)):
            raise
        return _report_interruption()
    finally:
        restore()
    return 0


def _note_interrupts():
    """Note every Ctrl-C, then raise KeyboardInterrupt as Python does; returns (whether one came, a function
    that puts Python's handler back). Where SIGINT is ignored (a background job), it stays ignored."""
    import signal

    received = []

    def note(signum, frame):
        received.append(signum)
        signal.default_int_handler(signum, frame)

    previous = signal.getsignal(signal.SIGINT)
    if previous is not signal.default_int_handler:
        return (lambda: False), (lambda: None)
    try:
        signal.signal(signal.SIGINT, note)
    except ValueError:  # not the main thread: only it receives signals
        return (lambda: False), (lambda: None)
    return (lambda: bool(received)), (lambda: signal.signal(signal.SIGINT, previous))


def _report_interruption() -> int:
    print("licrt: interrupted", file=sys.stderr)
    # A Ctrl-C that lands inside eval() (namedtuple builds classes with it, during
    # imports) leaves CPython marked as killed by SIGINT, and it exits by that
    # signal however the interruption was handled; the next eval() clears the mark.
    eval("None")
    return 130


def _interrupted(exc: BaseException | None) -> bool:
    """Whether exc, or an exception it was raised from or during, is a KeyboardInterrupt."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, KeyboardInterrupt):
            return True
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return False


if __name__ == "__main__":
    sys.exit(main())
