"""Gaussian-mixture coding against single-Gaussian coding: nanoseconds per symbol, side by side in one run.

The same number of symbols as a Kodak image's ŷ at M = 192 (32×48×192),
drawn from 3-component mixtures: each component's scale log-normal around
``--scale-median`` (the default model's Gaussian scales on Kodak have a
median of 0.12, 90 % below 1.36, 99 % below 2.6), the components' means
within ±0.5 of a centre that spreads ``--mean-spread`` around zero, weights
from a softmax of N(0, 1) logits. Timed per direction, medians of
``--rounds``: the guard's decisions, building the mixture tables and coding
(:mod:`licrt.runtime.mixture`), against values drawn from the first component
alone, coded as an ``integer`` codec's symbols are (decisions, then
:class:`~licrt.runtime.entropy.CategoricalTables` rows, grouped). The mixtures
are decided on eContextformer's grids (its mean fraction slices and weight
grid), the Gaussians on the default slices. File size against −Σ log2 p.

Example::

    python bench/mixture_coding.py --out bench/results/mixture-coding.json
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import constriction
import numpy as np

from licrt.export.econtextformer.model import EContextformer
from licrt.export.entropy_models import SCALE_TABLE, fraction_bins, gaussian_tables
from licrt.runtime.entropy import tables_from_arrays
from licrt.runtime.guard import Guard, MixtureGuard
from licrt.runtime.mixture import MixtureTables

from report import save_report  # a sibling script: python puts bench/ on the path

SYMBOLS = 32 * 48 * 192
TOLERANCE = 1e-5


def draw(size: int, scale_median: float, mean_spread: float, seed: int = 0):
    """(weights, means, scales) as (3, size) float32, and values drawn from the mixtures."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(0, 1, (3, size))
    weights = np.exp(logits) / np.exp(logits).sum(axis=0)
    centre = rng.normal(0, mean_spread, size)
    means = centre + rng.normal(0, 0.5, (3, size))
    scales = np.maximum(scale_median * np.exp(rng.normal(0, 1.2, (3, size))), 0.11)
    component = (rng.random(size)[None] > np.cumsum(weights, axis=0)).sum(axis=0).clip(0, 2)
    chosen = component, np.arange(size)
    values = np.rint(rng.normal(means[chosen], scales[chosen])).astype(np.int64)
    return tuple(p.astype(np.float32) for p in (weights, means, scales)), values


def timed(function, rounds: int):
    """(median seconds, last result) of function() over rounds."""
    times, result = [], None
    for _ in range(rounds):
        start = time.perf_counter()
        result = function()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def measure(guard, coder, decide, coded, rounds: int) -> dict:
    """Time one way of coding: decisions, encoding, decoding (checked), and what the file costs."""
    decide_s, decided = timed(lambda: decide(guard), rounds)
    symbols, context = coded(decided)

    def encode():
        encoder = constriction.stream.queue.RangeEncoder()
        coder.encode(encoder, symbols, context)
        return encoder.get_compressed()

    encode_s, compressed = timed(encode, rounds)
    decode_s, decoded = timed(lambda: coder.decode(constriction.stream.queue.RangeDecoder(compressed), context),
                              rounds)
    assert np.array_equal(decoded, symbols)
    size = symbols.size if hasattr(symbols, "size") else len(symbols)
    return {"ns_per_symbol": {"decisions": 1e9 * decide_s / size, "encode": 1e9 * encode_s / size,
                              "decode": 1e9 * decode_s / size},
            "bits_per_symbol": 32 * compressed.size / size,
            "file_over_information": 32 * compressed.size / coder.information_bits(symbols, context) - 1}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scale-median", type=float, default=0.25)
    parser.add_argument("--mean-spread", type=float, default=2.0)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()

    tables, scale_table = tables_from_arrays(gaussian_tables(SCALE_TABLE, fraction_bins(SCALE_TABLE)))
    mixture_tables, mixture_scales = tables_from_arrays(
        gaussian_tables(SCALE_TABLE, fraction_bins(SCALE_TABLE, *EContextformer.fraction_slices)))
    (weights, means, scales), values = draw(SYMBOLS, args.scale_median, args.mean_spread)
    alone = np.rint(np.random.default_rng(1).normal(means[0], scales[0])).astype(np.int64)  # the first component's
    coders = {
        "gaussian": (Guard(scale_table, "integer", TOLERANCE, None), tables,
                     lambda guard: guard.decide(scales[0], means[0], pin_near=True),
                     lambda decided: (alone - decided.centers.astype(np.int64), decided.rows)),
        "mixture-3": (MixtureGuard(mixture_scales, TOLERANCE, 3, EContextformer.weight_grid),
                      MixtureTables(mixture_tables),
                      lambda guard: guard.decide(weights, means, scales, pin_near=True),
                      lambda decided: (values, decided)),
    }
    results = {name: measure(*coder, rounds=args.rounds) for name, coder in coders.items()}
    for name, result in results.items():
        speed = result["ns_per_symbol"]
        print(f"{name}: decisions {speed['decisions']:.0f}, encode {speed['encode']:.0f}, decode {speed['decode']:.0f} "
              f"ns/symbol; {result['bits_per_symbol']:.3f} bits/symbol, "
              f"{100 * result['file_over_information']:+.3f} % over −Σlog2 p")
    save_report("mixture_coding.py", None, args.out, symbols=SYMBOLS, scale_median=args.scale_median,
                mean_spread=args.mean_spread, rounds=args.rounds, results=results)


if __name__ == "__main__":
    main()
