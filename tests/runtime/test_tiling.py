import dataclasses

import numpy as np
import pytest

from licrt.runtime.errors import ImageError
from licrt.runtime.manifest import Padding
from licrt.runtime.tiling import (DEFAULT_SHAPES, WINDOW_MARGIN, _cover, ImageArea, Rect, TileGrid, choose_grid, crop,
                                  choose_regions, extend_edges, image_area, pad)
from licrt.runtime.limits import DEFAULT_MAX_REGION_PIXELS

BUCKETS = ((512, 768), (256, 256), (768, 512))


def test_small_images_take_the_smallest_bucket_that_holds_them():
    assert choose_grid(190, 250, BUCKETS).bucket == 1
    assert choose_grid(300, 700, BUCKETS).bucket == 0
    assert choose_grid(700, 300, BUCKETS).bucket == 2
    grid = choose_grid(512, 768, BUCKETS)
    assert (grid.bucket, grid.rows, grid.cols) == (0, 1, 1)


def covered(grid):
    """How often each pixel of the image lies in a tile."""
    count = np.zeros((grid.height, grid.width), int)
    for tile in grid.tiles():
        count[tile.rows, tile.cols] += 1
    return count


def test_large_images_are_tiled_with_the_least_padding():
    grid = choose_grid(1000, 1536, BUCKETS)
    assert (grid.row_heights, grid.col_widths, grid.buckets) == ((512, 512), (768, 768), (0, 0, 0, 0))
    assert np.all(covered(grid) == 1)


@pytest.mark.parametrize("seed", range(3))
def test_grids_of_the_default_shapes_pad_little(seed):
    rng = np.random.default_rng(seed)
    for height, width in rng.integers(256, 5000, (40, 2)):
        grid = choose_grid(int(height), int(width), DEFAULT_SHAPES)
        assert np.all(covered(grid) == 1)
        assert all(DEFAULT_SHAPES[tile.bucket] == tile.shape for tile in grid.tiles())
        # less than a stride (64) per side, or a little more where that saves many tiles
        assert grid.coded_pixels < 1.12 * (height + 63) * (width + 63), (height, width)


def test_a_photo_slightly_larger_than_a_bucket_takes_tiles_that_fit():
    grid = choose_grid(520, 776, DEFAULT_SHAPES)
    assert grid.coded_pixels <= 576 * 832
    assert choose_grid(512, 768, DEFAULT_SHAPES).row_heights == (512,)  # Kodak stays one tile
    assert choose_grid(2160, 3840, DEFAULT_SHAPES).rows == 2  # 4K: four 1088x1920 tiles, 0.8 % padding


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


@pytest.mark.parametrize("padding, expected_rows, expected_cols", [
    (Padding("replicate", "top-left"), [0, 1], [0, 1, 2]),
    (Padding("replicate", "center"), [1, 2], [0, 1, 2, 3]),
])
def test_latents_wholly_in_the_padding_are_not_coded(padding, expected_rows, expected_cols):
    area = image_area(20, 40, (64, 64), padding)  # 16-pixel latent blocks: 4x4 latents
    mask = area.latent_mask(4, 4)
    assert np.flatnonzero(mask.any(axis=1)).tolist() == expected_rows
    assert np.flatnonzero(mask.any(axis=0)).tolist() == expected_cols
    assert mask.sum() == len(expected_rows) * len(expected_cols)
    assert ImageArea(0, 0, 64, 64, (64, 64)).latent_mask(1, 1).all()


def test_synthesis_sees_the_nearest_coded_latent_where_none_was_coded():
    coded = image_area(20, 40, (64, 64), Padding("replicate", "center")).latent_mask(4, 4)  # rows 1-2, cols 0-3
    y_hat = np.arange(2 * 16, dtype=np.float32).reshape(1, 2, 4, 4) * coded
    extended = extend_edges(y_hat, coded)
    assert np.array_equal(extended[..., 1:3, :], y_hat[..., 1:3, :])
    assert np.array_equal(extended[..., 0, :], y_hat[..., 1, :])
    assert np.array_equal(extended[..., 3, :], y_hat[..., 2, :])
    assert extend_edges(y_hat, np.ones((4, 4), bool)) is y_hat


def test_no_grid_has_a_tile_beyond_the_image():
    assert _cover(300, 448, 256) is None  # 448 already covers 300: a 256 row after it would hold nothing
    assert _cover(500, 448, 256) == (448, 256) and _cover(200, 448, 256) == (256,)
    grid = choose_grid(300, 300, ((448, 448), (448, 256), (256, 448), (256, 256)))
    assert all(tile.rows.stop > tile.rows.start and tile.cols.stop > tile.cols.start for tile in grid.tiles())


