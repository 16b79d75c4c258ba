"""Precision transforms of a stage graph: float16 conversion and INT8 quantisation.

The functions take ``onnx.ModelProto`` objects whose initializers are all
inline (load external data first) and need onnx, onnxruntime and
onnxconverter-common alone, no torch, so that a bundle can be calibrated
where it is deployed.

INT8 follows TensorRT's explicit quantisation: QuantizeLinear and
DequantizeLinear pairs in front of the weighted ops only, symmetric (zero
point 0) per-tensor activations and per-channel weights; every other op stays
float32. Activation ranges come from MinMax calibration in ONNX Runtime and
are merged over a bundle's buckets before any of them is quantised.
"""

from __future__ import annotations

import copy
import tempfile
from collections.abc import Collection, Iterable, MutableSequence
from pathlib import Path

import numpy as np
import onnx
import onnxruntime
from onnx import TensorProto, helper, numpy_helper
from onnx.reference import ReferenceEvaluator
from onnxconverter_common import float16
from onnxruntime.quantization import (
    CalibrationDataReader,
    CalibrationMethod,
    QDQQuantizer,
    QuantType,
    TensorData,
    TensorsData,
    create_calibrator,
)
from onnxruntime.quantization.quant_utils import save_and_reload_model_with_shape_infer

#: A tensor's calibrated (min, max), by tensor name.
Ranges = dict[str, tuple[float, float]]

#: float16's largest finite value.
_HALF_MAX = float(np.finfo(np.float16).max)
#: Ops whose output the float16 converter retypes but not the attribute that sets it (ConstantOfShape's
#: value): they stay float32, a Cast after them.
_CONVERTER_MISTYPES = ("ConstantOfShape",)


def fold_constants(model: onnx.ModelProto) -> None:
    """Compute every node whose inputs are all constants once, into an initializer, in place.

    Quantisers recognise a weight only when it is an initializer, and the
    float16 converter refuses float16 initializers; but stage graphs derive
    many weights: licrt stores a float32 weight that is exact in float16 as
    float16 and a Cast (see ``licrt.export.weights``), and token-layout graphs
    slice and transpose weights (x·Wᵀ, q/k/v from one matrix). Runtimes fold
    these when they load a graph; here they are folded first, with ONNX's
    reference evaluator, to the same values. Nodes that would enlarge the
    graph (broadcasts, tiles) stay.
    """
    graph = model.graph
    constants = {tensor.name: numpy_helper.to_array(tensor) for tensor in graph.initializer}
    kept, folded = [], []
    for node in graph.node:
        outputs = _folded(node, constants)
        if outputs is None:
            kept.append(node)
            continue
        for name, value in zip(node.output, outputs, strict=True):
            constants[name] = value
            folded.append(numpy_helper.from_array(np.asarray(value), name))
    del graph.node[:]
    graph.node.extend(kept)
    graph.initializer.extend(folded)
    _drop_unused(graph, set(constants))


def _folded(node: onnx.NodeProto, constants: dict[str, np.ndarray]) -> list[np.ndarray] | None:
    """The node's outputs if it computes from constants alone without growing, else None."""
    inputs = [name for name in node.input if name]  # "" marks an omitted optional input
    if node.domain not in ("", "ai.onnx") or not all(name in constants for name in inputs):
        return None
    if not node.input and node.op_type != "Constant":
        return None
    outputs = ReferenceEvaluator(node).run(None, {name: constants[name] for name in inputs})
    size = sum(constants[name].nbytes for name in inputs)
    if node.op_type != "Constant" and sum(np.asarray(value).nbytes for value in outputs) > 2 * size + 4096:
        return None
    return outputs


