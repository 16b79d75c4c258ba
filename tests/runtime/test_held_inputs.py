"""Inputs held on a backend's device between runs: the same outputs as run(), and only what changed moves."""

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from licrt.runtime.backends import open_backend
from licrt.runtime.errors import BackendError
from licrt.runtime.manifest import StageGraph, TensorSpec


@pytest.fixture()
def runner(tmp_path):
    """A raster-like step: out = cache + y · position, row = the cache's first row."""
    graph = helper.make_graph(
        [helper.make_node("Cast", ["position"], ["p"], to=TensorProto.FLOAT),
         helper.make_node("Mul", ["y", "p"], ["scaled"]),
         helper.make_node("Add", ["cache", "scaled"], ["out"]),
         helper.make_node("Slice", ["out", "zero", "one", "zero"], ["row"])],
        "step",
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4, 3]),
         helper.make_tensor_value_info("cache", TensorProto.FLOAT, [4, 3]),
         helper.make_tensor_value_info("position", TensorProto.INT64, [1])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, [4, 3]),
         helper.make_tensor_value_info("row", TensorProto.FLOAT, [1, 3])],
        [helper.make_tensor("zero", TensorProto.INT64, [1], [0]),
         helper.make_tensor("one", TensorProto.INT64, [1], [1])],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), tmp_path / "step.onnx")
    spec = StageGraph("step.onnx", (TensorSpec("y", (4, 3), "float32"), TensorSpec("cache", (4, 3), "float32"),
                                    TensorSpec("position", (1,), "int64")),
                      (TensorSpec("out", (4, 3), "float32"), TensorSpec("row", (1, 3), "float32")))

    class Folder:
        """What a backend asks of a bundle: where a graph and its weights are."""

        weights_folder = tmp_path

        def path(self, name):
            return tmp_path / name

    return open_backend("onnxruntime").load(Folder(), "step", spec)


def test_held_inputs_give_run_s_outputs_and_move_only_what_changed(runner):
    y = np.arange(12, dtype=np.float32).reshape(4, 3)
    cache = np.zeros((4, 3), np.float32)
    runner.hold({"y": y, "cache": cache})
    y += 100  # the host's array changes; the held copy only through write()
    assert np.array_equal(runner.step({"position": np.array([1])}, fetch=("out",))["out"], y - 100)
    y -= 100
    runner.transfers.to_host = 0
    for position in range(1, 4):
        out = runner.step({"position": np.array([position])}, fetch=("out",))["out"]
        assert np.array_equal(out, cache + y * position)
        runner.store("row", "cache", (position, slice(None)))  # on the device: out's first row
        cache[position] = out[0]
        y[position] = -position
        runner.write("y", position, y[position])
    # held once (2 × 48 bytes); per step the position (8) and one row of y (12); back only "out" (48)
    assert (runner.transfers.to_device, runner.transfers.to_host) == (2 * 48 + 4 * 8 + 3 * 12, 3 * 48)
    held = runner.step({"position": np.array([2])}, fetch=("out",))["out"]
    assert np.array_equal(held, runner.run({"y": y, "cache": cache, "position": np.array([2])})["out"])


def test_held_inputs_are_checked(runner):
    with pytest.raises(BackendError, match="takes float32"):
        runner.hold({"y": np.zeros((4, 3), np.float64)})
    with pytest.raises(BackendError, match="no input 'z'"):
        runner.hold({"z": np.zeros((4, 3), np.float32)})
    runner.hold({"y": np.zeros((4, 3), np.float32)})
    with pytest.raises(BackendError, match="'cache' is neither fed nor held"):
        runner.step({"position": np.array([0])}, fetch=("out",))
