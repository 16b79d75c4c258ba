"""ONNX Runtime: the portable backend, on CPU or through its CUDA provider."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import BackendError
from ..manifest import StageGraph
from .base import Backend, StageRunner

#: Providers tried in order when none are requested.
PREFERRED_PROVIDERS = ("CUDAExecutionProvider", "CPUExecutionProvider")


class OnnxRuntimeBackend(Backend):
    """Runs stage graphs with ``onnxruntime.InferenceSession``.

    Args:
        providers: Execution providers in priority order; ``None`` takes the
            available ones of :data:`PREFERRED_PROVIDERS`.
        threads: Intra-op threads; ``None`` lets ONNX Runtime decide.
    """

    name = "onnxruntime"

    def __init__(self, providers: list[str] | None = None, threads: int | None = None):
        import onnxruntime

        self._ort = onnxruntime
        available = onnxruntime.get_available_providers()
        if providers is None:
            providers = [p for p in PREFERRED_PROVIDERS if p in available]
        unknown = [p for p in providers if p not in available]
        if unknown:
            raise BackendError(
                f"ONNX Runtime provider(s) {', '.join(unknown)} requested, but this "
                f"installation offers {', '.join(available)}"
            )
        self.providers = list(providers)
        self.threads = threads

    @property
    def profile(self) -> str:
        return f"onnxruntime {self._ort.__version__} {self.providers[0]} fp32"

    def load(self, name: str, path: Path, graph: StageGraph) -> StageRunner:
        options = self._ort.SessionOptions()
        options.graph_optimization_level = self._ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.use_deterministic_compute = True
        options.enable_cpu_mem_arena = False
        if self.threads:
            options.intra_op_num_threads = self.threads
        try:
            session = self._ort.InferenceSession(
                str(path), sess_options=options, providers=self.providers
            )
        except Exception as exc:  # ONNX Runtime raises its own untyped errors
            raise BackendError(f"ONNX Runtime cannot load stage {name} ({path.name}): {exc}") from None
        return _SessionRunner(name, graph, session)


class _SessionRunner(StageRunner):
    def __init__(self, name: str, graph: StageGraph, session):
        super().__init__(name, graph)
        self._session = session
        self._output_names = [spec.name for spec in graph.outputs]

    def _run(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        try:
            outputs = self._session.run(self._output_names, feed)
        except Exception as exc:
            raise BackendError(f"ONNX Runtime failed to run stage {self.name}: {exc}") from None
        return dict(zip(self._output_names, outputs, strict=True))
