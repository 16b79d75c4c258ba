import numpy as np
import pytest

from licrt.runtime.errors import ImageError
from licrt.runtime.manifest import Padding
from licrt.runtime.tiling import choose_grid, crop, pad

BUCKETS = [(512, 768), (256, 256), (768, 512)]


def test_small_images_take_the_smallest_bucket_that_holds_them():
    assert choose_grid(190, 250, BUCKETS).bucket == 1
    assert choose_grid(300, 700, BUCKETS).bucket == 0
    assert choose_grid(700, 300, BUCKETS).bucket == 2
    grid = choose_grid(512, 768, BUCKETS)
    assert (grid.bucket, grid.rows, grid.cols) == (0, 1, 1)


def test_large_images_are_tiled_with_the_least_padding():
    grid = choose_grid(1000, 1536, BUCKETS)
    assert (grid.tile_height, grid.tile_width, grid.rows, grid.cols) == (512, 768, 2, 2)
    regions = list(grid.regions())
    assert len(regions) == 4
    covered = np.zeros((1000, 1536), int)
    for rows, cols in regions:
        covered[rows, cols] += 1
    assert np.all(covered == 1)


def test_empty_image_is_refused():
    with pytest.raises(ImageError):
        choose_grid(0, 10, BUCKETS)


@pytest.mark.parametrize("padding", [Padding("replicate", "top-left"), Padding("constant", "center")])
def test_pad_then_crop_returns_the_image(padding):
    image = np.random.default_rng(0).integers(0, 256, (37, 51, 3), dtype=np.uint8)
    padded = pad(image, 64, 128, padding)
    assert padded.shape == (64, 128, 3)
    assert np.array_equal(crop(padded, 37, 51, padding), image)


def test_replicate_padding_repeats_edges_and_center_anchor_centres():
    image = np.arange(6, dtype=np.uint8).reshape(2, 3, 1)
    padded = pad(image, 4, 5, Padding("replicate", "center"))
    assert padded[:, :, 0].tolist() == [[0, 0, 1, 2, 2], [0, 0, 1, 2, 2], [3, 3, 4, 5, 5], [3, 3, 4, 5, 5]]
