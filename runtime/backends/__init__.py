"""Backends that run stage graphs (see :mod:`.base` for the interface).

Backends besides ONNX Runtime register themselves under the ``licrt.backends``
entry point group (name → a class taking no arguments), so a backend that
needs torch or TensorRT lives where those are installed.
"""

from __future__ import annotations

from importlib.metadata import entry_points

from ..errors import BackendError
from .base import Backend, StageRunner

#: Always there: ``auto`` is ONNX Runtime on the fastest provider it has; ``onnxruntime-noopt``
#: runs the graphs as exported, without ONNX Runtime's fusions (other floats).
BUILTIN_BACKENDS = ("auto", "onnxruntime", "onnxruntime-noopt")
#: Part of licrt, usable where their optional dependencies are (``licrt[openvino]``, ``licrt[gpu]``).
OPENVINO = "openvino"
#: OpenVINO with the free stages (g_a, h_a, g_s) in bfloat16 where the CPU computes it.
OPENVINO_BF16 = "openvino-bf16"
TENSORRT = "tensorrt"
#: ``perturbed:EPSILON[:BACKEND]`` nudges every float BACKEND computes by up to
#: EPSILON relative (see :mod:`.perturbed`): a test of the guard.
PERTURBED = "perturbed"


def backend_names() -> tuple[str, ...]:
    """Names :func:`open_backend` takes: the built-in ones and those registered."""
    registered = sorted(entry.name for entry in entry_points(group="licrt.backends"))
    return (*BUILTIN_BACKENDS, OPENVINO, OPENVINO_BF16, TENSORRT, *registered)


def open_backend(name: str = "auto") -> Backend:
    """Create a backend by name (see :func:`backend_names`).

    ``auto`` is ONNX Runtime, with its CUDA provider when present. (OpenVINO
    codes faster on CPUs but compiles slower: ask for it by name.)

    Raises:
        BackendError: the name is unknown or the backend is not installed.
    """
    if name in BUILTIN_BACKENDS:
        from .onnxruntime import OnnxRuntimeBackend

        return OnnxRuntimeBackend(graph_optimization="disabled" if name.endswith("noopt") else "all")
    if name in (OPENVINO, OPENVINO_BF16):
        from .openvino import OpenVinoBackend

        return OpenVinoBackend(free_stages_in_bfloat16=name == OPENVINO_BF16)
    if name == TENSORRT:
        from .tensorrt import TensorRTBackend

        return TensorRTBackend()
    if name.startswith(f"{PERTURBED}:"):
        from .perturbed import PerturbedBackend

        _, epsilon, *inner = name.split(":", 2)
        try:
            size = float(epsilon)
        except ValueError:
            size = -1.0
        if not 0 <= size < 1:
            raise BackendError(f"{name!r}: expected {PERTURBED}:EPSILON[:BACKEND] with 0 ≤ EPSILON < 1, "
                               "e.g. perturbed:1e-5")
        return PerturbedBackend(open_backend(inner[0] if inner else "auto"), size)
    for entry in entry_points(group="licrt.backends", name=name):
        try:
            backend = entry.load()
        except ImportError as exc:
            raise BackendError(f"backend {name!r} is not usable here: {exc}") from None
        return backend()
    raise BackendError(f"unknown backend {name!r}; choose one of {', '.join(backend_names())}, "
                       f"or {PERTURBED}:EPSILON[:BACKEND]")


__all__ = ["BUILTIN_BACKENDS", "Backend", "StageRunner", "backend_names", "open_backend"]
