"""VLM training on a precomputed dataset (``data.precomputed``): label maps read, never segmented."""

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from subobject_vlm.data.precompute import (
    check_settings,
    load_precomputed,
    merge_precomputed,
    open_source,
    precompute,
)
from subobject_vlm.image_processing_subobject import SubobjectImageProcessor
from subobject_vlm.processing_subobject_llava import SubobjectLlavaProcessor
from subobject_vlm.segmentation import SegmentationSettings
from subobject_vlm.tiny import tiny_tokenizer
from subobject_vlm.training.train_vlm import train_vlm
from subobject_vlm.training.vlm_config import ConfigError, load_config
from subobject_vlm.training.vlm_data import (
    DataError,
    SubobjectCollator,
    load_conversations,
    make_synthetic_shapes,
    precompute_segmentations,
    use_precomputed_segmentations,
)

REPO_ROOT = Path(__file__).resolve().parents[1]
SETTINGS = (SegmentationSettings("gradient", max_tokens=16), (32, 32))  # the tiny smoke config's tokenizer


@pytest.fixture(scope="module")
def shapes(tmp_path_factory) -> tuple[Path, Path]:
    """Six synthetic pictures in a LLaVA JSON, and their label maps precomputed."""
    folder = tmp_path_factory.mktemp("shapes")
    path = make_synthetic_shapes(folder, num_images=6, size=48)
    precompute(open_source(path), folder / "tokens", SETTINGS, shard_size=4, progress=False)
    return path, folder / "tokens"


@pytest.fixture()
def image_processor() -> SubobjectImageProcessor:
    return SubobjectImageProcessor(
        boundary_model="gradient",
        max_tokens=16,
        size={"height": 32, "width": 32},
        label_size={"height": 32, "width": 32},
    )


@pytest.fixture()
def no_boundary_model(monkeypatch):
    """Any attempt to segment (load a boundary model, run EPOC or a baseline) fails the test."""
    import subobject_vlm.segmentation.api as api
    import subobject_vlm.segmentation.segmenter as segmenter

    def refuse(*args, **kwargs):
        raise AssertionError("the boundary model was used although the label maps are precomputed")

    for module, name in ((api, "load_boundary_model"), (segmenter, "load_boundary_model")):
        monkeypatch.setattr(module, name, refuse)
    for module, name in ((api, "segment_image"), (segmenter, "segment_image")):
        monkeypatch.setattr(module, name, refuse)


def test_precomputed_label_maps_equal_the_ones_training_would_compute(shapes, image_processor, tmp_path):
    path, tokens = shapes
    computed = precompute_segmentations(load_conversations(path), image_processor, tmp_path / "a")
    read = use_precomputed_segmentations(
        load_conversations(path, with_keys=True), tokens, image_processor, tmp_path / "b"
    )
    assert read["num_tokens"] == computed["num_tokens"]
    collate = SubobjectCollator(image_processor, pad_token_id=0)
    features = [{"input_ids": [1], "labels": [1], **sample} for sample in (computed[0], read[0])]
    from_maps, from_pngs = collate(features[:1]), collate(features[1:])
    for name in ("pixel_values", "label_maps", "num_tokens"):
        assert torch.equal(from_maps[name], from_pngs[name]), name


def test_training_reads_the_precomputed_dataset_and_never_runs_the_boundary_model(
    shapes, tmp_path, no_boundary_model
):
    path, tokens = shapes
    with pytest.raises(AssertionError, match="boundary model was used"):  # the guard holds
        SubobjectImageProcessor(boundary_model="gradient", cache_size=0).segment(
            np.zeros((8, 8, 3), np.uint8)
        )
    config = yaml.safe_load((REPO_ROOT / "configs" / "vlm_tiny_precomputed.yaml").read_text())
    config["output_dir"] = str(tmp_path / "run")
    config["data"].update(
        train={"path": str(path)}, precomputed=str(tokens)
    )  # the example's files, made here
    config["training"].update(max_steps=3, save_steps=3, logging_steps=1, disable_tqdm=True)
    output_dir = train_vlm(config)
    losses = [e["loss"] for e in json.loads((output_dir / "log_history.json").read_text()) if "loss" in e]
    assert len(losses) == 3 and all(np.isfinite(losses))
    assert list((output_dir / "preprocessed").glob("precomputed-*.arrow"))
    assert not list((output_dir / "preprocessed").glob("label-maps-*"))  # no store of its own


