"""Writing a bundle: stage graphs per bucket, entropy tables, manifest, verification.

The bundle is assembled in a temporary directory beside the target and only
renamed into place once every stage has been verified against PyTorch, so a
failed export never leaves a half-written bundle behind.
"""

from __future__ import annotations

import dataclasses
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from licrt.runtime.bundle import MANIFEST, Bundle, sha256_file
from licrt.runtime.errors import ExportError
from licrt.runtime.manifest import MAX_GUARD_EPSILON, Bucket, Manifest, StageGraph, TensorSpec

from .entropy_models import fraction_bins, gaussian_tables
from .graphs import WeightStore, export_graph, save_graph
from .hyperprior import HyperpriorCodec
from .verify import StageCheck, verify_bundle


#: The guard: ε covers the largest relative difference measured between
#: backends' stage outputs; the margin covers how such differences grow through
#: h_s and the context graphs (see README, "Decoding anywhere").
GUARD_EPSILON = 1e-5
GUARD_MARGIN = 3.0


def probe_image(height: int, width: int) -> torch.Tensor:
    """A deterministic photo-like test image (smooth structure plus fine texture)."""
    rows, cols = np.mgrid[0:height, 0:width] / max(height, width)
    rng = np.random.default_rng(0)
    planes = []
    for _ in range(3):
        fx, fy, phase = rng.uniform(1, 6, size=3)
        smooth = 0.5 + 0.3 * np.sin(2 * np.pi * (fx * cols + fy * rows) + phase)
        planes.append(smooth + 0.08 * rng.standard_normal((height, width)))
    image = np.clip(np.stack(planes), 0.0, 1.0)
    return torch.from_numpy(image[None].astype(np.float32))


def check_shapes(shapes: Sequence[tuple[int, int]], stride: int) -> None:
    for height, width in shapes:
        if height <= 0 or width <= 0 or height % stride or width % stride:
            fit = lambda n: max(stride, -(-n // stride) * stride)  # noqa: E731
            raise ExportError(
                f"shape {height}x{width} is not a multiple of the codec's stride {stride}; "
                f"use e.g. {fit(height)}x{fit(width)}"
            )
    if len(set(shapes)) != len(shapes):
        raise ExportError("a shape is given twice")


def _specs(tensors: dict[str, torch.Tensor]) -> tuple[TensorSpec, ...]:
    return tuple(TensorSpec(name, tuple(t.shape), str(t.dtype).removeprefix("torch.")) for name, t in tensors.items())


def write_bundle(
    model: HyperpriorCodec,
    shapes: Sequence[tuple[int, int]],
    out: Path,
    *,
    force: bool = False,
    progress: bool = True,
    guard_epsilon: float = GUARD_EPSILON,
) -> tuple[Manifest, list[StageCheck]]:
    """Export model for the given (height, width) buckets into the bundle directory out.

    guard_epsilon is the relative difference between backends' floats the bundle's guard covers
    (see ``licrt.runtime.guard``).

    Raises:
        ExportError: a shape does not fit the codec's stride, out exists (without
            force), or a stage's ONNX Runtime output differs from PyTorch's.
    """
    check_shapes(shapes, model.stride)
    if not 0 <= guard_epsilon <= MAX_GUARD_EPSILON:
        raise ExportError(f"guard epsilon {guard_epsilon:g} is outside [0, {MAX_GUARD_EPSILON:g}]")
    out = Path(out)
    if out.exists() and not force:
        raise ExportError(f"{out} already exists; choose another --out or pass --force")
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        manifest, checks = _write(model.eval(), shapes, staging, progress, guard_epsilon)
        failed = [c for c in checks if not c.passed]
        if failed:
            details = ", ".join(f"{c.stage}@{c.bucket} ({c.max_error:.2e})" for c in failed)
            raise ExportError(f"ONNX Runtime disagrees with PyTorch beyond tolerance: {details}")
        staging.chmod(0o755)  # mkdtemp makes it private
        if out.exists():
            shutil.rmtree(out)
        staging.rename(out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return manifest, checks


def _write(model: HyperpriorCodec, shapes, root: Path, progress: bool, guard_epsilon: float):
    (root / "stages").mkdir()
    (root / "entropy").mkdir()
    store = WeightStore(root / "stages" / "weights.bin")
    modules = model.stage_modules()
    references: dict[str, dict] = {}
    buckets = []
    with tqdm(total=len(shapes) * len(modules), desc="export", unit="graph", disable=not progress) as bar:
        for height, width in shapes:
            recorded = model.reference(probe_image(height, width), record=True).stages
            stages = {}
            for name, module in modules.items():
                bar.set_postfix_str(f"{name} {height}x{width}")
                inputs, outputs = recorded[name]
                relative = f"stages/{name}.{height}x{width}.onnx"
                save_graph(export_graph(module, inputs, list(outputs)), root / relative, store)
                stages[name] = StageGraph(relative, _specs(inputs), _specs(outputs))
                bar.update()
            bucket = Bucket(height, width, stages)
            buckets.append(bucket)
            references[bucket.name] = recorded
    np.savez(root / "entropy" / "z.npz", **model.z_prior.tables())
    bins = fraction_bins(model.scale_table) if model.y_quantization == "integer" else None
    np.savez(root / "entropy" / "y.npz", **gaussian_tables(model.scale_table, bins))
    files = {
        path.relative_to(root).as_posix(): sha256_file(path)
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }
    manifest = Manifest(
        codec=model.codec_id,
        config=dataclasses.asdict(model.config),
        stride=model.stride,
        padding=model.padding,
        buckets=tuple(buckets),
        schedule=model.schedule,
        z_tables="entropy/z.npz",
        y_tables="entropy/y.npz",
        y_quantization=model.y_quantization,
        precision="fp32",
        files=files,
        rounding=model.rounding,
        symbol_range=model.symbol_range,
        mean_step=model.mean_step,
        guard_epsilon=guard_epsilon,
        guard_margin=GUARD_MARGIN,
    )
    (root / MANIFEST).write_text(manifest.dumps(), encoding="utf-8")
    return manifest, verify_bundle(Bundle.open(root), references)
