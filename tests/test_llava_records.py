"""LLaVA records whose ``image`` is a list, a number or an object: what training's data loader makes of them."""

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from subobject_vlm.training.vlm_data import DataError, load_conversations

TURNS = [{"from": "human", "value": "<image>\nWhat is it?"}, {"from": "gpt", "value": "a square"}]


@pytest.fixture()
def folder(tmp_path) -> Path:
    for name in ("a.png", "b.png"):
        Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / name)
    return tmp_path


def write_records(folder: Path, images: list) -> Path:
    path = folder / "data.json"
    path.write_text(json.dumps([{"image": image, "conversations": TURNS} for image in images]))
    return path


def test_a_list_of_one_image_is_read_as_that_image(folder):
    dataset = load_conversations(write_records(folder, [["a.png"], "a.png", [], None]), with_keys=True)
    assert dataset["image"] == [str(folder / "a.png")] * 2 + [None, None]
    assert dataset["image_key"] == ["a.png", "a.png", None, None]


def test_a_record_with_several_images_is_refused_in_one_line_naming_it(folder):
    path = write_records(folder, ["a.png", ["a.png", "b.png"]])
    with pytest.raises(
        DataError, match=rf"^{path}: record 1 has 2 images; training takes one image per sample"
    ) as error:
        load_conversations(path)
    assert "\n" not in str(error.value)


@pytest.mark.parametrize(
    "image", [7, {"path": "a.png"}, ["a.png", None]], ids=["int", "dict", "list-with-null"]
)
def test_a_record_whose_image_is_not_a_file_name_is_refused_in_one_line_naming_it(folder, image):
    path = write_records(folder, ["a.png", image])
    with pytest.raises(
        DataError, match=rf"^{path}: record 1: 'image' must be an image file name or a list"
    ) as error:
        load_conversations(path)
    assert "\n" not in str(error.value)
