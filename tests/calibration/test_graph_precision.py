"""Precision transforms of a stage graph: folded half weights, float16, INT8 Q/DQ, all run in ONNX Runtime."""

from __future__ import annotations

import copy

import numpy as np
import onnx
import onnxruntime
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

from licrt.calibration.graph_precision import (
    activation_ranges,
    fold_constants,
    merge_ranges,
    quantize_int8,
    to_fp16,
)

QUANTIZED_OPS = ("Conv", "ConvTranspose", "MatMul", "Gemm")
KEPT_OPS = ("LayerNormalization", "Softmax")
_rng = np.random.default_rng(0)
FEEDS = [{"x": _rng.standard_normal((1, 3, 8, 8), dtype=np.float32)} for _ in range(4)]
FEED = {"x": _rng.standard_normal((1, 3, 8, 8), dtype=np.float32)}


class Block(torch.nn.Module):
    """The ops of a stage: Conv, GELU, LayerNorm over channels, attention with a residual sum, Conv.

    The normalised tokens are an output too, and the input of a quantised MatMul.
    """

    def __init__(self, channels: int = 16):
        super().__init__()
        self.conv_in = torch.nn.Conv2d(3, channels, 3, padding=1)
        self.norm = torch.nn.LayerNorm(channels)
        self.qkv = torch.nn.Linear(channels, 3 * channels)
        self.proj = torch.nn.Linear(channels, channels)
        self.conv_out = torch.nn.Conv2d(channels, 4, 3, padding=1)

    def forward(self, x):
        features = torch.nn.functional.gelu(self.conv_in(x))
        b, c, h, w = features.shape
        tokens = self.norm(features.flatten(2).transpose(1, 2))
        q, k, v = self.qkv(tokens).chunk(3, dim=-1)
        attended = torch.softmax(q @ k.transpose(1, 2) * c**-0.5, dim=-1) @ v
        mixed = tokens + self.proj(attended)
        return self.conv_out(mixed.transpose(1, 2).reshape(b, c, h, w)), tokens


@pytest.fixture(scope="module")
def stage() -> onnx.ModelProto:
    return export_stage(FEED["x"].shape)


def export_stage(shape: tuple[int, ...]) -> onnx.ModelProto:
    """The block exported as licrt stores it: weights exact in float16, stored as float16 and cast back."""
    torch.manual_seed(0)
    block = Block().eval()
    with torch.no_grad():
        for parameter in block.parameters():
            parameter.copy_(parameter.half().float())
    program = torch.onnx.export(block, (torch.zeros(shape),), input_names=["x"], output_names=["y", "tokens"],
                                opset_version=18, dynamo=True, optimize=True, verbose=False)
    return store_halves(program.model_proto)


def store_halves(model: onnx.ModelProto) -> onnx.ModelProto:
    """Weights as licrt.export.weights.WeightStore writes them: ``<name>.fp16`` and a Cast back to float32."""
    casts = []
    for tensor in model.graph.initializer:
        if tensor.data_type == TensorProto.FLOAT and len(tensor.dims) > 0:
            half = numpy_helper.to_array(tensor).astype(np.float16)
            casts.append(helper.make_node("Cast", [f"{tensor.name}.fp16"], [tensor.name], name=f"{tensor.name}.cast",
                                          to=TensorProto.FLOAT))
            tensor.CopyFrom(numpy_helper.from_array(half, f"{tensor.name}.fp16"))
    nodes = [*casts, *model.graph.node]
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    return model


def run(model: onnx.ModelProto, feed: dict[str, np.ndarray] = FEED) -> list[np.ndarray]:
    session = onnxruntime.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, feed)


def folded(model: onnx.ModelProto) -> onnx.ModelProto:
    copied = copy.deepcopy(model)
    fold_constants(copied)
    return copied


def initializers_of(model: onnx.ModelProto) -> dict[str, np.ndarray]:
    return {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}


def half_casts(model: onnx.ModelProto) -> list[onnx.NodeProto]:
    halves = {t.name for t in model.graph.initializer if t.data_type == TensorProto.FLOAT16}
    return [node for node in model.graph.node if node.op_type == "Cast" and node.input[0] in halves]


