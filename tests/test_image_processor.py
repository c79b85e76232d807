"""SubobjectImageProcessor: pixels for the backbone, label maps and token counts, segmentation cached."""

import numpy as np
import pytest
import torch
from PIL import Image

from subobject_vlm.image_processing_subobject import SubobjectImageProcessor
from subobject_vlm.image_utils import ImageLoadError
from subobject_vlm.segmentation import api


@pytest.fixture
def processor():
    return SubobjectImageProcessor(
        max_tokens=32, size={"height": 64, "width": 64}, label_size={"height": 48, "width": 40}
    )


def test_outputs_pixels_label_maps_and_token_counts(processor, astronaut):
    batch = processor([astronaut, astronaut[:100, :300]], return_tensors="pt")
    assert batch["pixel_values"].shape == (2, 3, 64, 64) and batch["pixel_values"].dtype == torch.float32
    assert batch["label_maps"].shape == (2, 48, 40) and batch["label_maps"].dtype == torch.int64
    for label_map, n in zip(batch["label_maps"], batch["num_tokens"]):
        assert 1 <= n <= 32
        assert torch.bincount(label_map.flatten()).gt(0).sum() == n == label_map.max() + 1
    boxes = batch["boxes"]  # packed (sum n, 4) normalised (cx, cy, w, h)
    assert boxes.shape == (int(batch["num_tokens"].sum()), 4)
    assert boxes.min() >= 0 and boxes.max() <= 1
    ys, xs = torch.nonzero(batch["label_maps"][0] == 0, as_tuple=True)  # region 0 of image 0, by hand
    x0, x1, y0, y1 = xs.min(), xs.max() + 1, ys.min(), ys.max() + 1
    expected = torch.tensor([(x0 + x1) / 2 / 40, (y0 + y1) / 2 / 48, (x1 - x0) / 40, (y1 - y0) / 48])
    assert torch.allclose(boxes[0], expected)


def test_accepts_pil_numpy_torch_paths_and_odd_modes(processor, astronaut, tmp_path):
    path = tmp_path / "a.png"
    Image.fromarray(astronaut).save(path)
    inputs = [
        Image.fromarray(astronaut).convert("P"),
        Image.fromarray(astronaut).convert("CMYK"),
        Image.fromarray(astronaut[..., 0]),
        torch.from_numpy(astronaut).permute(2, 0, 1),
        str(path),
    ]
    assert processor(inputs, return_tensors="pt")["num_tokens"].shape == (5,)


def test_a_batch_array_is_split_into_images(processor, astronaut):
    batch = np.stack([astronaut, astronaut[::-1]])
    assert processor(batch, return_tensors="pt")["label_maps"].shape[0] == 2


def test_each_image_is_segmented_once(processor, astronaut, monkeypatch):
    calls = []
    model = api.load_boundary_model("default")
    original = model.predict
    monkeypatch.setattr(model, "predict", lambda images: calls.append(len(images)) or original(images))
    first = processor([astronaut, astronaut[::2]], return_tensors="pt")
    second = processor([astronaut[::2], astronaut], return_tensors="pt")
    assert calls == [2]
    assert torch.equal(first["label_maps"][0], second["label_maps"][1])
    few = processor([astronaut], max_tokens=8, return_tensors="pt")  # other EPOC settings: same boundary map
    assert calls == [2]
    assert few["num_tokens"].item() <= 8 < first["num_tokens"][0].item()
    processor([astronaut], label_size={"height": 64, "width": 64})  # another label size: a new map
    assert calls == [2, 1]


def test_a_cache_smaller_than_the_batch_still_returns_every_label_map(astronaut):
    processor = SubobjectImageProcessor(cache_size=1, max_tokens=16)
    label_maps = processor.segment([astronaut, astronaut[::2], astronaut[:, ::2]])
    assert [m.shape for m in label_maps] == [(336, 336)] * 3


def test_call_time_settings_override_the_defaults(processor, astronaut):
    assert processor(astronaut, max_tokens=5, return_tensors="pt")["num_tokens"].item() <= 5
    slic = processor(astronaut, boundary_model="slic", max_tokens=7, return_tensors="pt")
    assert slic["num_tokens"].item() == 7


def test_save_and_load_round_trip_keeps_settings_but_not_caches(processor, astronaut, tmp_path):
    processor(astronaut)
    processor.save_pretrained(tmp_path)
    text = (tmp_path / "preprocessor_config.json").read_text()
    assert "_cache" not in text
    loaded = SubobjectImageProcessor.from_pretrained(tmp_path)
    assert (loaded.max_tokens, loaded.label_size, loaded.size["height"]) == (
        32,
        {"height": 48, "width": 40},
        64,
    )
    assert torch.equal(
        loaded(astronaut, return_tensors="pt")["label_maps"],
        processor(astronaut, return_tensors="pt")["label_maps"],
    )


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"max_tokens": 0}, "max_tokens"),
        ({"threshold": 2.0}, "threshold"),
        ({"merge": "biggest"}, "merge"),
        ({"seeds": "grid"}, "seeds"),
        ({"label_size": {"height": 0, "width": 4}}, "label_size"),
    ],
)
def test_invalid_settings_are_rejected(kwargs, message):
    with pytest.raises(ValueError, match=message):
        SubobjectImageProcessor(**kwargs)


