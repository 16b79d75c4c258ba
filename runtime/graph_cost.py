"""Multiply-accumulates of a stage graph, counted from its ONNX nodes (needs ``onnx``).

Convolutions and matrix products only: they are where a transform's
arithmetic is, and what a machine's matrix-product peak measures.
"""

from __future__ import annotations

import math
from functools import cache

from .manifest import StageGraph


def stage_macs(bundle, graph: StageGraph) -> int:
    """Multiply-accumulates one run of the graph takes."""
    return _graph_macs(str(bundle.path(graph.file)))


@cache
def _graph_macs(path: str) -> int:
    import onnx  # optional: the runtime does not need it

    model = onnx.shape_inference.infer_shapes(onnx.load(path, load_external_data=False))
    shapes = {value.name: [d.dim_value for d in value.type.tensor_type.shape.dim]
              for value in (*model.graph.input, *model.graph.value_info, *model.graph.output)}
    shapes.update({tensor.name: list(tensor.dims) for tensor in model.graph.initializer})
    total = 0
    for node in model.graph.node:
        if node.op_type == "Conv":  # each output element: C_in/groups × kernel products
            weight = shapes[node.input[1]]
            total += math.prod(shapes[node.output[0]]) * math.prod(weight[1:])
        elif node.op_type == "ConvTranspose":  # each input element: C_out/groups × kernel products
            weight = shapes[node.input[1]]
            total += math.prod(shapes[node.input[0]]) * math.prod(weight[1:])
        elif node.op_type in ("MatMul", "Gemm"):
            first = shapes[node.input[0]]
            transposed = node.op_type == "Gemm" and any(a.name == "transA" and a.i for a in node.attribute)
            total += math.prod(shapes[node.output[0]]) * (first[0] if transposed else first[-1])
    return total
