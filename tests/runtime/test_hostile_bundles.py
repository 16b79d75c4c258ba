"""Hostile bundles: each is refused with one `licrt: error:` line, and nothing outside the bundle is opened.

Every case starts from a copy of a real bundle, changes one thing, and (where
the change touches a file) rewrites the manifest's sha256 so that the change
itself, not the integrity check, is what must be caught.
"""

import hashlib
import io
import json
import os
import shutil
import sys
import zipfile
from pathlib import Path

import numpy as np
import onnx
import pytest

from licrt.runtime.cli import main
from tests.helpers import DATA

OUTSIDE_OPENS: list[str] = []
#: The tiny bundle's ẑ tables (its one quality level is named "default").
Z_TABLES = "levels/default/z.npz"


@pytest.fixture(scope="module")
def outside(tmp_path_factory):
    """A folder beside the bundles; any open() of a file in it is recorded."""
    folder = tmp_path_factory.mktemp("outside").resolve()
    (folder / "secret.bin").write_bytes(os.urandom(4096))

    def audit(event, args):
        if event == "open" and isinstance(args[0], (str, bytes, os.PathLike)):
            path = os.fsdecode(args[0])
            if path.startswith(str(folder)):
                OUTSIDE_OPENS.append(path)

    sys.addaudithook(audit)  # hooks cannot be removed; this one only records opens in `folder`
    return folder


def manifest(root: Path) -> dict:
    return json.loads((root / "manifest.json").read_text())


def write_manifest(root: Path, data: dict) -> None:
    (root / "manifest.json").write_text(json.dumps(data))


def edit(change):
    """A case that edits the parsed manifest."""

    def apply(root, outside):
        data = manifest(root)
        change(data)
        write_manifest(root, data)

    return apply


def edit_text(change):
    """A case that edits the manifest's text."""

    def apply(root, outside):
        path = root / "manifest.json"
        path.write_bytes(change(path.read_bytes()))

    return apply


def rehash(root: Path, *relatives: str) -> None:
    data = manifest(root)
    for relative in relatives:
        data["files"][relative] = hashlib.sha256((root / relative).read_bytes()).hexdigest()
    write_manifest(root, data)


def stage_file(root: Path, stage: str) -> str:
    return manifest(root)["buckets"][0]["stages"][stage]["file"]


def replace_table(relative: str, arrays: dict, compression=zipfile.ZIP_STORED):
    def apply(root, outside):
        path = root / relative
        with zipfile.ZipFile(path, "w", compression) as archive:
            for key, array in arrays.items():
                buffer = io.BytesIO()
                np.lib.format.write_array(buffer, np.asarray(array), allow_pickle=True)
                archive.writestr(f"{key}.npy", buffer.getvalue())
        rehash(root, relative)

    return apply


def zip_bomb(root, outside):
    path = root / "entropy" / "y.npz"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        with archive.open("probabilities.npy", "w", force_zip64=True) as member:
            zeros = bytes(2**22)
            for _ in range(2**7):  # 512 MiB of zeros, about 0.5 MB deflated
                member.write(zeros)
    rehash(root, "entropy/y.npz")


def forged_npy_header(root, outside):
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "<f8", "fortran_order": False, "shape": (2**40,)})
    path = root / Z_TABLES
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("probabilities.npy", header.getvalue() + bytes(64))
        for key in ("lengths", "offsets"):
            buffer = io.BytesIO()
            np.lib.format.write_array(buffer, np.ones(4, np.int64))
            archive.writestr(f"{key}.npy", buffer.getvalue())
    rehash(root, Z_TABLES)


def symlinked_stage(root, outside):
    relative = stage_file(root, "g_a")
    shutil.copy(root / relative, outside / "g_a.onnx")
    (root / relative).unlink()
    (root / relative).symlink_to(outside / "g_a.onnx")
    data = manifest(root)
    data["files"][relative] = hashlib.sha256((outside / "g_a.onnx").read_bytes()).hexdigest()
    write_manifest(root, data)
    OUTSIDE_OPENS.clear()  # the copy above opened it; licrt must not


def symlinked_manifest(root, outside):
    shutil.copy(root / "manifest.json", outside / "manifest.json")
    (root / "manifest.json").unlink()
    (root / "manifest.json").symlink_to(outside / "manifest.json")
    OUTSIDE_OPENS.clear()


def fifo_stage(root, outside):
    relative = stage_file(root, "h_s")
    (root / relative).unlink()
    os.mkfifo(root / relative)  # reading it would block forever


def external_data_outside(root, outside):
    relative = stage_file(root, "g_a")
    model = onnx.load(root / relative, load_external_data=False)
    for tensor in model.graph.initializer:
        for entry in tensor.external_data:
            if entry.key == "location":
                entry.value = os.path.relpath(outside / "secret.bin", (root / relative).parent)
    onnx.save(model, root / relative)
    rehash(root, relative)


def swapped_stage_graph(root, outside):
    shutil.copy(root / stage_file(root, "h_a"), root / stage_file(root, "g_a"))
    rehash(root, stage_file(root, "g_a"))


