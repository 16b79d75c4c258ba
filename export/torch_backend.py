"""The PyTorch reference as a backend: a bundle's own codec model, stage by stage, behind the same scheduler.

It rebuilds the model from the bundle at the file's quality level (see
:func:`licrt.export.checkpoint.model_from_bundle`), so it needs nothing but
the bundle and torch. It lives on the export side because it needs torch; ``licrt --backend torch``
finds it through the ``licrt.backends`` entry point.

On CUDA, TF32 (10-bit mantissas in matrix products and convolutions, about
1e-3 relative) is off unless asked for: its floats are far outside what the
guard covers, which is what ``tf32=True`` is there to show.
"""

from __future__ import annotations

import contextlib

import numpy as np
import torch

from licrt.runtime.backends.base import Backend, StageRunner
from licrt.runtime.backends.onnxruntime import cpu_isa
from licrt.runtime.errors import BackendError, ExportError
from licrt.runtime.manifest import StageGraph

from .checkpoint import model_from_bundle


class TorchBackend(Backend):
    """Runs a bundle's stages with its PyTorch model.

    Args:
        device: ``cpu`` or ``cuda``; default CUDA when available.
        tf32: Allow TF32 on CUDA.
    """

    name = "torch"

    def __init__(self, device: str | None = None, tf32: bool = False):
        if device is None:
            device = "cuda" if torch.cuda.is_available() else "cpu"
        if device == "cuda" and not torch.cuda.is_available():
            raise BackendError("the torch backend was asked for CUDA, but torch sees no GPU")
        self.device = torch.device(device)
        self.tf32 = tf32
        self._stages: dict[bytes, dict[str, torch.nn.Module]] = {}

    @property
    def profile(self) -> str:
        if self.device.type == "cuda":
            where = f"CUDA {torch.cuda.get_device_name(self.device)} tf32={'on' if self.tf32 else 'off'}"
        else:
            where = f"CPU {cpu_isa()}"
        return f"torch {torch.__version__} {where} fp32"

    def load(self, bundle, name: str, graph: StageGraph) -> StageRunner:
        if bundle.key not in self._stages:
            try:
                model = model_from_bundle(bundle)
            except ExportError as exc:
                raise BackendError(f"the torch backend cannot build the bundle's codec: {exc}") from None
            self._stages[bundle.key] = model.eval().to(self.device).stage_modules()
        return _ModuleRunner(name, graph, self._stages[bundle.key][name], self.device, self.tf32)


class _ModuleRunner(StageRunner):
    """The stage module on the backend's device; held inputs and kept outputs stay there as tensors."""

    def __init__(self, name: str, graph: StageGraph, module: torch.nn.Module, device: torch.device, tf32: bool):
        super().__init__(name, graph)
        self._module = module
        self._device = device
        self._tf32 = tf32

    def _run(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        outputs = self._device_run({name: self._device_put(array) for name, array in feed.items()})
        return {name: self._device_get(tensor) for name, tensor in outputs.items()}

    def _device_put(self, array: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(array)).to(self._device, copy=True)

    def _device_get(self, tensor: torch.Tensor) -> np.ndarray:
        return tensor.cpu().numpy()

    def _device_run(self, inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        with torch.no_grad(), _tf32(self._tf32):
            outputs = self._module(*(inputs[spec.name] for spec in self.graph.inputs))
        if isinstance(outputs, torch.Tensor):
            outputs = (outputs,)
        return {spec.name: tensor for spec, tensor in zip(self.graph.outputs, outputs, strict=True)}

    def _device_write(self, tensor: torch.Tensor, index, values: np.ndarray) -> None:
        tensor[index] = self._device_put(values)


@contextlib.contextmanager
def _tf32(allowed: bool):
    """TF32 in CUDA matrix products and convolutions as asked, restored afterwards."""
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = allowed
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved
