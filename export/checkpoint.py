"""Saving and loading model checkpoints, with errors that say what does not fit.

A licrt checkpoint is a ``torch.save`` dict::

    {"format": "licrt-checkpoint", "codec": "s2c-hybrid-s",
     "config": {...}, "state_dict": {...}, ...training metadata...}

Plain state dicts (optionally under ``state_dict`` or ``model_state_dict``,
optionally with DataParallel's ``module.`` prefix) load too, with the codec's
default configuration plus any overrides.

A bundle is a checkpoint too: its graphs hold the model's weights under the
parameters' names, and each quality level's ``params.npz`` the rest
(:func:`model_from_bundle`).
"""

from __future__ import annotations

import dataclasses
import pickle
import zipfile
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch
from onnx import numpy_helper

from licrt.runtime.archives import ZIP_ERRORS, open_zip
from licrt.runtime.bundle import Bundle
from licrt.runtime.errors import ExportError

from . import registry
from .weights import HALF_SUFFIX, load_graph

FORMAT = "licrt-checkpoint"
#: Stage modules hold the codec under this name, and the exporter keeps it in initializer names.
GRAPH_PREFIX = "codec."
#: The most bytes a checkpoint's members may inflate to together.
MAX_CHECKPOINT_BYTES = 2**34


class PickledCheckpointError(ExportError):
    """The checkpoint holds pickled Python objects (whole modules), not just weights."""


def checkpoint_dict(model, half: bool = False, **extra) -> dict:
    """The dict :func:`save_checkpoint` writes, for callers that add training state.

    Args:
        half: Store floating-point weights rounded to half precision (half the
            size; loading casts them back to float32).
    """
    state = model.state_dict()
    if half:
        state = {k: v.half() if v.is_floating_point() else v for k, v in state.items()}
    return {
        "format": FORMAT,
        "codec": model.codec_id,
        "config": dataclasses.asdict(model.config),
        "state_dict": state,
        **extra,
    }


def verify_archive(path: Path) -> None:
    """Check a checkpoint's zip structure and the CRC-32 of every member before torch reads it.

    torch's zip reader checks no CRC, so a flipped bit in a tensor would load
    silently; the members are bounded (see :mod:`licrt.runtime.archives`)
    before any is inflated.

    Raises:
        ExportError: the file is missing, not a zip archive, too large, or damaged.
    """
    if not path.is_file():
        raise ExportError(f"checkpoint {path} not found")
    if not zipfile.is_zipfile(path):
        raise ExportError(f"{path} is not a PyTorch checkpoint (torch.save writes zip archives)")
    with open_zip(path, MAX_CHECKPOINT_BYTES, ExportError) as archive:
        try:
            damaged = archive.testzip()
        except ZIP_ERRORS as exc:
            raise ExportError(f"{path} is damaged ({exc})") from None
    if damaged is not None:
        raise ExportError(f"{path} is damaged: its member {damaged} fails its CRC check")


def read_checkpoint(path: str | Path) -> dict:
    """Load a checkpoint file's dict (weights only: no code is unpickled), its CRCs verified first.

    Raises:
        ExportError: the file is missing, damaged or not a PyTorch weights file.
    """
    path = Path(path)
    verify_archive(path)
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise PickledCheckpointError(
            f"{path} holds pickled Python objects, not just weights; licrt reads those only in a codec's "
            "official format (the official Entroformer checkpoints)"
        ) from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, ValueError, OSError, KeyError, TypeError, IndexError,
            AttributeError) as exc:  # what torch.load raises on malformed archives
        raise ExportError(f"{path} is not a PyTorch checkpoint ({exc})") from None
    if not isinstance(data, Mapping):
        raise ExportError(f"{path} holds a {type(data).__name__}, not a checkpoint dict")
    return dict(data)


def load_model(path: str | Path, codec_id: str, overrides: dict[str, str] | None = None):
    """Build codec_id and load its weights from a checkpoint.

    A checkpoint of whole pickled modules is handed to the codec's own
    ``load_official`` loader when it has one (Entroformer's official format).

    Raises:
        ExportError: the checkpoint is damaged or for another codec, or its
            weights do not fit the model (missing, unexpected or differently
            shaped keys).
    """
    try:
        data = read_checkpoint(path)
    except PickledCheckpointError:
        official = getattr(registry.lookup(codec_id).model, "load_official", None)
        if official is None:
            raise
        return official(Path(path), codec_id, overrides)
    if data.get("format") == FORMAT:
        if data.get("codec") != codec_id:
            raise ExportError(f"{path} is a {str(data.get('codec'))[:40]} checkpoint, not {codec_id}")
        if not isinstance(data.get("config"), Mapping):
            raise ExportError(f"{path} is a licrt checkpoint without its configuration")
        config = registry.make_config(codec_id, data["config"], overrides)
        state = data.get("state_dict")
    else:
        config = registry.make_config(codec_id, None, overrides)
        state = data.get("state_dict", data.get("model_state_dict", data))
    if not isinstance(state, Mapping) or not all(
        isinstance(key, str) and isinstance(value, torch.Tensor) for key, value in state.items()
    ):
        raise ExportError(f"{path} holds no state dict of named tensors")
    state = {key.removeprefix("module."): value for key, value in state.items()}
    return build_fitting(codec_id, config, state, f"{path} does not fit {codec_id}")


