import subprocess
import sys

#: What the embedded runtime must never pull in: the export side, evaluation, the GPU stack.
FOREIGN = ("torch", "onnx", "onnxscript", "matplotlib", "scipy", "imagecodecs", "triton", "tensorrt", "polygraphy")
CHECK = f"""
import importlib, pkgutil, sys
import licrt.runtime as runtime
for module in pkgutil.walk_packages(runtime.__path__, "licrt.runtime."):
    importlib.import_module(module.name)
print(sorted(name for name in {FOREIGN!r} if name in sys.modules))
"""


def test_runtime_imports_nothing_of_export_evaluation_or_gpu():
    result = subprocess.run([sys.executable, "-c", CHECK], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"