def test_a_precomputed_dataset_made_with_other_settings_is_refused(shapes, tmp_path):
    path, tokens = shapes
    other = SubobjectImageProcessor(
        boundary_model="gradient", max_tokens=8, label_size={"height": 32, "width": 32}
    )
    with pytest.raises(DataError, match="other settings .*max_tokens: 16 != 8"):
        use_precomputed_segmentations(load_conversations(path, with_keys=True), tokens, other, tmp_path)


def test_images_that_were_never_precomputed_are_named(shapes, image_processor, tmp_path):
    path, tokens = shapes
    records = json.loads(path.read_text())
    extra = path.parent / "more.json"
    extra.write_text(json.dumps(records + [{**records[0], "image": "more/new.png"}]))
    (path.parent / "more").mkdir(exist_ok=True)
    (path.parent / "more" / "new.png").write_bytes((path.parent / records[0]["image"]).read_bytes())
    with pytest.raises(DataError, match="1 image.* not in the precomputed dataset .*more/new.png"):
        use_precomputed_segmentations(
            load_conversations(extra, with_keys=True), tokens, image_processor, tmp_path
        )


def test_samples_whose_image_failed_to_precompute_are_dropped(tmp_path, image_processor):
    path = make_synthetic_shapes(tmp_path, num_images=3, size=32)
    broken = tmp_path / json.loads(path.read_text())[1]["image"]
    broken.write_bytes(b"broken")  # and left so: a repaired image is one changed since (refused, see below)
    precompute(open_source(path), tmp_path / "tokens", SETTINGS, progress=False)
    dataset = use_precomputed_segmentations(
        load_conversations(path, with_keys=True), tmp_path / "tokens", image_processor, tmp_path / "cache"
    )
    assert dataset["image_key"] == ["images/0000.png", "images/0002.png"]


def test_config_names_a_precomputed_folder_that_is_not_merged(tmp_path):
    config = yaml.safe_load((REPO_ROOT / "configs" / "vlm_tiny_smoke.yaml").read_text())
    config["data"]["precomputed"] = str(tmp_path)
    with pytest.raises(ConfigError, match="data.precomputed: .* has no precompute.json"):
        load_config(config)


def test_collator_output_feeds_the_model_from_precomputed_pngs(shapes, image_processor, tmp_path):
    from subobject_vlm.tiny import build_tiny_model
    from subobject_vlm.training.vlm_data import tokenize_conversations

    path, tokens = shapes
    processor = SubobjectLlavaProcessor(image_processor=image_processor, tokenizer=tiny_tokenizer())
    dataset = use_precomputed_segmentations(
        load_conversations(path, with_keys=True), tokens, image_processor, tmp_path
    )
    dataset = tokenize_conversations(dataset, processor, max_length=64, cache_dir=tmp_path)
    batch = SubobjectCollator(image_processor, processor.tokenizer.pad_token_id)(
        [dataset[i] for i in range(3)]
    )
    assert (
        batch["label_maps"].shape == (3, 32, 32) and batch["num_tokens"].tolist() == dataset["num_tokens"][:3]
    )
    model = build_tiny_model(processor.tokenizer, max_tokens_per_image=16)
    assert torch.isfinite(model(**batch).loss)


def test_label_maps_of_an_image_changed_since_it_was_precomputed_are_refused_naming_it(
    tmp_path, image_processor
):
    path = make_synthetic_shapes(tmp_path, num_images=3, size=32)
    precompute(open_source(path), tmp_path / "tokens", SETTINGS, progress=False)
    changed = tmp_path / json.loads(path.read_text())[2]["image"]
    changed.write_bytes((tmp_path / json.loads(path.read_text())[0]["image"]).read_bytes())
    later = changed.stat().st_mtime_ns + 2_000_000_000
    os.utime(changed, ns=(later, later))
    with pytest.raises(
        DataError,
        match=rf"1 image\(s\) changed since .*tokens.*\(e\.g\. {changed}\): rerun subobject-vlm precompute",
    ):
        use_precomputed_segmentations(
            load_conversations(path, with_keys=True), tmp_path / "tokens", image_processor, tmp_path / "cache"
        )


