"""Writing a bundle: stage graphs per bucket, entropy tables, manifest, verification.

The bundle is assembled in a temporary directory beside the target and only
renamed into place once every stage has been verified against PyTorch, so a
failed export never leaves a half-written bundle behind.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from licrt.runtime.bundle import MANIFEST, Bundle
from licrt.runtime.errors import ExportError
from licrt.runtime.manifest import (FREE_STAGES, GUARD_EPSILON, GUARD_MARGIN, LEVEL_NAME, MAX_GUARD_EPSILON, Bucket,
                                    Level, Manifest, StageGraph, TensorSpec)

from .checkpoint import GRAPH_PREFIX
from .entropy_models import fraction_bins, gaussian_tables
from .graphs import export_graph
from .staging import digest_files, staged_directory
from .hyperprior import HyperpriorCodec
from .verify import StageCheck, verify_bundle
from .weights import HALF_SUFFIX, WeightStore, save_graph



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


#: The level of a bundle exported from one model that names none.
SINGLE_LEVEL = "default"


def write_bundle(
    levels: HyperpriorCodec | Mapping[str, HyperpriorCodec],
    shapes: Sequence[tuple[int, int]],
    out: Path,
    *,
    force: bool = False,
    progress: bool = True,
    guard_epsilon: float = GUARD_EPSILON,
) -> tuple[Manifest, list[StageCheck]]:
    """Export a model, or one per quality level (by name, lowest rate first), for the given (height, width)
    buckets into the bundle directory out.

    The levels must be one architecture with other weights (rate points of one
    codec): they share the stage graphs. The middle level is the default.
    guard_epsilon is the relative difference between backends' floats the
    bundle's guard covers (see ``licrt.runtime.guard``).

    Raises:
        ExportError: a shape does not fit the codec's stride, out exists (without
            force), the levels differ in more than their weights, or a stage's
            ONNX Runtime output differs from PyTorch's.
    """
    if not isinstance(levels, Mapping):
        levels = {SINGLE_LEVEL: levels}
    if not levels:
        raise ExportError("no model to export")
    for name in levels:
        if not re.fullmatch(LEVEL_NAME, name):
            raise ExportError(f"quality level name {name[:40]!r} is not 1 to 32 letters, digits, '_', '.' or '-'")
    models = list(levels.values())
    _check_same_codec(levels)
    check_shapes(shapes, models[0].stride)
    if not 0 <= guard_epsilon <= MAX_GUARD_EPSILON:
        raise ExportError(f"guard epsilon {guard_epsilon:g} is outside [0, {MAX_GUARD_EPSILON:g}]")
    with staged_directory(out, force) as staging:
        manifest, checks = _write({name: model.eval() for name, model in levels.items()}, shapes, staging,
                                  progress, guard_epsilon)
        failed = [c for c in checks if not c.passed]
        if failed:
            details = ", ".join(f"{c.stage}@{c.bucket}{c.level_suffix} ({c.max_error:.2e}"
                                + (f"; {c.same_keys_error:.2e} with ONNX Runtime's top-k keys, "
                                   f"{c.unexplained_keys} keys chosen differently without a near-tie)"
                                   if c.has_topk else ")") for c in failed)
            raise ExportError(f"ONNX Runtime disagrees with PyTorch beyond tolerance: {details}")
    return manifest, checks


def _check_same_codec(levels: Mapping[str, HyperpriorCodec]) -> None:
    """Raise ExportError unless every level is the same codec and configuration (so they can share graphs)."""
    (first_name, first), *others = levels.items()
    for name, model in others:
        for what, value in (("codec", lambda m: m.codec_id), ("configuration", lambda m: m.config),
                            ("scale table", lambda m: np.asarray(m.scale_table).tolist())):
            if value(model) != value(first):
                raise ExportError(f"quality levels {first_name} and {name} differ in their {what}; the levels of "
                                  "a bundle are one codec's rate points")


def _write(levels: dict[str, HyperpriorCodec], shapes, root: Path, progress: bool, guard_epsilon: float):
    (root / "stages").mkdir()
    (root / "entropy").mkdir()
    level_entries = [Level(name, f"levels/{name}") for name in levels]
    for level in level_entries:
        (root / level.directory).mkdir(parents=True)
    # The free stages' weights apart from the entropy path's: bundles calibrated from this one replace the
    # first and keep the second, and with it the coding contract.
    transform_store = WeightStore([root / level.transform_weights for level in level_entries])
    entropy_store = WeightStore([root / level.entropy_weights for level in level_entries])
    models = list(levels.values())
    model = models[0]
    modules = [m.stage_modules(exported=True) for m in models]
    references: dict[tuple[str, str], dict] = {}
    in_graphs: set[str] = set()  # the initializer names of the first bucket's graphs
    buckets = []
    with tqdm(total=len(shapes) * len(modules[0]), desc="export", unit="graph", disable=not progress) as bar:
        for height, width in shapes:
            recorded = [m.reference(probe_image(height, width), record=True).stages for m in models]
            stages = {}
            for name in modules[0]:
                bar.set_postfix_str(f"{name} {height}x{width}")
                inputs, outputs = recorded[0][name]
                relative = f"stages/{name}.{height}x{width}.onnx"
                graphs = [export_graph(stage_modules[name], level_recorded[name][0], list(outputs))
                          for stage_modules, level_recorded in zip(modules, recorded, strict=True)]
                store = transform_store if name in FREE_STAGES else entropy_store
                written = save_graph(graphs, root / relative, store)
                if not buckets:
                    in_graphs.update(tensor.name for tensor in written.graph.initializer)
                stages[name] = StageGraph(relative, _specs(inputs), _specs(outputs))
                bar.update()
            bucket = Bucket(height, width, stages)
            buckets.append(bucket)
            for level_name, level_recorded in zip(levels, recorded, strict=True):
                references[level_name, bucket.name] = level_recorded
    held = {name.removeprefix(GRAPH_PREFIX).removesuffix(HALF_SUFFIX) for name in in_graphs
            if name.startswith(GRAPH_PREFIX)}
    for level, level_model in zip(level_entries, models, strict=True):
        np.savez(root / level.z_tables, **level_model.z_prior.tables())
        np.savez(root / level.parameters, **{key: value.detach().cpu().numpy()
                                             for key, value in level_model.state_dict().items() if key not in held})
    bins = fraction_bins(model.scale_table, *model.fraction_slices) if model.y_quantization == "integer" else None
    np.savez(root / "entropy" / "y.npz", **gaussian_tables(model.scale_table, bins))
    files = digest_files(root)
    manifest = Manifest(
        codec=model.codec_id,
        config=dataclasses.asdict(model.config),
        stride=model.stride,
        padding=model.padding,
        buckets=tuple(buckets),
        schedule=model.schedule,
        levels=tuple(level_entries),
        default_level=(len(level_entries) - 1) // 2,
        y_tables="entropy/y.npz",
        y_quantization=model.y_quantization,
        precision={},
        files=files,
        rounding=model.rounding,
        symbol_range=model.symbol_range,
        mean_step=model.mean_step,
        weight_grid=model.weight_grid,
        guard_epsilon=guard_epsilon,
        guard_margin=GUARD_MARGIN,
    )
    (root / MANIFEST).write_text(manifest.dumps(), encoding="utf-8")
    bundle = Bundle.open(root)
    return manifest, [check for index, name in enumerate(levels)
                      for check in verify_bundle(bundle.at_level(index), references, modules[index],
                                                 name if len(levels) > 1 else "")]
