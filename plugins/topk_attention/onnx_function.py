"""``licrt::TopkAttention`` in ONNX: the op's schema and its standard-op function body.

Exported graphs carry the op as one node of domain ``licrt`` with its
attributes, plus a model-local function that defines it with standard ONNX
ops. ONNX Runtime runs the function (it inlines it); TensorRT replaces the
node by the plugin its ``plugin_namespace`` and ``plugin_version`` attributes
name (:data:`PLUGIN_ATTRIBUTES`), which the schema declares so that
``onnx.checker`` accepts them.
"""

from __future__ import annotations

import onnx
import onnxscript
from onnx.defs import OpSchema
from onnxscript import opset18 as op

from . import DOMAIN, OP_TYPE, PLUGIN_ATTRIBUTES

OPSET = onnxscript.values.Opset(DOMAIN, 1)
_FLOAT32_MAX = 3.4028234663852886e38


def register_schema() -> None:
    """Make the op known to onnx (and so to the exporter); safe to call more than once."""
    if onnx.defs.has(OP_TYPE, DOMAIN):
        return
    tensor = OpSchema.FormalParameter
    onnx.defs.register_schema(OpSchema(
        OP_TYPE, DOMAIN, 1,
        doc="Top-k attention with a diamond relative-position encoding (licrt.plugins.topk_attention).",
        inputs=[tensor("q", "T"), tensor("k", "T"), tensor("v", "T"), tensor("table", "T"),
                tensor("query_start", "tensor(int64)")],
        outputs=[tensor("out", "T")],
        type_constraints=[("T", ["tensor(float)", "tensor(float16)"], "")],
        attributes=[OpSchema.Attribute(name, kind, name) for name, kind in (
            ("topk", OpSchema.AttrType.INT), ("scale", OpSchema.AttrType.FLOAT),
            ("positions", OpSchema.AttrType.INT), ("width", OpSchema.AttrType.INT),
            ("mask", OpSchema.AttrType.INT))]
        + [OpSchema.Attribute(name, OpSchema.AttrType.STRING, "TensorRT plugin that implements the op",
                              required=False) for name in PLUGIN_ATTRIBUTES],
    ))


@onnxscript.script(OPSET, default_opset=op)
def TopkAttention(q, k, v, table, query_start, topk: int, scale: float, positions: int, width: int, mask: int):  # noqa: N802
    one = op.Constant(value_int=1)
    two = op.Constant(value_int=2)
    start = op.Squeeze(query_start)
    queries = op.Squeeze(op.Shape(q, start=2, end=3))
    keys = op.Shape(k, start=2, end=3)
    query = op.Unsqueeze(op.Range(start, start + queries, one), [1])
    key = op.Unsqueeze(op.Range(op.Constant(value_int=0), op.Squeeze(keys), one), [0])
    columns = op.Constant(value_int=width)
    size = op.Constant(value_int=positions)
    half = size / two
    dv = key / columns - query / columns
    dh = op.Mod(key, columns) - op.Mod(query, columns)
    inside = op.LessOrEqual(op.Abs(dv) + op.Abs(dh), half)
    bucket = op.Where(inside, (dv + half) * size + dh + half, op.Constant(value_int=0))
    everywhere = op.Concat(op.Shape(q, start=0, end=3), keys, axis=0)
    position = op.GatherElements(op.MatMul(q, op.Transpose(table, perm=[1, 0])), op.Expand(bucket, everywhere), axis=3)
    logits = (op.MatMul(q, op.Transpose(k, perm=[0, 1, 3, 2])) + position) * op.CastLike(op.Constant(value_float=scale), q)
    kind = op.Constant(value_int=mask)
    causal = op.LessOrEqual(key, query)
    anchors = op.Or(op.Equal(op.Mod(key / columns + op.Mod(key, columns), two), one), op.Equal(key, query))
    visible = op.Or(op.Equal(kind, op.Constant(value_int=0)),
                    op.Or(op.And(op.Equal(kind, one), causal), op.And(op.Equal(kind, two), anchors)))
    negative = op.CastLike(op.Constant(value_float=-_FLOAT32_MAX), q)
    logits = op.Where(visible, logits, negative)
    count = op.Min(op.Unsqueeze(op.Constant(value_int=topk), [0]), keys)
    largest, _ = op.TopK(logits, count, axis=-1)
    kth = op.Gather(largest, count - one, axis=3)
    logits = op.Where(op.GreaterOrEqual(logits, kth), logits, negative)
    return op.MatMul(op.Softmax(logits, axis=-1), v)


def add_function(model: onnx.ModelProto) -> None:
    """Give a model that uses the op the op's function definition (once)."""
    uses = any(node.domain == DOMAIN and node.op_type == OP_TYPE for node in model.graph.node)
    defined = any(f.domain == DOMAIN and f.name == OP_TYPE for f in model.functions)
    if uses and not defined:
        model.functions.append(TopkAttention.to_function_proto())
        if not any(entry.domain == DOMAIN for entry in model.opset_import):
            model.opset_import.append(onnx.helper.make_opsetid(DOMAIN, 1))
