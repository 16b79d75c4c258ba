"""The runtime installs alone: in a fresh venv, `pip install .` brings no torch and runs the main job."""

import shutil
import subprocess
import sys
from pathlib import Path

from PIL import Image

from tests.helpers import DATA

ROOT = Path(__file__).parents[1]
RUNTIME = {"numpy", "constriction", "onnxruntime", "pillow", "tqdm"}


def test_runtime_alone_installs_and_runs(tmp_path):
    source = tmp_path / "licrt"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(".git", ".venv", "scratch", "build", "*.egg-info",
                                                                "__pycache__", "models"))
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", venv], check=True)
    installed = subprocess.run([venv / "bin" / "pip", "install", "--quiet", source], capture_output=True, text=True)
    assert installed.returncode == 0, installed.stderr[-2000:]
    listed = subprocess.run([venv / "bin" / "pip", "list", "--format=freeze"], capture_output=True, text=True)
    packages = {line.split("==")[0].lower() for line in listed.stdout.split()}
    assert RUNTIME <= packages and not packages & {"torch", "onnx", "onnxscript", "triton"}, packages
    licrt = venv / "bin" / "licrt"
    for command in (["compress", DATA / "parrots_256x256.png", "p.lic"], ["decompress", "p.lic", "p.png"],
                    ["info", "p.lic"]):
        result = subprocess.run([licrt, *map(str, command)], cwd=tmp_path, capture_output=True, text=True)
        assert result.returncode == 0, result.stderr
    assert Image.open(tmp_path / "p.png").size == (256, 256)


def test_export_commands_without_torch_say_what_to_install():
    for entry in ("export_onnx", "train"):
        script = (f"import sys; sys.modules['torch'] = None; from licrt.export.commands import {entry}; "
                  f"sys.exit({entry}())")
        result = subprocess.run([sys.executable, "-c", script, "--help"], capture_output=True, text=True)
        assert result.returncode == 1 and result.stdout == ""
        assert result.stderr.count("\n") == 1 and "pip install torch==2.13.0 'licrt[export]'" in result.stderr


def test_export_commands_parse_their_arguments_before_importing_torch():
    """Version and usage errors need no torch (help does: it lists the codecs)."""
    for entry, command in (("export_onnx", "export-onnx"), ("train", "licrt-train")):
        script = (f"import sys; sys.modules['torch'] = None; from licrt.export.commands import {entry}; "
                  f"sys.exit({entry}())")
        version = subprocess.run([sys.executable, "-c", script, "--version"], capture_output=True, text=True)
        assert version.returncode == 0 and version.stdout.startswith(f"{command} "), version.stderr
        usage = subprocess.run([sys.executable, "-c", script, "s2c-hybrid-s"], capture_output=True, text=True)
        assert usage.returncode == 2 and "required" in usage.stderr and "torch" not in usage.stderr
