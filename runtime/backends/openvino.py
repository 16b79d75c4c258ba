"""OpenVINO: the fastest CPU backend for many or large images (``pip install 'licrt[openvino]'``).

OpenVINO's CPU plugin compiles each stage graph with oneDNN and fuses what
ONNX Runtime runs as separate passes (GELU, bias and residual additions into
the matrix products, the layout changes around them): on Kodak the default
model codes 1.55–1.85× faster than in ONNX Runtime on the same CPU
(``bench/results/licrt-bench-default.json``). Compiling costs about 0.9 s
per bucket, halved once compiled graphs are cached (``$LICRT_ENGINE_CACHE``,
else ``~/.cache/licrt/engines``, under ``openvino/``; OpenVINO keys them by
graph, settings and version), so one small image per process still runs
faster in ONNX Runtime, which is why ``auto`` does not pick OpenVINO.

Precision is pinned to float32: on CPUs with bfloat16 or float16 units the
plugin would otherwise compute in them, far outside what the guard covers.
OpenVINO's ONNX reader does not expand ONNX local functions, so graphs that
hold one (Entroformer's ``licrt::TopkAttention``) are inlined with ``onnx``
first. Imported only when asked for (``--backend openvino``).
"""

from __future__ import annotations

import numpy as np

from ..errors import BackendError
from ..manifest import StageGraph
from .base import Backend, StageRunner, engine_cache, graph_beside_weights
from .onnxruntime import cpu_isa

#: The plugin's settings for every graph: float32 arithmetic, one stream tuned for latency.
SETTINGS = {"INFERENCE_PRECISION_HINT": "f32", "PERFORMANCE_HINT": "LATENCY", "NUM_STREAMS": "1"}


class OpenVinoBackend(Backend):
    """Runs stage graphs with OpenVINO on the CPU.

    Args:
        threads: Threads per inference; ``None`` lets OpenVINO decide. Like ONNX Runtime's, the count
            changes no bit (1 and 2 threads checked on g_s, h_s and two context graphs), so the profile
            leaves it out.
    """

    name = "openvino"

    def __init__(self, threads: int | None = None):
        try:
            import openvino
        except ImportError:
            raise BackendError("the openvino backend needs OpenVINO: pip install 'licrt[openvino]'") from None
        self._openvino = openvino
        self._core = openvino.Core()
        self.settings = dict(SETTINGS)
        cache = engine_cache() / "openvino"
        try:
            cache.mkdir(parents=True, exist_ok=True)
            self.settings["CACHE_DIR"] = str(cache)
        except OSError:  # no cache then: every process compiles its graphs afresh
            pass
        if threads:
            self.settings["INFERENCE_NUM_THREADS"] = str(threads)

    @property
    def profile(self) -> str:
        version = self._openvino.get_version().split("-")[0]
        return f"openvino {version} CPU {cpu_isa()} fp32"

    def load(self, bundle, name: str, graph: StageGraph) -> StageRunner:
        try:
            with graph_beside_weights(bundle, graph) as path:
                _inline_local_functions(path)
                compiled = self._core.compile_model(self._core.read_model(path), "CPU", self.settings)
        except OSError as exc:
            raise BackendError(f"cannot read stage {name} ({graph.file}): {exc.strerror}") from None
        except RuntimeError as exc:  # OpenVINO's errors on reading or compiling
            raise BackendError(f"OpenVINO cannot load stage {name} ({graph.file}): {_first_line(exc)}") from None
        return _CompiledRunner(name, graph, compiled)


class _CompiledRunner(StageRunner):
    def __init__(self, name: str, graph: StageGraph, compiled):
        super().__init__(name, graph)
        self._request = compiled.create_infer_request()

    def _run(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        try:  # OpenVINO reads the arrays in place; the outputs come back as copies
            results = self._request.infer(feed, share_inputs=True)
        except RuntimeError as exc:
            raise BackendError(f"OpenVINO failed to run stage {self.name}: {_first_line(exc)}") from None
        return {spec.name: results[spec.name] for spec in self.graph.outputs}


def _inline_local_functions(path) -> None:
    """Rewrite the graph file at path with its local functions expanded in place, if it has any."""
    import onnx
    from onnx import inliner

    model = onnx.load(str(path), load_external_data=False)
    if model.functions:
        onnx.save(inliner.inline_local_functions(model), str(path))


def _first_line(exc: Exception) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
