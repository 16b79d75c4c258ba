"""licrt::TopkAttention: the numpy reference, the PyTorch op and the ONNX function agree."""

import numpy as np
import onnxruntime
import pytest
import torch
from onnx import TensorProto, helper

from licrt.plugins.topk_attention import DOMAIN, MASKS, OP_TYPE, reference
from licrt.plugins.topk_attention.onnx_function import add_function
from licrt.plugins.topk_attention.torch_op import ONNX_TRANSLATIONS, eager_topk_attention, topk_attention

CASES = [  # (queries, keys, query_start, topk, positions, width)
    (20, 20, 0, 8, 7, 5),
    (1, 30, 17, 32, 7, 6),  # one cached query, fewer keys than k
    (6, 24, 9, 3, 5, 4),
]


def inputs(queries, keys, seed=0):
    rng = np.random.default_rng(seed)
    q = rng.standard_normal((1, 2, queries, 8)).astype(np.float32)
    k, v = rng.standard_normal((2, 1, 2, keys, 8)).astype(np.float32)
    return q, k, v


def onnx_session(table_rows, attributes):
    node = helper.make_node(OP_TYPE, ["q", "k", "v", "table", "start"], ["out"], domain=DOMAIN, **attributes)
    graph = helper.make_graph(
        [node], "attention",
        [helper.make_tensor_value_info(name, TensorProto.FLOAT, None) for name in ("q", "k", "v", "table")]
        + [helper.make_tensor_value_info("start", TensorProto.INT64, [1])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, None)],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18), helper.make_opsetid(DOMAIN, 1)])
    add_function(model)
    return onnxruntime.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])


@pytest.mark.parametrize("mask", list(MASKS))
@pytest.mark.parametrize("queries, keys, start, topk, positions, width", CASES)
def test_implementations_agree(mask, queries, keys, start, topk, positions, width):
    q, k, v = inputs(queries, keys)
    table = np.random.default_rng(1).standard_normal((positions**2, 8)).astype(np.float32)
    attributes = dict(topk=topk, scale=0.25, positions=positions, width=width, mask=MASKS[mask])
    expected = reference.topk_attention(q, k, v, table, start, **attributes)
    torch_out = eager_topk_attention(*map(torch.from_numpy, (q, k, v, table)), torch.tensor([start]),
                                     topk, 0.25, positions, width, MASKS[mask]).numpy()
    session = onnx_session(table.shape[0], attributes)
    onnx_out = session.run(None, {"q": q, "k": k, "v": v, "table": table, "start": np.array([start])})[0]
    assert np.abs(torch_out - expected).max() < 1e-5
    assert np.abs(onnx_out - expected).max() < 1e-5


def test_causal_rows_ignore_later_keys():
    q, k, v = inputs(1, 12)
    table = np.zeros((25, 8), np.float32)
    attributes = dict(topk=32, scale=1.0, positions=5, width=4, mask=MASKS["causal"])
    base = reference.topk_attention(q, k, v, table, 5, **attributes)
    k[:, :, 6:], v[:, :, 6:] = 100.0, 100.0  # keys after query 5 must not matter
    assert np.array_equal(base, reference.topk_attention(q, k, v, table, 5, **attributes))


class _Attend(torch.nn.Module):
    def forward(self, q, k, v, table, start):
        return topk_attention(q, k, v, table, start, topk=4, scale=0.5, positions=5, width=5, mask="anchors") + 1


def test_export_keeps_the_op_whole():
    q, k, v = map(torch.from_numpy, inputs(20, 20))
    args = (q, k, v, torch.randn(25, 8), torch.zeros(1, dtype=torch.long))
    program = torch.onnx.export(_Attend().eval(), args, dynamo=True, opset_version=18, verbose=False,
                                custom_translation_table=ONNX_TRANSLATIONS)
    model = program.model_proto
    (node,) = [n for n in model.graph.node if n.domain == DOMAIN]
    assert node.op_type == OP_TYPE
    assert {a.name: helper.get_attribute_value(a) for a in node.attribute} == {
        "topk": 4, "scale": 0.5, "positions": 5, "width": 5, "mask": MASKS["anchors"],
        "plugin_namespace": b"licrt", "plugin_version": b"1"}
    add_function(model)
    session = onnxruntime.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    feed = {i.name: a.numpy() for i, a in zip(session.get_inputs(), args, strict=True)}
    assert np.allclose(session.run(None, feed)[0], _Attend()(*args).numpy(), atol=1e-5)