def kept(grid):
    """How often each canvas pixel lies in a window's kept part, and the narrowest margin any window has."""
    count, margin = np.zeros(grid.canvas, int), grid.canvas[0]
    for window in grid.windows():
        (top, bottom), (left, right) = window.keep_rows, window.keep_cols
        count[top:bottom, left:right] += 1
        assert window.top <= top < bottom <= window.top + window.shape[0]
        assert window.left <= left < right <= window.left + window.shape[1]
        inner = [top - window.top if top else None, window.top + window.shape[0] - bottom if bottom < grid.canvas[0]
                 else None, left - window.left if left else None,
                 window.left + window.shape[1] - right if right < grid.canvas[1] else None]
        margin = min([margin, *(m for m in inner if m is not None)])
    return count, margin


@pytest.mark.parametrize("seed", range(2))
def test_windows_keep_every_canvas_pixel_once_away_from_their_edges(seed):
    rng = np.random.default_rng(seed)
    for height, width in rng.integers(100, 4000, (30, 2)):
        grid = choose_grid(int(height), int(width), DEFAULT_SHAPES, 2 * WINDOW_MARGIN)
        count, margin = kept(grid)
        assert np.all(count == 1)
        assert grid.canvas[0] >= height and grid.canvas[1] >= width
        assert margin >= WINDOW_MARGIN or grid.rows * grid.cols == 1
        windows = list(grid.windows())
        assert all(DEFAULT_SHAPES[w.bucket] == w.shape and w.top % 64 == 0 and w.left % 64 == 0 for w in windows)
        # kept parts meet between whole ŷ latents (16 pixels); a ẑ latent (64) the border cuts goes to the later
        assert all(edge % 16 == 0 for w in windows for edge in (*w.keep_rows, *w.keep_cols))


def test_windows_overlap_and_one_window_is_the_tile():
    grid = choose_grid(520, 776, DEFAULT_SHAPES, 2 * WINDOW_MARGIN)
    assert grid.windowed and grid.canvas == (576, 832) and (grid.rows, grid.cols) == (2, 2)
    assert choose_grid(512, 768, DEFAULT_SHAPES, 2 * WINDOW_MARGIN).canvas == (512, 768)  # Kodak: one window
    assert _cover(500, 448, 256, 64) == (448, 256) and _cover(400, 448, 256, 64) is None


@pytest.mark.parametrize("seed", range(2))
def test_regions_are_blocks_of_windows_that_share_the_canvas_out(seed):
    rng = np.random.default_rng(seed)
    for height, width in rng.integers(100, 12000, (20, 2)):
        grid = in_regions(int(height), int(width))
        regions = grid.regions()
        count = np.zeros(grid.canvas, np.int8)
        for row in regions:
            assert len({(region.rect.top, region.rect.bottom) for region in row}) == 1  # rows of regions
            for region in row:
                count[region.rect.top : region.rect.bottom, region.rect.left : region.rect.right] += 1
                assert all(region.rect.top <= w.keep_rows[0] and w.keep_rows[1] <= region.rect.bottom
                           and region.rect.left <= w.keep_cols[0] and w.keep_cols[1] <= region.rect.right
                           for w in region.windows)
                # the windows are shared out evenly, not their pixels: a region may cover a little more
                assert np.prod(region.rect.shape) <= 1.25 * DEFAULT_MAX_REGION_PIXELS
        assert np.all(count == 1)
        assert sum(len(region.windows) for row in regions for region in row) == grid.rows * grid.cols
        assert grid.region_pixels <= DEFAULT_MAX_REGION_PIXELS
        assert (len(regions), len(regions[0])) == grid.region_grid
        assert (grid.region_grid == (1, 1)) == (np.prod(grid.canvas) <= DEFAULT_MAX_REGION_PIXELS)


def in_regions(height: int, width: int) -> TileGrid:
    grid = choose_grid(height, width, DEFAULT_SHAPES, 2 * WINDOW_MARGIN)
    return dataclasses.replace(grid, region_grid=choose_regions(grid, DEFAULT_MAX_REGION_PIXELS))


def test_photos_up_to_16_megapixels_are_one_region():
    grid = in_regions(3000, 4000)  # a 12 MP photo
    assert grid.region_grid == (1, 1) and grid.regions()[0][0].rect == Rect(0, 0, *grid.canvas)
    # 48 MP in four regions, 8K in three side by side: the shortest borders within the limit
    assert in_regions(6000, 8000).region_grid == (2, 2)
    assert in_regions(4320, 7680).region_grid == (1, 3)
