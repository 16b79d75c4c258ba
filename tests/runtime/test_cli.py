"""The licrt command as a user runs it: one error line, status 1, no partial output."""

import os
import subprocess
import sys

import pytest

from tests.helpers import DATA

# Importing torch is made impossible: the runtime must not need it.
NO_TORCH = "import sys; sys.modules['torch'] = None; from licrt.runtime.cli import main; sys.exit(main())"


def licrt(*args, cwd):
    result = subprocess.run([sys.executable, "-c", NO_TORCH, *map(str, args)], cwd=cwd,
                            capture_output=True, text=True)
    return result.returncode, result.stdout, result.stderr


@pytest.fixture(scope="module")
def compressed(tiny_bundle, tmp_path_factory):
    folder = tmp_path_factory.mktemp("cli")
    code, out, err = licrt("compress", DATA / "lighthouse_250x190.png", "a.lic", "--bundle", tiny_bundle.root,
                           cwd=folder)
    assert code == 0, err
    return folder / "a.lic"


def test_compress_decompress_and_info_without_torch(compressed, tiny_bundle, tmp_path):
    code, out, err = licrt("decompress", compressed, "a.png", "--bundle", tiny_bundle.root, cwd=tmp_path)
    assert code == 0, err
    from PIL import Image

    assert Image.open(tmp_path / "a.png").size == (250, 190)
    code, out, err = licrt("info", compressed, "--bundle", tiny_bundle.root, cwd=tmp_path)
    assert code == 0, err
    assert "250x190" in out and "model estimate" in out
    # 128² windows overlapping by twice the margin: 128 + 128 − 64 ≥ 190 rows, 3 × 128 − 2 × 64 ≥ 250 columns
    assert "2x3 windows, rows 128+128 by columns 128+128+128 pixels overlapping by 64 (2.07× the image's pixels " \
        "processed)" in out
    assert "ε = 1e-05 × margin 3: side streams" in out and "without the guard" not in out


def test_quality_is_chosen_at_compress_and_read_from_the_file(levels_bundle, tmp_path):
    code, out, err = licrt("compress", DATA / "house_96x64.png", "a.lic", "--bundle", levels_bundle.root,
                           "--quality", "2", cwd=tmp_path)
    assert code == 0 and "quality 2 of 2: high" in out, err
    code, out, err = licrt("info", "a.lic", "--bundle", levels_bundle.root, cwd=tmp_path)
    assert code == 0 and "quality level    2 of 2: high" in out, out
    code, out, err = licrt("decompress", "a.lic", "a.png", "--bundle", levels_bundle.root, cwd=tmp_path)
    assert code == 0, err
    code, out, err = licrt("compress", DATA / "house_96x64.png", "b.lic", "--bundle", levels_bundle.root,
                           "--quality", "3", cwd=tmp_path)
    assert code == 1 and err == "licrt: error: quality 3 is not one of this bundle's levels: 1 (low), 2 (high)\n"


def test_gray_png_with_icc_profile_comes_back_gray_with_it(tiny_bundle, tmp_path):
    from PIL import Image, ImageCms

    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    Image.open(DATA / "house_96x64.png").convert("L").save(tmp_path / "gray.png", icc_profile=icc)
    for args in (("compress", "gray.png", "a.lic"), ("decompress", "a.lic", "back.png")):
        code, out, err = licrt(*args, "--bundle", tiny_bundle.root, cwd=tmp_path)
        assert code == 0, err
    back = Image.open(tmp_path / "back.png")
    assert back.mode == "L" and back.size == (96, 64) and back.info["icc_profile"] == icc
    code, out, err = licrt("info", "a.lic", "--bundle", tiny_bundle.root, cwd=tmp_path)
    assert f"96x64 gray, ICC profile {len(icc):,} bytes" in out


def test_no_guard_is_recorded_and_shown(tiny_bundle, tmp_path):
    code, out, err = licrt("compress", DATA / "house_96x64.png", "a.lic", "--bundle", tiny_bundle.root, "--no-guard",
                           cwd=tmp_path)
    assert code == 0, err
    code, out, err = licrt("info", "a.lic", "--bundle", tiny_bundle.root, cwd=tmp_path)
    assert code == 0 and "guard=off" in out and "(encoded without the guard)" in out


