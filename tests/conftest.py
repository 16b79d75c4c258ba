"""Shared fixtures: bundles exported once per test session."""

from __future__ import annotations

from importlib.metadata import version

import pytest
import torch

from licrt.export import registry
from licrt.export.bundle_writer import write_bundle
from licrt.runtime.bundle import Bundle

from .helpers import tiny_model


def pytest_report_header(config):
    import onnx
    import onnxruntime

    versions = {
        "torch": torch.__version__,
        "onnx": onnx.__version__,
        "onnxruntime": onnxruntime.__version__,
        "constriction": version("constriction"),  # the module has no __version__
    }
    try:
        import tensorrt

        versions["tensorrt"] = tensorrt.__version__
    except Exception:
        versions["tensorrt"] = "not available"
    return "licrt: " + ", ".join(f"{k} {v}" for k, v in versions.items())


@pytest.fixture(scope="session")
def tiny_bundle(tmp_path_factory) -> Bundle:
    """A tiny random-init S2C-Hybrid bundle with one 128x128 bucket."""
    out = tmp_path_factory.mktemp("bundles") / "tiny"
    write_bundle(tiny_model(), [(128, 128)], out, progress=False)
    return Bundle.open(out)


@pytest.fixture(scope="session")
def levels_bundle(tmp_path_factory) -> Bundle:
    """The tiny bundle at two quality levels: the tiny model with two seeds' weights, sharing its graphs."""
    out = tmp_path_factory.mktemp("bundles") / "levels"
    write_bundle({"low": tiny_model(seed=0), "high": tiny_model(seed=1)}, [(128, 128)], out, progress=False)
    return Bundle.open(out)


@pytest.fixture(scope="session")
def full_bundle(tmp_path_factory):
    """The real s2c-hybrid-s (random init, seed 0) at 256x256, with its PyTorch model."""
    torch.manual_seed(0)
    model = registry.build("s2c-hybrid-s").eval()
    out = tmp_path_factory.mktemp("bundles") / "hybrid-s"
    write_bundle(model, [(256, 256)], out, progress=False)
    return Bundle.open(out), model
