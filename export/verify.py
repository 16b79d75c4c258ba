"""Checking exported graphs against PyTorch, stage by stage, in ONNX Runtime.

A stage passes when every output is within ``TOLERANCE · max(1, max |PyTorch|)``.
Graphs with top-k attention may differ by more, and only where a near-tie
explains it: top-k is discontinuous, so where a row's k-th and (k+1)-th
largest logits lie within float rounding of each other, ONNX Runtime and
PyTorch may keep different keys, and everything downstream of that row
moves. The check runs the stage in PyTorch twice more, as it is and keeping
both keys of every row whose two logits lie within ``TIE_MARGIN``
(relative): outputs that the second run moves by more than a hundredth of the
tolerance depend on a near-tied choice. A top-k graph passes if every output
beyond the tolerance is one of them; an export bug moves others.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx
import torch

from licrt.plugins.topk_attention import DOMAIN
from licrt.plugins.topk_attention.torch_op import near_ties_kept
from licrt.runtime.backends.onnxruntime import OnnxRuntimeBackend
from licrt.runtime.bundle import Bundle

TOLERANCE = 1e-4
#: Logits this close (relative to the k-th, at least absolute) count as tied: far above the ~1e-6 by which
#: ONNX Runtime's and PyTorch's logits differ, far below the gaps between most neighbouring logits.
TIE_MARGIN = 1e-4


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
    #: Top-k rows whose k-th and (k+1)-th logits lie within TIE_MARGIN (top-k graphs only).
    near_ties: int = 0
    #: Share of output elements beyond the tolerance that depend on no near-tied choice (must be 0).
    unexplained: float = 0.0

    @property
    def tolerance(self) -> float:
        return TOLERANCE * max(1.0, self.magnitude)

    @property
    def level_suffix(self) -> str:
        return f" ({self.level})" if self.level else ""

    @property
    def passed(self) -> bool:
        return self.max_error <= self.tolerance or (self.has_topk and self.unexplained == 0.0)


def verify_bundle(bundle: Bundle, references: dict[tuple[str, str], dict[str, tuple[dict, dict]]],
                  modules: dict[str, torch.nn.Module], level: str = "") -> list[StageCheck]:
    """Run every stage graph at the bundle's quality level on the inputs PyTorch saw and compare the outputs.

    Args:
        bundle: The freshly written bundle, at the level to check.
        references: Per (level name, bucket name), per stage, the (inputs,
            outputs) PyTorch recorded (see ``HyperpriorCodec.reference``).
        modules: The level's stage modules (``HyperpriorCodec.stage_modules``), to rerun a top-k stage with
            near-ties kept.
        level: The name checks report the level by ("" for a bundle of one level).
    """
    backend = OnnxRuntimeBackend(providers=["CPUExecutionProvider"])
    checks = []
    for bucket in bundle.manifest.buckets:
        for stage, graph in bucket.stages.items():
            inputs, outputs = references[bundle.level_name, bucket.name][stage]
            results = backend.load(bundle, stage, graph).run({name: _numpy(t) for name, t in inputs.items()})
            expected = np.concatenate([_numpy(t).ravel() for t in outputs.values()])
            error = np.abs(np.concatenate([results[name].ravel() for name in outputs]) - expected)
            magnitude = max(float(np.abs(_numpy(t)).max()) for t in outputs.values() if t.numel())
            tolerance = TOLERANCE * max(1.0, magnitude)
            beyond = error > tolerance
            nodes = onnx.load(str(bundle.path(graph.file)), load_external_data=False).graph.node
            has_topk = any(n.domain == DOMAIN or n.op_type == "TopK" for n in nodes)
            near_ties, unexplained = 0, 0.0
            if has_topk and beyond.any():
                with near_ties_kept(TIE_MARGIN) as widened:
                    moved = _run(modules[stage], inputs)
                movable = np.abs(moved - _run(modules[stage], inputs)) > tolerance / 100
                near_ties, unexplained = widened[0], float(np.mean(beyond & ~movable))
            checks.append(StageCheck(bucket.name, stage, level, float(error.max()), magnitude,
                                     float(np.mean(beyond)), has_topk, near_ties, unexplained))
    return checks


def _run(module: torch.nn.Module, inputs: dict[str, torch.Tensor]) -> np.ndarray:
    """The stage's outputs in PyTorch, flattened and concatenated in graph order."""
    with torch.no_grad():
        outputs = module(*inputs.values())
    return np.concatenate([_numpy(t).ravel() for t in (outputs if isinstance(outputs, tuple) else (outputs,))])


def _numpy(tensor: torch.Tensor) -> np.ndarray:
    return tensor.detach().cpu().numpy()
