"""A backend whose every stage run a benchmark can watch: to record inputs or outputs, or note the stage."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ..manifest import StageGraph
from .base import Backend, StageRunner

#: ``watch(stage, feed, run) -> outputs``: runs the stage by calling ``run(feed)``.
Watch = Callable[[str, dict[str, np.ndarray], Callable], dict[str, np.ndarray]]


class WatchedBackend(Backend):
    """backend, with every stage run passed through watch."""

    name = "watched"

    def __init__(self, backend: Backend, watch: Watch):
        self.backend = backend
        self.watch = watch

    @property
    def profile(self) -> str:
        return self.backend.profile

    def load(self, bundle, name: str, graph: StageGraph) -> StageRunner:
        return _WatchedRunner(name, graph, self.backend.load(bundle, name, graph), self.watch)


class _WatchedRunner(StageRunner):
    def __init__(self, name: str, graph: StageGraph, runner: StageRunner, watch: Watch):
        super().__init__(name, graph)
        self._runner = runner
        self._watch = watch

    def _run(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return self._watch(self.name, feed, self._runner.run)