def _weights_folded(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy of the graph with its constant subgraphs folded into initializers (see :func:`fold_constants`)."""
    source = copy.deepcopy(model)
    fold_constants(source)
    return source


def to_fp16(model: onnx.ModelProto, keep_fp32_ops: Collection[str]) -> onnx.ModelProto:
    """A float16 copy of the graph in which the ops of keep_fp32_ops stay float32.

    The converter's default block list (ops without float16 kernels) stays
    float32 too, and so do the graph's inputs and outputs: the bundle's feeds
    do not change. Casts convert at the boundaries, and the constants that
    float32 ops read keep their float32 values. onnxconverter-common
    converts; the helpers around it mend what it gets wrong.

    Raises:
        ValueError: a node has no name or shares it with another.
    """
    _require_unique_node_names(model)  # the converter names its Casts after nodes
    source = _weights_folded(model)
    _describe_initializers(source.graph)
    # The converter clamps constants (initializers and Constant values) to +-max_finite_val, by default 1e4,
    # well inside float16's range: with float16's largest finite value, only those that would overflow to
    # infinity are clamped. Non-zero magnitudes below min_positive_val (1e-7) become +-1e-7 rather than
    # underflowing to zero; infinities and NaN pass. Activations are not clamped: an op whose results
    # overflow float16 has to be kept in float32.
    blocked = [*float16.DEFAULT_OP_BLOCK_LIST, *_CONVERTER_MISTYPES, *keep_fp32_ops]
    converted = float16.convert_float_to_float16(source, max_finite_val=_HALF_MAX, keep_io_types=True,
                                                 op_block_list=blocked)
    _restore_float_outputs(converted.graph)
    _read_outputs_in_half(converted.graph, blocked)
    _retarget_float_casts(converted.graph)
    # The converter rounds the constants of the float32 ops too, casting them back in front of the op:
    # fold those casts into the original float32 values, which source still holds (the converter works on
    # the copy its shape inference returns). After retargeting, the only Casts to float32 of an
    # initializer are these.
    _fold_casts(converted.graph, {t.name: t for t in source.graph.initializer if t.data_type == TensorProto.FLOAT})
    onnx.checker.check_model(converted, full_check=True)  # type errors show here, not when a bundle loads
    return converted


def activation_ranges(model: onnx.ModelProto, feeds: Iterable[dict[str, np.ndarray]],
                      quantized_ops: Collection[str]) -> Ranges:
    """The (min, max) over the feeds of each activation that :func:`quantize_int8` quantises.

    MinMax calibration: ONNX Runtime runs the graph on every feed (on the CPU)
    and records the extremes of each tensor.

    Raises:
        ValueError: feeds is empty.
    """
    source = _weights_folded(model)
    names = _activations(_quantized_nodes(source.graph, quantized_ops))
    if not names:
        return {}
    with tempfile.TemporaryDirectory(prefix="licrt-calibration-") as folder:
        path = Path(folder) / "model.onnx"
        onnx.save_model(source, path)
        computed = _calibrate(path, quantized_ops, feeds)
    # The calibrator also records tensors of the op types that are not quantised, and outputs.
    return {name: (computed[name].range_value[0].item(), computed[name].range_value[1].item()) for name in names}


def run_on_cpu(model: onnx.ModelProto, feeds: Iterable[dict[str, np.ndarray]]) -> list[list[np.ndarray]]:
    """Every output of the graph for each feed, run by ONNX Runtime on the CPU (one session for them all)."""
    session = onnxruntime.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return [session.run(None, feed) for feed in feeds]


def merge_ranges(ranges: Iterable[Ranges]) -> Ranges:
    """The union of several calibrations' ranges, tensor by tensor.

    A bundle has one graph per image shape (bucket). A stage exported at
    different shapes keeps its tensor names, and calibration images reach
    only some buckets, so every bucket is quantised with the ranges merged
    over all of them; this also makes the quantised weights and scales the
    same in every bucket.
    """
    merged: Ranges = {}
    for calibration in ranges:
        for name, (low, high) in calibration.items():
            known_low, known_high = merged.get(name, (low, high))
            merged[name] = (min(known_low, low), max(known_high, high))
    return merged


def quantizable_nodes(model: onnx.ModelProto, quantized_ops: Collection[str]) -> list[str]:
    """The names of the nodes :func:`quantize_int8` quantises unless told to keep them float32."""
    return [node.name for node in _quantized_nodes(_weights_folded(model).graph, quantized_ops)]


def quantize_int8(model: onnx.ModelProto, ranges: Ranges, quantized_ops: Collection[str],
                  keep_float: Collection[str] = ()) -> onnx.ModelProto:
    """An INT8 Q/DQ copy of the graph, from precomputed activation ranges.

    Quantised are the nodes of quantized_ops whose weight (input 1) is an
    initializer, but for those named in keep_float: their data input per
    tensor, their weight per output channel, both symmetric. Everything else
    stays float32, including MatMuls of two activations (attention's q·kᵀ
    and softmax·v). The same graph and ranges give the same bytes. A graph
    with nothing to quantise comes back as it is, its constants folded.

    Raises:
        ValueError: a range is missing, or a node has no name or shares it
            (the quantiser selects nodes by name).
    """
    source = _weights_folded(model)
    nodes = [node for node in _quantized_nodes(source.graph, quantized_ops) if node.name not in keep_float]
    if not nodes:  # (given no node names, the quantiser would quantise every node of quantized_ops)
        return source
    _require_unique_node_names(source)
    activations = _activations(nodes)
    if missing := [name for name in activations if name not in ranges]:
        raise ValueError(f"no calibrated range for {', '.join(missing)}")
    tensors_range = TensorsData(CalibrationMethod.MinMax, {
        name: TensorData(lowest=np.float32(ranges[name][0]), highest=np.float32(ranges[name][1]))
        for name in activations})
    quantizer = QDQQuantizer(
        save_and_reload_model_with_shape_infer(source),  # the quantiser reads tensor types from value_info
        per_channel=True,
        reduce_range=False,
        weight_qType=QuantType.QInt8,
        activation_qType=QuantType.QInt8,
        tensors_range=tensors_range,
        nodes_to_quantize=[node.name for node in nodes],
        nodes_to_exclude=[],
        op_types_to_quantize=list(quantized_ops),
        extra_options={
            # Zero points 0: TensorRT takes symmetric INT8 only.
            "ActivationSymmetric": True,
            "WeightSymmetric": True,
            # Q/DQ on a weighted op's inputs, not its output (TensorRT's placement advice): the output often
            # feeds ops that want it precise (GELU, LayerNorm, residual sums), and TensorRT fuses the next
            # quantised op's input Q into the producer anyway.
            "OpTypesToExcludeOutputQuantization": list(quantized_ops),
            # Biases stay float: TensorRT's ONNX parser refuses ORT's default int32 DequantizeLinear bias and
            # fuses a float bias itself. With no int32 bias, ORT's widening of weight scales to make room
            # for one would only coarsen the weights.
            "QuantizeBias": False,
            "QDQDisableWeightAdjustForInt32Bias": True,
        },
    )
    quantizer.quantize_model()
    _bypass_float_consumers(quantizer.model.model.graph, {node.name for node in nodes})
    quantizer.model.topological_sort()  # the quantiser appends its Q/DQ nodes at the end of the graph
    return quantizer.model.model


class _Feeds(CalibrationDataReader):
    """The calibration feeds, handed to ONNX Runtime's calibrator one at a time."""

    def __init__(self, feeds: Iterable[dict[str, np.ndarray]]):
        self._feeds = iter(feeds)

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._feeds, None)


