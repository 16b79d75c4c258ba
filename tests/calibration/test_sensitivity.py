"""Choosing the weighted ops INT8 keeps in float32, by their measured share of a stage's noise."""

from __future__ import annotations

import numpy as np
import onnxruntime

from licrt.calibration.graph_precision import activation_ranges, quantizable_nodes, quantize_int8
from licrt.calibration.sensitivity import choose_float_ops

from .test_graph_precision import FEEDS, QUANTIZED_OPS, export_stage


def noise(model, quantized) -> float:
    """Mean squared error of quantized's outputs against model's over FEEDS."""
    runs = [onnxruntime.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
            for m in (model, quantized)]
    return float(np.mean([np.mean((a - b) ** 2) for feed in FEEDS
                          for a, b in zip(runs[1].run(None, feed), runs[0].run(None, feed), strict=True)]))


def test_the_most_harmful_ops_stay_float_until_the_noise_fits_the_budget():
    model = export_stage(FEEDS[0]["x"].shape)
    ranges = activation_ranges(model, FEEDS, QUANTIZED_OPS)
    nodes = quantizable_nodes(model, QUANTIZED_OPS)
    everything = noise(model, quantize_int8(model, ranges, QUANTIZED_OPS))
    alone = {name: noise(model, quantize_int8(model, ranges, QUANTIZED_OPS, [n for n in nodes if n != name]))
             for name in nodes}

    roomy = choose_float_ops(model, ranges, FEEDS, QUANTIZED_OPS, noise_floor=everything, budget=2.0)
    assert roomy.kept_float == () and roomy.quantized == len(nodes)
    assert abs(roomy.noise - 1.0) < 1e-6  # everything quantised: the noise measured first

    tight = choose_float_ops(model, ranges, FEEDS, QUANTIZED_OPS, noise_floor=everything, budget=0.5)
    assert 0 < len(tight.kept_float) < len(nodes) and tight.noise <= 0.5
    assert tight.kept_float[0] == max(alone, key=alone.get)
    assert tight.noise == noise(model, quantize_int8(model, ranges, QUANTIZED_OPS, tight.kept_float)) / everything

    nothing = choose_float_ops(model, ranges, FEEDS, QUANTIZED_OPS, noise_floor=everything, budget=0.0)
    assert sorted(nothing.kept_float) == sorted(nodes) and nothing.noise == 0
