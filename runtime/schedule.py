"""The coding schedule: the serial passes in which a codec codes its latent ŷ.

A codec declares its schedule once. The same declaration drives training-time
masking and the PyTorch reference coder (in ``licrt.export``), names the
exported per-pass graphs, and is what the runtime walks, for encoding and
decoding alike::

    hyper ──┐
    y_hat ──┼─► step graph ─► scales, means (+ state it passes on)
    state ──┘                    │
                                 ▼
          code the step's elements: channels [start, stop) × positions
                                 │
                                 ▼
                  y_hat[elements] = symbols + means

Each :class:`ContextStep` names the state tensors its graph reads (graph input
names) and the extra tensors it writes (graph outputs besides ``scales`` and
``means``), so the runtime needs no knowledge of any particular codec.

A ``raster`` step is an autoregressive pass: its graph runs once per position
in raster order, reads the runtime-provided ``position`` (int64, shape (1,))
and returns (1, C) parameters for that position only. Its ``caches`` are
state tensors that persist across those runs (a transformer's keys and
values): the runtime creates them as zeros, and after each run writes the
graph's ``<cache>_row`` output into the cache at index ``row_index`` of the
second-to-last axis, so one run costs one token's work, not a full recompute.

Example:
    >>> step = ContextStep("y0-anchor", channels=(0, 16), positions="checkerboard-even",
    ...                    reads=("hyper",))
    >>> step.position_mask(2, 3).astype(int).tolist()
    [[1, 0, 1], [0, 1, 0]]
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .errors import BundleError
from .json_fields import Field

#: Position sets a step can code. ``checkerboard-even`` is every (i, j) with
#: (i + j) even, ``checkerboard-odd`` the rest; ``raster`` is every position,
#: one graph run each.
POSITION_SETS = ("all", "checkerboard-even", "checkerboard-odd", "raster")

#: What the runtime feeds a raster step's graph besides the state it reads.
RASTER_POSITION = "position"
#: The graph output that says where a raster step's cache rows go.
RASTER_ROW_INDEX = "row_index"

#: Tensors the runtime puts into the state before the first step.
INITIAL_STATE = ("y_hat",)

#: Graph outputs every step returns; they are consumed, not kept in the state. A Gaussian's per element; a
#: mixture's (``components`` > 1) per component and element, component-major: (1, K·C, h, w).
ENTROPY_PARAMETERS = ("scales", "means")
MIXTURE_PARAMETERS = ("weights", "means", "scales")
#: The most components a mixture may have.
MAX_COMPONENTS = 8

#: What a manifest may declare: step and tensor names, and bounds that keep a
#: hostile schedule from asking for absurd work.
NAME = r"[A-Za-z0-9_.-]{1,64}"
MAX_CHANNELS = 2**14
MAX_STEPS = 1024
MAX_STEP_TENSORS = 64


@dataclass(frozen=True)
class ContextStep:
    """One serial pass: a graph that predicts entropy parameters for a slice of ŷ.

    Args:
        name: Unique step name; also the name of its stage graph.
        channels: ``(start, stop)`` of the latent channels this step codes.
        positions: One of :data:`POSITION_SETS`.
        reads: State tensors the step graph takes as inputs, in graph order.
        writes: State tensors the graph returns besides scales and means.
        caches: For a raster step, state tensors kept across its runs.
    """

    name: str
    channels: tuple[int, int]
    positions: str
    reads: tuple[str, ...]
    writes: tuple[str, ...] = ()
    caches: tuple[str, ...] = ()

    @property
    def raster(self) -> bool:
        return self.positions == "raster"

    @property
    def graph_inputs(self) -> tuple[str, ...]:
        """Input names of the step graph: what it reads, then the position and caches of a raster step."""
        return (*self.reads, RASTER_POSITION, *self.caches) if self.raster else self.reads

    def graph_outputs(self, parameters: tuple[str, ...]) -> tuple[str, ...]:
        """Output names of the step graph: the entropy parameters (see :attr:`CodingSchedule.parameters`), what
        it writes, then a raster step's cache rows and row index."""
        rows = (*(f"{cache}_row" for cache in self.caches), RASTER_ROW_INDEX) if self.raster else ()
        return (*parameters, *self.writes, *rows)

    def position_mask(self, height: int, width: int) -> np.ndarray:
        """Boolean (height, width) mask of the positions this step codes."""
        if self.positions in ("all", "raster"):
            return np.ones((height, width), dtype=bool)
        parity = 0 if self.positions == "checkerboard-even" else 1
        rows, cols = np.indices((height, width))
        return (rows + cols) % 2 == parity

    def to_json(self) -> dict:
        return {
            "name": self.name,
            "channels": list(self.channels),
            "positions": self.positions,
            "reads": list(self.reads),
            "writes": list(self.writes),
            "caches": list(self.caches),
        }

    @classmethod
    def from_json(cls, field: Field) -> ContextStep:
        channels = field["channels"].list(max_items=2, min_items=2)

        def names(key: str) -> tuple[str, ...]:
            return tuple(name.str(NAME) for name in field.get(key, []).list(MAX_STEP_TENSORS))

        return cls(
            name=field["name"].str(NAME),
            channels=(channels[0].int(0, MAX_CHANNELS), channels[1].int(0, MAX_CHANNELS)),
            positions=field["positions"].str(choices=POSITION_SETS),
            reads=names("reads"),
            writes=names("writes"),
            caches=names("caches"),
        )