def weighted_nodes(model: onnx.ModelProto) -> list[onnx.NodeProto]:
    weights = {t.name for t in model.graph.initializer}
    return [node for node in model.graph.node if node.op_type in QUANTIZED_OPS and node.input[1] in weights]


def relative_rms(actual: np.ndarray, expected: np.ndarray) -> float:
    return float(np.sqrt(np.mean((actual - expected) ** 2) / np.mean(expected**2)))


def test_folding_half_weights_makes_them_float32_initializers_with_the_same_outputs(stage):
    model = copy.deepcopy(stage)
    assert half_casts(model)
    before = run(model)
    fold_constants(model)
    assert not half_casts(model)
    initializers = {t.name: t for t in model.graph.initializer}
    assert not any(t.data_type == TensorProto.FLOAT16 for t in initializers.values())
    assert initializers["conv_in.weight"].data_type == TensorProto.FLOAT
    for expected, actual in zip(before, run(model), strict=True):
        np.testing.assert_array_equal(actual, expected)


def tensor_types(model: onnx.ModelProto) -> dict[str, int]:
    inferred = onnx.shape_inference.infer_shapes(model, strict_mode=True)
    infos = [*inferred.graph.value_info, *inferred.graph.input, *inferred.graph.output]
    types = {info.name: info.type.tensor_type.elem_type for info in infos}
    return types | {t.name: t.data_type for t in model.graph.initializer}


def test_fp16_computes_in_half_precision_but_the_kept_ops_and_the_io(stage):
    converted = to_fp16(stage, KEPT_OPS)
    onnx.checker.check_model(converted, full_check=True)
    assert all(info.type.tensor_type.elem_type == TensorProto.FLOAT
               for info in [*converted.graph.input, *converted.graph.output])
    types = tensor_types(converted)
    kept = [node for node in converted.graph.node if node.op_type in KEPT_OPS]
    assert len(kept) == 2 and all(types[name] == TensorProto.FLOAT for node in kept for name in node.input)
    weighted = [node for node in converted.graph.node if node.op_type in ("Conv", "MatMul")]
    assert len(weighted) == 6 and all(types[name] == TensorProto.FLOAT16 for node in weighted for name in node.input)
    # The LayerNorm's scale is the float32 original, not a float16 rounding cast back.
    norm = next(node for node in converted.graph.node if node.op_type == "LayerNormalization")
    scale = next(t for t in converted.graph.initializer if t.name == norm.input[1])
    original = next(t for t in folded(stage).graph.initializer if t.name == "norm.weight")
    assert scale.data_type == TensorProto.FLOAT and scale.raw_data == original.raw_data

    for expected, actual in zip(run(stage), run(converted), strict=True):
        assert actual.dtype == np.float32
        assert relative_rms(actual, expected) < 1e-2
        assert not np.array_equal(actual, expected)


