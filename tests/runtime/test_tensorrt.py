"""The TensorRT backend: one clear error where TensorRT or a GPU is missing; engines that code files other
backends decode where they are present. No stand-in for TensorRT: these tests run it or skip."""

import importlib.util

import pytest

from licrt.runtime import Codec
from licrt.runtime.backends import open_backend

from ..helpers import DATA, load_image
from .test_cli import licrt

HAS_TENSORRT = importlib.util.find_spec("tensorrt") is not None


@pytest.mark.skipif(HAS_TENSORRT, reason="TensorRT is installed here")
@pytest.mark.parametrize("command", [["build-engines"], ["compress", "in.png", "out.lic", "--backend", "tensorrt"]])
def test_without_tensorrt_one_clear_line(command, tmp_path):
    (tmp_path / "in.png").write_bytes((DATA / "house_96x64.png").read_bytes())
    code, out, err = licrt(*command, cwd=tmp_path)
    assert code == 1 and out == ""
    assert err.count("\n") == 1 and err.startswith("licrt: error: TensorRT is not usable here")
    assert "licrt[gpu]" in err and not (tmp_path / "out.lic").exists()


@pytest.mark.tensorrt
@pytest.mark.skipif(not HAS_TENSORRT, reason="needs TensorRT and an NVIDIA GPU")
def test_engines_code_files_other_backends_decode(tiny_bundle, tmp_path, monkeypatch):
    monkeypatch.setenv("LICRT_ENGINE_CACHE", str(tmp_path / "engines"))
    code, out, err = licrt("build-engines", tiny_bundle.root, cwd=tmp_path)
    assert code == 0, err
    code, out, err = licrt("build-engines", tiny_bundle.root, cwd=tmp_path)
    assert code == 0 and "were cached" in out
    image = load_image("lighthouse_250x190.png")[:128, :128]
    engines, portable = Codec(tiny_bundle, open_backend("tensorrt")), Codec(tiny_bundle, open_backend("onnxruntime"))
    # decoding checks every pass's symbols and decisions against the encoder's digests, or raises
    assert portable.decompress(engines.compress(image)).shape == image.shape
    assert engines.decompress(portable.compress(image)).shape == image.shape
