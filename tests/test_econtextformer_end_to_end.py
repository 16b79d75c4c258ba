"""eContextformer through export-onnx and licrt, as a user runs them: a small random model (the CLI's --set)."""

import json
from importlib.util import find_spec

import numpy as np
import pytest
from licrt.export.checkpoint import model_from_bundle
from licrt.runtime.bundle import Bundle
from licrt.runtime.codec import Codec
from licrt.runtime.container import Container, TileSection
from licrt.runtime.errors import BitstreamError, BundleError
from licrt.runtime.manifest import Manifest
from PIL import Image

from tests.helpers import DATA, load_image, reference_coding, run

SMALL = ["--set", "channels=16", "--set", "latent_channels=16", "--set", "dim=24", "--set", "depth=2",
         "--set", "heads=2", "--set", "window=2"]


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("econtextformer")
    run("licrt.export.cli", "econtextformer", "--random-init", "--seed", "0", *SMALL, "--shape", "128x128",
        "--out", "bundle", cwd=folder)
    return folder


def test_an_odd_size_repeats_byte_for_byte_and_decodes_as_the_reference_codes_it(folder):
    for name in ("house.lic", "again.lic"):
        run("licrt.runtime.cli", "compress", DATA / "house_96x64.png", name, "--bundle", "bundle", cwd=folder)
    data = (folder / "house.lic").read_bytes()
    assert data == (folder / "again.lic").read_bytes()
    run("licrt.runtime.cli", "decompress", "house.lic", "house.png", "--bundle", "bundle", cwd=folder)
    decoded = np.asarray(Image.open(folder / "house.png"))
    assert decoded.shape == (64, 96, 3)
    model = model_from_bundle(Bundle.open(folder / "bundle")).eval()
    result, expected = reference_coding(model, load_image("house_96x64.png"), (128, 128))
    bits = sum(result.bits)
    assert np.abs(decoded.astype(int) - expected.astype(int)).max() <= 1
    # The mixtures as the runtime codes them (weights on a grid, table scales) cost what the model predicts,
    # and the file what they cost, with the guard's side streams and the coder's last words.
    report = Codec.open(folder / "bundle").inspect(data)
    information = sum(report.bits_per_pass.values())
    assert information == pytest.approx(bits, rel=0.01)
    coded = len(data) - Container.from_bytes(data).framing
    assert 0 <= 8 * coded - information - report.side_bits <= 64


def test_images_of_several_tiles_come_back_at_their_size(folder):
    run("licrt.runtime.cli", "compress", DATA / "lighthouse_250x190.png", "lighthouse.lic", "--bundle", "bundle",
        cwd=folder)
    run("licrt.runtime.cli", "decompress", "lighthouse.lic", "lighthouse.png", "--bundle", "bundle", cwd=folder)
    assert np.asarray(Image.open(folder / "lighthouse.png")).shape == (190, 250, 3)


@pytest.mark.parametrize("backend", ["torch", pytest.param("openvino", marks=pytest.mark.skipif(
    find_spec("openvino") is None, reason="needs OpenVINO (licrt[openvino])"))])
def test_a_file_decodes_on_another_backend(folder, backend):
    """The mixtures' decisions are the guard's: other floats decode the encoder's symbols."""
    run("licrt.runtime.cli", "compress", DATA / "parrots_256x256.png", "parrots.lic", "--bundle", "bundle",
        "--force", cwd=folder)
    for name, options in (("same.png", []), ("other.png", ["--backend", backend])):
        run("licrt.runtime.cli", "decompress", "parrots.lic", name, "--bundle", "bundle", "--force", *options,
            cwd=folder)
    same, other = (np.asarray(Image.open(folder / name)).astype(int) for name in ("same.png", "other.png"))
    assert np.abs(same - other).max() <= 1


def test_the_weight_grid_is_part_of_the_bundles_coding_contract(folder):
    """A mixture's weight grid decides its tables: it is in the manifest and its contract, and a mixture bundle
    without one (as licrt 0.7 wrote them) is refused with a line that says what to do."""
    manifest = json.loads((folder / "bundle" / "manifest.json").read_text())
    assert manifest["entropy"]["y"]["weight_grid"] == 31
    other = json.loads(json.dumps(manifest))
    other["entropy"]["y"]["weight_grid"] = 61
    assert Manifest.loads(json.dumps(other)).coding_contract() != Manifest.loads(json.dumps(manifest)).coding_contract()
    del other["entropy"]["y"]["weight_grid"]
    with pytest.raises(BundleError, match="weight_grid .* export them again"):
        Manifest.loads(json.dumps(other))


def test_a_mixture_payload_not_exactly_what_the_coder_wrote_is_refused(folder):
    """The decoder writes what the encoder writes for what it decodes, from the tables it decodes with, and
    compares: a word more, or an altered last word (the coder's flush), is refused with valid checks."""
    codec = Codec.open(folder / "bundle")
    container = Container.from_bytes(codec.compress(load_image("house_96x64.png")))
    section = container.sections[0]
    altered = bytearray(section.payload)
    altered[-1] ^= 0x01
    for payload in (section.payload + bytes(4), bytes(altered)):
        forged = Container(container.header, (TileSection(payload, section.digests),))
        with pytest.raises(BitstreamError):
            codec.decompress(forged.to_bytes())
