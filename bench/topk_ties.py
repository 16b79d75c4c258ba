"""How often Entroformer's top-k attention is near a tie, where backends may keep different keys.

Top-k keeps the keys whose logits reach the k-th largest. Where the k-th and
(k+1)-th logits of a query differ by less than another backend's float error,
that backend may keep a different key, which moves μ and σ by an arbitrary
amount: the guard's band cannot cover it. This runs the bundle's PyTorch model
(the torch backend) over images and records, for every query of every top-k
attention in each stage, the gap between those two logits relative to
max(|k-th logit|, 1).

Example::

    python bench/topk_ties.py ../shared/data/kodak --bundle bundles/entroformer-small --every 6 \\
        --out bench/results/topk-ties-entroformer-small.json
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch

from licrt.export.torch_backend import TorchBackend
from licrt.plugins.topk_attention import torch_op
from licrt.runtime import Codec
from licrt.runtime.bundle import Bundle
from licrt.runtime.images import list_images
from licrt.runtime.backends.watched import WatchedBackend

from report import dataset_names, save_report  # sibling scripts: python puts bench/ on the path

THRESHOLDS = (1e-6, 1e-5, 1e-4, 1e-3)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("images", type=Path)
    parser.add_argument("--bundle", type=Path, required=True, help="an Entroformer bundle")
    parser.add_argument("--every", type=int, default=1)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    bundle = Bundle.open(args.bundle)
    images = list_images(args.images)[:: args.every]
    gaps: dict[str, list[np.ndarray]] = defaultdict(list)
    stage = {"name": None}
    original = torch_op.eager_topk_attention

    def recording(q, k, v, table, query_start, topk, scale, positions, width, mask):
        logits = torch_op.attention_logits(q, k, table, query_start, scale, positions, width, mask)
        if logits.shape[-1] > topk:
            top = torch.topk(logits, topk + 1, dim=-1).values
            kth, next_ = top[..., -2], top[..., -1]
            live = next_ > torch_op.NEGATIVE  # a masked key never competes
            gap = (kth - next_) / torch.clamp(kth.abs(), min=1.0)
            gaps[stage["name"]].append(gap[live].flatten().numpy())
        return original(q, k, v, table, query_start, topk, scale, positions, width, mask)

    def named(name, feed, run):
        stage["name"] = name
        return run(feed)

    torch_op.eager_topk_attention = recording
    try:
        codec = Codec(bundle, WatchedBackend(TorchBackend("cpu"), named))
        for image in images:
            codec.compress(image)
    finally:
        torch_op.eager_topk_attention = original
    stages = {}
    for name, parts in gaps.items():
        values = np.concatenate(parts)
        stages[name] = {"queries_per_image": values.size / len(images),
                        **{f"gap_below_{t:g}_per_image": float((values < t).sum()) / len(images)
                           for t in THRESHOLDS}}
        print(name, json.dumps(stages[name]))
    save_report("topk_ties.py", argv, args.out, bundle=args.bundle.name, images=dataset_names(args.images, images),
                stages=stages)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
