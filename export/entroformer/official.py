"""Loading checkpoints written by the official Entroformer code, without that code.

The official ``torch.save`` dict holds seven whole pickled modules
(``encode``, ``decode``, ``cit_he``, ``cit_hd``, ``prob``, ``cit_ar``,
``cit_pn``) whose classes live in a package named ``module``. Unpickling
needs those classes to exist, but not to be real: an ``nn.Module`` subclass
of the same name is enough, because unpickling restores a module's
parameters and submodules without calling its ``__init__``. licrt then takes
each module's ``state_dict()``, whose keys are those of its own model.

Only classes of the ``module`` package and a fixed list of PyTorch and Python
classes are resolved; any other global in the file is refused, so a
checkpoint cannot run arbitrary code while it loads.
"""

from __future__ import annotations

import pickle
import types
import zipfile
from pathlib import Path

import torch
from torch import nn

from licrt.runtime.errors import ExportError

from .. import registry
from ..checkpoint import build_fitting

OFFICIAL_MODULES = ("encode", "decode", "cit_he", "cit_hd", "prob", "cit_ar", "cit_pn")
#: Globals a checkpoint of whole modules legitimately references, beyond ``module.*``.
_ALLOWED_GLOBALS = {
    ("collections", "OrderedDict"),
    ("__builtin__", "set"),
    ("builtins", "set"),
    ("torch._utils", "_rebuild_tensor_v2"),
    ("torch._utils", "_rebuild_parameter"),
    ("torch.nn.parameter", "Parameter"),
    *(("torch", name) for name in ("FloatStorage", "DoubleStorage", "HalfStorage", "LongStorage", "IntStorage",
                                    "BoolStorage", "float32", "float16", "int64", "Size", "device")),
    *(("torch.nn.modules." + module, name) for module, name in (
        ("container", "Sequential"), ("container", "ModuleList"), ("conv", "Conv2d"), ("conv", "ConvTranspose2d"),
        ("linear", "Linear"), ("linear", "Identity"), ("normalization", "LayerNorm"), ("sparse", "Embedding"),
        ("dropout", "Dropout"), ("activation", "LeakyReLU"), ("activation", "GELU"), ("activation", "ReLU"),
        ("pixelshuffle", "PixelShuffle"))),
}
_stubs: dict[tuple[str, str], type] = {}


def _stub(module: str, name: str) -> type:
    """A stand-in nn.Module class for an official class (one per name, so pickling identity holds)."""
    if (module, name) not in _stubs:
        _stubs[module, name] = type(name, (nn.Module,), {"__module__": module, "forward": None})
    return _stubs[module, name]


class _Unpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        if module == "module" or module.startswith("module."):
            return _stub(module, name)
        if (module, name) in _ALLOWED_GLOBALS:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"it references {module}.{name}, which no official Entroformer checkpoint uses")


# torch.load wants a pickle *module*: one whose Unpickler is ours.
_PICKLE = types.ModuleType("licrt_official_pickle")
_PICKLE.Unpickler = _Unpickler
_PICKLE.load = lambda file, **kwargs: _Unpickler(file, **kwargs).load()


def read_official(path: Path) -> dict[str, nn.Module]:
    """The seven official modules of a checkpoint whose zip CRCs the caller has verified
    (:func:`licrt.export.checkpoint.load_model` reads it as a plain checkpoint first).

    Raises:
        ExportError: the file is not an official Entroformer checkpoint.
    """
    try:
        data = torch.load(path, map_location="cpu", weights_only=False, pickle_module=_PICKLE)
    except (pickle.UnpicklingError, RuntimeError, EOFError, zipfile.BadZipFile, AttributeError, TypeError,
            ValueError, KeyError, IndexError) as exc:  # a stand-in class called with arguments: TypeError
        raise ExportError(f"{path} is not an official Entroformer checkpoint: {exc}") from None
    if not isinstance(data, dict) or set(OFFICIAL_MODULES) - set(data):
        keys = sorted(map(str, data))[:10] if isinstance(data, dict) else type(data).__name__
        raise ExportError(f"{path} is not an official Entroformer checkpoint: it holds {keys}, "
                          f"expected {', '.join(OFFICIAL_MODULES)}")
    modules = {name: data[name] for name in OFFICIAL_MODULES}
    strays = [name for name, module in modules.items() if not isinstance(module, nn.Module)]
    if strays:
        raise ExportError(f"{path} is not an official Entroformer checkpoint: {', '.join(strays)} are not modules")
    return modules


def infer_config(modules: dict[str, nn.Module]) -> dict[str, int]:
    """The architecture of official modules, read off their weight shapes."""
    state = {name: module.state_dict() for name, module in modules.items()}
    context = state["cit_ar"]
    table = context["blocks.0.layer.0.SelfAttention.relative_attention_bias.weight"]
    dim_embed, dim_head = context["to_patch_embedding.weight"].shape[0], table.shape[1]
    return {
        "channels": state["encode"]["encoder.0.weight"].shape[0],
        "latent_channels": state["encode"]["encoder.6.weight"].shape[0],
        "hyper_channels": state["prob"]["mu"].shape[1],
        "dim_embed": dim_embed,
        "dim_head": dim_head,
        "heads": dim_embed // dim_head,
        "depth": len({key.split(".")[1] for key in context if key.startswith("blocks.")}),
        "mlp_ratio": context["blocks.0.layer.1.fn.net.0.weight"].shape[0] // dim_embed,
        "position_num": round(table.shape[0] ** 0.5),
        "scale": len({key.split(".")[1] for key in state["cit_he"] if key.startswith("scale_blocks.")}),
    }


def load_official(path: Path, codec_id: str, overrides: dict[str, str] | None = None):
    """Build codec_id from an official checkpoint.

    The variant must match: a unidirectional checkpoint (with ``sos_pred_token``)
    is ``entroformer-serial``, a bidirectional one ``entroformer``. The top-k
    of the official scripts (32) is assumed; ``--set attn_topk=K`` changes it.

    Raises:
        ExportError: not an official checkpoint, the wrong variant, or weights
            that do not fit.
    """
    modules = read_official(Path(path))
    serial = "sos_pred_token" in modules["cit_ar"].state_dict()
    expected = "entroformer-serial" if serial else "entroformer"
    if codec_id != expected:
        kind = "unidirectional (serial)" if serial else "bidirectional (parallel)"
        raise ExportError(f"{path} is a {kind} Entroformer checkpoint: export it as {expected}, not {codec_id}")
    try:
        architecture = infer_config(modules)
    except (KeyError, IndexError, ValueError, ZeroDivisionError) as exc:
        raise ExportError(f"{path} is not an official Entroformer checkpoint: its modules lack the weights "
                          f"that define the architecture ({exc!r})") from None
    config = registry.make_config(codec_id, architecture, overrides)
    state = {f"{name}.{key}": value for name, module in modules.items() for key, value in module.state_dict().items()}
    return build_fitting(codec_id, config, state, f"{path} does not fit {codec_id}")
