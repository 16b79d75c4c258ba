"""The ``export-onnx`` and ``licrt-train`` commands' entry points: one clear line where ``licrt[export]``
(torch, onnx, onnxscript) is not installed, instead of an import traceback."""

from __future__ import annotations

import sys

#: What the export side needs beyond the runtime.
NEEDS = ("torch", "onnx", "onnxscript")


def export_onnx() -> int:
    from .cli import main

    try:  # torch is imported once the arguments are parsed (or to list the codecs in --help)
        return main()
    except ImportError as exc:
        return _not_installed("export-onnx", exc)


def train() -> int:
    from .train import main

    try:
        return main()
    except ImportError as exc:
        return _not_installed("licrt-train", exc)


def _not_installed(command: str, exc: ImportError) -> int:
    if exc.name not in NEEDS:
        raise exc
    print(f"{command}: error: {exc.name} is not installed; {command} needs licrt's export extra: "
          "pip install torch==2.13.0 'licrt[export]'", file=sys.stderr)
    return 1
