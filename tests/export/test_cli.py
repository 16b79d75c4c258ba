"""export-onnx as a user runs it."""

import subprocess
import sys

import pytest


def export_onnx(*args, cwd):
    result = subprocess.run([sys.executable, "-m", "licrt.export.cli", *map(str, args)], cwd=cwd,
                            capture_output=True, text=True)
    return result.returncode, result.stdout, result.stderr


@pytest.mark.parametrize("args, message", [
    (("jpeg", "--random-init", "--shape", "64x64"), "unknown codec 'jpeg'"),
    (("s2c-conv", "--random-init", "--shape", "250x190"), "not a multiple of the codec's stride 64; use e.g. 256x192"),
    (("s2c-conv", "--checkpoint", "missing.pt", "--shape", "64x64"), "checkpoint missing.pt not found"),
    (("s2c-conv", "--random-init", "--shape", "64x64", "--set", "blocks"), "--set expects key=value"),
])
def test_errors_are_one_line(tmp_path, args, message):
    code, out, err = export_onnx(*args, "--out", "b", cwd=tmp_path)
    assert code == 1 and message in err and err.count("\n") == 1, err
    assert not (tmp_path / "b").exists()


def test_bad_shape_syntax(tmp_path):
    code, _, err = export_onnx("s2c-conv", "--random-init", "--shape", "64", "--out", "b", cwd=tmp_path)
    assert code == 2 and "is not HEIGHTxWIDTH" in err


def test_existing_output_is_kept(tmp_path):
    (tmp_path / "b").mkdir()
    code, _, err = export_onnx("s2c-conv", "--random-init", "--shape", "64x64", "--out", "b", cwd=tmp_path)
    assert code == 1 and "already exists" in err


def test_export_says_what_the_bundle_costs_on_disk(tmp_path):
    code, out, err = export_onnx("s2c-conv", "--random-init", "--shape", "64x64", "--set",
                                 "channels=16,16,32", "--set", "blocks=1,1,1", "--set", "latent_channels=32", "--set",
                                 "groups=4,4,8,8,8", "--set", "hyper_channels=16", "--out", "b", cwd=tmp_path)
    assert code == 0, err
    graphs = sum(path.stat().st_size for path in (tmp_path / "b" / "stages").iterdir())
    assert f"of which stage graphs {graphs / 1e6:.1f} MB for 1 shape bucket (" in out
