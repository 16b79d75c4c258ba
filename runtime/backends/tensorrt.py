"""TensorRT: one engine per stage graph and bucket, built once and cached outside the bundle.

Thin by design: polygraphy parses, builds, saves and runs; this module decides
how. Networks are strongly typed, so every layer computes in the type the
graph says (float32 for licrt's float32 bundles; Casts and Q/DQ nodes where a
calibrated bundle says otherwise), and TF32 is off: the entropy-parameter
graphs decide how symbols are coded and tolerate ~1e-5 relative difference,
far below TF32's. ``licrt::TopkAttention`` nodes become the fused kernel's
ahead-of-time plugin (:mod:`licrt.plugins.topk_attention.tensorrt_plugin`).

Plans are cached under :func:`engine_cache` (``$LICRT_ENGINE_CACHE``, else
``~/.cache/licrt/engines``; the default bundle lives in site-packages), keyed
by what determines a plan: the bundle's fingerprint and quality level, the
graph's sha256, the TensorRT version, the GPU and the builder settings.

Imported only when asked for: tensorrt and polygraphy are optional
(``pip install 'licrt[gpu]'``) and need an NVIDIA GPU.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from ..errors import BackendError
from ..manifest import StageGraph
from .base import Backend, StageRunner, engine_cache, graph_beside_weights

#: Builder settings; part of every plan's key.
BUILDER = {"strongly_typed": True, "tf32": False}


def _import_tensorrt():
    try:
        import tensorrt
        from cuda.bindings import runtime as cudart
        from polygraphy.backend import trt as polygraphy_trt
    except ImportError as exc:
        raise BackendError(f"TensorRT is not usable here ({exc}): it needs an NVIDIA GPU, TensorRT 10.7 or later, "
                           "polygraphy and cuda-python (pip install 'licrt[gpu]')") from None
    error, properties = cudart.cudaGetDeviceProperties(0)
    if error != cudart.cudaError_t.cudaSuccess:
        raise BackendError(f"TensorRT needs an NVIDIA GPU; CUDA says {error.name}")
    gpu = f"{properties.name.decode(errors='replace').rstrip(chr(0))} sm{properties.major}{properties.minor}"
    return tensorrt, polygraphy_trt, gpu


class TensorRTBackend(Backend):
    """Runs stage graphs as TensorRT engines, building (and caching) each on first use.

    Args:
        cache: Folder of plans (default :func:`engine_cache`).
        timing_cache: A TensorRT timing cache file to read and update: later
            builds on the same GPU reuse its kernel timings.
    """

    name = "tensorrt"

    def __init__(self, cache: Path | None = None, timing_cache: Path | None = None):
        self._trt, self._polygraphy, self.gpu = _import_tensorrt()
        self.cache = engine_cache() if cache is None else cache
        self.timing_cache = timing_cache

    @property
    def profile(self) -> str:
        return f"tensorrt {self._trt.__version__} CUDA {self.gpu} tf32=off fp32"

    def plan_path(self, bundle, graph: StageGraph) -> Path:
        """Where the plan for this graph of this bundle, on this GPU and TensorRT, is cached."""
        key = json.dumps({"bundle": bundle.fingerprint.hex(), "level": bundle.level_name,
                          "graph": bundle.manifest.files[graph.file],
                          "tensorrt": self._trt.__version__, "gpu": self.gpu, **BUILDER}, sort_keys=True)
        return self.cache / f"{Path(graph.file).stem}.{hashlib.sha256(key.encode()).hexdigest()[:20]}.plan"

    def build(self, bundle, graph: StageGraph) -> Path:
        """Build the graph's plan unless it is cached; its path."""
        path = self.plan_path(bundle, graph)
        if path.is_file():
            return path
        polygraphy = self._polygraphy
        if _uses_topk_attention(bundle, graph):
            import licrt.plugins.topk_attention.tensorrt_plugin  # noqa: F401  (registers the plugin)
        config = polygraphy.CreateConfig(tf32=BUILDER["tf32"], load_timing_cache=self.timing_cache)
        try:
            with graph_beside_weights(bundle, graph) as onnx_path:
                network = polygraphy.network_from_onnx_path(str(onnx_path), strongly_typed=BUILDER["strongly_typed"])
                engine = polygraphy.engine_from_network(network, config=config, save_timing_cache=self.timing_cache)
        except Exception as exc:  # polygraphy and TensorRT raise their own untyped errors
            raise BackendError(f"TensorRT could not build {graph.file}: {exc}") from None
        self.cache.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(".partial")
        polygraphy.save_engine(engine, str(partial))
        partial.replace(path)  # a plan is either whole or absent
        return path

    def load(self, bundle, name: str, graph: StageGraph) -> StageRunner:
        plan = self.build(bundle, graph).read_bytes()
        runner = self._polygraphy.TrtRunner(self._polygraphy.engine_from_bytes(plan), name=name)
        runner.activate()
        return _EngineRunner(name, graph, runner)


class _EngineRunner(StageRunner):
    def __init__(self, name: str, graph: StageGraph, runner):
        super().__init__(name, graph)
        self._runner = runner

    def _run(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        try:
            outputs = self._runner.infer(feed, check_inputs=False)
        except Exception as exc:
            raise BackendError(f"TensorRT failed to run stage {self.name}: {exc}") from None
        return {spec.name: np.asarray(outputs[spec.name]) for spec in self.graph.outputs}


def _uses_topk_attention(bundle, graph: StageGraph) -> bool:
    import onnx

    from licrt.plugins.topk_attention import DOMAIN, OP_TYPE

    model = onnx.load(str(bundle.path(graph.file)), load_external_data=False)
    return any(node.domain == DOMAIN and node.op_type == OP_TYPE for node in model.graph.node)

