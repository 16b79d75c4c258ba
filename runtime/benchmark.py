"""``licrt bench``: how fast bundles compress and decompress on each backend, side by side in one run.

Each (bundle, backend) pair is a *contestant* in a process of its own, so that
its start-up cost and peak memory are its own. Once each has coded one image
of every bucket untimed (loading its graphs), the contestants take the same
images in turn, one at a time, round after round with the order rotating,
so that whatever else the machine does weighs on all of them alike; times
are medians over the rounds. Per image a contestant reports compress and
decompress wall time, the time of each stage graph, and the rest (entropy
coding, the guard, the scheduler, the container). Where ``onnx`` is
installed, the transforms' multiply-accumulates are counted from their graphs
and set against a float32 matrix product timed on the same machine: the
share of the machine's peak a transform reaches.
"""

from __future__ import annotations

import contextlib
import math
import multiprocessing
import os
import platform
import statistics
import sys
import time
from collections import Counter, defaultdict
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from importlib.util import find_spec
from pathlib import Path

import numpy as np
from tqdm import tqdm

from .errors import LicrtError

#: Libraries whose versions set a benchmark's speed and floats.
VERSIONED = ("licrt", "numpy", "onnxruntime", "openvino", "constriction", "torch")
#: Stages whose share of the machine's matrix-product peak is reported.
TRANSFORMS = ("g_a", "g_s")


@dataclass(frozen=True)
class Contestant:
    """One bundle on one backend; ``bundle`` None is the default bundle."""

    bundle: Path | None
    backend: str

    @property
    def bundle_name(self) -> str:
        return "default" if self.bundle is None else self.bundle.name

    @property
    def label(self) -> str:
        return f"{self.bundle_name} / {self.backend}"


class StageClock:
    """Wall-clock seconds per stage, for the runs watched since the last :meth:`take`."""

    def __init__(self):
        self.seconds: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)

    def watch(self, stage, feed, run):
        start = time.perf_counter()
        outputs = run(feed)
        self.seconds[stage] += time.perf_counter() - start
        self.calls[stage] += 1
        return outputs

    def take(self, total: float) -> dict:
        """The stages' times in ms, and what the rest of ``total`` seconds took, then reset."""
        stages = {name: {"ms": 1e3 * s, "calls": self.calls[name]} for name, s in sorted(self.seconds.items())}
        result = {"total_ms": 1e3 * total, "stages": stages, "other_ms": 1e3 * (total - sum(self.seconds.values()))}
        self.seconds.clear()
        self.calls.clear()
        return result


def versions() -> dict[str, str]:
    """Versions of the libraries that set a benchmark's speed and floats, where installed."""
    found = {"python": platform.python_version()}
    for package in VERSIONED:
        try:
            found[package] = version(package)
        except PackageNotFoundError:
            pass
    return found


def matmul_gmacs(size: int = 2048, repeats: int = 5) -> float:
    """This machine's float32 matrix-product rate in GMAC/s (numpy, best of repeats)."""
    a, b = (np.random.default_rng(seed).random((size, size), dtype=np.float32) for seed in (0, 1))
    best = math.inf
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - start)
    return size**3 / best / 1e9


def run_benchmark(contestants: list[Contestant], images: list[Path], rounds: int, quality: int | None = None,
                  progress: bool = True) -> dict:
    """Run every contestant on every image ``rounds`` times; returns the report (see the module docstring)."""
    peak = matmul_gmacs()
    context = multiprocessing.get_context("spawn")
    workers, processes = [], []
    try:
        for contestant in contestants:
            parent, child = context.Pipe()
            start = time.perf_counter()
            process = context.Process(target=_serve, args=(child, contestant, images, quality), daemon=True)
            process.start()
            processes.append((parent, process))
            ready = _receive(parent, contestant)
            workers.append((contestant, parent, process, {**ready, "start_s": time.perf_counter() - start}))
        for contestant, connection, _, facts in workers:  # each loads its sessions here, before the rounds
            connection.send(("first", 0))
            facts["first_image_s"] = _receive(connection, contestant)["seconds"]
        samples = defaultdict(list)
        with tqdm(total=rounds * len(images) * len(workers), desc="bench", unit="run", disable=not progress) as bar:
            for round_index in range(rounds):
                order = workers[round_index % len(workers):] + workers[: round_index % len(workers)]
                for index in range(len(images)):
                    for contestant, connection, _, _ in order:
                        connection.send(("image", index))
                        samples[contestant, index].append(_receive(connection, contestant))
                        bar.update()
        for contestant, connection, _, facts in workers:
            connection.send(("peak", 0))
            facts["peak_rss_mib"] = _receive(connection, contestant)["peak_rss_mib"]
    finally:
        for connection, process in processes:
            with contextlib.suppress(OSError):  # a process that ended has closed its end
                connection.send(None)
            process.join(timeout=30)
    results = [_summary(contestant, facts, [samples[contestant, i] for i in range(len(images))], peak)
               for contestant, _, _, facts in workers]
    return {"images": [path.name for path in images], "rounds": rounds, "quality": quality,
            "matmul_gmacs": peak, "contestants": results, "speedup_vs_torch": _speedups(results)}


