"""licrt-train as a user runs it, on a tiny configuration for a few steps."""

import json

import torch

from licrt.export.checkpoint import load_model, read_checkpoint
from licrt.export.train import TrainSettings, main
from tests.helpers import DATA, TINY_SETTINGS

SETTINGS = [arg for key, value in TINY_SETTINGS.items() for arg in ("--set", f"{key}={value}")]


def run(out, steps, *extra):
    return main(["s2c-hybrid-s", "--data", str(DATA), "--lambda", "0.01", "--steps", str(steps),
                 "--batch-size", "2", "--patch", "64", "--workers", "0", "--out", str(out), *SETTINGS, *extra])


def test_train_resume_and_load(tmp_path):
    out = tmp_path / "tiny.pt"
    assert run(out, 2, "--val", str(DATA), "--val-every", "2", "--save-every", "1") == 0
    log = [json.loads(line) for line in open(f"{out}.log.jsonl")]
    assert log[-1]["step"] == 2 and "val_psnr" in log[-1] and log[-1]["bpp"] > 0
    assert run(out, 3, "--resume") == 0
    log = [json.loads(line) for line in open(f"{out}.log.jsonl")]
    assert log[-1]["step"] == 3

    released = read_checkpoint(out)
    assert released["step"] == 3 and released["training"]["lmbda"] == 0.01
    assert all(v.dtype == torch.float16 for v in released["state_dict"].values() if v.is_floating_point())
    model = load_model(out, "s2c-hybrid-s")
    state = torch.load(f"{out}.state", weights_only=False)["state_dict"]
    for key, value in model.state_dict().items():
        assert torch.equal(value, state[key].half().float())


def test_errors(tmp_path, capsys):
    assert run(tmp_path / "a.pt", 2, "--resume") == 1
    assert "no training state" in capsys.readouterr().err
    assert main(["s2c-hybrid-s", "--data", str(tmp_path), "--lambda", "1", "--steps", "1",
                 "--out", str(tmp_path / "b.pt")]) == 1
    assert "no images" in capsys.readouterr().err


def test_entroformer_trains_with_its_own_quantisation(tmp_path):
    settings = ["--set", "channels=16", "--set", "latent_channels=32", "--set", "hyper_channels=16",
                "--set", "dim_embed=32", "--set", "heads=2", "--set", "dim_head=16"]
    assert main(["entroformer", "--data", str(DATA), "--lambda", "0.01", "--steps", "2", "--batch-size", "2",
                 "--patch", "64", "--workers", "0", "--out", str(tmp_path / "e.pt"), *settings]) == 0
    assert load_model(tmp_path / "e.pt", "entroformer").config.dim_embed == 32


def test_learning_rate_schedule():
    settings = TrainSettings(lmbda=1, steps=1000, warmup=0.1, decay_at=(0.5, 0.9), decay=0.1)
    assert settings.learning_rate_factor(0) == 0.01
    assert settings.learning_rate_factor(99) == 1.0
    assert settings.learning_rate_factor(500) == 0.1
    assert abs(settings.learning_rate_factor(950) - 0.01) < 1e-12


def test_econtextformer_trains_on_all_its_groups_at_once(tmp_path):
    settings = ["--set", "channels=16", "--set", "latent_channels=16", "--set", "dim=24", "--set", "depth=2",
                "--set", "heads=2", "--set", "window=2"]
    assert main(["econtextformer", "--data", str(DATA), "--lambda", "0.01", "--steps", "2", "--batch-size", "2",
                 "--patch", "64", "--workers", "0", "--out", str(tmp_path / "e.pt"), *settings]) == 0
    log = [json.loads(line) for line in open(tmp_path / "e.pt.log.jsonl")]
    assert log[-1]["step"] == 2 and log[-1]["bpp"] > 0
    assert load_model(tmp_path / "e.pt", "econtextformer").config.window == 2
