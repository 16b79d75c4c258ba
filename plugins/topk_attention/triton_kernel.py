"""``licrt::TopkAttention`` as one fused Triton kernel: memory linear in the token count.

One program owns a block of queries of one (batch, head) and streams the keys
twice. The first pass keeps each row's k largest logits in registers and
ends with the row's k-th largest; the second applies "keep every logit ≥ the
k-th" (the reference's tie rule) inside an online softmax·V. Both passes
compute a logit with the same instructions, so the second pass sees exactly
the values the first one ranked. The diamond position term is q·E for the
block's queries (BLOCK_M × P²), computed once and gathered by bucket; masks
come from token indices. No N×N tensor exists anywhere.

Masked logits are −FLT_MAX, as in the reference, so a row with fewer visible
keys than k, or none, gets the reference's answer (a fully masked row averages
every value); keys past the end are −inf and never count.

float32 inputs use IEEE products (no TF32: the logits rank keys, and the
entropy-parameter path tolerates little float difference); float16 inputs use
tensor cores; both accumulate and take the softmax in float32.
"""

from __future__ import annotations

import triton
import triton.language as tl

from . import MASKS

NEGATIVE = tl.constexpr(-3.4028234663852886e38)
MAX_TOPK = 64
#: (BLOCK_M, BLOCK_N, warps) by input type: the fastest of bench/topk_kernel.py's sweep on an H200 at N = 1536
#: (bench/results/topk-kernel-h200.json).
TILES = {"float32": (16, 64, 4), "float16": (64, 64, 4)}