def installed_backends() -> list[str]:
    """The CPU backends installed here, the PyTorch reference last: what ``licrt bench`` compares by default."""
    optional = [name for name in ("openvino", "torch") if find_spec(name) is not None]
    return ["onnxruntime", *optional]


def _receive(connection, contestant: Contestant) -> dict:
    try:
        message = connection.recv()
    except EOFError:
        raise LicrtError(f"{contestant.label}: the benchmark process ended unexpectedly") from None
    if "error" in message:
        raise LicrtError(f"{contestant.label}: {message['error']}")
    return message


def _serve(connection, contestant: Contestant, images: list[Path], quality: int | None) -> None:
    """A contestant's process: open the codec, then run what the parent asks for until it sends None."""
    from .backends import open_backend
    from .backends.watched import WatchedBackend
    from .bundle import DEFAULT_BUNDLE, Bundle
    from .codec import Codec
    from .images import read_image

    try:
        clock = StageClock()
        backend = open_backend(contestant.backend)
        bundle = Bundle.open(contestant.bundle or DEFAULT_BUNDLE)
        codec = Codec(bundle, WatchedBackend(backend, clock.watch))
        pixels = [read_image(path) for path in images]
        connection.send({"profile": backend.profile})
    except (LicrtError, OSError) as exc:
        connection.send({"error": str(exc)})
        return
    grids = [codec.grid(*image.shape[:2]) for image in pixels]

    def run(index: int) -> dict:
        start = time.perf_counter()
        data = codec.compress(pixels[index], quality=quality)
        compress = clock.take(time.perf_counter() - start)
        start = time.perf_counter()
        codec.decompress(data)
        decompress = clock.take(time.perf_counter() - start)
        names = [bundle.manifest.buckets[bucket].name for bucket in grids[index].buckets]
        return {"seconds": (compress["total_ms"] + decompress["total_ms"]) / 1e3, "bytes": len(data),
                "buckets": dict(Counter(names)), "tiles": len(names),
                "pixels": pixels[index].shape[0] * pixels[index].shape[1], "compress": compress,
                "decompress": decompress}

    while (request := connection.recv()) is not None:
        command, index = request
        if command == "peak":
            connection.send({"peak_rss_mib": _peak_rss_mib()})
            continue
        running = index
        try:
            result = run(index)
            if command == "first":  # load every other bucket's graphs too, untimed: rounds time warm runs only
                seen = set(grids[index].buckets)
                for running, grid in enumerate(grids):
                    if not seen.issuperset(grid.buckets):
                        seen.update(grid.buckets)
                        run(running)
        except LicrtError as exc:
            connection.send({"error": f"{images[running].name}: {exc}"})
            continue
        connection.send(result)


def _peak_rss_mib() -> float:
    """This process's peak resident memory (NaN where the platform does not say, as on Windows)."""
    try:
        import resource
    except ImportError:
        return math.nan
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10  # bytes on macOS, KiB elsewhere


def _summary(contestant: Contestant, facts: dict, samples: list[list[dict]], peak: float) -> dict:
    """Medians over the rounds, per image and summed over the images."""
    per_image = []
    for runs in samples:
        row = {key: runs[0][key] for key in ("bytes", "buckets", "tiles", "pixels")}
        for direction in ("compress", "decompress"):
            stages = {name for run in runs for name in run[direction]["stages"]}
            row[direction] = {
                "ms": statistics.median(run[direction]["total_ms"] for run in runs),
                "other_ms": statistics.median(run[direction]["other_ms"] for run in runs),
                "stages_ms": {name: statistics.median(run[direction]["stages"].get(name, {"ms": 0.0})["ms"]
                                                      for run in runs) for name in sorted(stages)},
            }
        per_image.append(row)
    pixels = sum(row["pixels"] for row in per_image)
    totals = {}
    for direction in ("compress", "decompress"):
        ms = sum(row[direction]["ms"] for row in per_image)
        totals[direction] = {"ms": ms, "megapixels_per_s": pixels / ms / 1e3,
                             "other_ms": sum(row[direction]["other_ms"] for row in per_image)}
    first_warm = per_image[0]["compress"]["ms"] + per_image[0]["decompress"]["ms"]
    return {"bundle": contestant.bundle_name, "backend": contestant.backend, "profile": facts["profile"],
            "start_s": facts["start_s"], "first_run_cost_s": facts["first_image_s"] - first_warm / 1e3,
            "peak_rss_mib": facts["peak_rss_mib"], "total": totals, "per_image": per_image,
            "transforms": _transform_efficiency(contestant, per_image, peak)}