def _calibrate(path: Path, op_types: Collection[str], feeds: Iterable[dict[str, np.ndarray]]) -> TensorsData:
    """MinMax ranges of the inputs and outputs of the nodes of op_types in the graph at path.

    The calibrator writes an augmented graph next to the model and holds a
    session on it until it is released, on return.
    """
    calibrator = create_calibrator(path, list(op_types), augmented_model_path=str(path.with_name("augmented.onnx")),
                                   calibrate_method=CalibrationMethod.MinMax)
    calibrator.collect_data(_Feeds(feeds))
    return calibrator.compute_data()


def _quantized_nodes(graph: onnx.GraphProto, quantized_ops: Collection[str]) -> list[onnx.NodeProto]:
    """The nodes of quantized_ops whose weight (input 1) is an initializer, but for convolutions of a square.

    A convolution of x·x is GDN's normalisation pool, Σ γ x²: its input spans
    orders of magnitude that one int8 scale cannot hold, and the square root
    it feeds divides the whole signal.
    """
    weights = {tensor.name for tensor in graph.initializer}
    squares = {node.output[0] for node in graph.node
               if (node.op_type == "Mul" and len(set(node.input)) == 1) or node.op_type == "Pow"}
    return [node for node in graph.node
            if node.op_type in quantized_ops and len(node.input) > 1 and node.input[1] in weights
            and not (node.op_type == "Conv" and node.input[0] in squares)]


def _activations(nodes: Iterable[onnx.NodeProto]) -> list[str]:
    """The tensors Q/DQ quantisation of these nodes needs ranges for: their data inputs (outputs stay float)."""
    return sorted({node.input[0] for node in nodes})


def _bypass_float_consumers(graph: onnx.GraphProto, quantized: Collection[str]) -> None:
    """Let only the quantised nodes read an activation through its Q/DQ pair.

    The quantiser routes every consumer of a quantised activation through
    the pair, and the activation itself when it is a graph output: that
    would round the residual sums and the outputs that are to stay float32.
    """
    producers = {name: node for node in graph.node for name in node.output}
    pairs = [(producers[dq.input[0]].input[0], dq.output[0]) for dq in graph.node  # (float, dequantised)
             if dq.op_type == "DequantizeLinear" and dq.input[0] in producers
             and producers[dq.input[0]].op_type == "QuantizeLinear"]
    outputs = {output.name for output in graph.output}
    # For a graph output, the quantiser renamed the producer's output and made the DequantizeLinear
    # produce the output's name: give the producer its name back.
    renames = {}
    for float_name, dequantised in pairs:
        if dequantised in outputs:
            renames |= {dequantised: f"{dequantised}_DequantizeLinear_Output", float_name: dequantised}
    for node in graph.node:
        _rename(node.input, renames)
        _rename(node.output, renames)
    floats = {renames.get(dequantised, dequantised): renames.get(float_name, float_name)
              for float_name, dequantised in pairs}
    for node in graph.node:
        if node.name not in quantized:
            _rename(node.input, floats)


def _rename(names: MutableSequence[str], renames: dict[str, str]) -> None:
    for index, name in enumerate(names):
        names[index] = renames.get(name, name)