def test_fp16_clamps_constants_to_float16s_range_and_keeps_them_exact_in_float32_ops():
    nodes = [
        helper.make_node("Mul", ["x", "c"], ["scaled"], name="mul"),
        helper.make_node("Shape", ["x"], ["shape"], name="shape"),
        helper.make_node("Cast", ["shape"], ["sizes"], name="cast", to=TensorProto.FLOAT),  # int64 to float32
        helper.make_node("ReduceSum", ["sizes"], ["size_sum"], name="sum", keepdims=0),
        helper.make_node("Add", ["scaled", "size_sum"], ["big"], name="add"),
        helper.make_node("Div", ["x", "c"], ["small"], name="div"),
    ]
    graph = helper.make_graph(
        nodes, "constants", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])],
        [helper.make_tensor_value_info(name, TensorProto.FLOAT, [2, 3]) for name in ("big", "small")],
        [numpy_helper.from_array(np.array(1e5, np.float32), "c")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    x = np.linspace(1e-3, 6e-3, 6, dtype=np.float32).reshape(2, 3)

    with pytest.warns(UserWarning, match="truncated to 65504"):
        converted = to_fp16(model, ["Div"])
    big, small = run(converted, {"x": x})
    # The Mul computes in float16 with 1e5 clamped to float16's largest value; the Div keeps 1e5.
    np.testing.assert_allclose(big, x * 65504 + 5, rtol=1e-3)
    np.testing.assert_allclose(small, x / 1e5, rtol=1e-6)


@pytest.fixture(scope="module")
def calibrated(stage) -> tuple[dict, onnx.ModelProto]:
    ranges = activation_ranges(stage, FEEDS, QUANTIZED_OPS)
    return ranges, quantize_int8(stage, ranges, QUANTIZED_OPS)


def test_activation_ranges_are_the_extremes_of_the_quantised_nodes_inputs(stage, calibrated):
    ranges, _ = calibrated
    weighted = weighted_nodes(folded(stage))
    assert len(weighted) == 4
    assert set(ranges) == {node.input[0] for node in weighted}
    inputs = np.stack([feed["x"] for feed in FEEDS])
    assert ranges["x"] == (inputs.min(), inputs.max())
    assert all(low < high for low, high in ranges.values())


def test_merged_ranges_span_every_calibration():
    merged = merge_ranges(iter([{"a": (-1.0, 2.0), "b": (0.0, 1.0)}, {"a": (-3.0, 1.0)}, {}]))
    assert merged == {"a": (-3.0, 2.0), "b": (0.0, 1.0)}
    assert merge_ranges([]) == {}


def test_int8_quantises_the_weighted_ops_alone_symmetrically_and_per_channel(stage, calibrated):
    ranges, quantized = calibrated
    onnx.checker.check_model(quantized, full_check=True)
    initializers = initializers_of(quantized)
    producers = {name: node for node in quantized.graph.node for name in node.output}
    source = folded(stage)
    weights = initializers_of(source)
    weighted = {node.name: node for node in weighted_nodes(source)}

    def dequantized(name):
        producer = producers.get(name)
        return producer if producer is not None and producer.op_type == "DequantizeLinear" else None

    for node in quantized.graph.node:
        if node.name in weighted:
            data, weight = dequantized(node.input[0]), dequantized(node.input[1])
            assert producers[data.input[0]].op_type == "QuantizeLinear"
            assert initializers[weight.input[0]].dtype == np.int8
            channels = weights[weighted[node.name].input[1]].shape[0 if node.op_type == "Conv" else 1]
            assert initializers[weight.input[1]].shape == (channels,)
            assert len(node.input) < 3 or initializers[node.input[2]].dtype == np.float32  # the bias stays float
        elif node.op_type not in ("QuantizeLinear", "DequantizeLinear"):
            # Everything else, the residual sum and attention's q·kᵀ and softmax·v included, reads float32.
            assert not any(dequantized(name) for name in node.input), node.name
    qdq = [node for node in quantized.graph.node if node.op_type in ("QuantizeLinear", "DequantizeLinear")]
    assert all(not initializers[node.input[2]].any() for node in qdq)
    quantize_x = next(node for node in qdq if node.op_type == "QuantizeLinear" and node.input[0] == "x")
    scale = initializers[quantize_x.input[1]]
    assert scale == pytest.approx(max(-ranges["x"][0], ranges["x"][1]) / 127)

    (expected_y, expected_tokens), (y, tokens) = run(stage), run(quantized)
    assert relative_rms(y, expected_y) < 0.05
    assert relative_rms(tokens, expected_tokens) < 0.05
    assert producers["tokens"].op_type == "LayerNormalization"  # an output that a quantised MatMul reads too


def test_int8_is_deterministic_and_needs_every_range(stage, calibrated):
    ranges, quantized = calibrated
    assert quantize_int8(stage, ranges, QUANTIZED_OPS).SerializeToString() == quantized.SerializeToString()
    with pytest.raises(ValueError, match="no calibrated range for x"):
        quantize_int8(stage, {name: span for name, span in ranges.items() if name != "x"}, QUANTIZED_OPS)


def test_buckets_quantised_with_merged_ranges_share_their_quantised_weights_and_scales(stage):
    wide = export_stage((1, 3, 8, 12))
    wide_feeds = [{"x": 2 * np.random.default_rng(1).standard_normal((1, 3, 8, 12), dtype=np.float32)}]
    ranges = [activation_ranges(stage, FEEDS, QUANTIZED_OPS), activation_ranges(wide, wide_feeds, QUANTIZED_OPS)]
    assert ranges[0]["x"] != ranges[1]["x"]
    merged = merge_ranges(ranges)
    quantized = [quantize_int8(model, merged, QUANTIZED_OPS) for model in (stage, wide)]
    parameters = [{name: value for name, value in initializers_of(model).items()
                   if any(name in node.input for node in model.graph.node
                          if node.op_type in ("QuantizeLinear", "DequantizeLinear"))} for model in quantized]
    assert len(parameters[0]) == 20 and parameters[0].keys() == parameters[1].keys()
    for name, value in parameters[0].items():
        np.testing.assert_array_equal(parameters[1][name], value, err_msg=name)


def test_weights_multiplied_transposed_are_folded_and_quantised():
    """Token-layout graphs compute x·Wᵀ with a Transpose node on the weight: folded, the MatMul is quantised."""
    weight = np.random.default_rng(2).standard_normal((16, 8), dtype=np.float32)
    graph = helper.make_graph(
        [helper.make_node("Transpose", ["w"], ["w_t"], name="transpose", perm=[1, 0]),
         helper.make_node("MatMul", ["x", "w_t"], ["y"], name="matmul")],
        "tokens", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 16])],
        [numpy_helper.from_array(weight, "w")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    feeds = [{"x": np.random.default_rng(3).standard_normal((1, 4, 8), dtype=np.float32)}]
    folded_model = copy.deepcopy(model)
    fold_constants(folded_model)
    assert [node.op_type for node in folded_model.graph.node] == ["MatMul"]
    assert [t.name for t in folded_model.graph.initializer] == ["w_t"]
    np.testing.assert_array_equal(run(folded_model, feeds[0])[0], run(model, feeds[0])[0])
    quantized = quantize_int8(model, activation_ranges(model, feeds, QUANTIZED_OPS), QUANTIZED_OPS)
    kinds = [node.op_type for node in quantized.graph.node]
    assert kinds.count("DequantizeLinear") == 2 and "Transpose" not in kinds
    assert relative_rms(run(quantized, feeds[0])[0], run(model, feeds[0])[0]) < 0.05


def test_fp16_keeps_constant_of_shape_float32_where_the_converter_would_mistype_it():
    """ConstantOfShape without a value makes float32 zeros; the converter retypes them float16 regardless.

    (Context graphs start a concatenation with such zeros; too large to fold, they stay a node.)
    """
    shape = numpy_helper.from_array(np.array([1, 2048], np.int64), "shape")
    graph = helper.make_graph(
        [helper.make_node("ConstantOfShape", ["shape"], ["zeros"], name="zeros"),
         helper.make_node("Add", ["x", "zeros"], ["y"], name="add")],
        "fill", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2048])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2048])], [shape],
        value_info=[helper.make_tensor_value_info("zeros", TensorProto.FLOAT, [1, 2048])])  # as exporters write
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    feed = {"x": np.arange(2048, dtype=np.float32)[None] / 2048}
    converted = to_fp16(model, KEPT_OPS)
    assert "ConstantOfShape" in {node.op_type for node in converted.graph.node}
    np.testing.assert_allclose(run(converted, feed)[0], feed["x"], rtol=1e-3)


def test_fp16_ops_read_a_graph_output_in_float16_too():
    """A context step passes a state on as an output and uses it inside: the converter left that use float32."""
    weight = numpy_helper.from_array(np.full((1, 4), 0.5, np.float32), "w")
    graph = helper.make_graph(
        [helper.make_node("Mul", ["x", "w"], ["state"], name="mul"),
         helper.make_node("Concat", ["state", "x"], ["y"], name="concat", axis=1)],
        "step", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("state", TensorProto.FLOAT, [1, 4]),
         helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8])], [weight])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    feed = {"x": np.arange(4, dtype=np.float32)[None]}
    state, y = run(to_fp16(model, KEPT_OPS), feed)
    assert state.dtype == y.dtype == np.float32
    np.testing.assert_array_equal(y, np.concatenate([feed["x"] / 2, feed["x"]], axis=1))
