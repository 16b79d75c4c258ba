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

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING

import numpy as np

from ..errors import BackendError
from ..manifest import StageGraph

if TYPE_CHECKING:
    from ..bundle import Bundle


class StageRunner(ABC):
    """Runs one stage graph on fixed shapes."""

    def __init__(self, name: str, graph: StageGraph):
        self.name = name
        self.graph = graph

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
            if array.shape != spec.shape or array.dtype != np.dtype(spec.dtype):
                raise BackendError(
                    f"stage {self.name}: input {spec.name!r} is {array.dtype}{list(array.shape)}, "
                    f"the graph takes {spec.dtype}{list(spec.shape)}"
                )
        outputs = self._run({spec.name: feed[spec.name] for spec in self.graph.inputs})
        for spec in self.graph.outputs:
            array = outputs[spec.name]
            if array.shape != spec.shape or array.dtype != np.dtype(spec.dtype):
                raise BackendError(
                    f"stage {self.name}: output {spec.name!r} is {array.dtype}{list(array.shape)}, "
                    f"the manifest declares {spec.dtype}{list(spec.shape)}"
                )
        return outputs

    @abstractmethod
    def _run(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]: ...


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
