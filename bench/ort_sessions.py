"""How ONNX Runtime's sessions share the machine: thread pools, spinning and memory arenas, side by side.

A bundle runs a dozen sessions per bucket one after another. Each variant
runs in a process of its own (thread pools and arenas belong to the
process), compresses and decompresses the images after a warm-up, and
reports its times, its peak resident memory and digests of what it wrote;
the variants take turns, round after round, and the report keeps each
one's median. Variants:

* ``separate pools, spinning``: licrt 0.4's sessions (a pool of ONNX
  Runtime's size per session, spinning as ONNX Runtime does by default);
* ``separate pools, no spinning``: ``OnnxRuntimeBackend()``, the default;
* ``shared pool``: one pool for the process (ONNX Runtime's global thread
  pool; every session in the process must then use it, the host
  application's too);
* ``shared pool and arena``: that, and one CPU arena registered with ONNX
  Runtime's environment for all sessions (arenas are off in the others).

Example::

    python bench/ort_sessions.py ../shared/data/kodak --count 4 --large ../shared/data/wikipedia_photos/001.png \\
        --rounds 3 --out bench/results/ort-sessions.json
"""

from __future__ import annotations

import argparse
import hashlib
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

from licrt.runtime import Codec
from licrt.runtime.backends.onnxruntime import OnnxRuntimeBackend
from licrt.runtime.images import list_images, read_image

from report import dataset_names, save_report  # a sibling script: python puts bench/ on the path


class SeparateSpinning(OnnxRuntimeBackend):
    """Sessions as licrt 0.4 made them: a pool each, spinning by ONNX Runtime's default."""

    def session_options(self, bundle):
        options = super().session_options(bundle)
        options.add_session_config_entry("session.intra_op.allow_spinning", "1")
        return options


class SharedPool(OnnxRuntimeBackend):
    """Every session on the process's one thread pool, made before the first session; optionally one arena."""

    def __init__(self, arena: bool = False):
        super().__init__()
        self.arena = arena
        ort = self._ort
        ort.set_global_thread_pool_sizes(0, 1)
        if arena:
            memory = ort.OrtMemoryInfo("Cpu", ort.OrtAllocatorType.ORT_ARENA_ALLOCATOR, 0, ort.OrtMemType.DEFAULT)
            ort.create_and_register_allocator(memory, ort.OrtArenaCfg({}))

    def session_options(self, bundle):
        options = super().session_options(bundle)
        options.use_per_session_threads = False
        if self.arena:
            options.enable_cpu_mem_arena = True
            options.add_session_config_entry("session.use_env_allocators", "1")
        return options


VARIANTS = {
    "separate pools, spinning": SeparateSpinning,
    "separate pools, no spinning": OnnxRuntimeBackend,
    "shared pool": SharedPool,
    "shared pool and arena": lambda: SharedPool(arena=True),
}


def child(variant: str, paths: list[Path]) -> dict:
    """One variant's process: warm up on every image, then time each compress and decompress once."""
    codec = Codec.open(None, backend=VARIANTS[variant]())
    images = [read_image(path) for path in paths]
    for image in images:
        codec.decompress(codec.compress(image))
    rows = []
    for path, image in zip(paths, images, strict=True):
        started = time.perf_counter()
        data = codec.compress(image)
        encoded = time.perf_counter()
        decoded = codec.decompress(data)
        finished = time.perf_counter()
        rows.append({"image": path.name, "compress_s": encoded - started, "decompress_s": finished - encoded,
                     "file_sha256": hashlib.sha256(data).hexdigest(),
                     "decoded_sha256": hashlib.sha256(decoded.tobytes()).hexdigest()})
    return {"rows": rows, "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("images", type=Path, help="folder of images (e.g. Kodak)")
    parser.add_argument("--count", type=int, default=4, help="the first N images")
    parser.add_argument("--large", type=Path, help="one more image, coded in a 1088×1920 tile")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", type=Path)
    parser.add_argument("--child", choices=VARIANTS, help=argparse.SUPPRESS)
    parser.add_argument("--paths", nargs="*", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.child, args.paths)))
        return 0
    paths = list_images(args.images)[: args.count] + ([args.large] if args.large else [])
    runs: dict[str, list[dict]] = {variant: [] for variant in VARIANTS}
    for _ in range(args.rounds):
        for variant in VARIANTS:
            result = subprocess.run([sys.executable, __file__, str(args.images), "--child", variant,
                                     "--paths", *map(str, paths)], check=True, capture_output=True, text=True)
            runs[variant].append(json.loads(result.stdout))
    results = {}
    for variant, rounds in runs.items():
        images = {}
        for index, path in enumerate(paths):
            rows = [run["rows"][index] for run in rounds]
            images[path.name] = {key: statistics.median(row[key] for row in rows)
                                 for key in ("compress_s", "decompress_s")}
            images[path.name]["file_sha256"] = rows[0]["file_sha256"]
            images[path.name]["decoded_sha256"] = rows[0]["decoded_sha256"]
            assert all(row["file_sha256"] == rows[0]["file_sha256"] for row in rows), "files differ between rounds"
        results[variant] = {"images": images, "peak_rss_mib": statistics.median(r["peak_rss_mib"] for r in rounds)}
    baseline = results["separate pools, spinning"]
    for variant in results.values():
        for name, image in variant["images"].items():
            before = baseline["images"][name]
            image["speed_vs_separate_spinning"] = {
                key: before[f"{key}_s"] / image[f"{key}_s"] for key in ("compress", "decompress")}
            image["same_bytes_and_pixels"] = (image["file_sha256"], image["decoded_sha256"]) == (
                before["file_sha256"], before["decoded_sha256"])
    names = dataset_names(args.images, paths[: args.count]) + ([args.large.name] if args.large else [])
    if args.out:
        save_report("ort_sessions.py", argv, args.out, images=names, rounds=args.rounds, variants=results)
    for variant, result in results.items():
        print(f"{variant:40s} peak {result['peak_rss_mib']:7.0f} MiB  " + "  ".join(
            f"{name}: {image['compress_s']:.2f}+{image['decompress_s']:.2f} s" for name, image in
            result["images"].items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