@pytest.mark.parametrize("backend, message", [
    ("torch", "backend 'torch' is not usable here"),  # torch cannot be imported in these runs
    ("perturbed:x", "expected perturbed:EPSILON"),
    ("tensorflow", "unknown backend 'tensorflow'; choose one of auto, onnxruntime, onnxruntime-noopt"),
])
def test_backends_that_cannot_run_fail_cleanly(compressed, tiny_bundle, tmp_path, backend, message):
    code, out, err = licrt("decompress", compressed, "a.png", "--bundle", tiny_bundle.root, "--backend", backend,
                           cwd=tmp_path)
    assert code == 1 and message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "a.png").exists()


def corrupt_variants(data: bytes, other_bundle_file: bytes) -> dict[str, bytes]:
    flipped = bytearray(data)
    flipped[len(data) // 2] ^= 0x10
    return {
        "truncated": data[: len(data) - 7],
        "bit-flipped": bytes(flipped),
        "empty": b"",
        "random": os.urandom(len(data)),
        "foreign": (DATA / "house_96x64.png").read_bytes(),
        "wrong-bundle": other_bundle_file,
    }


def test_bad_bitstreams_fail_cleanly(compressed, tiny_bundle, tmp_path):
    code, _, err = licrt("compress", DATA / "house_96x64.png", "other.lic", cwd=tmp_path)  # default bundle
    assert code == 0, err
    variants = corrupt_variants(compressed.read_bytes(), (tmp_path / "other.lic").read_bytes())
    for name, data in variants.items():
        (tmp_path / f"{name}.lic").write_bytes(data)
        code, out, err = licrt("decompress", f"{name}.lic", f"{name}.png", "--bundle", tiny_bundle.root,
                               cwd=tmp_path)
        assert code == 1, name
        assert err.startswith("licrt: error: ") and err.count("\n") == 1, (name, err)
        assert "Traceback" not in err
        assert not (tmp_path / f"{name}.png").exists(), name
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")], "temporary files left behind"


@pytest.mark.parametrize("args, message", [
    (("compress", "missing.png", "x.lic"), "missing.png: no such file"),
    (("compress", DATA / "README.md", "x.lic"), "not an image file"),
    (("compress", DATA, "x.lic"), "is a directory"),
    (("decompress", "missing.lic", "x.png"), "missing.lic: no such file"),
    (("decompress", DATA / "house_96x64.png", "x.unknown"), "unknown image extension"),
])
def test_bad_inputs_fail_cleanly(tiny_bundle, tmp_path, args, message):
    code, out, err = licrt(*args, "--bundle", tiny_bundle.root, cwd=tmp_path)
    assert code == 1 and message in err and err.count("\n") == 1, err
    assert not (tmp_path / "x.lic").exists() and not (tmp_path / "x.png").exists()


def test_transparent_images_are_refused(tiny_bundle, tmp_path):
    from PIL import Image

    Image.new("RGBA", (20, 20)).save(tmp_path / "alpha.png")
    code, _, err = licrt("compress", "alpha.png", "x.lic", "--bundle", tiny_bundle.root, cwd=tmp_path)
    assert code == 1 and "transparent pixels" in err and err.count("\n") == 1


def test_missing_bundle(tmp_path):
    code, _, err = licrt("compress", DATA / "house_96x64.png", "x.lic", "--bundle", tmp_path / "nope", cwd=tmp_path)
    assert code == 1 and "does not exist" in err


def test_unwritable_output_leaves_nothing(tiny_bundle, tmp_path):
    code, _, err = licrt("compress", DATA / "house_96x64.png", tmp_path / "no" / "dir" / "x.lic",
                         "--bundle", tiny_bundle.root, cwd=tmp_path)
    assert code == 1 and "cannot write" in err


def test_default_bundle_needs_no_option(tmp_path):
    code, out, err = licrt("compress", DATA / "lighthouse_250x190.png", "a.lic", cwd=tmp_path)
    assert code == 0, err
    code, out, err = licrt("decompress", "a.lic", "a.png", cwd=tmp_path)
    assert code == 0, err
    from PIL import Image

    assert Image.open(tmp_path / "a.png").size == (250, 190)
    code, out, err = licrt("info", "a.lic", cwd=tmp_path)
    assert code == 0 and "s2c-hybrid-xs" in out, err


def test_limits_are_checked_before_the_work(compressed, tiny_bundle, tmp_path):
    code, _, err = licrt("decompress", compressed, "a.png", "--bundle", tiny_bundle.root, "--max-pixels", "1000",
                         cwd=tmp_path)
    assert code == 1 and "is 250x190 (47,500 pixels), more than the limit of 1,000 pixels" in err, err
    code, _, err = licrt("compress", DATA / "lighthouse_250x190.png", "b.lic", "--bundle", tiny_bundle.root,
                         "--max-tiles", "2**1", cwd=tmp_path)
    assert code == 1 and "coded in 6 windows, more than the limit of 2" in err, err
    code, _, err = licrt("decompress", compressed, "a.png", "--bundle", tiny_bundle.root, "--max-region-pixels",
                         "2**10", cwd=tmp_path)
    assert code == 1 and "coded in regions of 49,152 pixels, more than the limit of 1,024" in err, err
    assert not list(tmp_path.iterdir())


def test_an_encoder_codes_regions_as_small_as_asked_and_a_decoder_follows(tiny_bundle, tmp_path):
    code, _, err = licrt("compress", DATA / "lighthouse_250x190.png", "a.lic", "--bundle", tiny_bundle.root,
                         "--max-region-pixels", "2**14", cwd=tmp_path)
    assert code == 0, err
    code, out, err = licrt("info", "a.lic", "--bundle", tiny_bundle.root, cwd=tmp_path)
    assert code == 0 and "; entropy path in 1x3 regions" in out, err
    code, _, err = licrt("decompress", "a.lic", "a.png", "--bundle", tiny_bundle.root, cwd=tmp_path)
    assert code == 0, err


def test_outputs_never_overwrite_the_input_nor_silently_an_existing_file(compressed, tiny_bundle, tmp_path):
    image = tmp_path / "photo.png"
    image.write_bytes((DATA / "house_96x64.png").read_bytes())
    original = image.read_bytes()
    for extra in ([], ["--force"]):
        code, out, err = licrt("compress", image, image, "--bundle", tiny_bundle.root, *extra, cwd=tmp_path)
        assert code == 1 and "is the input file" in err and err.count("\n") == 1
        assert image.read_bytes() == original
    existing = tmp_path / "kept.lic"
    existing.write_bytes(b"mine")
    code, out, err = licrt("compress", image, existing, "--bundle", tiny_bundle.root, cwd=tmp_path)
    assert code == 1 and "exists; add --force" in err and existing.read_bytes() == b"mine"
    code, out, err = licrt("compress", image, existing, "--bundle", tiny_bundle.root, "--force", cwd=tmp_path)
    assert code == 0, err
    assert existing.read_bytes()[:4] != b"mine"
    code, out, err = licrt("decompress", compressed, tmp_path / "photo.png", "--bundle", tiny_bundle.root,
                           cwd=tmp_path)
    assert code == 1 and "exists; add --force" in err and image.read_bytes() == original


@pytest.mark.parametrize("command", ["compress", "decompress"])
def test_a_missing_output_folder_is_reported_before_any_work(command, compressed, tiny_bundle, tmp_path):
    source = DATA / "house_96x64.png" if command == "compress" else compressed
    output = tmp_path / "missing" / ("out.lic" if command == "compress" else "out.png")
    code, out, err = licrt(command, source, output, "--bundle", tiny_bundle.root, "--backend", "no-such-backend",
                           cwd=tmp_path)
    # the folder is checked before the backend is even opened
    assert code == 1 and f"folder {output.parent} does not exist" in err and err.count("\n") == 1


def test_usage_errors_and_version_in_one_line(tmp_path):
    code, out, err = licrt("compress", cwd=tmp_path)
    assert code == 2 and out == "" and err.count("\n") == 1
    assert err.startswith("licrt compress: error: the following arguments are required") and "--help" in err
    code, out, err = licrt("--version", cwd=tmp_path)
    assert code == 0 and out.startswith("licrt ") and out.count("\n") == 1


def test_a_reader_that_stops_early_gets_no_traceback(compressed, tiny_bundle, tmp_path):
    reader = subprocess.Popen([sys.executable, "-c", NO_TORCH, "info", compressed, "--bundle", tiny_bundle.root],
                              cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    reader.stdout.close()  # as `| head -0` would
    _, err = reader.communicate()
    assert b"Traceback" not in err and reader.returncode in (0, 1)
