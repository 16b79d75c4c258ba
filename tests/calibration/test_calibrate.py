"""Calibrated bundles: what they convert, what they copy, and the files that cross with the float32 bundle."""

from __future__ import annotations

import numpy as np
import onnx
import pytest

from licrt.calibration import capture
from licrt.calibration.calibrate import calibrate_bundle
from licrt.export import registry
from licrt.export.bundle_writer import write_bundle
from licrt.export.checkpoint import model_from_bundle
from licrt.calibration.policies import POLICIES
from licrt.runtime import cli
from licrt.runtime.bundle import Bundle
from licrt.runtime.codec import Codec
from licrt.runtime.errors import BitstreamError, ExportError
from licrt.runtime.manifest import FREE_STAGES

from ..helpers import DATA, load_image

IMAGES = sorted(DATA.glob("*.png"))
ENTROFORMER_SMALL = {"channels": "16", "latent_channels": "32", "hyper_channels": "16", "dim_embed": "32",
                     "heads": "2", "dim_head": "16"}


def op_types(bundle: Bundle, stage: str) -> set[str]:
    graph = onnx.load(bundle.path(bundle.manifest.buckets[0].stages[stage].file), load_external_data=False)
    return {node.op_type for node in graph.graph.node}


@pytest.fixture(scope="module")
def int8_bundle(levels_bundle, tmp_path_factory) -> Bundle:
    out = tmp_path_factory.mktemp("calibrated") / "int8"
    calibrate_bundle(levels_bundle, "int8", POLICIES["transforms"], out, IMAGES, progress=False)
    return Bundle.open(out)


def test_int8_converts_the_free_stages_and_copies_the_entropy_path(levels_bundle, int8_bundle):
    manifest = int8_bundle.manifest
    assert manifest.precision == dict.fromkeys(sorted(FREE_STAGES), "int8")
    for stage in FREE_STAGES:
        assert {"QuantizeLinear", "DequantizeLinear"} <= op_types(int8_bundle, stage)
    entropy_path = [graph.file for bucket in manifest.buckets for name, graph in bucket.stages.items()
                    if name not in FREE_STAGES]
    copied = [manifest.y_tables, *entropy_path,
              *(path for level in manifest.levels for path in (level.entropy_weights, level.z_tables))]
    for relative in copied:
        assert int8_bundle.path(relative).read_bytes() == levels_bundle.path(relative).read_bytes(), relative
    for level in manifest.levels:
        assert manifest.files[level.transform_weights] != levels_bundle.manifest.files[level.transform_weights]
    assert int8_bundle.contract == levels_bundle.contract
    assert int8_bundle.fingerprint != levels_bundle.fingerprint


@pytest.mark.parametrize("quality", [1, 2])
def test_files_cross_between_the_float32_bundle_and_its_int8_calibration(levels_bundle, int8_bundle, quality):
    image = load_image("lighthouse_250x190.png")
    float32, int8 = Codec.open(levels_bundle), Codec.open(int8_bundle)
    for encoder, decoder in ((float32, int8), (int8, float32)):
        data = encoder.compress(image, quality=quality)
        own, other = encoder.decompress(data), decoder.decompress(data)
        assert other.shape == image.shape
        # The symbols are the same; only g_s differs, by its quantisation.
        assert not np.array_equal(own, other)
        assert np.abs(own.astype(int) - other.astype(int)).mean() < 8
    assert int8.compress(image, quality=quality) == int8.compress(image, quality=quality)


def test_a_bundle_whose_entropy_path_changed_refuses_the_float32_files(levels_bundle, tmp_path):
    out = tmp_path / "everything"
    calibrate_bundle(levels_bundle, "int8", POLICIES["everything"], out, IMAGES[:1], progress=False)
    everything = Bundle.open(out)
    assert "h_s" in everything.manifest.precision and everything.contract != levels_bundle.contract
    data = Codec.open(levels_bundle).compress(load_image("house_96x64.png"))
    with pytest.raises(BitstreamError, match="entropy coding differs"):
        Codec.open(everything).decompress(data)


