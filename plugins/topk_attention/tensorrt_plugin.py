"""``licrt::TopkAttention`` as a TensorRT plugin, defined with ``tensorrt.plugin`` (TensorRT 10.7 and later).

The implementation is ahead of time: when TensorRT builds an engine, the fused
Triton kernel (:mod:`.triton_kernel`) is compiled to PTX for the node's
attributes, type and shapes, and the engine embeds it, so engines run without
Python or Triton. The plugin's name and namespace are those the exporter writes
on every node (:data:`~licrt.plugins.topk_attention.PLUGIN_ATTRIBUTES`), which makes TensorRT's ONNX parser
use it instead of inlining the op's ONNX function. Importing this module
registers the plugin.
"""

# No ``from __future__ import annotations``: tensorrt.plugin checks the functions' type hints as objects.
from typing import List, Tuple, Union  # noqa: UP035  (the forms tensorrt.plugin documents and checks)

import tensorrt as trt
import tensorrt.plugin as trtp

from . import DOMAIN, OP_TYPE
from .triton_kernel import compile_kernel, grid, kernel_constants

PLUGIN_ID = f"{DOMAIN}::{OP_TYPE}"  # the nodes' plugin_namespace and op type
_TYPES = {trt.float32: "float32", trt.float16: "float16"}


@trtp.register(PLUGIN_ID)
def describe(q: trtp.TensorDesc, k: trtp.TensorDesc, v: trtp.TensorDesc, table: trtp.TensorDesc,
             query_start: trtp.TensorDesc, topk: int, scale: float, positions: int, width: int,
             mask: int) -> trtp.TensorDesc:
    """The output is shaped and typed as q (B, heads, Nq, d)."""
    return q.like()


@trtp.autotune(PLUGIN_ID)
def formats(q: trtp.TensorDesc, k: trtp.TensorDesc, v: trtp.TensorDesc, table: trtp.TensorDesc,
            query_start: trtp.TensorDesc, outputs: Tuple[trtp.TensorDesc]) -> List[trtp.AutoTuneCombination]:
    """q, k, v, table and the output share float32 or float16; query_start is int64; all linear."""
    return [trtp.AutoTuneCombination("FP32|FP16, FP32|FP16, FP32|FP16, FP32|FP16, INT64, FP32|FP16", "LINEAR")]


@trtp.aot_impl(PLUGIN_ID)
def compiled(q: trtp.TensorDesc, k: trtp.TensorDesc, v: trtp.TensorDesc, table: trtp.TensorDesc,
             query_start: trtp.TensorDesc, topk: int, scale: float, positions: int, width: int, mask: int,
             outputs: Tuple[trtp.TensorDesc], tactic: int,
             ) -> Tuple[Union[str, bytes], Union[str, bytes], trtp.KernelLaunchParams, trtp.SymExprs]:
    """Kernel name, PTX, launch and the kernel's integer arguments (query and key counts)."""
    dims = [q.shape_expr[i] for i in range(4)] + [k.shape_expr[2]]
    if not all(dim.is_constant for dim in dims):
        raise ValueError(f"{PLUGIN_ID} needs static shapes, as licrt's bundles have")
    batch, heads, queries, head_dim, keys = (dim.constant_value() for dim in dims)
    dtype = _TYPES[q.dtype]
    attributes = dict(head_dim=head_dim, topk=topk, scale=scale, positions=positions, width=width, mask=mask)
    kernel = compile_kernel(dtype, **attributes)
    constants, _ = kernel_constants(dtype, **attributes)
    launch = trtp.KernelLaunchParams()
    launch.grid_x, launch.grid_y = grid(queries, batch * heads, constants)
    launch.block_x = kernel.metadata.num_warps * 32
    launch.shared_mem = kernel.metadata.shared
    sizes = trtp.SymIntExprs.from_tuple([trtp.SymInt32(queries), trtp.SymInt32(keys)])
    return kernel.metadata.name.encode(), kernel.asm["ptx"].encode(), launch, sizes
