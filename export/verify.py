"""Checking exported graphs against PyTorch, stage by stage, in ONNX Runtime.

A stage passes when every output is within ``TOLERANCE · max(1, max |PyTorch|)``.
A graph with top-k attention may first differ by more: top-k is
discontinuous, so where a row's k-th and (k+1)-th largest logits lie within
float rounding of each other, ONNX Runtime and PyTorch may keep different
keys, and everything downstream of that row moves. Such a graph is checked
like with like: ONNX Runtime runs it once more with every top-k node's
logits and largest values as extra outputs (local functions inlined), which
give the keys it kept, PyTorch reruns the stage keeping exactly those keys,
and then every output must be within the
tolerance, and every key the two choose differently must lie within
``TIE_MARGIN`` of its row's k-th logit. A wrong graph fails the first; a
wrong selection the second.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx
import onnxruntime
import torch
from onnx import inliner

from licrt.plugins.topk_attention import DOMAIN
from licrt.plugins.topk_attention.torch_op import selections_forced
from licrt.runtime.backends.onnxruntime import OnnxRuntimeBackend
from licrt.runtime.bundle import Bundle
from licrt.runtime.errors import ExportError

TOLERANCE = 1e-4
#: Keys chosen differently must have logits this close to their row's k-th (relative, at least absolute): far
#: above the ~1e-6 by which ONNX Runtime's and PyTorch's logits differ, far below most neighbouring gaps.
TIE_MARGIN = 1e-4


@dataclass(frozen=True)
class StageCheck:
    bucket: str
    stage: str
    #: The quality level's name ("" in a bundle of one level).
    level: str
    max_error: float
    magnitude: float
    #: Share of output elements beyond the tolerance.
    beyond: float
    has_topk: bool
    #: With ONNX Runtime's top-k choices in PyTorch too (top-k graphs that differ): the largest error, the
    #: rows whose choice differed, and the keys chosen differently that no near-tie explains.
    same_keys_error: float = 0.0
    flipped_rows: int = 0
    unexplained_keys: int = 0

    @property
    def tolerance(self) -> float:
        return TOLERANCE * max(1.0, self.magnitude)

    @property
    def level_suffix(self) -> str:
        return f" ({self.level})" if self.level else ""

    @property
    def passed(self) -> bool:
        if self.max_error <= self.tolerance:
            return True
        return self.has_topk and self.same_keys_error <= self.tolerance and self.unexplained_keys == 0


def verify_bundle(bundle: Bundle, references: dict[tuple[str, str], dict[str, tuple[dict, dict]]],
                  modules: dict[str, torch.nn.Module], level: str = "") -> list[StageCheck]:
    """Run every stage graph at the bundle's quality level on the inputs PyTorch saw and compare the outputs.

    Args:
        bundle: The freshly written bundle, at the level to check.
        references: Per (level name, bucket name), per stage, the (inputs,
            outputs) PyTorch recorded (see ``HyperpriorCodec.reference``).
        modules: The level's stage modules (``HyperpriorCodec.stage_modules``), to rerun a top-k stage with
            ONNX Runtime's choices.
        level: The name checks report the level by ("" for a bundle of one level).
    """
    backend = OnnxRuntimeBackend(providers=["CPUExecutionProvider"])
    checks = []
    for bucket in bundle.manifest.buckets:
        for stage, graph in bucket.stages.items():
            inputs, outputs = references[bundle.level_name, bucket.name][stage]
            feed = {name: _numpy(t) for name, t in inputs.items()}
            results = backend.load(bundle, stage, graph).run(feed)
            expected = _flat(outputs.values())
            error = np.abs(_flat(results[name] for name in outputs) - expected)
            magnitude = max(float(np.abs(_numpy(t)).max()) for t in outputs.values() if t.numel())
            tolerance = TOLERANCE * max(1.0, magnitude)
            model = onnx.load(str(bundle.path(graph.file)), load_external_data=False)
            has_topk = any(n.domain == DOMAIN or n.op_type == "TopK" for n in model.graph.node)
            extra = {}
            if has_topk and error.max() > tolerance:
                got, kept = _run_with_selections(backend, bundle, model, feed, list(outputs))
                try:
                    with selections_forced([torch.from_numpy(k) for k in kept], TIE_MARGIN) as forced:
                        with torch.no_grad():
                            same_keys = modules[stage](*inputs.values())
                except ValueError as exc:  # the graph's top-k nodes are not PyTorch's top-k calls
                    raise ExportError(f"{graph.file}: its top-k nodes do not match PyTorch's: {exc}") from None
                if forced.kept:
                    raise ExportError(f"{graph.file} has {len(kept)} top-k nodes, PyTorch took "
                                      f"{len(kept) - len(forced.kept)}")
                same_keys = same_keys if isinstance(same_keys, tuple) else (same_keys,)
                extra = {"same_keys_error": float(np.abs(got - _flat(same_keys)).max()),
                         "flipped_rows": forced.flipped_rows, "unexplained_keys": forced.unexplained_keys}
            checks.append(StageCheck(bucket.name, stage, level, float(error.max()), magnitude,
                                     float(np.mean(error > tolerance)), has_topk, **extra))
    return checks


def _run_with_selections(backend: OnnxRuntimeBackend, bundle: Bundle, graph: onnx.ModelProto,
                         feed: dict[str, np.ndarray], outputs: list[str]) -> tuple[np.ndarray, list[np.ndarray]]:
    """The graph's outputs (flattened) and, per top-k node in node order, the mask of the keys it keeps:
    those whose logit is at least the k-th largest, as the op defines."""
    model = inliner.inline_local_functions(graph)
    watched = []
    for node in (n for n in model.graph.node if n.op_type == "TopK"):
        watched += [node.input[0], node.output[0]]
        model.graph.output.extend(onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None)
                                  for name in watched[-2:])
    session = onnxruntime.InferenceSession(model.SerializeToString(), backend.session_options(bundle),
                                           providers=backend.providers)
    results = session.run([*outputs, *watched], feed)
    logits, largest = results[len(outputs)::2], results[len(outputs) + 1::2]
    kept = [row >= values[..., -1:] for row, values in zip(logits, largest, strict=True)]
    return _flat(results[: len(outputs)]), kept


def _flat(arrays) -> np.ndarray:
    return np.concatenate([(_numpy(a) if isinstance(a, torch.Tensor) else a).ravel() for a in arrays])


def _numpy(tensor: torch.Tensor) -> np.ndarray:
    return tensor.detach().cpu().numpy()
