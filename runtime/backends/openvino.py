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
``openvino-bf16`` lets the free stages (g_a, h_a, g_s: their floats decide
no coding, see :data:`~licrt.runtime.manifest.FREE_STAGES`) compute in
bfloat16 where the CPU has it, the entropy path staying float32: g_s runs
2.2× faster with AMX, files cross with every other backend, and decoded
pixels move by a few levels (Kodak: README, "Speed on the CPU").
OpenVINO's ONNX reader does not expand ONNX local functions, so graphs that
hold one (Entroformer's ``licrt::TopkAttention``) are inlined with ``onnx``
first. Imported only when asked for (``--backend openvino``).
"""

from __future__ import annotations

import os

import numpy as np

from ..errors import BackendError
from ..manifest import FREE_STAGES, StageGraph
from .base import Backend, StageRunner, engine_cache, graph_beside_weights
from .onnxruntime import cpu_isa

#: The plugin's settings for every graph: float32 arithmetic, one stream tuned for latency.
SETTINGS = {"INFERENCE_PRECISION_HINT": "f32", "PERFORMANCE_HINT": "LATENCY", "NUM_STREAMS": "1"}
#: How far bfloat16 may move the probe's output from float32, relative (it moves it by ~6e-3 with AMX):
#: far enough to allow bfloat16's rounding, close enough to catch kernels that compute garbage.
BFLOAT16_PROBE_TOLERANCE = 5e-2


class OpenVinoBackend(Backend):
    """Runs stage graphs with OpenVINO on the CPU.

    Args:
        threads: Threads per inference; ``None`` lets OpenVINO decide. Like ONNX Runtime's, the count
            changes no bit in float32 (1 and 2 threads checked on g_s, h_s and two context graphs), so the
            profile leaves it out (bfloat16 could only be checked at 2 threads: see below).
        free_stages_in_bfloat16: Run g_a, h_a and g_s in bfloat16 (``openvino-bf16``). Checked when the
            backend opens: OpenVINO must have two threads or more, the CPU must compute bfloat16
            (AVX512-BF16 or AMX), and OpenVINO's bfloat16 kernels must agree with its float32 ones on a probe.
    """

    name = "openvino"

    def __init__(self, threads: int | None = None, free_stages_in_bfloat16: bool = False):
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
        self.free_stages_in_bfloat16 = free_stages_in_bfloat16
        self.free_stage_settings = dict(self.settings)
        if free_stages_in_bfloat16:
            self.free_stage_settings["INFERENCE_PRECISION_HINT"] = "bf16"
            _check_bfloat16(self._core, self.settings, self.free_stage_settings, threads)

    @property
    def profile(self) -> str:
        version = self._openvino.get_version().split("-")[0]
        bfloat16 = " free-stages bf16" if self.free_stages_in_bfloat16 else ""
        return f"openvino {version} CPU {cpu_isa()} fp32{bfloat16}"

    def load(self, bundle, name: str, graph: StageGraph) -> StageRunner:
        try:
            with graph_beside_weights(bundle, graph) as path:
                _inline_local_functions(path)
                settings = self.free_stage_settings if name in FREE_STAGES else self.settings
                compiled = self._core.compile_model(self._core.read_model(path), "CPU", settings)
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


def _check_bfloat16(core, float32: dict, bfloat16: dict, threads: int | None) -> None:
    """Refuse bfloat16 where OpenVINO would not compute it, would crash, or computes it wrong."""
    available = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    if (threads or available) < 2:  # openvinotoolkit/openvino#33300: SIGFPE, which no handler can catch
        raise BackendError("openvino-bf16 needs two CPU threads or more: on one, OpenVINO stops the process "
                           "with a floating point exception compiling a bfloat16 gated MLP; use --backend openvino")
    if "BF16" not in core.get_property("CPU", "OPTIMIZATION_CAPABILITIES"):
        raise BackendError("openvino-bf16: this CPU has no bfloat16 arithmetic (AVX512-BF16 or AMX); "
                           "use --backend openvino")
    model, probe = _probe_model()
    outputs = [core.compile_model(model, "CPU", settings).create_infer_request().infer([probe])[0]
               for settings in (float32, bfloat16)]
    error = float(np.linalg.norm(outputs[1] - outputs[0]) / np.linalg.norm(outputs[0]))
    if not error <= BFLOAT16_PROBE_TOLERANCE:  # openvinotoolkit/openvino#38256: wrong bf16 products on some CPUs
        raise BackendError(f"openvino-bf16: OpenVINO's bfloat16 kernels on this CPU are {error:.1%} off its float32 "
                           "ones on a probe (bfloat16 rounding is < 1 %); use --backend openvino")


def _probe_model():
    """A small model with the operations g_s spends its time in, and an input for it (fixed seed)."""
    from openvino import Model, opset13 as ops

    rng = np.random.default_rng(0)

    def weight(*shape):
        return ops.constant((rng.standard_normal(shape) / np.sqrt(np.prod(shape[1:]))).astype(np.float32))

    image = ops.parameter([1, 64, 32, 32], np.float32)
    features = ops.convolution(image, weight(64, 64, 3, 3), [1, 1], [1, 1], [1, 1], [1, 1])
    tokens = ops.transpose(ops.reshape(features, [1, 64, 1024], False), [0, 2, 1])
    tokens = ops.mvn(tokens, [2], True, 1e-6, "inside_sqrt")
    gate, value = (ops.matmul(tokens, weight(64, 128), False, False) for _ in range(2))
    output = ops.matmul(ops.multiply(ops.gelu(gate, "erf"), value), weight(128, 64), False, False)
    return Model([output], [image]), rng.standard_normal([1, 64, 32, 32]).astype(np.float32)


def _inline_local_functions(path) -> None:
    """Rewrite the graph file at path with its local functions expanded in place, if it has any."""
    import onnx
    from onnx import inliner

    model = onnx.load(str(path), load_external_data=False)
    if model.functions:
        onnx.save(inliner.inline_local_functions(model), str(path))


def _first_line(exc: Exception) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
