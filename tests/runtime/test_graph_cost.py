"""Multiply-accumulates counted from a graph's nodes, against hand counts."""

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from licrt.runtime.graph_cost import _graph_macs


def test_convolutions_and_products_are_counted_by_hand(tmp_path):
    weights = {"conv_w": (8, 2, 3, 3), "deconv_w": (8, 4, 2, 2), "matmul_w": (4, 5)}
    nodes = [
        helper.make_node("Conv", ["x", "conv_w"], ["a"], pads=[1, 1, 1, 1], group=2),  # (1, 8, 6, 6)
        helper.make_node("ConvTranspose", ["a", "deconv_w"], ["b"], strides=[2, 2]),  # (1, 4, 12, 12)
        helper.make_node("Transpose", ["b"], ["c"], perm=[0, 2, 3, 1]),  # (1, 12, 12, 4)
        helper.make_node("MatMul", ["c", "matmul_w"], ["y"]),  # (1, 12, 12, 5)
    ]
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 6, 6])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [numpy_helper.from_array(np.zeros(shape, np.float32), name) for name, shape in weights.items()])
    path = tmp_path / "g.onnx"
    onnx.save(helper.make_model(graph), path)
    conv = 8 * 6 * 6 * (2 * 3 * 3)  # outputs × (C_in / groups) × kernel
    deconv = 8 * 6 * 6 * (4 * 2 * 2)  # inputs × (C_out / groups) × kernel
    matmul = 12 * 12 * 5 * 4
    assert _graph_macs(str(path)) == conv + deconv + matmul
