"""The fused top-k attention kernel against the dense PyTorch op on a GPU: time, peak memory, agreement.

Shapes are Entroformer's at official size (6 heads of 64, k = 32, diamond
RPE of 7): N = 1536 tokens is a 512×768 image's latent (32×48), N = 32,400 a
3840×2160 image's (135×240). Dense is the op as PyTorch computes it in
training and in the reference coder (N×N logits, bucket indices and top-k).
Times are medians of CUDA-event-timed repetitions after warm-up; peak
memory is what a call allocates beyond its inputs. ``tiles`` rows time the
fused kernel's other tile shapes (and, for float32, tensor-core products) at
N = 1536.

Example::

    python bench/topk_kernel.py --out bench/results/topk-kernel-h200.json
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path
from functools import partial

import torch
import triton

from licrt.plugins.topk_attention import MASKS
from licrt.plugins.topk_attention.torch_op import eager_topk_attention
from licrt.plugins.topk_attention.triton_kernel import TILES, fused_topk_attention

from report import save_report  # a sibling script: python puts bench/ on the path

CASES = {"512x768": (32, 48), "3840x2160": (135, 240)}  # image → latent rows, columns
HEADS, HEAD_DIM, TOPK, POSITIONS = 6, 64, 32, 7
SWEEP = {torch.float32: [(tiles, products) for tiles in ((16, 32, 4), (16, 64, 4), (32, 64, 4), (32, 64, 8))
                         for products in ("ieee", "tf32x3")],
         torch.float16: [(tiles, "ieee") for tiles in ((64, 32, 4), (64, 64, 4), (128, 32, 8), (128, 64, 8))]}


def inputs(tokens: int, dtype: torch.dtype, seed: int = 0):
    generator = torch.Generator(device="cuda").manual_seed(seed)
    q, k, v = torch.randn(3, 1, HEADS, tokens, HEAD_DIM, device="cuda", generator=generator, dtype=dtype)
    table = torch.randn(POSITIONS**2, HEAD_DIM, device="cuda", generator=generator, dtype=dtype)
    return q, k, v, table, torch.zeros(1, dtype=torch.long, device="cuda")


def measure(call, repeats: int, warmup: int = 2) -> dict:
    """Median ms over repeats after warm-up calls, and the peak bytes one call allocates."""
    try:
        for _ in range(warmup):
            call()
        torch.cuda.synchronize()
        base = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        call()
        torch.cuda.synchronize()
        peak = torch.cuda.max_memory_allocated() - base
        times = []
        for _ in range(repeats):
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            call()
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end))
    except torch.OutOfMemoryError:
        torch.cuda.empty_cache()
        return {"ms": None, "peak_gb": None, "error": "out of memory"}
    return {"ms": statistics.median(times), "peak_gb": peak / 2**30}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    rows = []
    for image, (height, width) in CASES.items():
        tokens = height * width
        for dtype in (torch.float32, torch.float16):
            for mask in ("none", "anchors"):
                q, k, v, table, start = inputs(tokens, dtype)
                attributes = dict(topk=TOPK, scale=(HEADS * HEAD_DIM) ** -0.5, positions=POSITIONS, width=width,
                                  mask=MASKS[mask])
                fused = measure(partial(fused_topk_attention, q, k, v, table, start, **attributes), args.repeats)
                dense = {"ms": None, "peak_gb": None, "error": "not run (seconds per call)"}
                if tokens < 10_000 or mask == "none":  # once at 4K: its N×N tensors take seconds
                    dense = measure(partial(eager_topk_attention, q, k, v, table, start, *attributes.values()),
                                    *((args.repeats,) if tokens < 10_000 else (1, 0)))
                name = str(dtype).removeprefix("torch.")
                row = {"image": image, "tokens": tokens, "heads": HEADS, "head_dim": HEAD_DIM, "topk": TOPK,
                       "dtype": name, "mask": mask, "tiles": TILES[name], "fused": fused, "dense": dense}
                if fused["ms"] and dense["ms"]:
                    row["speedup"] = dense["ms"] / fused["ms"]
                if tokens < 10_000:
                    expected = eager_topk_attention(q.float(), k.float(), v.float(), table.float(), start,
                                                    *attributes.values())
                    row["max_abs_error_vs_float32_dense"] = float(
                        (fused_topk_attention(q, k, v, table, start, **attributes).float() - expected).abs().max())
                rows.append(row)
                print(row, flush=True)
                del q, k, v, table
                torch.cuda.empty_cache()
    tiles = []
    for dtype in (torch.float32, torch.float16):
        q, k, v, table, start = inputs(1536, dtype)
        attributes = dict(topk=TOPK, scale=(HEADS * HEAD_DIM) ** -0.5, positions=POSITIONS, width=48,
                          mask=MASKS["anchors"])
        for tile, products in SWEEP[dtype]:
            try:
                timing = measure(partial(fused_topk_attention, q, k, v, table, start, **attributes, tiles=tile,
                                         float32_products=products), args.repeats)
            except Exception as error:  # a tile shape this GPU cannot hold (shared memory, registers)
                timing = {"ms": None, "error": str(error)}
            tiles.append({"dtype": str(dtype).removeprefix("torch."), "tiles": tile, "float32_products": products,
                          **timing})
            print(tiles[-1], flush=True)
    save_report("topk_kernel.py", argv, args.out, device=torch.cuda.get_device_name(),
                versions={"torch": torch.__version__, "cuda": torch.version.cuda, "triton": triton.__version__},
                cases=rows, tiles=tiles)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