def parameters_in_graphs(bundle: Bundle) -> dict[str, np.ndarray]:
    """The model parameters a bundle's stage graphs hold by name, at the bundle's quality level."""
    held = {}
    for graph in bundle.manifest.buckets[0].stages.values():
        model = load_graph(bundle, graph)
        for tensor in model.graph.initializer:
            if tensor.name.startswith(GRAPH_PREFIX):
                held[tensor.name.removeprefix(GRAPH_PREFIX).removesuffix(HALF_SUFFIX)] = numpy_helper.to_array(tensor)
    return held


def model_from_bundle(bundle: Bundle, overrides: dict[str, str] | None = None):
    """The PyTorch model of a bundle at its quality level: the weights its graphs hold by name, and the rest
    from the level's ``params.npz``.

    Raises:
        ExportError: the codec is unknown to this licrt, the bundle is calibrated, or the weights do not fit it.
    """
    manifest = bundle.manifest
    if manifest.precision:  # its graphs hold quantised or rounded weights, under other names
        raise ExportError(f"bundle {bundle.root} is calibrated ({manifest.reduced_precision}); export from its "
                          "float32 bundle")
    config = registry.make_config(manifest.codec, manifest.config, overrides)
    # astype copies: the tensors own writable memory
    state = {key: torch.from_numpy(value.astype(np.float32 if value.dtype == np.float16 else value.dtype))
             for key, value in parameters_in_graphs(bundle).items()}
    try:
        with np.load(bundle.path(manifest.levels[bundle.level].parameters), allow_pickle=False) as stored:
            state.update({key: torch.from_numpy(stored[key]) for key in stored.files})
    except (OSError, ValueError) as exc:
        raise ExportError(f"bundle {bundle.root}: cannot read the parameters of level {bundle.level_name} "
                          f"({exc})") from None
    title = f"bundle {bundle.root} (level {bundle.level_name})"
    with torch.device("meta"):
        expected = registry.build(manifest.codec, config).state_dict()
    # Graphs may hold weights under names of buffers a model recomputes; only the state dict's keys count.
    return build_fitting(manifest.codec, config, {k: v for k, v in state.items() if k in expected}, title)


def build_fitting(codec_id: str, config, state: Mapping[str, torch.Tensor], title: str):
    """Build codec_id with config and load state into it, once the weights are known to fit.

    The shapes are compared on PyTorch's meta device first, which allocates
    nothing: a checkpoint whose configuration asks for an absurdly large
    model is refused before it costs memory.

    Raises:
        ExportError: the configuration does not build, or the weights do not fit.
    """
    try:
        with torch.device("meta"):
            expected = registry.build(codec_id, config).state_dict()
    except (TypeError, ValueError, RuntimeError, ZeroDivisionError) as exc:
        raise ExportError(f"{title}: its configuration does not build a model ({exc})") from None
    check_fit(expected, state, title)
    model = registry.build(codec_id, config)
    model.load_state_dict(state)
    return model


def check_fit(expected: Mapping[str, torch.Tensor], given: Mapping[str, torch.Tensor], title: str) -> None:
    """Raise ExportError listing missing, unexpected and mis-shaped keys, if any."""
    missing = [k for k in expected if k not in given]
    unexpected = [k for k in given if k not in expected]
    mismatched = [
        f"{k} (checkpoint {list(given[k].shape)}, model {list(expected[k].shape)})"
        for k in expected
        if k in given and tuple(given[k].shape) != tuple(expected[k].shape)
    ]
    problems = []
    for label, keys in (("missing", missing), ("unexpected", unexpected), ("with other shapes", mismatched)):
        if keys:
            shown = ", ".join(keys[:5]) + (f", … ({len(keys) - 5} more)" if len(keys) > 5 else "")
            problems.append(f"{len(keys)} {label}: {shown}")
    if problems:
        raise ExportError(f"{title}: " + "; ".join(problems))


def save_checkpoint(path: str | Path, model, **extra) -> None:
    torch.save(checkpoint_dict(model, **extra), path)
