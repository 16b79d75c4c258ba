"""Photos as they come: EXIF orientation, opaque alpha, 16-bit samples, gray; what is refused."""

import numpy as np
import pytest
from PIL import Image

from licrt.runtime.errors import ImageError
from licrt.runtime.images import ORIENTATION, read_image

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
