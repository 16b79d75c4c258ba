"""ONNX Runtime: the portable backend, on CPU or through its CUDA provider."""

from __future__ import annotations

import numpy as np

from ..errors import BackendError
from ..manifest import StageGraph
from .base import Backend, StageRunner

#: Providers tried in order when none are requested.
PREFERRED_PROVIDERS = ("CUDAExecutionProvider", "CPUExecutionProvider")
#: ONNX Runtime's graph optimisation levels, by the name a profile records.
GRAPH_OPTIMIZATIONS = {
    "all": "ORT_ENABLE_ALL",
    "extended": "ORT_ENABLE_EXTENDED",
    "basic": "ORT_ENABLE_BASIC",
    "disabled": "ORT_DISABLE_ALL",
}


class OnnxRuntimeBackend(Backend):
    """Runs stage graphs with ``onnxruntime.InferenceSession``.

    A bundle is a dozen sessions per bucket, run one after another, each with
    a thread pool of its own that sleeps between runs instead of spinning:
    spinning pools compete for the cores while the next session works
    (``bench/results/ort-sessions.json``: decompressing Kodak 1.22–1.32×
    faster than with spinning pools). One pool shared by the process does
    about as well, but ONNX Runtime then refuses every session in the
    process that does not share it; one arena shared by all sessions speeds
    up Kodak but slows a 1088×1920 compress 1.6× and peaks 1.6 GiB higher.

    Args:
        providers: Execution providers in priority order; ``None`` takes the
            available ones of :data:`PREFERRED_PROVIDERS`.
        threads: Intra-op threads per session; ``None`` lets ONNX Runtime
            decide. The thread count changes no bit of any stage output
            (``bench/results/float-profile.json``), so the profile leaves it out.
        graph_optimization: One of :data:`GRAPH_OPTIMIZATIONS`. Fusions change
            the floats, so the level is part of the profile.
    """

    name = "onnxruntime"

    def __init__(self, providers: list[str] | None = None, threads: int | None = None,
                 graph_optimization: str = "all"):
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
        if graph_optimization not in GRAPH_OPTIMIZATIONS:
            raise BackendError(f"graph optimisation {graph_optimization!r} is not one of "
                               f"{', '.join(GRAPH_OPTIMIZATIONS)}")
        self.providers = list(providers)
        self.threads = threads
        self.graph_optimization = graph_optimization

    @property
    def profile(self) -> str:
        provider = self.providers[0].removesuffix("ExecutionProvider")
        device = f"{provider} {cpu_isa()}" if provider == "CPU" else provider
        return f"onnxruntime {self._ort.__version__} {device} opt={self.graph_optimization} fp32"

    def session_options(self, bundle):
        """The options of every session: deterministic kernels, the graph optimisation level, the level's
        weights folder, no arena, a thread pool that does not spin."""
        options = self._ort.SessionOptions()
        level = GRAPH_OPTIMIZATIONS[self.graph_optimization]
        options.graph_optimization_level = getattr(self._ort.GraphOptimizationLevel, level)
        options.use_deterministic_compute = True
        options.enable_cpu_mem_arena = False
        # The graphs of all quality levels are the same; the level's folder holds the weights they name.
        options.add_session_config_entry("session.model_external_initializers_file_folder_path",
                                         str(bundle.weights_folder))
        if self.threads:
            options.intra_op_num_threads = self.threads
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        return options

    def load(self, bundle, name: str, graph: StageGraph) -> StageRunner:
        path = bundle.path(graph.file)
        options = self.session_options(bundle)
        try:
            session = self._ort.InferenceSession(path.read_bytes(), sess_options=options, providers=self.providers)
        except OSError as exc:
            raise BackendError(f"cannot read stage {name} ({path.name}): {exc.strerror}") from None
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


def cpu_isa() -> str:
    """The widest vector extension this CPU offers, as ONNX Runtime's kernels dispatch on it.

    Kernels for AVX-512, AVX2 and SSE sum in different orders, so the same
    graph computes different floats on CPUs of different generations.
    """
    try:  # numpy's CPU dispatch table: numpy._core from 2.0, numpy.core before
        from numpy._core._multiarray_umath import __cpu_features__ as features
    except ImportError:
        from numpy.core._multiarray_umath import __cpu_features__ as features
    for isa, flag in (("avx512", "AVX512F"), ("avx2", "AVX2"), ("neon", "ASIMD"), ("sse", "SSE2")):
        if features.get(flag):
            return isa
    return "generic"
