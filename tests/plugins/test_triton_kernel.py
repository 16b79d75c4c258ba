"""The fused Triton kernel against the numpy reference: on a GPU where there is one, else under Triton's
interpreter (``TRITON_INTERPRET=1``), which runs the same kernel with numpy on the CPU."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")  # read when the kernel module is imported
triton_kernel = pytest.importorskip("licrt.plugins.topk_attention.triton_kernel", reason="needs triton")

from licrt.plugins.topk_attention import MASKS, reference  # noqa: E402

from ..helpers import load_image  # noqa: E402

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
ENTROFORMER = Path(__file__).parents[2] / "models" / "entroformer-small" / "q2.pt"

CASES = [  # (queries, keys, query_start, topk, positions, width)
    (20, 20, 0, 8, 7, 5),
    (1, 30, 17, 32, 7, 6),  # one cached query, fewer keys than k
    (6, 24, 9, 3, 5, 4),  # k not a power of two
    (100, 130, 0, 16, 7, 10),  # several query and key blocks, a partial last block
    (64, 200, 0, 64, 7, 20),  # the largest k
]


def run_kernel(q, k, v, table, start, **attributes):
    """The kernel on numpy inputs: output and per-row thresholds, as float32 numpy."""
    tensors = [torch.from_numpy(a).to(DEVICE) for a in (q, k, v, table)]
    out, threshold = triton_kernel.fused_topk_attention(
        *tensors, torch.tensor([start], device=DEVICE), **attributes, return_threshold=True)
    return out.float().cpu().numpy(), threshold.cpu().numpy()


def selection_check(q, k, table, start, threshold, **attributes) -> tuple[float, int]:
    """Largest threshold error, and rows away from ties (k-th and (k+1)-th logits ≥ 1e-3 apart) whose
    kept set differs from the reference's. Rows with fewer keys than k keep everything on both sides."""
    topk = attributes.pop("topk")
    logits = reference.masked_logits(q.astype(np.float32), k.astype(np.float32), table.astype(np.float32), start,
                                     **attributes)
    if logits.shape[-1] <= topk:
        return 0.0, 0
    expected = reference.kth_largest(logits, topk)[..., 0].astype(np.float64)
    ranked = -np.sort(-logits, axis=-1)
    clear = ranked[..., topk - 1] - ranked[..., topk] >= 1e-3
    tolerance = 1e-5 * np.maximum(1, np.abs(expected))
    kept = logits >= expected[..., None]
    kept_by_kernel = logits >= (threshold - tolerance)[..., None]
    differing = (kept != kept_by_kernel).any(axis=-1) & clear
    return float(np.abs(threshold - expected).max()), int(differing.sum())


def random_inputs(queries, keys, positions, seed=0, head_dim=64, dtype=np.float32):
    rng = np.random.default_rng(seed)
    q = rng.standard_normal((1, 2, queries, head_dim))
    k, v = rng.standard_normal((2, 1, 2, keys, head_dim))
    table = rng.standard_normal((positions**2, head_dim))
    return [a.astype(dtype) for a in (q, k, v, table)]


@pytest.mark.parametrize("mask", list(MASKS))
@pytest.mark.parametrize("queries, keys, start, topk, positions, width", CASES)
def test_random_inputs(mask, queries, keys, start, topk, positions, width):
    q, k, v, table = random_inputs(queries, keys, positions)
    attributes = dict(topk=topk, scale=0.125, positions=positions, width=width, mask=MASKS[mask])
    out, threshold = run_kernel(q, k, v, table, start, **attributes)
    expected = reference.topk_attention(q, k, v, table, start, **attributes)
    assert np.abs(out - expected).max() < 1e-5
    threshold_error, differing = selection_check(q, k, table, start, threshold, **attributes)
    assert threshold_error < 1e-5 and differing == 0


def test_float16_accumulates_in_float32():
    q, k, v, table = random_inputs(100, 130, 7, dtype=np.float16)
    attributes = dict(topk=32, scale=0.125, positions=7, width=10, mask=MASKS["causal"])
    out, threshold = run_kernel(q, k, v, table, 0, **attributes)
    expected = reference.topk_attention(*(a.astype(np.float32) for a in (q, k, v, table)), 0, **attributes)
    assert np.abs(out - expected).max() < 5e-3  # float16 output and weights·V; the logits are float32-exact
    threshold_error, differing = selection_check(q, k, table, 0, threshold, **attributes)
    assert threshold_error < 1e-5 and differing == 0