def _casts_to(node: onnx.NodeProto, data_type: int) -> bool:
    return node.op_type == "Cast" and any(a.name == "to" and a.i == data_type for a in node.attribute)


def _fold_casts(graph: onnx.GraphProto, sources: dict[str, TensorProto]) -> None:
    """Replace each Cast to float32 of a source by a float32 initializer of the source's values.

    Initializers named after a source that are left without a consumer are
    removed.
    """
    folded = [index for index, node in enumerate(graph.node)
              if _casts_to(node, TensorProto.FLOAT) and node.input[0] in sources]
    for index in folded:
        node = graph.node[index]
        value = numpy_helper.to_array(sources[node.input[0]]).astype(np.float32)
        graph.initializer.append(numpy_helper.from_array(value, node.output[0]))
    for index in reversed(folded):
        del graph.node[index]
    _drop_unused(graph, sources)


def _drop_unused(graph: onnx.GraphProto, names: Collection[str]) -> None:
    """Remove the initializers of names that nothing reads any more (by position: rebuilding the list would
    copy every weight)."""
    used = {name for node in graph.node for name in node.input} | {output.name for output in graph.output}
    for index in reversed(range(len(graph.initializer))):
        name = graph.initializer[index].name
        if name in names and name not in used:
            del graph.initializer[index]


def _describe_initializers(graph: onnx.GraphProto) -> None:
    """Give every float32 initializer a value_info, as the float16 converter expects.

    The converter casts an initializer back to float32 in front of a kept op
    only if it has one; without, it leaves the initializer float32 for every
    op, and a converted op reading it too gets a float32 input.
    """
    described = {info.name for info in graph.value_info}
    graph.value_info.extend(helper.make_tensor_value_info(t.name, t.data_type, t.dims) for t in graph.initializer
                            if t.data_type == TensorProto.FLOAT and t.name not in described)


def _restore_float_outputs(graph: onnx.GraphProto) -> None:
    """Let the float32 ops that produce graph outputs produce them, in float32.

    When a kept op makes a graph output, the converter casts it to float16
    under the output's name and retypes the output float16, keep_io_types
    notwithstanding. The op gets the output's name back and the Cast, which
    feeds the float16 consumers, a name of its own; it goes if there are none.
    """
    producers = {name: node for node in graph.node for name in node.output}
    renames = {}
    for output in graph.output:
        cast = producers.get(output.name)
        if (output.type.tensor_type.elem_type == TensorProto.FLOAT16 and cast is not None
                and _casts_to(cast, TensorProto.FLOAT16)):
            renames |= {output.name: f"{output.name}_float16", cast.input[0]: output.name}
            output.type.tensor_type.elem_type = TensorProto.FLOAT
    for node in graph.node:
        _rename(node.input, renames)
        _rename(node.output, renames)
    for info in graph.value_info:
        info.name = renames.get(info.name, info.name)
    unread = {renames[output.name] for output in graph.output if output.name in renames}
    unread -= {name for node in graph.node for name in node.input}
    for index in reversed(range(len(graph.node))):
        if unread.intersection(graph.node[index].output):
            del graph.node[index]


def _read_outputs_in_half(graph: onnx.GraphProto, blocked: Collection[str]) -> None:
    """Let the float16 ops that read a graph output read it in float16.

    keep_io_types casts a float16 result back to float32 under the output's
    name, but the ops inside the graph that read it too (a context step's
    state, passed on and concatenated) are left reading that float32 Cast.
    """
    producers = {name: node for node in graph.node for name in node.output}
    halves = {}
    for output in graph.output:
        cast = producers.get(output.name)
        if cast is not None and _casts_to(cast, TensorProto.FLOAT):
            source = producers.get(cast.input[0])
            if source is not None and source.op_type not in blocked and source.op_type != "Cast":
                halves[output.name] = cast.input[0]
    for node in graph.node:
        if node.op_type not in blocked and node.op_type != "Cast":
            _rename(node.input, halves)


def _retarget_float_casts(graph: onnx.GraphProto) -> None:
    """Make the graph's Casts to float32 whose output the converter made float16 cast to float16.

    The converter retypes tensors but not the target of existing Casts
    (say, of an integer tensor to float32), which would leave a float32
    tensor typed float16.
    """
    halves = {info.name for info in graph.value_info if info.type.tensor_type.elem_type == TensorProto.FLOAT16}
    for node in graph.node:
        if _casts_to(node, TensorProto.FLOAT) and node.output[0] in halves:
            next(a for a in node.attribute if a.name == "to").i = TensorProto.FLOAT16


def _require_unique_node_names(model: onnx.ModelProto) -> None:
    names = [node.name for node in model.graph.node]
    if "" in names or len(set(names)) < len(names):
        raise ValueError("every node of the graph needs a name of its own")