def _transform_efficiency(contestant: Contestant, per_image: list[dict], peak: float) -> dict:
    """Per transform: GMAC/s reached and its share of the machine's matmul rate (needs ``onnx``)."""
    if find_spec("onnx") is None:
        return {}
    from .bundle import DEFAULT_BUNDLE, Bundle
    from .graph_cost import stage_macs
    bundle = Bundle.open(contestant.bundle or DEFAULT_BUNDLE)
    buckets = {bucket.name: bucket for bucket in bundle.manifest.buckets}
    result = {}
    for stage, direction in (("g_a", "compress"), ("g_s", "decompress")):
        macs = sum(count * stage_macs(bundle, buckets[name].stages[stage])
                   for row in per_image for name, count in row["buckets"].items())
        ms = sum(row[direction]["stages_ms"].get(stage, 0.0) for row in per_image)
        if ms:
            rate = macs / ms / 1e6
            result[stage] = {"gmac": macs / 1e9, "ms": ms, "gmacs": rate, "share_of_matmul_peak": rate / peak}
    return result


def _speedups(results: list[dict]) -> dict:
    """Each contestant's speed against the torch backend on the same bundle (time of torch / time)."""
    reference = {row["bundle"]: row for row in results if row["backend"] == "torch"}
    speedups = {}
    for row in results:
        if row["bundle"] in reference and row["backend"] != "torch":
            torch_row = reference[row["bundle"]]
            speedups[_label(row)] = {
                direction: torch_row["total"][direction]["ms"] / row["total"][direction]["ms"]
                for direction in ("compress", "decompress")}
    return speedups


def table(report: dict) -> str:
    """The report as tables for the terminal: times are ms per image (medians over the rounds)."""
    rows = report["contestants"]
    labels = [_label(row) for row in rows]
    width = max(len(label) for label in (*labels, "ms per image by stage"))
    lines = [f"{len(report['images'])} images × {report['rounds']} rounds (medians), ms per image; "
             f"float32 matmul here: {report['matmul_gmacs']:.0f} GMAC/s",
             f"{'bundle / backend':{width}} {'start':>6} {'1st run':>7} {'compress':>9} {'decompress':>10} "
             f"{'peak':>8}  g_a / g_s of f32 matmul"]
    for label, row in zip(labels, rows, strict=True):
        count = len(row["per_image"])
        shares = " / ".join(f"{row['transforms'][s]['share_of_matmul_peak']:.0%}" if s in row["transforms"] else "–"
                            for s in TRANSFORMS)
        lines.append(f"{label:{width}} {row['start_s']:5.2f}s {row['first_run_cost_s']:6.2f}s "
                     f"{row['total']['compress']['ms'] / count:9.0f} {row['total']['decompress']['ms'] / count:10.0f} "
                     f"{row['peak_rss_mib']:5.0f}MiB  {shares}")
    for label, speedup in report["speedup_vs_torch"].items():
        lines.append(f"{label}: {speedup['compress']:.2f}× torch compress, {speedup['decompress']:.2f}× decompress")
    lines.append(f"\n{'ms per image by stage':{width}} {'g_a':>6} {'hyper':>6} {'context':>7} {'other':>6} |"
                 f" {'hyper':>6} {'context':>7} {'g_s':>6} {'other':>6}")
    for label, row in zip(labels, rows, strict=True):
        compress, decompress = (_stage_groups(row, direction) for direction in ("compress", "decompress"))
        lines.append(f"{label:{width}} {compress['g_a']:6.0f} {compress['hyper']:6.0f} {compress['context']:7.0f} "
                     f"{compress['other']:6.0f} | {decompress['hyper']:6.0f} {decompress['context']:7.0f} "
                     f"{decompress['g_s']:6.0f} {decompress['other']:6.0f}")
    return "\n".join(lines)


def _label(row: dict) -> str:
    """A contestant's name in a report, as :attr:`Contestant.label` gives it."""
    return f"{row['bundle']} / {row['backend']}"


def _stage_groups(row: dict, direction: str) -> dict[str, float]:
    """Mean ms per image of a contestant's transforms, hyper transforms, context passes and the rest."""
    images = row["per_image"]
    groups = defaultdict(float)
    for image in images:
        for stage, ms in image[direction]["stages_ms"].items():
            group = stage if stage in TRANSFORMS else "hyper" if stage in ("h_a", "h_s") else "context"
            groups[group] += ms / len(images)
        groups["other"] += image[direction]["other_ms"] / len(images)
    return groups


def machine() -> dict:
    """The machine a measurement ran on."""
    return {"platform": platform.platform(), "processor": platform.processor(), "cpus": os.cpu_count()}