def nested(depth: int):
    return edit_text(lambda text: text.replace(b'"config": {', b'"config": {"x": ' + b"[" * depth + b"]" * depth
                                               + b", ", 1))


CASES = {
    "absurd tensor dimension": (edit(lambda d: d["buckets"][0]["stages"]["g_a"]["inputs"][0]["shape"].__setitem__(
        2, 2**40)), "inputs[0].shape[2] must be an integer in"),
    "tensor of 2^30 elements": (edit(lambda d: d["buckets"][0]["stages"]["g_a"]["outputs"][0].update(
        shape=[1, 1024, 1024, 1024])), "has 1,073,741,824 elements"),
    "bucket of 10^9 pixels": (edit(lambda d: d["buckets"][0].update(height=31616, width=31616)),
                              "more than 67,108,864 pixels"),
    "schedule channels of 2^40": (edit(lambda d: d["schedule"].update(channels=2**40)),
                                  "schedule.channels must be an integer in [1, 16,384]"),
    "step channels of 2^40": (edit(lambda d: d["schedule"]["steps"][0]["channels"].__setitem__(1, 2**40)),
                              "schedule.steps[0].channels[1] must be an integer"),
    "zip bomb y.npz": (zip_bomb, "y.npz inflates to 536,870,912 bytes"),
    "npy header claiming 2^40 entries": (forged_npy_header, "claims a (1099511627776,) array"),
    "pickled object array": (replace_table(Z_TABLES, {"probabilities": np.array([{}, 1], dtype=object),
                                                     "lengths": [2], "offsets": [0]}), "arrays of object"),
    "NaN probabilities": (replace_table(Z_TABLES, {"probabilities": np.full(64, np.nan), "lengths": np.full(32, 2),
                                                  "offsets": np.zeros(32, np.int64)}), "finite and non-negative"),
    "z table rows that miss channels": (replace_table(Z_TABLES, {"probabilities": np.ones(6), "lengths": [3, 3],
                                                                "offsets": [0, 0]}), "one per channel of z_hat"),
    "stride 0": (edit(lambda d: d["image"].update(stride=0)), "image.stride must be an integer in [1, 1,024], got 0"),
    "stride 1e999": (edit_text(lambda t: t.replace(b'"stride": 64', b'"stride": 1e999')), "got Infinity"),
    "JSON nested 100,000 deep": (nested(100_000), "nests deeper than 32 levels"),
    "integer of 5,000 digits": (edit_text(lambda t: t.replace(b'"stride": 64', b'"stride": ' + b"9" * 5000)),
                                "not valid JSON"),
    "files of the wrong type": (edit(lambda d: d.update(files=list(d["files"]))), "files must be an object"),
    "stages of the wrong type": (edit(lambda d: d["buckets"][0].update(stages=[])),
                                 "buckets[0].stages must be an object"),
    "height as a string": (edit(lambda d: d["buckets"][0].update(height="128")),
                           'buckets[0].height must be an integer in [64, 32,768], got "128"'),
    "300 buckets": (edit(lambda d: d.update(buckets=d["buckets"] * 300)), "buckets must have 1 to 255 elements"),
    "unknown precision": (edit(lambda d: d.update(precision={"g_s": "fp8"})), "precision.g_s must be one of fp32"),
    "precision of no stage": (edit(lambda d: d.update(precision={"g_t": "int8"})), "precision names 'g_t'"),
    "absolute path in files": (edit(lambda d: d["files"].update({"/etc/passwd": "0" * 64})),
                               "not relative or leads outside"),
    "manifest over 16 MiB": (edit_text(lambda t: t + b" " * 2**24), "larger than 16,777,216 bytes"),
    "manifest not UTF-8": (edit_text(lambda t: b"\xff" + t), "cannot read"),
    "stage file: symlink out of the bundle": (symlinked_stage, "leads outside the bundle"),
    "manifest.json: symlink out of the bundle": (symlinked_manifest, "leads outside the bundle"),
    "stage file: a FIFO": (fifo_stage, "is not a regular file"),
    "ONNX external data outside the bundle": (external_data_outside, "ONNX Runtime cannot load stage g_a"),
    "stage graph swapped for another": (swapped_stage_graph, "ONNX Runtime failed to run stage g_a"),
}


@pytest.mark.parametrize("case", CASES)
def test_hostile_bundle_gets_one_error_line(case, tiny_bundle, outside, tmp_path, capsys):
    root = tmp_path / "bundle"
    shutil.copytree(tiny_bundle.root, root)
    make, message = CASES[case]
    make(root, outside)
    code = main(["compress", str(DATA / "house_96x64.png"), str(tmp_path / "out.lic"), "--bundle", str(root)])
    err = capsys.readouterr().err
    assert code == 1, err
    assert err.startswith("licrt: error: ") and err.count("\n") == 1, err
    assert message in err, err
    assert not (tmp_path / "out.lic").exists()
    assert OUTSIDE_OPENS == [], f"opened outside the bundle: {OUTSIDE_OPENS}"
