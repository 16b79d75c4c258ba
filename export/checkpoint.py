"""Saving and loading model checkpoints, with errors that say what does not fit.

A licrt checkpoint is a ``torch.save`` dict::

    {"format": "licrt-checkpoint", "codec": "s2c-hybrid-s",
     "config": {...}, "state_dict": {...}, ...training metadata...}

Plain state dicts (optionally under ``state_dict`` or ``model_state_dict``,
optionally with DataParallel's ``module.`` prefix) load too, with the codec's
default configuration plus any overrides.
"""

from __future__ import annotations

import dataclasses
import pickle
import zipfile
from collections.abc import Mapping
from pathlib import Path

import torch

from licrt.runtime.errors import ExportError

from . import registry

FORMAT = "licrt-checkpoint"


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


def read_checkpoint(path: str | Path) -> dict:
    """Load a checkpoint file's dict (weights only: no code is unpickled).

    Raises:
        ExportError: the file is missing or is not a PyTorch weights file.
    """
    path = Path(path)
    if not path.is_file():
        raise ExportError(f"checkpoint {path} not found")
    if not zipfile.is_zipfile(path):
        raise ExportError(f"{path} is not a PyTorch checkpoint (torch.save writes zip archives)")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise PickledCheckpointError(
            f"{path} holds pickled Python objects, not just weights; licrt reads those only in a codec's "
            "official format (the official Entroformer checkpoints)"
        ) from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, ValueError, OSError) as exc:
        raise ExportError(f"{path} is not a PyTorch checkpoint ({exc})") from None
    if not isinstance(data, Mapping):
        raise ExportError(f"{path} holds a {type(data).__name__}, not a checkpoint dict")
    return dict(data)


def load_model(path: str | Path, codec_id: str, overrides: dict[str, str] | None = None):
    """Build codec_id and load its weights from a checkpoint.

    A checkpoint of whole pickled modules is handed to the codec's own
    ``load_official`` loader when it has one (Entroformer's official format).

    Raises:
        ExportError: the checkpoint is for another codec, or its weights do
            not fit the model (missing, unexpected or differently shaped keys).
    """
    try:
        data = read_checkpoint(path)
    except PickledCheckpointError:
        official = getattr(registry.lookup(codec_id).model, "load_official", None)
        if official is None:
            raise
        return official(Path(path), codec_id, overrides)
    if data.get("format") == FORMAT:
        if data["codec"] != codec_id:
            raise ExportError(f"{path} is a {data['codec']} checkpoint, not {codec_id}")
        config = registry.make_config(codec_id, data["config"], overrides)
        state = data["state_dict"]
    else:
        config = registry.make_config(codec_id, None, overrides)
        state = data.get("state_dict", data.get("model_state_dict", data))
    state = {key.removeprefix("module."): value for key, value in state.items()}
    model = registry.build(codec_id, config)
    check_fit(model.state_dict(), state, f"{path} does not fit {codec_id}")
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
