"""The backend interface: something that runs one static-shape stage graph.

A :class:`Backend` loads each stage graph of a bundle into a
:class:`StageRunner`; the scheduler only ever calls :meth:`StageRunner.run`.
Backends differ in speed and in the exact floats they compute; the guard
(:mod:`licrt.runtime.guard`) makes files decode across them all the same.
Each names its :attr:`Backend.profile`: the container records the profile a
file was encoded with, so a decoder whose floats differ beyond the guard can
say which backends met.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from abc import ABC, abstractmethod
from collections.abc import Collection, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import BackendError
from ..manifest import StageGraph, TensorSpec

if TYPE_CHECKING:
    from ..bundle import Bundle


@dataclass
class Transfers:
    """Bytes a runner moved between the host (numpy) and its device's memory."""

    to_device: int = 0
    to_host: int = 0


class StageRunner(ABC):
    """Runs one stage graph on fixed shapes.

    Two ways to run it: :meth:`run` takes every input from the host and
    returns every output to it; or inputs stay in the device's memory between
    runs: :meth:`hold` puts them there, :meth:`write` changes part of one,
    :meth:`step` runs with the held inputs and returns only the outputs asked
    for, and :meth:`store` copies part of an output into a held input without
    leaving the device (a key/value cache row). :attr:`transfers` counts the
    bytes either way moves. A runner whose device is the host keeps held
    inputs as host copies; a GPU runner overrides the ``_device_*`` methods.
    """

    def __init__(self, name: str, graph: StageGraph):
        self.name = name
        self.graph = graph
        self.transfers = Transfers()
        self._held: dict[str, Any] = {}
        self._outputs: dict[str, Any] = {}

    def run(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run the graph.

        Args:
            feed: One array per graph input, by input name (float32; int64
                for a raster step's position).

        Returns:
            One array per graph output, by output name.

        Raises:
            BackendError: an input is missing or has the wrong shape or dtype,
                the backend failed, or an output is not what the manifest
                declares (a graph that does not match its bundle).
        """
        for spec in self.graph.inputs:
            array = feed.get(spec.name)
            if array is None:
                raise BackendError(f"stage {self.name}: input {spec.name!r} is missing")
            self._check_input(spec, array)
        outputs = self._run({spec.name: feed[spec.name] for spec in self.graph.inputs})
        missing = [spec.name for spec in self.graph.outputs if spec.name not in outputs]
        if missing:
            raise BackendError(f"stage {self.name}: output {missing[0]!r} is missing")
        self._check_outputs(outputs)
        self.transfers.to_device += sum(array.nbytes for array in feed.values())
        self.transfers.to_host += sum(array.nbytes for array in outputs.values())
        return outputs

    def hold(self, inputs: dict[str, np.ndarray]) -> None:
        """Put these inputs in the device's memory for the following :meth:`step` runs."""
        for name, array in inputs.items():
            try:
                spec = self.graph.input(name)
            except StopIteration:
                raise BackendError(f"stage {self.name} has no input {name!r}") from None
            self._check_input(spec, array)
            self._held[name] = self._device_put(array)
            self.transfers.to_device += array.nbytes

    def write(self, name: str, index, values: np.ndarray) -> None:
        """Overwrite ``held[name][index]`` with values sent from the host."""
        self._device_write(self._held[name], index, values)
        self.transfers.to_device += values.nbytes

    def step(self, feed: dict[str, np.ndarray], fetch: Collection[str]) -> dict[str, np.ndarray]:
        """Run on the held inputs and ``feed`` (the rest); return the ``fetch`` outputs to the host and keep
        the others on the device for :meth:`store`."""
        missing = [spec.name for spec in self.graph.inputs if spec.name not in feed and spec.name not in self._held]
        if missing:
            raise BackendError(f"stage {self.name}: input {missing[0]!r} is neither fed nor held")
        inputs = {**self._held, **{name: self._device_put(array) for name, array in feed.items()}}
        self.transfers.to_device += sum(array.nbytes for array in feed.values())
        self._outputs = self._device_run({spec.name: inputs[spec.name] for spec in self.graph.inputs})
        unknown = [name for name in fetch if name not in self._outputs]
        if unknown:
            raise BackendError(f"stage {self.name}: output {unknown[0]!r} is missing")
        outputs = {name: self._device_get(self._outputs[name]) for name in fetch}
        self._check_outputs(outputs)
        self.transfers.to_host += sum(array.nbytes for array in outputs.values())
        return outputs

    def store(self, output: str, into: str, index) -> None:
        """``held[into][index] = output`` of the last :meth:`step`, on the device."""
        try:
            self._device_copy(self._held[into], index, self._outputs[output])
        except (RuntimeError, ValueError) as exc:  # numpy and torch on mismatched shapes
            raise BackendError(f"stage {self.name}: output {output!r} does not fit {into!r}: {exc}") from None

    def release(self) -> None:
        """Free the held inputs and kept outputs."""
        self._held.clear()
        self._outputs.clear()

    def _check_input(self, spec: TensorSpec, array: np.ndarray) -> None:
        if array.shape != spec.shape or array.dtype != np.dtype(spec.dtype):
            raise BackendError(f"stage {self.name}: input {spec.name!r} is {array.dtype}{list(array.shape)}, "
                               f"the graph takes {spec.dtype}{list(spec.shape)}")

    def _check_outputs(self, outputs: dict[str, np.ndarray]) -> None:
        for spec in self.graph.outputs:
            array = outputs.get(spec.name)
            if array is not None and (array.shape != spec.shape or array.dtype != np.dtype(spec.dtype)):
                raise BackendError(
                    f"stage {self.name}: output {spec.name!r} is {array.dtype}{list(array.shape)}, "
                    f"the manifest declares {spec.dtype}{list(spec.shape)}"
                )

    @abstractmethod
    def _run(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]: ...

    # The device's memory; by default the host's (numpy arrays).
    def _device_put(self, array: np.ndarray) -> Any:
        return np.array(array, copy=True)

    def _device_get(self, value: Any) -> np.ndarray:
        return value

    def _device_run(self, inputs: dict[str, Any]) -> dict[str, Any]:
        return self._run(inputs)

    def _device_write(self, value: Any, index, values: np.ndarray) -> None:
        value[index] = values

    def _device_copy(self, value: Any, index, source: Any) -> None:
        value[index] = source


class Backend(ABC):
    """A way to run stage graphs: ONNX Runtime, the PyTorch reference, TensorRT."""

    #: Short name used on the command line.
    name: str

    @property
    @abstractmethod
    def profile(self) -> str:
        """What determines this backend's floats: library, version, device, precision."""

    @abstractmethod
    def load(self, bundle: Bundle, name: str, graph: StageGraph) -> StageRunner:
        """Prepare one stage graph of bundle (the stage name, in one of its buckets) for running."""


#: Where backends keep what they compile from graphs unless ``$LICRT_ENGINE_CACHE`` says otherwise.
DEFAULT_ENGINE_CACHE = Path("~/.cache/licrt/engines")


def engine_cache() -> Path:
    """The folder of compiled graphs: TensorRT's plans, and OpenVINO's blobs under ``openvino/``."""
    return Path(os.environ.get("LICRT_ENGINE_CACHE", DEFAULT_ENGINE_CACHE)).expanduser()


@contextlib.contextmanager
def graph_beside_weights(bundle: Bundle, graph: StageGraph) -> Iterator[Path]:
    """The graph file in a temporary folder beside the level's weights, for libraries that find external
    data only beside the graph they read (TensorRT's parser, OpenVINO): one graph serves every level.

    The weights are hard-linked, or copied where the folders are on different file systems (OpenVINO
    refuses a symbolic link that leads out of the graph's folder).
    """
    with tempfile.TemporaryDirectory(prefix="licrt-graph-") as folder:
        path = Path(folder) / Path(graph.file).name
        shutil.copyfile(bundle.path(graph.file), path)
        for name, weights in bundle.weight_files.items():
            beside = Path(folder) / name
            try:
                os.link(weights, beside)
            except OSError:
                shutil.copyfile(weights, beside)
        yield path
