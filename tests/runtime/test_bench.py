"""licrt bench: every contestant really codes the images, in a process of its own; bad input is one line."""

import json

from tests.helpers import DATA, load_image
from licrt.runtime.cli import main
from licrt.runtime.codec import Codec

IMAGE = DATA / "parrots_256x256.png"


def test_bench_reports_each_backend_side_by_side(tiny_bundle, tmp_path, capsys):
    out = tmp_path / "bench.json"
    assert main(["bench", str(IMAGE), "--bundle", str(tiny_bundle.root), "--backend", "onnxruntime",
                 "--backend", "torch", "--rounds", "2", "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    expected_bytes = len(Codec.open(tiny_bundle, backend="onnxruntime").compress(load_image(IMAGE.name)))
    rows = {row["backend"]: row for row in report["contestants"]}
    assert set(rows) == {"onnxruntime", "torch"}
    assert rows["onnxruntime"]["per_image"][0]["bytes"] == expected_bytes
    for row in rows.values():
        image = row["per_image"][0]
        assert image["buckets"] == {"128x128": 9} and image["tiles"] == 9  # 3x3 windows overlapping by 64
        assert {"g_a", "h_a", "h_s"} <= set(image["compress"]["stages_ms"])
        assert "g_s" in image["decompress"]["stages_ms"]
        assert 0 < sum(image["decompress"]["stages_ms"].values()) < image["decompress"]["ms"]
        assert row["peak_rss_mib"] > 50 and row["start_s"] > 0
        assert 0 < row["transforms"]["g_s"]["share_of_matmul_peak"]
    assert set(report["speedup_vs_torch"]) == {f"{tiny_bundle.root.name} / onnxruntime"}
    assert "× torch" in capsys.readouterr().out


def test_bench_names_a_missing_image_or_bundle_in_one_line(tmp_path, capsys):
    assert main(["bench", str(tmp_path / "missing.png"), "--backend", "onnxruntime"]) == 1
    assert capsys.readouterr().err.strip().count("\n") == 0
    assert main(["bench", str(IMAGE), "--bundle", str(tmp_path), "--backend", "onnxruntime"]) == 1
    error = capsys.readouterr().err.strip()
    assert error.count("\n") == 0 and f"{tmp_path.name} / onnxruntime" in error