@pytest.mark.parametrize("mask", list(MASKS))
def test_ties_keep_every_logit_equal_to_the_kth(mask):
    """Small integers times a power of two: every logit exact in any summation order, and many equal."""
    rng = np.random.default_rng(3)
    q, k, v, table = (rng.integers(-1, 2, shape).astype(np.float32)
                      for shape in ((1, 2, 48, 16), (1, 2, 80, 16), (1, 2, 80, 16), (49, 16)))
    attributes = dict(topk=8, scale=0.25, positions=7, width=8, mask=MASKS[mask])
    logits = reference.masked_logits(q, k, table, 0, **{a: attributes[a] for a in ("scale", "positions", "width",
                                                                                      "mask")})
    ties = (logits == reference.kth_largest(logits, 8)).sum(axis=-1)
    assert (ties > 1).mean() > 0.5  # the case is about ties
    out, threshold = run_kernel(q, k, v, table, 0, **attributes)
    assert np.array_equal(threshold, reference.kth_largest(logits, 8)[..., 0])
    assert np.abs(out - reference.topk_attention(q, k, v, table, 0, **attributes)).max() < 1e-5


def test_fully_masked_rows_average_every_value():
    """On a one-column grid the only key (token 0) is no anchor; queries 3.. do not see it: the reference
    gives a fully masked row uniform weights, and so must the kernel."""
    q, k, v, table = random_inputs(4, 1, 3)
    attributes = dict(topk=4, scale=1.0, positions=3, width=1, mask=MASKS["anchors"])
    out, _ = run_kernel(q, k, v, table, 3, **attributes)
    assert np.abs(out - v).max() < 1e-6
    assert np.abs(out - reference.topk_attention(q, k, v, table, 3, **attributes)).max() < 1e-6


@pytest.fixture(scope="module")
def entroformer_attention_inputs():
    """Every TopkAttention call of the trained reference Entroformer coding a real 128×128 crop."""
    from licrt.export.checkpoint import load_model
    from licrt.export.entroformer import attention

    model = load_model(ENTROFORMER, "entroformer").eval()
    calls = []
    original = attention.topk_attention

    def record(q, k, v, table, query_start, **attributes):
        calls.append(([t.detach().numpy().copy() for t in (q, k, v, table)], int(query_start), attributes))
        return original(q, k, v, table, query_start, **attributes)

    image = torch.from_numpy(load_image("parrots_256x256.png")[64:192, 64:192].copy()).permute(2, 0, 1)[None] / 255.0
    attention.topk_attention = record
    try:
        with torch.no_grad():
            model(image.float())
    finally:
        attention.topk_attention = original
    return calls


def test_real_entroformer_activations(entroformer_attention_inputs):
    assert len(entroformer_attention_inputs) >= 6  # every block of both context passes and the hyper transforms
    for (q, k, v, table), start, attributes in entroformer_attention_inputs:
        attributes = dict(attributes, mask=MASKS[attributes["mask"]])
        out, threshold = run_kernel(q, k, v, table, start, **attributes)
        expected = reference.topk_attention(q, k, v, table, start, **attributes)
        assert np.abs(out - expected).max() < 1e-4 * max(1.0, np.abs(expected).max())
        threshold_error, differing = selection_check(q, k, table, start, threshold, **attributes)
        assert differing == 0


def test_rejects_what_it_cannot_keep_in_registers():
    q, k, v, table = (torch.from_numpy(a) for a in random_inputs(4, 4, 3))
    with pytest.raises(ValueError, match="topk 65"):
        triton_kernel.fused_topk_attention(q, k, v, table, torch.tensor([0]), topk=65, scale=1.0, positions=3,
                                           width=2, mask=0)


@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_compiles_for_hopper(dtype):
    """Triton compiles the kernel for a GPU it need not see: what the interpreter does not check (constexpr
    rules, types, layouts) fails here, on any machine. In a process of its own, without the interpreter."""
    script = ("from licrt.plugins.topk_attention.triton_kernel import compile_kernel; "
              f"k = compile_kernel('{dtype}', arch=90, head_dim=64, topk=32, scale=0.05, positions=7, width=48, "
              "mask=2); print(k.metadata.shared, '.entry topk_attention_kernel' in k.asm['ptx'])")
    environment = {name: value for name, value in os.environ.items() if name != "TRITON_INTERPRET"}
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=environment)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split()[-1] == "True"
