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
#: Node attributes that name the TensorRT plugin implementing the op: TensorRT's ONNX parser replaces a node
#: carrying a local function by the plugin registered under its ``plugin_namespace`` (10.7 on; from 10.15
#: only with this attribute or the parser's plugin-override flag), instead of inlining the function, whose
#: N×N intermediates the plugin exists to avoid.
PLUGIN_ATTRIBUTES = {"plugin_namespace": DOMAIN, "plugin_version": "1"}
#: Mask kinds: every key visible; keys up to the query (causal raster); the
#: checkerboard anchors ((row + column) odd) and the query itself.
MASKS = {"none": 0, "causal": 1, "anchors": 2}