@dataclass(frozen=True)
class CodingSchedule:
    """The ordered steps that together code every element of ŷ exactly once.

    Args:
        channels: Number of latent channels M.
        steps: The passes, in coding order.
        sources: State tensors available before the first step besides ``y_hat``
            (the hyper decoder's outputs, e.g. ``("hyper",)``).
        components: 1: each element is coded under a Gaussian; K > 1: under a K-component Gaussian mixture
            (steps return :data:`MIXTURE_PARAMETERS`; no raster steps).
    """

    channels: int
    steps: tuple[ContextStep, ...]
    sources: tuple[str, ...] = field(default=("hyper",))
    components: int = 1

    @property
    def parameters(self) -> tuple[str, ...]:
        """The entropy parameters every step graph returns."""
        return ENTROPY_PARAMETERS if self.components == 1 else MIXTURE_PARAMETERS

    def __post_init__(self):
        self.validate()

    def validate(self) -> None:
        """Check that the schedule is well formed.

        Raises:
            BundleError: a step has an unknown position set or channel range,
                reads a tensor nobody wrote, or an element of ŷ is coded twice
                or never (checked on a 2×2 grid, which covers every position set).
        """
        if not 1 <= self.components <= MAX_COMPONENTS:
            raise BundleError(f"schedule: {self.components} mixture components; expected 1 to {MAX_COMPONENTS}")
        available = set(INITIAL_STATE) | set(self.sources)
        coverage = np.zeros((self.channels, 2, 2), dtype=np.int64)
        names = set()
        for step in self.steps:
            if step.name in names:
                raise BundleError(f"schedule: step name {step.name!r} is used twice")
            names.add(step.name)
            if step.positions not in POSITION_SETS:
                raise BundleError(
                    f"schedule: step {step.name!r} has positions {step.positions!r}; "
                    f"expected one of {', '.join(POSITION_SETS)}"
                )
            start, stop = step.channels
            if not 0 <= start < stop <= self.channels:
                raise BundleError(
                    f"schedule: step {step.name!r} codes channels [{start}, {stop}) "
                    f"of a {self.channels}-channel latent"
                )
            if step.raster and self.components > 1:
                raise BundleError(f"schedule: step {step.name!r} is a raster step of a mixture codec")
            if step.caches and not step.raster:
                raise BundleError(f"schedule: step {step.name!r} has caches but is not a raster step")
            missing = [name for name in step.reads if name not in available]
            if missing:
                raise BundleError(
                    f"schedule: step {step.name!r} reads {', '.join(missing)} "
                    "before any step or stage wrote it"
                )
            available.update(step.writes)
            coverage[start:stop] += step.position_mask(2, 2)
        if not np.all(coverage == 1):
            channel = int(np.argwhere(coverage != 1)[0][0])
            raise BundleError(
                f"schedule: latent channel {channel} is not coded exactly once per position"
            )

    def to_json(self) -> dict:
        mixture = {"components": self.components} if self.components > 1 else {}
        return {
            "channels": self.channels,
            "sources": list(self.sources),
            "steps": [step.to_json() for step in self.steps],
            **mixture,
        }

    @classmethod
    def from_json(cls, field: Field) -> CodingSchedule:
        channels = field["channels"].int(1, MAX_CHANNELS)
        steps = tuple(ContextStep.from_json(step) for step in field["steps"].list(MAX_STEPS, min_items=1))
        sources = tuple(name.str(NAME) for name in field["sources"].list(MAX_STEP_TENSORS))
        components = field.get("components", 1).int(1, MAX_COMPONENTS)
        try:
            return cls(channels=channels, steps=steps, sources=sources, components=components)
        except BundleError as exc:
            raise BundleError(f"{field.source}: {exc}") from None
