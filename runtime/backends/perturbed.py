"""Fault injection: another backend's outputs, every float nudged by a bounded relative error.

A test tool for the guard (:mod:`licrt.runtime.guard`): a decoder that runs
``PerturbedBackend(backend, 1e-5)`` computes floats that differ from
``backend``'s by up to 1e-5 relative, as another backend's would, and shows
whether files still decode. The nudges are reproducible: each stage draws
from its own generator, seeded by the seed and the stage's name.
"""

from __future__ import annotations

import zlib

import numpy as np

from ..manifest import StageGraph
from .base import Backend, StageRunner


class PerturbedBackend(Backend):
    """Multiplies every float output of backend by (1 + epsilon·u), u uniform in [−1, 1].

    Args:
        backend: The backend whose outputs are perturbed.
        epsilon: The largest relative error injected.
        seed: Seeds the generators.
    """

    name = "perturbed"

    def __init__(self, backend: Backend, epsilon: float, seed: int = 0):
        self.backend = backend
        self.epsilon = epsilon
        self.seed = seed

    @property
    def profile(self) -> str:
        return f"{self.backend.profile} perturbed={self.epsilon:g} seed={self.seed}"

    def load(self, bundle, name: str, graph: StageGraph) -> StageRunner:
        generator = np.random.default_rng([self.seed, zlib.crc32(name.encode())])
        return _PerturbedRunner(name, graph, self.backend.load(bundle, name, graph), self.epsilon, generator)


class _PerturbedRunner(StageRunner):
    def __init__(self, name: str, graph: StageGraph, runner: StageRunner, epsilon: float, generator):
        super().__init__(name, graph)
        self._runner = runner
        self._epsilon = epsilon
        self._generator = generator

    def _run(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        outputs = self._runner.run(feed)
        for name, array in outputs.items():
            if array.dtype == np.float32:
                noise = self._generator.uniform(-self._epsilon, self._epsilon, array.shape)
                outputs[name] = (array * (1 + noise)).astype(np.float32)
        return outputs
