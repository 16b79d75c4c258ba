"""Photos as they come: EXIF orientation, opaque alpha, 16-bit samples, gray, ICC profiles; what is refused."""

import numpy as np
import pytest
from PIL import Image

from licrt.runtime.errors import ImageError
from PIL import ImageCms

from licrt.runtime.images import ORIENTATION, Photo, encode_image, read_image, read_photo

from ..helpers import load_image

PHOTO = load_image("house_96x64.png")  # 64 rows, 96 columns: a quarter turn shows


def saved(tmp_path, array, mode=None, name="image.png", **params):
    path = tmp_path / name
    Image.fromarray(array, mode).save(path, **params)
    return path


@pytest.mark.parametrize("orientation, upright", [
    (1, lambda a: a), (3, lambda a: a[::-1, ::-1]), (6, lambda a: np.rot90(a, -1)), (8, lambda a: np.rot90(a, 1)),
    (2, lambda a: a[:, ::-1]), (4, lambda a: a[::-1]),
])
def test_exif_orientation_is_applied(tmp_path, orientation, upright):
    exif = Image.Exif()
    exif[ORIENTATION] = orientation
    path = saved(tmp_path, PHOTO, exif=exif.tobytes())
    assert np.array_equal(read_image(path), upright(PHOTO))


def test_size_limits_see_the_oriented_image(tmp_path):
    exif = Image.Exif()
    exif[ORIENTATION] = 6
    seen = []
    read_image(saved(tmp_path, PHOTO, exif=exif.tobytes()), check_size=lambda h, w: seen.append((h, w)))
    assert seen == [(96, 64)]


def test_opaque_alpha_is_dropped_and_transparency_refused(tmp_path):
    opaque = np.dstack([PHOTO, np.full(PHOTO.shape[:2], 255, np.uint8)])
    assert np.array_equal(read_image(saved(tmp_path, opaque, "RGBA")), PHOTO)
    gray = PHOTO[..., 1]
    gray_alpha = np.dstack([gray, np.full(gray.shape, 255, np.uint8)])
    assert np.array_equal(read_image(saved(tmp_path, gray_alpha, "LA", "la.png")), np.dstack([gray] * 3))
    opaque[5, 7, 3] = 254
    with pytest.raises(ImageError, match="transparent pixels"):
        read_image(saved(tmp_path, opaque, "RGBA"))


def test_sixteen_bit_keeps_each_sample_s_high_byte(tmp_path):
    deep = (PHOTO[..., 0].astype(np.uint16) << 8) | 0xFF  # the low byte must not round the value up
    assert np.array_equal(read_image(saved(tmp_path, deep)), np.dstack([PHOTO[..., 0]] * 3))


def test_32_bit_integer_samples_are_refused(tmp_path):
    path = tmp_path / "wide.tif"
    Image.fromarray(np.full((8, 8), 1 << 20, np.int32), "I").save(path)
    with pytest.raises(ImageError, match="outside 0..65535"):
        read_image(path)


def test_gray_stays_gray_in_every_depth(tmp_path):
    gray = PHOTO[..., 1]
    for name, array, mode in (("l.png", gray, "L"), ("la.png", np.dstack([gray, np.full(gray.shape, 255, np.uint8)]),
                                                     "LA"), ("i16.png", gray.astype(np.uint16) << 8, None)):
        photo = read_photo(saved(tmp_path, array, mode, name))
        assert photo.gray and np.array_equal(photo.pixels, gray), name
        assert np.array_equal(photo.rgb, np.dstack([gray] * 3))
    assert not read_photo(saved(tmp_path, PHOTO)).gray


def test_icc_profile_is_read_and_written(tmp_path):
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    photo = read_photo(saved(tmp_path, PHOTO, icc_profile=icc))
    assert photo.icc_profile == icc
    assert read_photo(saved(tmp_path, PHOTO, name="plain.png")).icc_profile == b""
    for name in ("out.png", "out.jpg", "out.webp", "out.tif"):
        written = tmp_path / name
        written.write_bytes(encode_image(photo, written))
        assert Image.open(written).info.get("icc_profile") == icc, name
    gray = tmp_path / "gray.png"
    gray.write_bytes(encode_image(Photo(PHOTO[..., 0]), gray))
    assert Image.open(gray).mode == "L"


@pytest.mark.parametrize("array", [np.zeros((4, 4, 4), np.uint8), np.zeros((4, 4), np.uint16),
                                   np.zeros((0, 4), np.uint8)])
def test_photos_hold_8_bit_rgb_or_gray(array):
    with pytest.raises(ImageError):
        Photo(array)