@triton.jit
def _logits(q, position, outside, K, key_base, block_start, n_keys, token, scale,
            HEAD_DIM: tl.constexpr, D_PAD: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
            POSITIONS: tl.constexpr, WIDTH: tl.constexpr, MASK: tl.constexpr, PRECISION: tl.constexpr):
    """(BLOCK_M, BLOCK_N) scaled, masked logits of the block's queries against keys ``block_start…``.

    ``outside`` is q·E[0], every row's term for keys outside its diamond: blocks of keys more than the
    diamond's half-size rows away from all the block's queries take it without computing buckets."""
    keys = block_start + tl.arange(0, BLOCK_N)
    dims = tl.arange(0, D_PAD)
    present = keys < n_keys
    k = tl.load(K + key_base + keys[:, None] * HEAD_DIM + dims[None, :],
                mask=present[:, None] & (dims[None, :] < HEAD_DIM), other=0.0)
    products = tl.dot(q, tl.trans(k), input_precision=PRECISION)
    half: tl.constexpr = POSITIONS // 2
    first_token = tl.min(token, axis=0)
    near = (((block_start + BLOCK_N - 1) // WIDTH >= first_token // WIDTH - half)
            & (block_start // WIDTH <= (first_token + BLOCK_M - 1) // WIDTH + half))
    if near:
        dv = keys[None, :] // WIDTH - token[:, None] // WIDTH
        dh = keys[None, :] % WIDTH - token[:, None] % WIDTH
        bucket = tl.where(tl.abs(dv) + tl.abs(dh) <= half, (dv + half) * POSITIONS + dh + half, 0)
        relative = tl.gather(position, bucket, axis=1)
    else:
        relative = tl.zeros((BLOCK_M, BLOCK_N), tl.float32) + outside[:, None]
    logits = (products + relative) * scale
    if MASK == 1:  # causal raster
        logits = tl.where(keys[None, :] <= token[:, None], logits, NEGATIVE)
    elif MASK == 2:  # checkerboard anchors and the query itself
        anchor = ((keys // WIDTH + keys % WIDTH) % 2) == 1
        logits = tl.where(anchor[None, :] | (keys[None, :] == token[:, None]), logits, NEGATIVE)
    return tl.where(present[None, :], logits, float("-inf"))


@triton.jit
def topk_attention_kernel(Q, K, V, TABLE, QUERY_START, n_queries, n_keys, OUT, THRESHOLD, SCALE: tl.constexpr,
                          HEAD_DIM: tl.constexpr, D_PAD: tl.constexpr, TOPK: tl.constexpr, TOPK_PAD: tl.constexpr,
                          POSITIONS: tl.constexpr, P2_PAD: tl.constexpr, WIDTH: tl.constexpr, MASK: tl.constexpr,
                          BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, PRECISION: tl.constexpr,
                          STORE_THRESHOLD: tl.constexpr):
    """Grid (⌈Nq / BLOCK_M⌉, B·heads); q, k, v contiguous (B·heads, N, HEAD_DIM), table (P², HEAD_DIM).

    Inputs, then integer sizes, then outputs: the order a TensorRT ahead-of-time plugin launches a kernel
    with (THRESHOLD is None there, and the float attribute a constant)."""
    head = tl.program_id(1).to(tl.int64)
    rows = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
    dims = tl.arange(0, D_PAD)
    row_ok = rows < n_queries
    dim_ok = dims < HEAD_DIM
    token = tl.load(QUERY_START).to(tl.int32) + rows
    q = tl.load(Q + head * n_queries * HEAD_DIM + rows[:, None] * HEAD_DIM + dims[None, :],
                mask=row_ok[:, None] & dim_ok[None, :], other=0.0)
    buckets = tl.arange(0, P2_PAD)
    table = tl.load(TABLE + buckets[None, :] * HEAD_DIM + dims[:, None],
                    mask=(buckets[None, :] < POSITIONS * POSITIONS) & dim_ok[:, None], other=0.0)
    position = tl.dot(q, table, input_precision=PRECISION)  # (BLOCK_M, P2_PAD): q·E for every bucket
    outside = tl.sum(tl.where(buckets[None, :] == 0, position, 0.0), axis=1)
    key_base = head * n_keys * HEAD_DIM

    # Pass 1: each row's TOPK largest logits (a multiset), in TOPK_PAD slots; the spare slots hold +inf and so
    # are never the smallest, which is then the k-th largest. A block's logits above a row's smallest enter
    # one at a time, largest first, replacing the smallest: after the first blocks few do, and a block
    # none of whose logits can enter costs one comparison.
    slots = tl.arange(0, TOPK_PAD)
    best = tl.where(slots[None, :] < TOPK, float("-inf"), float("inf")) + tl.zeros((BLOCK_M, TOPK_PAD), tl.float32)
    smallest, smallest_at = tl.min(best, axis=1, return_indices=True)
    columns = tl.arange(0, BLOCK_N)
    for block_start in range(0, n_keys, BLOCK_N):
        logits = _logits(q, position, outside, K, key_base, block_start, n_keys, token, SCALE, HEAD_DIM, D_PAD,
                         BLOCK_M, BLOCK_N, POSITIONS, WIDTH, MASK, PRECISION)
        largest, largest_at = tl.max(logits, axis=1, return_indices=True)
        while tl.max((largest > smallest).to(tl.int32), axis=0) > 0:
            enters = largest > smallest
            best = tl.where(enters[:, None] & (slots[None, :] == smallest_at[:, None]), largest[:, None], best)
            logits = tl.where(columns[None, :] == largest_at[:, None], float("-inf"), logits)
            smallest, smallest_at = tl.min(best, axis=1, return_indices=True)
            largest, largest_at = tl.max(logits, axis=1, return_indices=True)
    kth = smallest
    if STORE_THRESHOLD:
        tl.store(THRESHOLD + head * n_queries + rows, kth, mask=row_ok)

    # Pass 2: online softmax·V over the logits ≥ the k-th.
    running_max = tl.full((BLOCK_M,), float("-inf"), tl.float32)
    total = tl.zeros((BLOCK_M,), tl.float32)
    acc = tl.zeros((BLOCK_M, D_PAD), tl.float32)
    for block_start in range(0, n_keys, BLOCK_N):
        logits = _logits(q, position, outside, K, key_base, block_start, n_keys, token, SCALE, HEAD_DIM, D_PAD,
                         BLOCK_M, BLOCK_N, POSITIONS, WIDTH, MASK, PRECISION)
        keys = block_start + tl.arange(0, BLOCK_N)
        kept = tl.where((logits >= kth[:, None]) & (keys[None, :] < n_keys), logits, float("-inf"))
        new_max = tl.maximum(running_max, tl.max(kept, axis=1))
        shift = tl.where(new_max == float("-inf"), 0.0, new_max)  # no row has kept a key yet
        weights = tl.exp(kept - shift[:, None])
        rescale = tl.exp(running_max - shift)
        v = tl.load(V + key_base + keys[:, None] * HEAD_DIM + dims[None, :],
                    mask=(keys[:, None] < n_keys) & dim_ok[None, :], other=0.0)
        total = total * rescale + tl.sum(weights, axis=1)
        acc = acc * rescale[:, None] + tl.dot(weights.to(v.dtype), v, input_precision=PRECISION)
        running_max = new_max
    out = acc / total[:, None]
    tl.store(OUT + head * n_queries * HEAD_DIM + rows[:, None] * HEAD_DIM + dims[None, :],
             out.to(OUT.dtype.element_ty), mask=row_ok[:, None] & dim_ok[None, :])


def kernel_constants(dtype: str, *, head_dim: int, topk: int, scale: float, positions: int, width: int, mask: int,
                     tiles: tuple[int, int, int] | None = None, float32_products: str = "ieee",
                     store_threshold: bool = False) -> tuple[dict, int]:
    """The kernel's compile-time constants for one op (its attributes, q's type ``float32`` or ``float16`` and
    head size), and its warps.

    ``float32_products``: Triton's ``input_precision`` for float32 inputs, ``ieee`` or ``tf32x3`` (three
    TF32 tensor-core products, about float32's accuracy)."""
    block_m, block_n, warps = tiles or TILES[dtype]
    return dict(
        SCALE=float(scale), HEAD_DIM=head_dim, D_PAD=max(16, triton.next_power_of_2(head_dim)), TOPK=topk,
        TOPK_PAD=triton.next_power_of_2(topk), POSITIONS=positions,
        P2_PAD=max(16, triton.next_power_of_2(positions * positions)), WIDTH=width, MASK=mask,
        BLOCK_M=block_m, BLOCK_N=block_n, PRECISION=float32_products if dtype == "float32" else "tf32",
        STORE_THRESHOLD=store_threshold,
    ), warps


def _signature(dtype: str, constants: dict) -> dict:
    element = {"float32": "fp32", "float16": "fp16"}[dtype]
    return {**dict.fromkeys(("Q", "K", "V", "TABLE"), f"*{element}"), "QUERY_START": "*i64", "n_queries": "i32",
            "n_keys": "i32", "OUT": f"*{element}", "THRESHOLD": "constexpr", **dict.fromkeys(constants, "constexpr")}


def compile_kernel(dtype: str, arch: int | None = None, **attributes):
    """The kernel (without thresholds) compiled ahead of time for a CUDA architecture (``90``: Hopper; default:
    this machine's GPU's), with or without a GPU: ``.asm["ptx"]``, ``.metadata`` (name, shared memory,
    warps). ``attributes`` as for :func:`kernel_constants`; its launch grid is :func:`grid`. Needs a compiling
    Triton (not ``TRITON_INTERPRET=1``)."""
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    constants, warps = kernel_constants(dtype, **attributes)
    source = ASTSource(fn=topk_attention_kernel, signature=_signature(dtype, constants),
                       constexprs={**constants, "THRESHOLD": None})
    target = triton.runtime.driver.active.get_current_target() if arch is None else GPUTarget("cuda", arch, 32)
    return triton.compile(source, target=target, options={"num_warps": warps})


def grid(queries, batch_heads, constants: dict) -> tuple:
    """Programs: (⌈queries / BLOCK_M⌉, batch · heads)."""
    block = constants["BLOCK_M"]
    return (queries + block - 1) // block, batch_heads


def fused_topk_attention(q, k, v, table, query_start, *, topk: int, scale: float, positions: int, width: int,
                         mask: int, tiles: tuple[int, int, int] | None = None, float32_products: str = "ieee",
                         return_threshold: bool = False):
    """Top-k attention of q (B, heads, Nq, d) over k, v (B, heads, Nk, d), as :func:`reference.topk_attention`.

    ``query_start`` is an int64 tensor of one element on q's device (read by
    the kernel: no host synchronisation). ``tiles`` overrides :data:`TILES`
    (powers of two); ``float32_products`` as for :func:`kernel_constants`.
    With ``return_threshold`` also the (B, heads, Nq) float32 k-th largest
    logits each row kept from.
    """
    if not 1 <= topk <= MAX_TOPK:
        raise ValueError(f"topk {topk} is outside 1..{MAX_TOPK}, what the kernel keeps in registers")
    if mask not in MASKS.values():
        raise ValueError(f"unknown mask {mask}")
    import torch

    if q.dtype not in (torch.float32, torch.float16) or not q.dtype == k.dtype == v.dtype == table.dtype:
        dtypes = ", ".join(str(t.dtype) for t in (q, k, v, table))
        raise TypeError(f"q, k, v and table must share float32 or float16, not {dtypes}")
    batch, heads, n_queries, head_dim = q.shape
    n_keys = k.shape[2]
    out = q.new_empty(batch, heads, n_queries, head_dim)
    threshold = q.new_empty(batch, heads, n_queries, dtype=torch.float32) if return_threshold else None
    constants, warps = kernel_constants(str(q.dtype).removeprefix("torch."), head_dim=head_dim, topk=topk,
                                        scale=scale, positions=positions, width=width, mask=mask, tiles=tiles,
                                        float32_products=float32_products, store_threshold=return_threshold)
    topk_attention_kernel[grid(n_queries, batch * heads, constants)](
        q.contiguous(), k.contiguous(), v.contiguous(), table.contiguous(), query_start, n_queries, n_keys,
        out, threshold if return_threshold else None, **constants, num_warps=warps,
    )
    return (out, threshold) if return_threshold else out
