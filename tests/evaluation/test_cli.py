"""licrt eval end to end on the tiny bundle and two anchors."""

import csv
import json
import shutil

import pytest

from licrt.runtime.cli import main
from licrt.runtime.codec import Codec
from tests.helpers import DATA, load_image


def read_rows(folder):
    with open(folder / "results.csv", newline="") as file:
        return list(csv.DictReader(file))


def test_eval_writes_results_summary_and_plot_and_resumes(tiny_bundle, tmp_path):
    args = ["eval", str(DATA), "--bundle", str(tiny_bundle.root), "--anchors", "jpeg,webp", "--out", str(tmp_path)]
    assert main(args) == 0
    rows = read_rows(tmp_path)
    assert {r["image"] for r in rows} == {"house_96x64.png", "lighthouse_250x190.png", "parrots_256x256.png"}
    assert len(rows) == 3 * (1 + 10 + 10)

    # The learned codec's rate is the size of the real file.
    (learned,) = [r for r in rows if r["codec"] == "s2c-hybrid-s" and r["image"] == "parrots_256x256.png"]
    assert int(learned["bytes"]) == len(Codec.open(tiny_bundle).compress(load_image("parrots_256x256.png")))
    assert float(learned["bpp"]) == 8 * int(learned["bytes"]) / (256 * 256)

    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["images"] == 3 and set(summary["curves"]) == {"s2c-hybrid-s", "jpeg", "webp"}
    assert summary["dataset"] == DATA.name  # names, not this machine's folders
    assert [entry["bundle"] for entry in summary["bundles"]] == [tiny_bundle.root.name]
    bd = summary["bd_rate_percent"]["s2c-hybrid-s"]["jpeg"]
    assert bd["psnr"] is None and "at least 2 points" in bd["psnr_unavailable"]
    assert (tmp_path / "rd.png").stat().st_size > 10_000

    assert main(args) == 0  # everything is measured already: nothing is added
    assert len(read_rows(tmp_path)) == len(rows)


def test_unknown_anchor(tmp_path, capsys):
    assert main(["eval", str(DATA), "--anchors", "gif", "--out", str(tmp_path)]) == 1
    assert "unknown anchor 'gif'" in capsys.readouterr().err


def test_every_quality_level_of_a_bundle_is_a_point_of_its_curve(levels_bundle, tmp_path):
    assert main(["eval", str(DATA), "--bundle", str(levels_bundle.root), "--anchors", "", "--limit", "1",
                 "--out", str(tmp_path)]) == 0
    rows = read_rows(tmp_path)
    assert sorted(r["point"] for r in rows) == ["high", "low"]
    by_point = {r["point"]: int(r["bytes"]) for r in rows}
    image = load_image("house_96x64.png")
    codec = Codec.open(levels_bundle)
    assert by_point == {"low": len(codec.compress(image, quality=1)), "high": len(codec.compress(image, quality=2))}
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert {entry["point"]: entry["quality"] for entry in summary["bundles"]} == {"low": 1, "high": 2}


def test_bundles_of_one_codec_with_levels_are_curves_of_their_own_against_the_first(levels_bundle, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(levels_bundle.root, copy)
    assert main(["eval", str(DATA), "--bundle", str(levels_bundle.root), "--bundle", str(copy), "--anchors", "",
                 "--limit", "1", "--out", str(tmp_path / "report")]) == 0
    summary = json.loads((tmp_path / "report" / "summary.json").read_text())
    first, second = f"s2c-hybrid-s/{levels_bundle.root.name}", "s2c-hybrid-s/copy"
    assert set(summary["curves"]) == {first, second}
    # The same bundle twice: the same files, no rate difference.
    assert summary["bd_rate_percent"][second][first]["psnr"] == pytest.approx(0, abs=1e-9)
    assert first not in summary["bd_rate_percent"][first]


def test_each_backend_is_a_curve_of_its_own_against_the_first(levels_bundle, tmp_path):
    assert main(["eval", str(DATA), "--bundle", str(levels_bundle.root), "--backend", "onnxruntime",
                 "--backend", "onnxruntime-noopt", "--anchors", "", "--limit", "1", "--out", str(tmp_path)]) == 0
    summary = json.loads((tmp_path / "summary.json").read_text())
    first, second = "s2c-hybrid-s @ onnxruntime", "s2c-hybrid-s @ onnxruntime-noopt"
    assert set(summary["curves"]) == {first, second}
    # The same model in other floats: the encoder's g_a moves some symbols, a little.
    assert summary["bd_rate_percent"][second][first]["psnr"] == pytest.approx(0, abs=10)
    assert {entry["backend_profile"] for entry in summary["bundles"]} == {
        Codec.open(levels_bundle, backend=name).backend.profile for name in ("onnxruntime", "onnxruntime-noopt")}
