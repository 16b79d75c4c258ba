"""Backends that run stage graphs (see :mod:`.base` for the interface)."""

from __future__ import annotations

from ..errors import BackendError
from .base import Backend, StageRunner

BACKENDS = ("auto", "onnxruntime")


def open_backend(name: str = "auto") -> Backend:
    """Create a backend by name.

    ``auto`` picks the fastest backend that can run here: ONNX Runtime with
    its CUDA provider when present, else on the CPU.

    Raises:
        BackendError: the name is unknown or the backend is not installed.
    """
    if name in ("auto", "onnxruntime"):
        from .onnxruntime import OnnxRuntimeBackend

        return OnnxRuntimeBackend()
    raise BackendError(f"unknown backend {name!r}; choose one of {', '.join(BACKENDS)}")


__all__ = ["BACKENDS", "Backend", "StageRunner", "open_backend"]
