"""The tokenizer registry: one place for names, an immediate error listing them, fast failures for the hub."""

import time

import numpy as np
import pytest

from subobject_vlm import SubobjectImageProcessor
from subobject_vlm.segmentation import SegmentationSettings, Segmenter, load_boundary_model, segment
from subobject_vlm.segmentation.registry import (
    BOUNDARY,
    LABEL_MAP,
    check_tokenizer_name,
    create_boundary_model,
    describe_names,
    is_hub_id,
    register_boundary_model,
    register_label_map_tokenizer,
    register_tokenizer,
    register_tokenizer_family,
    registered_names,
    tokenizer_kind,
)


def test_registered_names_hold_the_boundary_models_and_the_baselines():
    assert registered_names()[:2] == ["default", "gradient"]
    assert {"patch", "slic", "felzenszwalb"} <= set(registered_names())


@pytest.mark.parametrize("where", ["check", "segment", "processor", "load"])
def test_a_mistyped_name_fails_at_once_listing_the_valid_names(where, astronaut):
    started = time.perf_counter()
    with pytest.raises(ValueError, match=r"unknown tokenizer 'defualt'.*default, gradient.*slic"):
        if where == "check":
            check_tokenizer_name("defualt")
        elif where == "segment":
            segment(astronaut, "defualt")
        elif where == "processor":
            SubobjectImageProcessor(boundary_model="defualt")
        else:
            load_boundary_model("defualt")
    assert time.perf_counter() - started < 1.0  # no hub retries


def test_hub_ids_local_folders_and_names_are_told_apart(tmp_path):
    assert is_hub_id("chendelong/DirectSAM-1800px-0424")
    assert not is_hub_id("default") and not is_hub_id("a/b/c")
    (tmp_path / "owner").mkdir()
    (tmp_path / "owner" / "name").mkdir()
    assert check_tokenizer_name(tmp_path / "owner" / "name") == str(tmp_path / "owner" / "name")
    with pytest.raises(ValueError, match="no config.json"):
        create_boundary_model(tmp_path / "owner" / "name")
    (tmp_path / "owner" / "name" / "config.json").write_text("{}")
    (tmp_path / "owner" / "name" / "pytorch_model.bin").write_bytes(b"pickle")
    with pytest.raises(ValueError, match=r"pickled weights \(pytorch_model.bin\).*use_safetensors=False"):
        create_boundary_model(tmp_path / "owner" / "name")
    with pytest.raises(ValueError, match="'slic' is a label-map tokenizer: it has no boundary map"):
        create_boundary_model("slic")


