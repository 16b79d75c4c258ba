"""Ctrl-C at any moment: exit status 130, one line, no output file."""

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from PIL import Image

from tests.helpers import load_image


@pytest.fixture(scope="module")
def photo(tmp_path_factory):
    """A 2048x3584 photo: about 15 seconds of work for the default bundle, so every delay lands in it."""
    path = tmp_path_factory.mktemp("interrupt") / "photo.png"
    parrots = load_image("parrots_256x256.png")
    Image.fromarray(np.tile(parrots, (8, 14, 1))).save(path)
    return path


@pytest.mark.parametrize("delay", [0.15, 0.4, 1.0, 2.0])
def test_ctrl_c_exits_130_with_one_line_and_no_output(photo, tmp_path, delay):
    """Early delays land in start-up (imports, opening the bundle), later ones in the stage graphs."""
    output = tmp_path / "photo.lic"
    # A job started in the background (nohup, some CI runners) inherits SIGINT ignored, and so would licrt:
    # give it the default disposition a terminal's process has.
    process = subprocess.Popen([sys.executable, "-m", "licrt.runtime.cli", "compress", str(photo), str(output)],
                               cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    time.sleep(delay)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 130, err
    assert err == "licrt: interrupted\n", err
    assert not list(tmp_path.iterdir()), "output or temporary files left behind"


def test_ctrl_c_inside_an_extensions_import_is_an_interruption(monkeypatch, capsys):
    """ONNX Runtime's import reports Ctrl-C as an ImportError caused by the KeyboardInterrupt."""
    from licrt.runtime import cli

    def interrupted_import(args):
        try:
            raise KeyboardInterrupt
        except KeyboardInterrupt as cause:
            raise ImportError("initialization failed") from cause

    monkeypatch.setattr(cli, "_open_codec", interrupted_import)
    assert cli.main(["compress", "in.png", "out.lic"]) == 130
    assert capsys.readouterr().err == "licrt: interrupted\n"


def test_whatever_a_ctrl_c_turns_into_inside_an_extension_is_an_interruption(monkeypatch, capsys):
    """constriction's import panics (a BaseException, no KeyboardInterrupt in its chain) when Ctrl-C lands in it."""
    from licrt.runtime import cli

    class Panic(BaseException):
        pass

    def interrupted_in_an_extension(args):
        try:
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(5)
        except KeyboardInterrupt:
            pass
        raise Panic("Failed to access NumPy array API capsule")

    monkeypatch.setattr(cli, "_open_codec", interrupted_in_an_extension)
    assert cli.main(["compress", "in.png", "out.lic"]) == 130
    assert capsys.readouterr().err == "licrt: interrupted\n"
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # Python's handler is back

    def panics(args):
        raise Panic("not an interruption")

    monkeypatch.setattr(cli, "_open_codec", panics)
    with pytest.raises(Panic):
        cli.main(["compress", "in.png", "out.lic"])


def test_ctrl_c_inside_eval_still_exits_130(tmp_path):
    """CPython exits by SIGINT after a KeyboardInterrupt escaped eval(), unless the CLI clears that mark."""
    program = (
        "import sys\n"
        "from licrt.runtime import cli\n"
        "def interrupted(args):\n"
        "    eval('(_ for _ in ()).throw(KeyboardInterrupt)')\n"
        "cli._open_codec = interrupted\n"
        "sys.exit(cli.main(['compress', 'in.png', 'out.lic']))\n"
    )
    (tmp_path / "interrupted_in_eval.py").write_text(program)
    # Run with python -m, as `python -m licrt.runtime.cli` runs: that path checks the mark at exit.
    result = subprocess.run([sys.executable, "-m", "interrupted_in_eval"], cwd=tmp_path, capture_output=True, text=True)
    assert (result.returncode, result.stderr) == (130, "licrt: interrupted\n")
