"""Exporting stage modules to static-shape ONNX graphs (their weights are written by
:mod:`licrt.export.weights`)."""

from __future__ import annotations

import contextlib
import io
import logging
import warnings

import onnx
import torch

from licrt.plugins.topk_attention import onnx_function as topk_onnx
from licrt.plugins.topk_attention.torch_op import ONNX_TRANSLATIONS
from licrt.runtime.errors import ExportError

OPSET = 18


def export_graph(module: torch.nn.Module, inputs: dict[str, torch.Tensor],
                 output_names: list[str]) -> onnx.ModelProto:
    """Export one stage module at the shapes of the example inputs."""
    with _quiet_exporter():
        try:
            program = torch.onnx.export(
                module.eval(),
                tuple(inputs.values()),
                input_names=list(inputs),
                output_names=output_names,
                opset_version=OPSET,
                dynamo=True,
                optimize=True,
                verbose=False,
                custom_translation_table=ONNX_TRANSLATIONS,
            )
        except Exception as exc:  # the exporter raises many unrelated types
            raise ExportError(f"torch.onnx could not export the graph: {exc}") from exc
    model = program.model_proto
    topk_onnx.add_function(model)
    return model


@contextlib.contextmanager
def _quiet_exporter():
    """Keep the exporter's progress prints and warnings off the user's terminal."""
    loggers = [logging.getLogger(name) for name in ("torch.onnx", "torch._dynamo", "torch.export")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)
