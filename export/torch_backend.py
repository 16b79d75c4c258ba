"""The PyTorch reference as a backend: a bundle's own codec model, stage by stage, behind the same scheduler.

It rebuilds the model from the manifest (codec id and configuration) and takes
every weight from the bundle's stage graphs, whose initializers are named
after the model's parameters, so it needs nothing but the bundle and torch.
Where export folded a parameter into another constant (Entroformer's GDN
keeps its reparametrised β and γ), the checkpoint the bundle was exported
from supplies the weights, and the graphs' named weights vouch that it is
that checkpoint.
It lives on the export side because it needs torch; ``licrt --backend torch``
finds it through the ``licrt.backends`` entry point.

On CUDA, TF32 (10-bit mantissas in matrix products and convolutions, about
1e-3 relative) is off unless asked for: its floats are far outside what the
guard covers, which is what ``tf32=True`` is there to show.
"""

from __future__ import annotations

import contextlib
import hashlib
from pathlib import Path

import numpy as np
import onnx
import torch
from onnx import numpy_helper

from licrt.runtime.backends.base import Backend, StageRunner
from licrt.runtime.backends.onnxruntime import cpu_isa
from licrt.runtime.errors import BackendError, LicrtError
from licrt.runtime.manifest import StageGraph

from . import registry
from .checkpoint import load_model

#: The stage modules hold the codec under this name, and the exporter keeps it in initializer names.
_PREFIX = "codec."
#: Weights stored in half precision are named with this suffix (see ``graphs.WeightStore``).
_HALF = ".fp16"
#: Parameters no stage graph uses: the z prior exists in the bundle as tables.
_TABLE_ONLY = "z_prior."


class TorchBackend(Backend):
    """Runs a bundle's stages with its PyTorch model.

    Args:
        device: ``cpu`` or ``cuda``; default CUDA when available.
        tf32: Allow TF32 on CUDA.
        checkpoint: The checkpoint the bundle was exported from, for bundles
            whose graphs do not hold every parameter by name.
    """

    name = "torch"

    def __init__(self, device: str | None = None, tf32: bool = False, checkpoint: str | Path | None = None):
        if device is None:
            device = "cuda" if torch.cuda.is_available() else "cpu"
        if device == "cuda" and not torch.cuda.is_available():
            raise BackendError("the torch backend was asked for CUDA, but torch sees no GPU")
        self.device = torch.device(device)
        self.tf32 = tf32
        self.checkpoint = checkpoint
        self._stages: dict[bytes, dict[str, torch.nn.Module]] = {}

    @property
    def profile(self) -> str:
        if self.device.type == "cuda":
            where = f"CUDA {torch.cuda.get_device_name(self.device)} tf32={'on' if self.tf32 else 'off'}"
        else:
            where = f"CPU {cpu_isa()}"
        return f"torch {torch.__version__} {where} fp32"

    def load(self, bundle, name: str, graph: StageGraph) -> StageRunner:
        if bundle.fingerprint not in self._stages:
            self._stages[bundle.fingerprint] = _model(bundle, self.checkpoint).to(self.device).stage_modules()
        return _ModuleRunner(name, graph, self._stages[bundle.fingerprint][name], self.device, self.tf32)


def _model(bundle, checkpoint: str | Path | None):
    """The bundle's codec with the weights its graphs hold (or the checkpoint's, vouched for by them).

    Raises:
        BackendError: the codec is unknown to this licrt, a parameter is in no
            graph and no checkpoint was given, or the checkpoint's weights are
            not the graphs'.
    """
    manifest = bundle.manifest
    try:
        if checkpoint is None:
            model = registry.build(manifest.codec, registry.make_config(manifest.codec, manifest.config))
        else:
            model = load_model(checkpoint, manifest.codec)
    except LicrtError as exc:
        raise BackendError(f"the torch backend cannot build the bundle's codec: {exc}") from None
    wanted = model.state_dict()
    weights, contents = {}, set()
    for graph in manifest.buckets[0].stages.values():
        for tensor in onnx.load(str(bundle.path(graph.file))).graph.initializer:
            array = numpy_helper.to_array(tensor).astype(np.float32)
            contents.add(_content(array))
            key = tensor.name.removesuffix(_HALF).removeprefix(_PREFIX)
            if tensor.name.startswith(_PREFIX) and key in wanted:
                weights[key] = torch.from_numpy(array)
    # The exporter keeps one of several identical initializers (all-ones norm
    # weights of an untrained model): a parameter whose initial value is among
    # the graphs' contents is such a one.
    for key, value in wanted.items():
        if key not in weights and _content(value.numpy().astype(np.float32)) in contents:
            weights[key] = value
    if checkpoint is not None:
        differing = [key for key, value in weights.items() if not torch.equal(value, wanted[key].float())]
        if differing or len(weights) < len(wanted) // 2:
            raise BackendError(f"{checkpoint} does not hold this bundle's weights (e.g. {differing[:1]})")
        return model.eval()
    missing = [key for key in wanted if key not in weights and not key.startswith(_TABLE_ONLY)]
    if missing:
        raise BackendError(f"the torch backend found {len(missing)} of the model's parameters in none of the "
                           f"bundle's graphs (e.g. {missing[0]}); give it the checkpoint the bundle was "
                           "exported from")
    model.load_state_dict(weights, strict=False)
    return model.eval()


def _content(array: np.ndarray) -> tuple:
    return array.shape, hashlib.sha256(np.ascontiguousarray(array).tobytes()).digest()


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
