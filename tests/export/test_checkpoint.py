import pytest
import torch

from tests.helpers import TINY_SETTINGS, tiny_model
from licrt.export.checkpoint import load_model, save_checkpoint
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
