"""Baseline tokenizers: exact token counts, label maps like EPOC's."""

import numpy as np
import pytest

from subobject_vlm.segmentation import BASELINES, patch_grid, run_baseline, segment


@pytest.fixture(scope="module")
def small_photo(astronaut):
    return astronaut[::4, ::4].copy()  # (128, 128, 3)


@pytest.mark.parametrize("name", BASELINES)
@pytest.mark.parametrize("num_tokens", [1, 7, 64])
def test_baselines_give_exactly_the_requested_number_of_area_ordered_regions(small_photo, name, num_tokens):
    label_map = run_baseline(name, small_photo, num_tokens)
    areas = np.bincount(label_map.ravel())
    assert label_map.shape == small_photo.shape[:2] and label_map.dtype == np.int32
    assert len(areas) == num_tokens and (areas > 0).all() and (np.diff(areas) <= 0).all()


@pytest.mark.parametrize("name", BASELINES)
def test_tiny_images_get_at_most_one_token_per_pixel(name):
    image = np.random.default_rng(0).integers(0, 255, (2, 3, 3), np.uint8)
    assert run_baseline(name, image, 64).max() + 1 == 6


@pytest.mark.parametrize("shape, n", [((10, 7), 13), ((1, 10000), 64), ((300, 2), 17)])
def test_patch_grid_tiles_any_shape_with_near_square_cells(shape, n):
    label_map = patch_grid(*shape, n)
    assert label_map.max() + 1 == n and label_map.shape == shape


def test_segment_dispatches_baselines_and_rejects_exact_counts_for_boundary_models(small_photo):
    assert segment(small_photo, "slic", num_tokens=9).max() + 1 == 9
    with pytest.raises(ValueError, match="num_tokens"):
        segment(small_photo, "default", num_tokens=9)


def test_unknown_baseline_and_bad_counts_are_rejected(small_photo):
    with pytest.raises(ValueError, match="unknown baseline"):
        run_baseline("quickshift", small_photo, 8)
    with pytest.raises(ValueError, match="max_tokens"):
        run_baseline("patch", small_photo, 0)
