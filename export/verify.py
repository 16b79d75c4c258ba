"""Checking exported graphs against PyTorch, stage by stage, in ONNX Runtime."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from licrt.runtime.backends.onnxruntime import OnnxRuntimeBackend
from licrt.runtime.bundle import Bundle

#: A stage passes when max |ONNX Runtime − PyTorch| ≤ TOLERANCE · max(1, max |PyTorch|).
TOLERANCE = 1e-4


@dataclass(frozen=True)
class StageCheck:
    bucket: str
    stage: str
    max_error: float
    magnitude: float

    @property
    def passed(self) -> bool:
        return self.max_error <= TOLERANCE * max(1.0, self.magnitude)


def verify_bundle(bundle: Bundle, references: dict[str, dict[str, tuple[dict, dict]]]) -> list[StageCheck]:
    """Run every stage graph on the inputs PyTorch saw and compare the outputs.

    Args:
        bundle: The freshly written bundle.
        references: Per bucket name, per stage, the (inputs, outputs) PyTorch
            recorded (see ``HyperpriorCodec.reference``).
    """
    backend = OnnxRuntimeBackend(providers=["CPUExecutionProvider"])
    checks = []
    for bucket in bundle.manifest.buckets:
        for stage, graph in bucket.stages.items():
            inputs, outputs = references[bucket.name][stage]
            runner = backend.load(stage, bundle.path(graph.file), graph)
            results = runner.run({name: _numpy(t) for name, t in inputs.items()})
            error = max(float(np.abs(results[name] - _numpy(t)).max()) for name, t in outputs.items())
            magnitude = max(float(np.abs(_numpy(t)).max()) for t in outputs.values() if t.numel())
            checks.append(StageCheck(bucket.name, stage, error, magnitude))
    return checks


def _numpy(tensor: torch.Tensor) -> np.ndarray:
    return tensor.detach().cpu().numpy()
