"""Summarising measurements: mean rate-distortion points, BD-rates, RD plot."""

from __future__ import annotations

import json
import math
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from licrt.runtime.benchmark import machine

from .anchors import Anchor
from .bdrate import bd_rate
from .evaluate import RESULTS, LearnedPoint, Measurement

SUMMARY = "summary.json"
PLOT = "rd.png"


def ms_ssim_db(value: float) -> float:
    """MS-SSIM on a log scale, −10·log10(1 − MS-SSIM), where differences are visible."""
    return -10 * math.log10(max(1 - value, 1e-12))


def curves(rows: Sequence[Measurement]) -> dict[str, list[dict]]:
    """Per codec, its rate points averaged over images (only points measured on every image).

    PSNR and MS-SSIM are means of per-image values; bpp is the mean of per-image bpp.
    """
    images = {m.image for m in rows}
    grouped: dict[tuple[str, str], list[Measurement]] = defaultdict(list)
    for m in rows:
        grouped[m.codec, m.point].append(m)
    result: dict[str, list[dict]] = defaultdict(list)
    for (codec, point), members in grouped.items():
        if {m.image for m in members} != images:
            continue
        structural = [m.ms_ssim for m in members if not math.isnan(m.ms_ssim)]
        result[codec].append({
            "point": point,
            "bpp": float(np.mean([m.bpp for m in members])),
            "psnr": float(np.mean([m.psnr for m in members])),
            "ms_ssim": float(np.mean(structural)) if structural else None,
            "encode_seconds": float(np.mean([m.encode_seconds for m in members])),
            "decode_seconds": float(np.mean([m.decode_seconds for m in members])),
        })
    return {codec: sorted(points, key=lambda p: p["bpp"]) for codec, points in result.items()}


def bd_rates(summary: dict[str, list[dict]], learned: Sequence[str], anchors: Sequence[str]) -> dict:
    """BD-rate (PSNR, and MS-SSIM in dB) of every learned curve against every anchor (any curve of summary)."""
    table: dict = {}
    for codec in learned:
        table[codec] = {}
        for anchor in anchors:
            entry = {}
            for metric in ("psnr", "ms_ssim"):
                test = [p for p in summary[codec] if p[metric] is not None]
                reference = [p for p in summary[anchor] if p[metric] is not None]
                quality = (lambda p: ms_ssim_db(p["ms_ssim"])) if metric == "ms_ssim" else (lambda p: p["psnr"])
                try:
                    entry[metric] = bd_rate([p["bpp"] for p in reference], [quality(p) for p in reference],
                                            [p["bpp"] for p in test], [quality(p) for p in test])
                except ValueError as exc:
                    entry[metric] = None
                    entry[f"{metric}_unavailable"] = str(exc)
            table[codec][anchor] = entry
    return table


def plot(summary: dict[str, list[dict]], learned: Sequence[str], path: Path, title: str) -> None:
    """Rate-distortion curves, PSNR and MS-SSIM against bpp, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    figure, axes = pyplot.subplots(1, 2, figsize=(13, 5.2))
    for codec, points in summary.items():  # every point computed, the anchors' high rates too
        if codec in learned:
            style = {"linewidth": 2.2, "marker": "o"}
        else:
            style = {"linewidth": 1.2, "marker": ".", "linestyle": "--"}
        axes[0].plot([p["bpp"] for p in points], [p["psnr"] for p in points], label=codec, **style)
        structural = [p for p in points if p["ms_ssim"] is not None]
        axes[1].plot([p["bpp"] for p in structural], [ms_ssim_db(p["ms_ssim"]) for p in structural],
                     label=codec, **style)
    for axis, label in zip(axes, ("PSNR (dB, RGB)", "MS-SSIM (dB)"), strict=True):
        axis.set_xlabel("bits per pixel")
        axis.set_ylabel(label)
        axis.grid(alpha=0.3)
        axis.legend()
    figure.suptitle(title)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    pyplot.close(figure)


def write_report(rows: Sequence[Measurement], points: Sequence[LearnedPoint], anchors: Sequence[Anchor],
                 dataset: Path, images: int, out: Path, command: str) -> dict:
    """Write ``summary.json`` and ``rd.png`` into out; returns the summary."""
    summary = curves(rows)
    learned = list(dict.fromkeys(p.codec for p in points))
    table = bd_rates(summary, learned, [a.name for a in anchors])
    # The first curve is the others' reference too: a float32 bundle and its calibrations, say.
    for codec, entries in bd_rates(summary, learned[1:], learned[:1]).items():
        table[codec].update(entries)
    document = {
        "command": command,
        "dataset": dataset.name,  # by name: a report says nothing of the machine's folders
        "images": images,
        "machine": machine(),
        "backend_profile": points[0].model.backend.profile if points else None,
        "results": RESULTS,
        "anchors": {a.name: a.label for a in anchors},
        "bundles": [{"curve": p.codec, "point": p.point, "bundle": p.model.bundle.root.name, "quality": p.quality,
                     "backend_profile": p.model.backend.profile} for p in points],
        "curves": summary,
        "bd_rate_percent": table,
    }
    (out / SUMMARY).write_text(json.dumps(document, indent=1) + "\n")
    plot(summary, learned, out / PLOT, f"{dataset.name}: {images} images")
    return document
