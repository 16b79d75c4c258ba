"""Writing stage graphs with their weights in shared files, one per quality level.

Each bucket gets its own graph per stage, but the weights are the same for
every bucket: :class:`WeightStore` moves all large initializers into a
weights file per quality level, stored once by content, and points the
graphs at it through ONNX external data. A bundle with three buckets is
therefore about as large as one with a single bucket, and each further
quality level costs its weights alone: every level's file has the same
layout, so one set of graphs serves them all.

Float32 weights whose values are all exactly representable in half
precision (the weights of a half-precision checkpoint) are stored as float16
and cast back to float32 at load time (a Cast that ONNX Runtime and TensorRT
fold away): half the size, the same numbers.

Needs onnx, not torch: calibration writes graphs with it too.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper
from onnx.external_data_helper import ExternalDataInfo

from licrt.runtime.bundle import Bundle
from licrt.runtime.errors import BundleError, ExportError
from licrt.runtime.manifest import StageGraph

#: Initializers at least this large go to the shared weights file.
EXTERNAL_THRESHOLD = 1024
#: Alignment of each tensor in the weights file (lets runtimes map it directly).
ALIGNMENT = 64
#: Ends the name of a weight stored in half precision (the Cast back to float32 keeps the plain name).
HALF_SUFFIX = ".fp16"


class WeightStore:
    """Collects the initializers of many graphs, at every quality level, into one weights file per level.

    The levels share the graphs: a tensor sits at the same offset in every
    level's file. Tensors are stored once by content (the same at every level),
    in half precision where every level's values are exact in it.

    Args:
        paths: One weights file per level; graphs read whichever the runtime points them at by the file name.
    """

    def __init__(self, paths: Sequence[Path]):
        if len({path.name for path in paths}) != 1:
            raise ValueError("every level's weights file has the same name (the graphs name it)")
        self.paths = list(paths)
        self._offsets: dict[tuple[str, ...], int] = {}
        self._size = 0
        for path in self.paths:
            path.write_bytes(b"")

    def externalize(self, models: Sequence[onnx.ModelProto]) -> onnx.ModelProto:
        """Move the weights of one graph, exported at every level, into the store; returns the graph.

        Initializers at least :data:`EXTERNAL_THRESHOLD` bytes large, and
        those that differ between levels, are moved; the first level's graph
        is changed in place and returned.

        Raises:
            ExportError: the levels' graphs differ in more than their weights.
        """
        _check_same_graph(models)
        model, casts = models[0], []
        for tensors in zip(*(m.graph.initializer for m in models), strict=True):
            tensor, arrays = tensors[0], [numpy_helper.to_array(t) for t in tensors]
            raws = [a.tobytes() for a in arrays]
            if arrays[0].nbytes < EXTERNAL_THRESHOLD and len(set(raws)) == 1:
                continue
            if arrays[0].dtype == np.float32 and all(_exact_in_half(a) for a in arrays):
                casts.append(onnx.helper.make_node("Cast", [f"{tensor.name}{HALF_SUFFIX}"], [tensor.name],
                                                   name=f"{tensor.name}.cast", to=onnx.TensorProto.FLOAT))
                tensor.name, tensor.data_type = f"{tensor.name}{HALF_SUFFIX}", onnx.TensorProto.FLOAT16
                raws = [np.ascontiguousarray(a.astype(np.float16)).tobytes() for a in arrays]
            self._point(tensor, self._store(raws), len(raws[0]))
        if casts:  # the casts must precede every use of their outputs
            nodes = [*casts, *model.graph.node]
            del model.graph.node[:]
            model.graph.node.extend(nodes)
        return model

    def _store(self, raws: list[bytes]) -> int:
        """Offset of these tensor bytes (one per level), appended at the same offset in every file if new."""
        key = tuple(hashlib.sha256(raw).hexdigest() for raw in raws)
        if key not in self._offsets:
            padding = -self._size % ALIGNMENT
            for path, raw in zip(self.paths, raws, strict=True):
                with open(path, "ab") as file:
                    file.write(b"\0" * padding + raw)
            self._offsets[key] = self._size + padding
            self._size += padding + len(raws[0])
        return self._offsets[key]

    def _point(self, tensor: onnx.TensorProto, offset: int, length: int) -> None:
        for field in ("raw_data", "float_data", "int32_data", "int64_data", "double_data", "uint64_data"):
            tensor.ClearField(field)
        del tensor.external_data[:]
        for name, value in (("location", self.paths[0].name), ("offset", offset), ("length", length)):
            entry = tensor.external_data.add()
            entry.key, entry.value = name, str(value)
        tensor.data_location = onnx.TensorProto.EXTERNAL


def _check_same_graph(models: Sequence[onnx.ModelProto]) -> None:
    """Raise ExportError unless the models are one graph with other weights."""

    def structure(model: onnx.ModelProto) -> bytes:
        copy = onnx.ModelProto()
        copy.CopyFrom(model)
        for tensor in copy.graph.initializer:
            for field in ("raw_data", "float_data", "int32_data", "int64_data", "double_data", "uint64_data"):
                tensor.ClearField(field)
        return copy.SerializeToString(deterministic=True)

    first = structure(models[0])
    if any(structure(model) != first for model in models[1:]):
        raise ExportError(f"the quality levels export graph {models[0].graph.name or ''} differently (not only "
                          "in their weights); export them as separate bundles")


def _exact_in_half(data: np.ndarray) -> bool:
    with np.errstate(over="ignore"):  # values beyond float16's range become inf and compare unequal
        return np.array_equal(data.astype(np.float16).astype(np.float32), data)


def save_graph(models: Sequence[onnx.ModelProto], path: Path, store: WeightStore) -> onnx.ModelProto:
    """Check one graph, exported at every quality level, move its weights into store and write the graph file;
    returns the graph as written.

    The exporter's per-node debugging metadata (Python stack and module
    paths, two thirds of a graph file) is dropped. The graph is checked with
    its weights inline: once they are external, they lie in the levels'
    folders, where the ONNX checker does not look (export then runs every
    written graph at every level in ONNX Runtime).
    """
    for model in models:
        for node in model.graph.node:
            del node.metadata_props[:]
    try:
        onnx.checker.check_model(models[0])
    except onnx.checker.ValidationError as exc:
        raise ExportError(f"{path.name} is not a valid ONNX graph: {exc}") from None
    model = store.externalize(models)
    path.write_bytes(model.SerializeToString())
    return model


def load_graph(bundle: Bundle, graph: StageGraph) -> onnx.ModelProto:
    """A stage graph with the weights of the bundle's quality level inline.

    licrt reads the weights itself: onnx's loader refuses a file with more
    than one hard link, and the OpenVINO and TensorRT backends link a level's
    weights beside a graph while they compile it (a process killed meanwhile
    leaves its link behind). What the files hold was checked against the
    manifest's sha256 when the bundle opened.
    """
    model = onnx.load(str(bundle.path(graph.file)), load_external_data=False)
    files = bundle.weight_files
    for tensor in model.graph.initializer:
        if tensor.data_location != onnx.TensorProto.EXTERNAL:
            continue
        info = ExternalDataInfo(tensor)
        if info.location not in files or info.length is None:
            raise BundleError(f"{graph.file}: weight {tensor.name} points at {info.location!r}, "
                              "not at a weights file of the bundle's level")
        with open(files[info.location], "rb") as file:
            file.seek(info.offset or 0)
            raw = file.read(info.length)
        if len(raw) != info.length:
            raise BundleError(f"{graph.file}: weight {tensor.name} lies beyond the end of {info.location}")
        tensor.raw_data = raw
        del tensor.external_data[:]
        tensor.data_location = onnx.TensorProto.DEFAULT
    return model
