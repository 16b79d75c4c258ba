"""Which weighted ops INT8 can afford: each one's share of a stage's quantisation noise, against a budget.

The noise of ops quantised separately adds up almost independently (the
default model's g_s at 512×768: all 38 weighted ops quantised together give
a relative squared error of 2.69e-4 on x̂, the 38 alone sum to 2.66e-4). So
each op is quantised alone and the stage's output error measured; ops stay
float32, the most harmful first, until the rest fits the budget, and the
stage quantised that way is measured again, keeping one more op float32
while it does not fit.

The budget is a fraction of the noise the codec adds at that stage anyway:
the rounding of the coded latents (a unit step's uniform noise, 1/12) for
stages whose outputs are coded or code, and the level's distortion (the
decoded images' squared error, measured on the calibration images) for g_s.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass

import numpy as np
import onnx

from .graph_precision import Ranges, quantizable_nodes, quantize_int8, run_on_cpu
from .policies import DEFAULT_BUDGET

#: The variance of rounding to integers: what coding a latent adds to it.
ROUNDING_NOISE = 1 / 12


@dataclass(frozen=True)
class Choice:
    """The ops of one stage graph that stay float32, and what the stage's INT8 noise then is."""

    kept_float: tuple[str, ...]
    quantized: int
    #: The measured noise as a fraction of the noise floor.
    noise: float


def choose_float_ops(model: onnx.ModelProto, ranges: Ranges, feeds: Sequence[dict[str, np.ndarray]],
                     ops: Collection[str], noise_floor: float, budget: float = DEFAULT_BUDGET) -> Choice:
    """The fewest weighted ops to keep float32 for the stage's INT8 noise to stay within budget × noise_floor
    (mean squared error of its outputs over feeds)."""
    reference = run_on_cpu(model, feeds)

    def noise(keep_float: Collection[str]) -> float:
        outputs = run_on_cpu(quantize_int8(model, ranges, ops, keep_float), feeds)
        errors = [np.mean((actual - expected) ** 2) for quantized, exact in zip(outputs, reference, strict=True)
                  for actual, expected in zip(quantized, exact, strict=True)]
        return float(np.mean(errors)) / noise_floor

    nodes = quantizable_nodes(model, ops)
    alone = {name: noise([other for other in nodes if other != name]) for name in nodes}
    order = sorted(nodes, key=lambda name: alone[name], reverse=True)
    kept, rest = [], sum(alone.values())
    for name in order:
        if rest <= budget:
            break
        kept.append(name)
        rest -= alone[name]
    measured = noise(kept)
    while measured > budget and len(kept) < len(order):
        kept.append(order[len(kept)])
        measured = noise(kept)
    return Choice(tuple(kept), len(nodes) - len(kept), measured)

