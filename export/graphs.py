"""Exporting stage modules to static-shape ONNX graphs with shared weights.

Each bucket gets its own graph per stage, but the weights are the same for
every bucket: :class:`WeightStore` moves all large initializers into one
``weights.bin`` beside the graphs, stored once by content, and points the
graphs at it through ONNX external data. A bundle with three buckets is
therefore about as large as one with a single bucket.

Float32 weights whose values are all exactly representable in half
precision (the weights of a half-precision checkpoint) are stored as float16
and cast back to float32 at load time (a Cast that ONNX Runtime and TensorRT
fold away): half the size, the same numbers.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import logging
import warnings
from pathlib import Path

import numpy as np
import onnx
import torch
from onnx import numpy_helper

from licrt.plugins.topk_attention import onnx_function as topk_onnx
from licrt.plugins.topk_attention.torch_op import ONNX_TRANSLATIONS
from licrt.runtime.errors import ExportError

OPSET = 18
#: Initializers at least this large go to the shared weights file.
EXTERNAL_THRESHOLD = 1024
#: Alignment of each tensor in the weights file (lets runtimes map it directly).
ALIGNMENT = 64


def export_graph(module: torch.nn.Module, inputs: dict[str, torch.Tensor],
                 output_names: list[str]) -> onnx.ModelProto:
    """Export one stage module at the shapes of the example inputs."""
    with _quiet_exporter():
        try:
            program = torch.onnx.export(
                module.eval(),
                tuple(inputs.values()),
                input_names=list(inputs),
                output_names=output_names,
                opset_version=OPSET,
                dynamo=True,
                optimize=True,
                verbose=False,
                custom_translation_table=ONNX_TRANSLATIONS,
            )
        except Exception as exc:  # the exporter raises many unrelated types
            raise ExportError(f"torch.onnx could not export the graph: {exc}") from exc
    model = program.model_proto
    topk_onnx.add_function(model)
    return model


@contextlib.contextmanager
def _quiet_exporter():
    """Keep the exporter's progress prints and warnings off the user's terminal."""
    loggers = [logging.getLogger(name) for name in ("torch.onnx", "torch._dynamo", "torch.export")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


class WeightStore:
    """Collects initializers of many graphs into one content-addressed file.

    Args:
        path: The weights file to write; graphs saved beside it refer to it by name.
    """

    def __init__(self, path: Path):
        self.path = path
        self._offsets: dict[str, int] = {}
        self._size = 0
        path.write_bytes(b"")

    def externalize(self, model: onnx.ModelProto) -> None:
        """Move model's large initializers into the store (in place)."""
        casts = []
        for tensor in model.graph.initializer:
            data = numpy_helper.to_array(tensor)
            if data.nbytes < EXTERNAL_THRESHOLD:
                continue
            if data.dtype == np.float32 and _exact_in_half(data):
                casts.append(onnx.helper.make_node("Cast", [f"{tensor.name}.fp16"], [tensor.name],
                                                   name=f"{tensor.name}.cast", to=onnx.TensorProto.FLOAT))
                tensor.name, tensor.data_type = f"{tensor.name}.fp16", onnx.TensorProto.FLOAT16
                data = data.astype(np.float16)
            raw = np.ascontiguousarray(data).tobytes()
            key = hashlib.sha256(raw).hexdigest()
            if key not in self._offsets:
                padding = -self._size % ALIGNMENT
                with open(self.path, "ab") as file:
                    file.write(b"\0" * padding + raw)
                self._offsets[key] = self._size + padding
                self._size += padding + len(raw)
            for field in ("raw_data", "float_data", "int32_data", "int64_data", "double_data", "uint64_data"):
                tensor.ClearField(field)
            del tensor.external_data[:]
            for name, value in (("location", self.path.name), ("offset", self._offsets[key]),
                                ("length", len(raw))):
                entry = tensor.external_data.add()
                entry.key, entry.value = name, str(value)
            tensor.data_location = onnx.TensorProto.EXTERNAL
        if casts:  # the casts must precede every use of their outputs
            nodes = [*casts, *model.graph.node]
            del model.graph.node[:]
            model.graph.node.extend(nodes)


def _exact_in_half(data: np.ndarray) -> bool:
    with np.errstate(over="ignore"):  # values beyond float16's range become inf and compare unequal
        return np.array_equal(data.astype(np.float16).astype(np.float32), data)


def save_graph(model: onnx.ModelProto, path: Path, store: WeightStore) -> None:
    """Externalize the weights of model into store and write the graph file.

    The exporter's per-node debugging metadata (Python stack and module
    paths, two thirds of a graph file) is dropped.
    """
    for node in model.graph.node:
        del node.metadata_props[:]
    store.externalize(model)
    path.write_bytes(model.SerializeToString())
    try:
        onnx.checker.check_model(str(path))
    except onnx.checker.ValidationError as exc:
        raise ExportError(f"{path.name} is not a valid ONNX graph: {exc}") from None
