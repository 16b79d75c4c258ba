"""Calibrating a bundle: the stage graphs a policy names, converted to float16 or INT8, as a new bundle.

Each converted graph is rewritten at every quality level; the other graphs
keep their weights (the free stages' weights file is rewritten when any of
them changes). Files no converted stage touches are copied byte for byte, so
with the default policy the entropy path, its weights and the tables are
the float32 bundle's own, and so is the coding contract: files made with
either bundle decode with the other.
"""

from __future__ import annotations

import dataclasses
import shutil
from collections.abc import Sequence
from pathlib import Path

from tqdm import tqdm

from licrt.export.staging import digest_files, staged_directory
from licrt.export.weights import WeightStore, load_graph, save_graph
from licrt.runtime.bundle import MANIFEST, Bundle
from licrt.runtime.errors import ExportError
from licrt.runtime.manifest import FREE_STAGES, Manifest

from .capture import Feeds, capture_feeds
from .graph_precision import activation_ranges, merge_ranges, quantize_int8, to_fp16
from .policies import FP32_OPS, INT8_OPS, Policy

PRECISIONS = ("fp16", "int8")


def calibrate_bundle(source: Bundle, precision: str, policy: Policy, out: Path, images: Sequence[Path] = (),
                     *, force: bool = False, progress: bool = True) -> Manifest:
    """Write the bundle out: source with the stages of policy in precision; returns its manifest.

    INT8 takes its activation ranges from the images, run through source's
    real pipeline at every quality level; float16 needs none.

    Raises:
        ExportError: source is itself calibrated, INT8 has no images, no image
            reaches a stage, or out exists (without force).
    """
    manifest = source.manifest
    if manifest.precision:
        shown = ", ".join(f"{stage} {value}" for stage, value in sorted(manifest.precision.items()))
        raise ExportError(f"bundle {source.root} is calibrated already ({shown}); calibrate its float32 bundle")
    if precision not in PRECISIONS:
        raise ExportError(f"precision {precision!r} is not one of {', '.join(PRECISIONS)}")
    steps = {step.name for step in manifest.schedule.steps}
    converted = [name for name in manifest.buckets[0].stages if policy.applies_to(name, steps)]
    feeds: Feeds = {}
    if precision == "int8":
        if not images:
            raise ExportError("INT8 takes its activation ranges from calibration images; give some")
        feeds = capture_feeds(source, images, converted, progress)
    with staged_directory(out, force) as root:
        _Writer(source, root, precision, converted, feeds, progress).write()
        manifest = dataclasses.replace(manifest, precision=dict.fromkeys(converted, precision),
                                       files=digest_files(root))
        (root / MANIFEST).write_text(manifest.dumps(), encoding="utf-8")
        Bundle.open(root)
    return manifest


class _Writer:
    """Writes the calibrated bundle's files into root."""

    def __init__(self, source: Bundle, root: Path, precision: str, converted: list[str], feeds: Feeds,
                 progress: bool):
        self.source, self.root, self.precision = source, root, precision
        self.converted, self.feeds, self.progress = converted, feeds, progress
        self.manifest = source.manifest
        self.levels = [source.at_level(index) for index in range(len(self.manifest.levels))]

    def write(self) -> None:
        manifest = self.manifest
        free = [name for name in manifest.buckets[0].stages if name in FREE_STAGES]
        entropy_path = [name for name in manifest.buckets[0].stages if name not in FREE_STAGES]
        for stages, weights in ((free, "transform_weights"), (entropy_path, "entropy_weights")):
            if any(name in self.converted for name in stages):
                self._rewrite(stages, [getattr(level, weights) for level in manifest.levels])
            else:
                self._copy([bucket.stages[name].file for bucket in manifest.buckets for name in stages])
                self._copy([getattr(level, weights) for level in manifest.levels])
        self._copy([manifest.y_tables, *(path for level in manifest.levels
                                         for path in (level.z_tables, level.parameters))])

    def _copy(self, files: Sequence[str]) -> None:
        for relative in files:
            target = self.root / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(self.source.path(relative), target)

    def _rewrite(self, stages: list[str], weights: list[str]) -> None:
        """Write the graphs of stages, converted where the policy says, and their weights files anew."""
        for relative in weights:
            (self.root / relative).parent.mkdir(parents=True, exist_ok=True)
        store = WeightStore([self.root / relative for relative in weights])
        (self.root / "stages").mkdir(exist_ok=True)
        buckets = self.manifest.buckets
        with tqdm(total=len(stages) * len(buckets), desc=f"calibrate: {self.precision}", unit="graph",
                  disable=not self.progress) as bar:
            for name in stages:
                convert = self._converter(name)
                for bucket in buckets:
                    bar.set_postfix_str(f"{name} {bucket.name}")
                    graph = bucket.stages[name]
                    models = [convert(load_graph(level, graph), index) for index, level in enumerate(self.levels)]
                    save_graph(models, self.root / graph.file, store)
                    bar.update()

    def _converter(self, stage: str):
        """convert(model, level index) -> the stage's graph as the calibrated bundle holds it."""
        if stage not in self.converted:
            return lambda model, level: model
        if self.precision == "fp16":
            return lambda model, level: to_fp16(model, FP32_OPS)
        ranges = [self._ranges(stage, level) for level in range(len(self.levels))]
        return lambda model, level: quantize_int8(model, ranges[level], INT8_OPS)

    def _ranges(self, stage: str, level: int):
        """The stage's activation ranges at a level, merged over the buckets the images reached."""
        reached = [bucket for bucket in self.manifest.buckets if (level, stage, bucket.name) in self.feeds]
        if not reached:
            raise ExportError(f"no calibration image reached stage {stage}")
        return merge_ranges(activation_ranges(load_graph(self.levels[level], bucket.stages[stage]),
                                              self.feeds[level, stage, bucket.name], INT8_OPS)
                            for bucket in reached)

