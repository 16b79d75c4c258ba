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
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from licrt.export.staging import check_target, digest_files, staged_directory
from licrt.export.weights import WeightStore, load_graph, save_graph
from licrt.runtime.bundle import MANIFEST, Bundle
from licrt.runtime.errors import ExportError
from licrt.runtime.manifest import FREE_STAGES, Bucket, Manifest

from .capture import Capture, capture_feeds
from .graph_precision import activation_ranges, merge_ranges, quantize_int8, to_fp16
from .policies import DEFAULT_BUDGET, FP32_OPS, INT8_OPS, Policy
from .sensitivity import ROUNDING_NOISE, Choice, choose_float_ops

PRECISIONS = ("fp16", "int8")
#: Captured runs a stage is measured on to choose its float32 ops (each op costs a run of them all).
SENSITIVITY_FEEDS = 4


@dataclass(frozen=True)
class Calibrated:
    """What :func:`calibrate_bundle` wrote."""

    manifest: Manifest
    #: INT8: per converted stage, the choice of float32 ops at each quality level (the bundle keeps the
    #: union of them at every level, since the levels share their graphs).
    choices: dict[str, list[Choice]]


def calibrate_bundle(source: Bundle, precision: str, policy: Policy, out: Path, images: Sequence[Path] = (),
                     *, budget: float = DEFAULT_BUDGET, force: bool = False, progress: bool = True) -> Calibrated:
    """Write the bundle out: source with the stages of policy in precision.

    INT8 takes its activation ranges from the images, run through source's
    real pipeline at every quality level, and keeps float32 the weighted ops
    that the stage's noise budget cannot afford (see
    :mod:`licrt.calibration.sensitivity`); float16 needs no images.

    Raises:
        ExportError: source is itself calibrated, INT8 has no images, no image
            reaches a stage, or out exists (without force).
    """
    manifest = source.manifest
    if manifest.precision:
        raise ExportError(f"bundle {source.root} is calibrated already ({manifest.reduced_precision}); calibrate "
                          "its float32 bundle")
    if precision not in PRECISIONS:
        raise ExportError(f"precision {precision!r} is not one of {', '.join(PRECISIONS)}")
    check_target(out, force)
    steps = {step.name for step in manifest.schedule.steps}
    converted = [name for name in manifest.buckets[0].stages if policy.applies_to(name, steps)]
    capture = Capture({}, [])
    if precision == "int8":
        if not images:
            raise ExportError("INT8 takes its activation ranges from calibration images; give some")
        capture = capture_feeds(source, images, converted, progress)
    with staged_directory(out, force) as root:
        writer = _Writer(source, root, precision, converted, capture, budget, progress)
        writer.write()
        manifest = dataclasses.replace(manifest, precision=dict.fromkeys(converted, precision),
                                       files=digest_files(root))
        (root / MANIFEST).write_text(manifest.dumps(), encoding="utf-8")
        Bundle.open(root)
    return Calibrated(manifest, writer.choices)


class _Writer:
    """Writes the calibrated bundle's files into root."""

    def __init__(self, source: Bundle, root: Path, precision: str, converted: list[str], capture: Capture,
                 budget: float, progress: bool):
        self.source, self.root, self.precision = source, root, precision
        self.converted, self.capture, self.budget, self.progress = converted, capture, budget, progress
        self.manifest = source.manifest
        self.levels = [source.at_level(index) for index in range(len(self.manifest.levels))]
        self.choices: dict[str, list[Choice]] = {}

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
        with tqdm(total=len(stages) * len(self.manifest.buckets), desc=f"calibrate: {self.precision}", unit="graph",
                  disable=not self.progress) as bar:
            for name in stages:
                bar.set_postfix_str(f"{name}: ranges and ops" if name in self.converted else name)
                try:
                    self._write_stage(name, store, bar)
                except ExportError:
                    raise
                except Exception as exc:  # the converter and the quantiser raise many unrelated types
                    reason = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
                    raise ExportError(f"cannot convert stage {name} to {self.precision}: {reason}") from exc

    def _write_stage(self, name: str, store: WeightStore, bar: tqdm) -> None:
        convert = self._converter(name)
        for bucket in self.manifest.buckets:
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
        reached = self._reached(stage)
        ranges = [merge_ranges(activation_ranges(load_graph(self.levels[level], bucket.stages[stage]),
                                                 self.capture.feeds[level, stage, bucket.name], INT8_OPS)
                               for bucket in reached) for level in range(len(self.levels))]
        # The op choice is measured in the bucket the images reached most.
        measured = max(reached, key=lambda bucket: len(self.capture.feeds[0, stage, bucket.name]))
        floors = self.capture.distortion if stage == "g_s" else [ROUNDING_NOISE] * len(self.levels)
        self.choices[stage] = [
            choose_float_ops(load_graph(level, measured.stages[stage]), ranges[index],
                             self.capture.feeds[index, stage, measured.name][:SENSITIVITY_FEEDS], INT8_OPS,
                             floors[index], self.budget)
            for index, level in enumerate(self.levels)]
        keep_float = sorted({name for choice in self.choices[stage] for name in choice.kept_float})
        return lambda model, level: quantize_int8(model, ranges[level], INT8_OPS, keep_float)

    def _reached(self, stage: str) -> list[Bucket]:
        """The buckets in which the calibration images ran the stage (the same at every level)."""
        reached = [bucket for bucket in self.manifest.buckets if (0, stage, bucket.name) in self.capture.feeds]
        if not reached:
            raise ExportError(f"no calibration image reached stage {stage}")
        return reached