def test_an_uncached_hub_id_offline_fails_in_seconds_with_a_clear_message(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    started = time.perf_counter()
    with pytest.raises(ValueError, match="not in the local Hugging Face cache"):
        create_boundary_model("someone/no-such-directsam")
    assert time.perf_counter() - started < 5.0


def test_a_registered_boundary_model_is_a_tokenizer_everywhere(astronaut, scratch_registry):
    class Stripes:
        name = "stripes"

        def predict(self, images):
            return [
                np.tile((np.arange(im.shape[1]) % 32 == 0).astype(np.float32), (im.shape[0], 1))
                for im in images
            ]

    register_boundary_model("test-stripes", lambda **options: Stripes())
    image = astronaut[:64, :128]
    label_map = segment(image, "test-stripes", max_tokens=100)
    assert label_map.max() + 1 == 4  # 4 vertical bands between the stripes
    processor = SubobjectImageProcessor(
        boundary_model="test-stripes", label_size={"height": 64, "width": 128}
    )
    assert processor.segment([image])[0].max() + 1 == 4
    with pytest.raises(ValueError, match="'slic' is a built-in label_map tokenizer"):
        register_boundary_model("slic", lambda **options: Stripes())


def test_hf_hub_prefix_always_means_the_hub_even_where_a_local_folder_has_that_name(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "owner" / "name").mkdir(parents=True)  # a local folder spelled like the hub id
    assert not is_hub_id("owner/name") and is_hub_id("hf-hub:owner/name")
    assert not is_hub_id("hf-hub:no-slash")
    assert check_tokenizer_name("hf-hub:owner/name") == "hf-hub:owner/name"
    with pytest.raises(ValueError, match="no config.json"):  # the bare name is the local folder
        create_boundary_model("owner/name")
    with pytest.raises(ValueError, match="'owner/name' is not in the local Hugging Face cache"):
        create_boundary_model("hf-hub:owner/name")  # the prefix: the hub, never the folder


def test_every_tokenizer_has_a_kind(tmp_path):
    assert registered_names(BOUNDARY)[:2] == ["default", "gradient"]
    assert registered_names(LABEL_MAP)[:3] == ["patch", "slic", "felzenszwalb"]
    assert [tokenizer_kind(name) for name in ("default", "gradient", "patch", "slic")] == [
        BOUNDARY,
        BOUNDARY,
        LABEL_MAP,
        LABEL_MAP,
    ]
    assert tokenizer_kind(tmp_path) == BOUNDARY  # a checkpoint folder holds a boundary model
    assert tokenizer_kind("owner/name") == BOUNDARY
    assert SegmentationSettings("felzenszwalb").kind == LABEL_MAP
    assert (
        "patch, slic, felzenszwalb, sam:CHECKPOINT, sam_hq:CHECKPOINT, sam2:CHECKPOINT, edgetam:CHECKPOINT, "
        "mask2former:CHECKPOINT, oneformer:CHECKPOINT (label-map tokenizers)"
    ) in describe_names()
    assert "label-map" not in describe_names(baselines=False)


class Halves:
    """Left and right halves, whatever the budget (a label-map tokenizer that counts its calls)."""

    name = "halves"

    def __init__(self):
        self.calls = []

    def label_maps(self, images, max_tokens):
        self.calls.append(len(images))
        return [
            np.repeat((np.arange(im.shape[1]) >= im.shape[1] // 2)[None].astype(np.int32), im.shape[0], 0)
            for im in images
        ]


def test_a_registered_label_map_tokenizer_is_a_tokenizer_everywhere(astronaut, scratch_registry):
    halves = Halves()
    register_label_map_tokenizer("test-halves", lambda **options: halves)
    image = astronaut[:32, :48]
    assert tokenizer_kind("test-halves") == LABEL_MAP
    assert segment(image, "test-halves").max() == 1
    segmenter = Segmenter(SegmentationSettings("test-halves"), label_size=(16, 16))
    label_maps = segmenter.label_maps([image, astronaut[:40, :40], image])
    assert [m.shape for m in label_maps] == [(16, 16)] * 3 and halves.calls[
        -1
    ] == 2  # one batch, one per image
    with pytest.raises(ValueError, match="'test-halves' is a label-map tokenizer"):
        segmenter.boundary_maps([image])
    with pytest.raises(ValueError, match="'test-halves' is a label-map tokenizer: it has no boundary map"):
        load_boundary_model("test-halves")
    processor = SubobjectImageProcessor(boundary_model="test-halves", label_size={"height": 8, "width": 8})
    assert processor.segment([image])[0].max() == 1
    assert "test-halves" in registered_names(LABEL_MAP)


def test_a_family_takes_any_checkpoint_of_its_architecture(tmp_path, astronaut, scratch_registry):
    seen = []

    @register_tokenizer_family("test-family", LABEL_MAP)
    def family(checkpoint, **options):
        """A family of one architecture."""
        seen.append((checkpoint, options))
        return Halves()

    folder = tmp_path / "ckpt"
    folder.mkdir()
    name = f"test-family:{folder}"
    assert check_tokenizer_name(name) == name and tokenizer_kind(name) == LABEL_MAP
    assert check_tokenizer_name("test-family:owner/model") == "test-family:owner/model"  # a hub id
    assert segment(astronaut[:20, :20], name, points=4).max() == 1
    assert seen == [(str(folder), {"points": 4})]
    assert "test-family:CHECKPOINT (label-map tokenizers)" in describe_names()
    for bad in ("test-family:", "test-family:no such folder"):
        with pytest.raises(ValueError, match="test-family: takes a local checkpoint folder or a hub id"):
            check_tokenizer_name(bad)


def test_names_are_checked_when_registered(scratch_registry):
    with pytest.raises(ValueError, match="kind must be one of"):
        register_tokenizer("test-kind", "masks", lambda **options: None)
    with pytest.raises(ValueError, match="a tokenizer name is letters"):
        register_label_map_tokenizer("bad:name", lambda **options: None)
    with pytest.raises(ValueError, match="'default' is a built-in boundary tokenizer"):
        register_label_map_tokenizer("default", lambda **options: None)


@pytest.mark.parametrize(
    "returned, message",
    [
        (lambda images: [], "returned 0 label maps for 2 images"),
        (
            lambda images: [np.zeros((3, 3), np.int32)] * 2,
            r"returned a label map of shape \(3, 3\).*image 0 of size \(10, 12\)",
        ),
        (
            lambda images: [np.zeros(im.shape[:2], np.float32) for im in images],
            "returned a label map of shape .* and dtype float32",
        ),
    ],
)
def test_a_label_map_tokenizer_that_returns_the_wrong_maps_is_named(
    returned, message, astronaut, scratch_registry
):
    class Broken:
        name = "broken"

        def label_maps(self, images, max_tokens):
            return returned(images)

    register_label_map_tokenizer("test-broken", lambda **options: Broken())
    segmenter = Segmenter(SegmentationSettings("test-broken"), cache_size=0)
    with pytest.raises(ValueError, match=f"tokenizer 'test-broken' {message}"):
        segmenter.label_maps([astronaut[:10, :12], astronaut[10:20, :12]])


def test_the_registry_names_every_baseline_the_baselines_module_runs():
    from subobject_vlm.segmentation.baselines import BASELINE_FUNCTIONS
    from subobject_vlm.segmentation.registry import BASELINES

    assert set(BASELINES) == set(BASELINE_FUNCTIONS) == set(registered_names(LABEL_MAP)[:3])
