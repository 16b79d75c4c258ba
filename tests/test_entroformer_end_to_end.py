"""Issue "Entroformer", must-show 1: official-format checkpoints through export-onnx and licrt.

For both variants, a full-size Entroformer with random weights is saved as the
official code saves it, exported with ``export-onnx --checkpoint`` and run
through ``licrt compress``/``decompress`` as a user would. The decoded image
must equal the official model's reconstruction of round(y) within ±1, and the
file must be within 3 % of the official likelihood estimate, computed with
the official attention (materialised relative-position embeddings) and the
official discretized-Gaussian loss.
"""


import numpy as np
import pytest
import torch
from PIL import Image

from licrt.export import registry
from licrt.export.checkpoint import load_model
from licrt.export.entroformer.model import quantize
from licrt.plugins.topk_attention import torch_op
from licrt.runtime.container import Container
from tests.helpers import DATA, load_image, reference_coding, run
from tests.official_entroformer import official_attention, official_y_bits, write_official_checkpoint


@pytest.fixture(scope="module", params=["entroformer", "entroformer-serial"])
def exported(request, tmp_path_factory):
    codec_id = request.param
    folder = tmp_path_factory.mktemp(codec_id)
    torch.manual_seed(0)
    write_official_checkpoint(registry.build(codec_id), folder / "official.pth")
    run("licrt.export.cli", codec_id, "--checkpoint", "official.pth", "--shape", "256x256", "--out", "bundle",
        cwd=folder)
    return codec_id, folder


@torch.no_grad()
def official_estimate_bits(model, x: torch.Tensor, monkeypatch) -> tuple[float, torch.Tensor]:
    """The official test(): likelihood bits of round(y) and round(z), and its reconstruction."""
    monkeypatch.setattr(torch_op, "eager_topk_attention", official_attention)
    y = model.analysis(x)
    y_hat, z_hat = quantize(y), quantize(model.hyper_analysis(y))
    hyper = model.cit_hd(z_hat)
    scales, means = model.parameters_from(hyper, model.cit_ar(y_hat))
    z_bits = float(-torch.log2(model.prob.likelihood(z_hat)).sum())
    return official_y_bits(y_hat, means, scales) + z_bits, model.synthesis(y_hat)


def test_official_checkpoint_round_trip(exported, monkeypatch):
    codec_id, folder = exported
    run("licrt.runtime.cli", "compress", DATA / "parrots_256x256.png", "parrots.lic", "--bundle", "bundle", cwd=folder)
    run("licrt.runtime.cli", "decompress", "parrots.lic", "parrots.png", "--bundle", "bundle", cwd=folder)
    decoded = np.asarray(Image.open(folder / "parrots.png"))

    model = load_model(folder / "official.pth", codec_id).eval()
    image = load_image("parrots_256x256.png")
    x = torch.from_numpy(image.transpose(2, 0, 1)[None] / np.float32(255)).float()
    bits, reconstruction = official_estimate_bits(model, x, monkeypatch)
    expected = np.rint(np.clip(reconstruction[0].numpy().transpose(1, 2, 0), 0, 1) * 255)
    assert np.abs(decoded.astype(int) - expected.astype(int)).max() <= 1

    data = (folder / "parrots.lic").read_bytes()
    coded = len(data) - Container.from_bytes(data).framing
    assert abs(coded - bits / 8) <= 0.03 * bits / 8, (coded, bits / 8)


def test_odd_sizes_code_only_the_image_and_match_the_reference(exported):
    """A 96x64 image in the 256x256 bucket: only the latents of its pixels are coded (a raster pass runs at
    those positions only), the file repeats byte for byte and decodes as the PyTorch reference codes it."""
    codec_id, folder = exported
    for name in ("house.lic", "again.lic"):
        run("licrt.runtime.cli", "compress", DATA / "house_96x64.png", name, "--bundle", "bundle", cwd=folder)
    assert (folder / "house.lic").read_bytes() == (folder / "again.lic").read_bytes()
    run("licrt.runtime.cli", "decompress", "house.lic", "house.png", "--bundle", "bundle", cwd=folder)
    decoded = np.asarray(Image.open(folder / "house.png"))
    assert decoded.shape == (64, 96, 3)

    model = load_model(folder / "official.pth", codec_id).eval()
    reference, expected = reference_coding(model, load_image("house_96x64.png"), (256, 256))
    assert np.abs(decoded.astype(int) - expected.astype(int)).max() <= 1
    data = (folder / "house.lic").read_bytes()
    estimate = sum(reference.bits) / 8
    assert abs(len(data) - Container.from_bytes(data).framing - estimate) <= 0.03 * estimate + 8


def test_an_image_larger_than_the_bucket_repeats_byte_for_byte_and_comes_back_at_its_size(exported):
    """300x300 in 256x256 buckets: 2x2 windows of the whole image (parallel), 2x2 tiles (serial: a raster pass
    runs on one graph's held inputs)."""
    codec_id, folder = exported
    image = np.pad(load_image("parrots_256x256.png"), ((0, 44), (0, 44), (0, 0)), mode="reflect")
    Image.fromarray(image).save(folder / "large.png")
    for name in ("large.lic", "large-again.lic"):
        run("licrt.runtime.cli", "compress", "large.png", name, "--bundle", "bundle", cwd=folder)
    data = (folder / "large.lic").read_bytes()
    assert data == (folder / "large-again.lic").read_bytes()
    header = Container.from_bytes(data).header
    assert (header.tile_rows, header.tile_cols, header.windowed) == (2, 2, codec_id == "entroformer")
    run("licrt.runtime.cli", "decompress", "large.lic", "large-out.png", "--bundle", "bundle", cwd=folder)
    assert np.asarray(Image.open(folder / "large-out.png")).shape == (300, 300, 3)