def test_fp16_keeps_the_contract_and_holds_float16_weights(levels_bundle, tmp_path):
    out = tmp_path / "fp16"
    calibrate_bundle(levels_bundle, "fp16", POLICIES["synthesis"], out, progress=False)
    fp16 = Bundle.open(out)
    assert fp16.manifest.precision == {"g_s": "fp16"} and fp16.contract == levels_bundle.contract
    graph = onnx.load(fp16.path(fp16.manifest.buckets[0].stages["g_s"].file), load_external_data=False)
    assert any(t.data_type == onnx.TensorProto.FLOAT16 for t in graph.graph.initializer)
    image = load_image("house_96x64.png")
    assert Codec.open(fp16).decompress(Codec.open(levels_bundle).compress(image)).shape == image.shape


def test_refusals(int8_bundle, levels_bundle, tmp_path):
    with pytest.raises(ExportError, match="calibrated already"):
        calibrate_bundle(int8_bundle, "int8", POLICIES["transforms"], tmp_path / "again", IMAGES)
    with pytest.raises(ExportError, match="calibration images"):
        calibrate_bundle(levels_bundle, "int8", POLICIES["transforms"], tmp_path / "none")
    with pytest.raises(ExportError, match="already exists"):
        calibrate_bundle(levels_bundle, "fp16", POLICIES["transforms"], int8_bundle.root)
    with pytest.raises(ExportError, match="calibrated .*export from its float32 bundle"):
        model_from_bundle(int8_bundle)
    assert not (tmp_path / "again").exists() and not (tmp_path / "none").exists()


def test_command(levels_bundle, tmp_path, capsys):
    out = tmp_path / "cli"
    assert cli.main(["calibrate", "--bundle", str(levels_bundle.root), "--images", str(DATA), "--limit", "1",
                     "--precision", "int8", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "g_a, g_s, h_a in int8 (policy transforms)" in printed
    assert "the float32 bundle's, files cross between them" in printed
    assert "g_s: " in printed and "of the codec's own at each level (budget 0.5 %)" in printed
    # Each level, each way: the file decoded by both bundles.
    assert printed.count("decoded by") == 4 and "refused" not in printed
    assert cli.main(["calibrate", "--bundle", str(levels_bundle.root), "--precision", "int8",
                     "--out", str(tmp_path / "no-images")]) == 1
    assert "INT8 takes its activation ranges from calibration images" in capsys.readouterr().err


def test_entroformer_int8_keeps_gdn_pools_and_top_k_attention_float(tmp_path):
    model = registry.build("entroformer", registry.make_config("entroformer", None, ENTROFORMER_SMALL)).eval()
    write_bundle(model, [(64, 64)], tmp_path / "entroformer", progress=False)
    source = Bundle.open(tmp_path / "entroformer")
    calibrate_bundle(source, "int8", POLICIES["transforms"], tmp_path / "int8", IMAGES, progress=False)
    int8 = Bundle.open(tmp_path / "int8")
    g_a = onnx.load(int8.path(int8.manifest.buckets[0].stages["g_a"].file), load_external_data=False).graph
    producers = {name: node for node in g_a.node for name in node.output}
    convolutions = [node for node in g_a.node if node.op_type == "Conv"]
    pools = [node for node in convolutions if producers[node.input[0]].op_type == "Mul"]
    assert len(pools) == 3 and len(convolutions) == 7  # GDN after the first three of four convolutions
    for node in convolutions:
        quantized = producers[node.input[0]].op_type == "DequantizeLinear"
        assert quantized == (node not in pools), node.name
    assert "TopkAttention" in op_types(int8, "h_a") and "QuantizeLinear" in op_types(int8, "h_a")
    image = load_image("house_96x64.png")
    decoded = Codec.open(source).decompress(Codec.open(int8).compress(image))
    assert decoded.shape == image.shape


def test_captured_inputs_are_bounded_in_bytes_and_every_graph_keeps_one_run(levels_bundle, monkeypatch):
    monkeypatch.setattr(capture, "MAX_CAPTURED_BYTES", 1)
    bounded = capture.capture_feeds(levels_bundle, IMAGES, ["g_a", "g_s"], progress=False)
    assert sorted(bounded.feeds) == [(level, stage, "128x128") for level in (0, 1) for stage in ("g_a", "g_s")]
    assert all(len(runs) == 1 for runs in bounded.feeds.values())
    monkeypatch.undo()
    unbounded = capture.capture_feeds(levels_bundle, IMAGES, ["g_a"], progress=False)
    assert all(len(runs) > 1 for runs in unbounded.feeds.values())  # every image, every tile
    assert len(bounded.distortion) == 2 and 0 < bounded.distortion[0] < 1
