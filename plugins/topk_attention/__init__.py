"""``licrt::TopkAttention``: Entroformer's attention core as one op.

Per query, the logits (q·kᵀ + q·E[bucket]) · scale are masked, then every
logit below the query's k-th largest is dropped before the softmax. The
relative-position bucket of a (query, key) pair is computed from their token
indices on a raster grid of ``width`` columns (the diamond RPE of size
``positions``), and the mask from ``mask`` (:data:`MASKS`), so the op needs
no N×N input: a fused kernel can stream keys and never store the N×N logits.

* :mod:`.reference`: the math, in numpy.
* :mod:`.onnx_function`: the ONNX op schema and its standard-op function body.
* :mod:`.torch_op`: the PyTorch custom op and its ONNX translation.

Op inputs: q (B, heads, Nq, d), k and v (B, heads, Nk, d), table (P², d),
query_start (int64, (1,): token index of query 0). Attributes: topk, scale,
positions (P), width, mask.
"""

DOMAIN = "licrt"
OP_TYPE = "TopkAttention"
#: Mask kinds: every key visible; keys up to the query (causal raster); the
#: checkerboard anchors ((row + column) odd) and the query itself.
MASKS = {"none": 0, "causal": 1, "anchors": 2}
