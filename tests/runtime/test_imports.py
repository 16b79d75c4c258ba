import subprocess
import sys

CHECK = """
import importlib, pkgutil, sys
import licrt.runtime as runtime
for module in pkgutil.walk_packages(runtime.__path__, "licrt.runtime."):
    importlib.import_module(module.name)
print("torch" in sys.modules)
"""


def test_runtime_never_imports_torch():
    result = subprocess.run([sys.executable, "-c", CHECK], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"
