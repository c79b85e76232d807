"""Segmenter: the engine below the image processor, boundary maps and label maps cached by image and settings."""

from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

import numpy as np
import pytest

from subobject_vlm import SubobjectImageProcessor
from subobject_vlm.segmentation import SegmentationSettings, Segmenter
from subobject_vlm.segmentation.gradient import gradient_boundary_probs
from subobject_vlm.segmentation.registry import register_boundary_model


class CountingGradients:
    """Colour gradients that count the images they are asked for (one entry per ``predict`` call)."""

    name = "test-counting"
    calls: list[int] = []

    def predict(self, images: list[np.ndarray]) -> list[np.ndarray]:
        CountingGradients.calls.append(len(images))
        return [gradient_boundary_probs(image) for image in images]


register_boundary_model("test-counting", lambda **options: CountingGradients())


@pytest.fixture
def calls():
    CountingGradients.calls = []
    return CountingGradients.calls


@pytest.fixture
def images(astronaut):
    return [astronaut[::4, ::4], astronaut[100:260, 50:170]]


def test_label_maps_equal_the_processors_byte_for_byte(images):
    processor = SubobjectImageProcessor(max_tokens=24, min_area=5, label_size={"height": 48, "width": 40})
    settings, label_size = processor.segmentation_settings()
    for ours, theirs in zip(Segmenter(settings, label_size).label_maps(images), processor.segment(images)):
        assert ours.dtype == theirs.dtype and ours.tobytes() == theirs.tobytes()


def test_padded_label_maps_equal_the_processors_byte_for_byte(images):
    processor = SubobjectImageProcessor(boundary_model="slic", max_tokens=9, do_pad=True)
    settings, label_size = processor.segmentation_settings()
    for ours, theirs in zip(Segmenter(settings, label_size).label_maps(images), processor.segment(images)):
        assert ours.tobytes() == theirs.tobytes()


def test_the_boundary_map_is_computed_once_per_image_across_budgets(images, calls):
    segmenter = Segmenter(SegmentationSettings("test-counting", max_tokens=32), label_size=(40, 40))
    many = segmenter.label_maps(images)
    few = segmenter.with_settings(replace(segmenter.settings, max_tokens=4), (40, 40)).label_maps(images)
    segmenter.boundary_maps(images)
    assert calls == [2]
    assert all(f.max() < 4 <= m.max() for f, m in zip(few, many))


def test_the_device_does_not_key_the_boundary_map(images, calls):
    segmenter = Segmenter(SegmentationSettings("test-counting", {"device": "cpu"}))
    segmenter.boundary_maps(images)
    segmenter.with_settings(SegmentationSettings("test-counting", {"batch_size": 3})).boundary_maps(images)
    assert calls == [2]


def test_without_a_label_size_maps_have_each_images_size(images):
    segmenter = Segmenter(SegmentationSettings("test-counting", max_tokens=8))
    assert [m.shape for m in segmenter.label_maps(images)] == [i.shape[:2] for i in images]
    assert [m.shape for m in segmenter.boundary_maps(images)] == [i.shape[:2] for i in images]


def test_cache_size_zero_disables_the_cache(images, calls):
    segmenter = Segmenter(SegmentationSettings("test-counting", max_tokens=8), cache_size=0)
    first, again = segmenter.label_maps(images[:1]), segmenter.label_maps(images[:1])
    assert calls == [1, 1] and np.array_equal(first[0], again[0])
    with pytest.raises(ValueError, match="cache_size"):
        Segmenter(SegmentationSettings(), cache_size=-1)


def test_a_baseline_has_no_boundary_map(images):
    with pytest.raises(ValueError, match="'slic' is a label-map tokenizer: it makes label maps directly"):
        Segmenter(SegmentationSettings("slic")).boundary_maps(images)


def test_threads_sharing_a_small_cache_get_the_same_label_maps_as_one_thread(astronaut):
    images = [astronaut[i * 40 : i * 40 + 96, j * 40 : j * 40 + 96] for i in range(3) for j in range(3)]
    settings = SegmentationSettings("slic", max_tokens=12)
    expected = Segmenter(settings).label_maps(images)
    shared = Segmenter(settings, cache_size=2)
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda k: shared.label_maps([images[k % 9]])[0], range(36)))
    for k, label_map in enumerate(results):
        np.testing.assert_array_equal(label_map, expected[k % 9])


def test_an_image_given_twice_in_one_call_is_predicted_once(images, calls):
    segmenter = Segmenter(SegmentationSettings("test-counting"), label_size=(64, 64), cache_size=0)
    first, again, other = segmenter.boundary_maps([images[0], images[0], images[1]])
    assert calls == [2] and np.array_equal(first, again) and first is not again
    label_maps = segmenter.label_maps([images[1], images[1]])
    assert calls == [2, 1] and np.array_equal(*label_maps)