def test_minima_seeds_fill_more_of_the_budget_and_survive_a_save(astronaut, tmp_path):
    processor = SubobjectImageProcessor(max_tokens=256, seeds="minima", min_area=20)
    processor.save_pretrained(tmp_path)
    loaded = SubobjectImageProcessor.from_pretrained(tmp_path)
    assert loaded.seeds == "minima" and loaded.min_area == 20
    threshold_only = SubobjectImageProcessor(max_tokens=256, seeds="threshold")(
        astronaut, return_tensors="pt"
    )["num_tokens"]
    assert threshold_only.item() < loaded(astronaut, return_tensors="pt")["num_tokens"].item() <= 256


def test_bad_images_name_their_position(processor, astronaut):
    with pytest.raises(ImageLoadError, match=r"images\[1\]"):
        processor([astronaut, np.zeros((5, 5, 2), np.uint8)])


def test_auto_image_processor_loads_a_saved_processor_after_import(processor, tmp_path, astronaut):
    from transformers import AutoImageProcessor

    import subobject_vlm  # noqa: F401  (registers the Auto classes)

    processor.save_pretrained(tmp_path)
    loaded = AutoImageProcessor.from_pretrained(tmp_path)
    assert type(loaded) is SubobjectImageProcessor and loaded.max_tokens == 32
    assert torch.equal(
        loaded(astronaut, return_tensors="pt")["label_maps"],
        processor(astronaut, return_tensors="pt")["label_maps"],
    )


def test_pixel_values_alone_skip_segmentation(processor, astronaut, monkeypatch):
    model = api.load_boundary_model("default")
    monkeypatch.setattr(model, "predict", lambda images: pytest.fail("must not segment"))
    pixels = processor.pixel_values([astronaut[::3], astronaut])
    assert pixels.shape == (2, 3, 64, 64)
    assert set(processor(astronaut, do_segment=False)) == {"pixel_values"}


def test_returned_label_maps_are_private_copies(astronaut):
    processor = SubobjectImageProcessor(max_tokens=16)
    [first] = processor.segment([astronaut])
    expected = first.copy()
    first[:] = 99  # a caller's edit ...
    [again] = processor.segment([astronaut])
    np.testing.assert_array_equal(again, expected)  # ... never reaches the cache


def test_cache_size_zero_disables_the_cache(astronaut, monkeypatch):
    processor = SubobjectImageProcessor(cache_size=0, max_tokens=16)
    calls = []
    model = api.load_boundary_model("default")
    original = model.predict
    monkeypatch.setattr(model, "predict", lambda images: calls.append(len(images)) or original(images))
    a, b = processor.segment([astronaut]), processor.segment([astronaut])
    assert calls == [1, 1] and np.array_equal(a[0], b[0])
    with pytest.raises(ValueError, match="cache_size"):
        SubobjectImageProcessor(cache_size=-1)


def test_threads_sharing_a_small_cache_get_the_same_label_maps_as_one_thread(astronaut):
    from concurrent.futures import ThreadPoolExecutor

    images = [astronaut[i * 40 : i * 40 + 96, j * 40 : j * 40 + 96] for i in range(3) for j in range(3)]
    expected = SubobjectImageProcessor(boundary_model="slic", max_tokens=12).segment(images)
    shared = SubobjectImageProcessor(cache_size=2, boundary_model="slic", max_tokens=12)
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda k: shared.segment([images[k % 9]])[0], range(36)))
    for k, label_map in enumerate(results):
        np.testing.assert_array_equal(label_map, expected[k % 9])


def test_a_processor_pickles_and_copies_without_its_cache(astronaut):
    import copy
    import pickle

    processor = SubobjectImageProcessor(cache_size=7, max_tokens=16)
    processor.segment([astronaut])
    for clone in (pickle.loads(pickle.dumps(processor)), copy.deepcopy(processor)):  # DataLoader workers
        assert len(clone.segmenter()._label_cache) == 0 and clone.segmenter()._label_cache.size == 7
        assert clone.max_tokens == 16
    assert not any(k.startswith("_") for k in processor.to_dict())


def test_return_tensors_none_gives_one_list_per_key_with_an_entry_per_image(astronaut):
    processor = SubobjectImageProcessor(boundary_model="patch", max_tokens=6)
    batch = processor([astronaut, astronaut[:200]], return_tensors=None)
    assert all(isinstance(value, list) and len(value) == 2 for value in batch.values())
    assert batch["num_tokens"] == [6, 6]
    assert batch["pixel_values"][0].shape == (3, 336, 336) and isinstance(
        batch["pixel_values"][0], np.ndarray
    )
    assert batch["label_maps"][1].shape == (336, 336) and batch["boxes"][1].shape == (6, 4)
    tensors = processor([astronaut, astronaut[:200]], return_tensors="pt")
    np.testing.assert_allclose(np.concatenate(batch["boxes"]), tensors["boxes"].numpy())
