import os
import shutil

import pytest
import torch

from tests.helpers import TINY_SETTINGS, tiny_model
from licrt.export.checkpoint import checkpoint_dict, load_model, model_from_bundle, save_checkpoint
from licrt.export.cli import checkpoint_levels
from licrt.export.cli import main as export_onnx
from licrt.runtime.bundle import Bundle
from licrt.runtime.errors import ExportError


def test_licrt_checkpoint_round_trip(tmp_path):
    model = tiny_model(seed=3)
    save_checkpoint(tmp_path / "m.pt", model, step=10)
    loaded = load_model(tmp_path / "m.pt", "s2c-hybrid-s")
    assert loaded.config == model.config
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value)


def test_plain_state_dict_with_dataparallel_prefix(tmp_path):
    model = tiny_model(seed=3)
    torch.save({"state_dict": {f"module.{k}": v for k, v in model.state_dict().items()}}, tmp_path / "m.pth")
    loaded = load_model(tmp_path / "m.pth", "s2c-hybrid-s", TINY_SETTINGS)
    assert torch.equal(loaded.g_a[0].weight, model.g_a[0].weight)


def test_wrong_codec(tmp_path):
    save_checkpoint(tmp_path / "m.pt", tiny_model())
    with pytest.raises(ExportError, match="is a s2c-hybrid-s checkpoint, not s2c-conv"):
        load_model(tmp_path / "m.pt", "s2c-conv")


def test_weights_that_do_not_fit_are_listed(tmp_path):
    state = tiny_model().state_dict()
    state.pop("g_a.0.weight")
    state["extra.weight"] = torch.zeros(1)
    state["g_s.0.0.bias"] = torch.zeros(3)
    torch.save(state, tmp_path / "m.pth")
    with pytest.raises(ExportError) as error:
        load_model(tmp_path / "m.pth", "s2c-hybrid-s", TINY_SETTINGS)
    message = str(error.value)
    assert "1 missing: g_a.0.weight" in message and "1 unexpected: extra.weight" in message
    assert "g_s.0.0.bias (checkpoint [3]" in message


@pytest.mark.parametrize("content, message", [
    (None, "not found"),
    (b"not a checkpoint", "not a PyTorch checkpoint"),
])
def test_unreadable_files(tmp_path, content, message):
    path = tmp_path / "m.pt"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(ExportError, match=message):
        load_model(path, "s2c-hybrid-s")


def test_pickled_objects_are_not_executed(tmp_path):
    torch.save({"model": torch.nn.Linear(2, 2)}, tmp_path / "m.pt")
    with pytest.raises(ExportError, match="pickled Python objects"):
        load_model(tmp_path / "m.pt", "s2c-hybrid-s")


def test_a_flipped_bit_in_tensor_data_is_caught_by_the_zip_crcs(tmp_path):
    model = tiny_model(seed=3)
    save_checkpoint(tmp_path / "m.pt", model)
    data = bytearray((tmp_path / "m.pt").read_bytes())
    weight = model.g_a[0].weight.detach().numpy().tobytes()[:64]
    data[data.index(weight) + 10] ^= 0x01
    (tmp_path / "m.pt").write_bytes(bytes(data))
    with pytest.raises(ExportError, match="damaged: its member .* fails its CRC check"):
        load_model(tmp_path / "m.pt", "s2c-hybrid-s")


def test_a_configuration_asking_for_a_huge_model_costs_nothing(tmp_path):
    checkpoint = checkpoint_dict(tiny_model())
    checkpoint["config"]["channels"] = [2**20, 2**20, 2**20]
    torch.save(checkpoint, tmp_path / "m.pt")
    with pytest.raises(ExportError, match="does not fit s2c-hybrid-s: .* with other shapes"):
        load_model(tmp_path / "m.pt", "s2c-hybrid-s")


@pytest.mark.parametrize("content, message", [
    ({"format": "licrt-checkpoint", "codec": "s2c-hybrid-s", "config": [], "state_dict": {}}, "without its config"),
    ({"state_dict": {"a": 1}}, "no state dict of named tensors"),
    ({"state_dict": [1, 2]}, "no state dict of named tensors"),
    ([1, 2], "holds a list"),
])
def test_malformed_checkpoint_contents(tmp_path, content, message):
    torch.save(content, tmp_path / "m.pt")
    with pytest.raises(ExportError, match=message):
        load_model(tmp_path / "m.pt", "s2c-hybrid-s")


def test_a_bundle_holds_every_level_s_model(levels_bundle):
    for index, seed in enumerate((0, 1)):
        rebuilt = model_from_bundle(levels_bundle.at_level(index)).state_dict()
        original = tiny_model(seed).state_dict()
        assert rebuilt.keys() == original.keys()
        for key, value in original.items():
            assert torch.equal(rebuilt[key], value), key


def test_a_bundle_whose_weights_have_another_hard_link_still_rebuilds_its_model(tiny_bundle, tmp_path):
    """OpenVINO and TensorRT link a level's weights beside a graph while they compile it; a process killed
    meanwhile leaves the link (onnx's own loader then refuses the file as a possible hard-link attack)."""
    copy = tmp_path / "bundle"
    shutil.copytree(tiny_bundle.root, copy)
    bundle = Bundle.open(copy)
    for name, weights in bundle.weight_files.items():
        os.link(weights, tmp_path / name)
    rebuilt = model_from_bundle(bundle).state_dict()
    for key, value in tiny_model().state_dict().items():
        assert torch.equal(rebuilt[key], value), key


def test_exporting_from_a_bundle_writes_the_same_bundle(levels_bundle, tmp_path):
    """A bundle is the checkpoint of its levels: re-exported (e.g. to other shapes), it gives the same files."""
    assert export_onnx(["s2c-hybrid-s", "--checkpoint", str(levels_bundle.root), "--shape", "128x128",
                        "--out", str(tmp_path / "again")]) == 0
    again = Bundle.open(tmp_path / "again")
    assert again.manifest.files == levels_bundle.manifest.files
    assert [level.name for level in again.manifest.levels] == ["low", "high"]
    with pytest.raises(ExportError, match="is a s2c-hybrid-s bundle, not entroformer"):
        checkpoint_levels(levels_bundle.root, "entroformer", {})