def test_training_segments_again_an_image_changed_since_its_segmentation_was_cached(
    tmp_path, image_processor
):
    path = make_synthetic_shapes(tmp_path, num_images=2, size=32)
    first, second = (tmp_path / r["image"] for r in json.loads(path.read_text()))
    cached = precompute_segmentations(load_conversations(path), image_processor, tmp_path / "cache")
    first.write_bytes(second.read_bytes())
    later = first.stat().st_mtime_ns + 2_000_000_000
    os.utime(first, ns=(later, later))
    again = precompute_segmentations(load_conversations(path), image_processor, tmp_path / "cache")
    assert cached["label_map_png"][0] != cached["label_map_png"][1]
    assert again["label_map_png"][0] == again["label_map_png"][1]  # the new pixels' map, not the cached one


def test_training_reads_the_label_map_of_an_image_precomputed_again(tmp_path, image_processor):
    path = make_synthetic_shapes(tmp_path, num_images=2, size=32)
    first, second = (tmp_path / r["image"] for r in json.loads(path.read_text()))
    precompute(open_source(path), tmp_path / "tokens", SETTINGS, progress=False)
    cached = use_precomputed_segmentations(
        load_conversations(path, with_keys=True), tmp_path / "tokens", image_processor, tmp_path / "cache"
    )
    first.write_bytes(second.read_bytes())
    later = first.stat().st_mtime_ns + 2_000_000_000
    os.utime(first, ns=(later, later))
    precompute(open_source(path), tmp_path / "tokens", SETTINGS, progress=False)  # redoes the changed image
    again = use_precomputed_segmentations(
        load_conversations(path, with_keys=True), tmp_path / "tokens", image_processor, tmp_path / "cache"
    )
    assert cached["label_map_png"][0] != cached["label_map_png"][1]
    assert again["label_map_png"][0] == again["label_map_png"][1]  # the new row, not the cached map


def test_the_training_cache_is_a_precompute_output_that_its_reader_opens(tmp_path, image_processor):
    path = make_synthetic_shapes(tmp_path, num_images=3, size=32)
    dataset = precompute_segmentations(load_conversations(path), image_processor, tmp_path / "cache")
    (store,) = (tmp_path / "cache").glob("label-maps-*")
    index = check_settings(store, image_processor.segmentation_settings())
    assert index["num_rows"] == 3 and merge_precomputed(store)["failed"] == []
    stored = load_precomputed(store)
    by_key = dict(zip(stored["key"], stored["label_map"]))
    assert [by_key[image] for image in dataset["image"]] == dataset["label_map_png"]


def test_training_reads_a_precompute_output_as_it_reads_its_own_cache(shapes, image_processor, tmp_path):
    path, tokens = shapes
    own = precompute_segmentations(load_conversations(path), image_processor, tmp_path / "own")
    read = use_precomputed_segmentations(
        load_conversations(path, with_keys=True), tokens, image_processor, tmp_path / "read"
    )
    assert read["label_map_png"] == own["label_map_png"] and read["num_tokens"] == own["num_tokens"]


def test_a_cache_made_on_one_device_is_read_on_another_without_segmenting(
    tmp_path, image_processor, monkeypatch
):
    path = make_synthetic_shapes(tmp_path, num_images=3, size=32)
    made = precompute_segmentations(load_conversations(path), image_processor, tmp_path / "cache")
    on_gpu = SubobjectImageProcessor(
        **{**image_processor.to_dict(), "boundary_model_options": {"device": "cuda"}}
    )
    assert on_gpu.segmentation_settings() != image_processor.segmentation_settings()
    import subobject_vlm.segmentation.segmenter as segmenter

    monkeypatch.setattr(segmenter.Segmenter, "label_maps", lambda *a: pytest.fail("segmented again"))
    read = precompute_segmentations(load_conversations(path), on_gpu, tmp_path / "cache")
    assert read["label_map_png"] == made["label_map_png"]


def test_a_training_image_that_cannot_be_read_is_a_data_error_naming_it(tmp_path, image_processor):
    path = make_synthetic_shapes(tmp_path, num_images=2, size=32)
    broken = tmp_path / json.loads(path.read_text())[1]["image"]
    broken.write_bytes(b"broken")
    with pytest.raises(
        DataError, match=rf"1 image\(s\) of the training data cannot be used \(e\.g\. {broken}: "
    ):
        precompute_segmentations(load_conversations(path), image_processor, tmp_path / "cache")
