"""The tokenizer registry: one place for names, an immediate error listing them, fast failures for the hub."""

import time

import numpy as np
import pytest

from subobject_vlm import SubobjectImageProcessor
from subobject_vlm.segmentation import load_boundary_model, segment
from subobject_vlm.segmentation.registry import (
    check_tokenizer_name,
    create_boundary_model,
    is_hub_id,
    register_boundary_model,
    registered_names,
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
    with pytest.raises(ValueError, match="baseline"):
        create_boundary_model("slic")


def test_an_uncached_hub_id_offline_fails_in_seconds_with_a_clear_message(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    started = time.perf_counter()
    with pytest.raises(ValueError, match="not in the local Hugging Face cache"):
        create_boundary_model("someone/no-such-directsam")
    assert time.perf_counter() - started < 5.0


def test_a_registered_boundary_model_is_a_tokenizer_everywhere(astronaut):
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
    with pytest.raises(ValueError, match="baseline"):
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
