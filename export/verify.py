"""Checking exported graphs against PyTorch, stage by stage, in ONNX Runtime.

A stage passes when every output is within ``TOLERANCE · max(1, max |PyTorch|)``.
Graphs with top-k attention get one allowance: top-k is discontinuous, so
where two keys tie within float rounding, ONNX Runtime and PyTorch may keep
different ones, and the outputs that depend on that row differ by more. Such
a graph passes if no more than ``TOPK_FLIP_SHARE`` of its outputs exceed the
tolerance; an export bug moves far more than that.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx
import torch

from licrt.plugins.topk_attention import DOMAIN
from licrt.runtime.backends.onnxruntime import OnnxRuntimeBackend
from licrt.runtime.bundle import Bundle

TOLERANCE = 1e-4
TOPK_FLIP_SHARE = 0.1


@dataclass(frozen=True)
class StageCheck:
    bucket: str
    stage: str
    #: The quality level's name ("" in a bundle of one level).
    level: str
    max_error: float
    magnitude: float
    #: Share of output elements beyond the tolerance.
    beyond: float
    has_topk: bool

    @property
    def tolerance(self) -> float:
        return TOLERANCE * max(1.0, self.magnitude)

    @property
    def level_suffix(self) -> str:
        return f" ({self.level})" if self.level else ""

    @property
    def passed(self) -> bool:
        return self.max_error <= self.tolerance or (self.has_topk and self.beyond <= TOPK_FLIP_SHARE)


def verify_bundle(bundle: Bundle, references: dict[tuple[str, str], dict[str, tuple[dict, dict]]],
                  level: str = "") -> list[StageCheck]:
    """Run every stage graph at the bundle's quality level on the inputs PyTorch saw and compare the outputs.

    Args:
        bundle: The freshly written bundle, at the level to check.
        references: Per (level name, bucket name), per stage, the (inputs,
            outputs) PyTorch recorded (see ``HyperpriorCodec.reference``).
        level: The name checks report the level by ("" for a bundle of one level).
    """
    backend = OnnxRuntimeBackend(providers=["CPUExecutionProvider"])
    checks = []
    for bucket in bundle.manifest.buckets:
        for stage, graph in bucket.stages.items():
            inputs, outputs = references[bundle.level_name, bucket.name][stage]
            path = bundle.path(graph.file)
            results = backend.load(bundle, stage, graph).run({name: _numpy(t) for name, t in inputs.items()})
            errors = [np.abs(results[name] - _numpy(t)).ravel() for name, t in outputs.items()]
            magnitude = max(float(np.abs(_numpy(t)).max()) for t in outputs.values() if t.numel())
            tolerance = TOLERANCE * max(1.0, magnitude)
            error = np.concatenate(errors)
            nodes = onnx.load(str(path), load_external_data=False).graph.node
            checks.append(StageCheck(bucket.name, stage, level, float(error.max()), magnitude,
                                     float(np.mean(error > tolerance)), any(n.domain == DOMAIN for n in nodes)))
    return checks


def _numpy(tensor: torch.Tensor) -> np.ndarray:
    return tensor.detach().cpu().numpy()
