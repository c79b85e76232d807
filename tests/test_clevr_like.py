"""The CLEVR-like generator: deterministic, and its captions and answers describe what was rendered."""

import json

import numpy as np
import pytest
from scipy.ndimage import binary_erosion

from subobject_vlm.data.clevr_like import (
    COLOURS,
    NUMBERS,
    caption,
    generate_scene,
    make_clevr_like,
    vocabulary,
)


def test_same_arguments_give_byte_identical_files(tmp_path):
    first = make_clevr_like(tmp_path / "a", split="train", num_images=6, size=48, seed=3)
    second = make_clevr_like(tmp_path / "b", split="train", num_images=6, size=48, seed=3)
    assert first.read_bytes() == second.read_bytes()
    for name in sorted(p.name for p in (tmp_path / "a" / "images").iterdir()):
        assert (tmp_path / "a" / "images" / name).read_bytes() == (
            tmp_path / "b" / "images" / name
        ).read_bytes()
    assert not list(tmp_path.rglob("*.partial"))


def test_splits_are_different_streams_and_more_images_only_append():
    train, val = generate_scene(0, "train", 0, 48), generate_scene(0, "val", 0, 48)
    assert not np.array_equal(train.image, val.image)
    assert np.array_equal(generate_scene(0, "train", 5, 48).image, generate_scene(0, "train", 5, 48).image)
    assert not np.array_equal(
        generate_scene(0, "train", 0, 48).image, generate_scene(1, "train", 0, 48).image
    )


def test_records_are_llava_conversations_with_a_caption_and_a_question_per_image(tmp_path):
    path = make_clevr_like(tmp_path, split="val", num_images=4, size=48)
    records = json.loads(path.read_text())
    assert len(records) == 8
    assert [r["task"] == "caption" for r in records] == [True, False] * 4
    for record in records:
        human, gpt = record["conversations"]
        assert human["from"] == "human" and human["value"].startswith("<image>\n")
        assert gpt["from"] == "gpt" and gpt["value"]
        assert (tmp_path / record["image"]).is_file()
        words = set(human["value"].replace("<image>", "").replace(".", " . ").split()) | set(
            gpt["value"].split()
        )
        assert words <= set(vocabulary())


def _nearest_colour(pixels: np.ndarray) -> str:
    """Palette colour whose direction in RGB is closest to the median pixel's (shading scales brightness)."""
    median = np.median(pixels.astype(float), axis=0)
    names = list(COLOURS)
    palette = np.array([COLOURS[n] for n in names], float)
    cosine = palette @ median / (np.linalg.norm(palette, axis=1) * np.linalg.norm(median))
    return names[int(np.argmax(cosine))]


@pytest.mark.parametrize("index", range(12))
def test_captions_name_every_rendered_object_with_its_colour_and_place(index):
    scene = generate_scene(7, "train", index, size=128)
    text = caption(scene.objects)
    assert 3 <= len(scene.objects) <= 10
    assert text.startswith(f"{NUMBERS[len(scene.objects)]} objects .")
    for k, obj in enumerate(scene.objects):
        visible = scene.instance_map == k + 1
        assert visible.sum() > 20, f"object {k} ({obj.name}) is not visible"
        assert f"a {obj.name} " in text
        # the colour a viewer sees is the one the caption names
        core = binary_erosion(visible)  # away from anti-aliased edges
        assert _nearest_colour(scene.image[core if core.sum() > 10 else visible]) == obj.colour
        xs = np.nonzero(visible)[1] / scene.image.shape[1]
        place = "on the left" if obj.x < 0.37 else ("on the right" if obj.x > 0.63 else "in the middle")
        assert f"a {obj.name} {place}" in text
        assert abs(np.median(xs) - obj.x) < 0.12  # the place is where it was drawn


@pytest.mark.parametrize("index", range(20))
def test_questions_have_the_answer_of_the_scene(index):
    scene = generate_scene(0, "val", index, size=48)
    task, question, answer = scene.qa
    objects = scene.objects
    if task == "count":
        assert answer == NUMBERS[len(objects)]
    elif task == "colour":  # "what colour is the <size> <shape> ?": exactly one such object
        size, shape = question.split()[4:6]
        [match] = [o for o in objects if (o.size, o.shape) == (size, shape)]
        assert answer == match.colour
    elif task == "shape":
        size, colour = question.split()[4:6]
        [match] = [o for o in objects if (o.size, o.colour) == (size, colour)]
        assert answer == match.shape
    else:
        size, colour, shape = question.split()[4:7]
        [match] = [o for o in objects if (o.size, o.colour, o.shape) == (size, colour, shape)]
        assert answer == match.material


def test_bad_arguments_are_named(tmp_path):
    with pytest.raises(ValueError, match="split"):
        generate_scene(0, "holdout", 0)
    with pytest.raises(ValueError, match="num_images"):
        make_clevr_like(tmp_path, num_images=0)
    with pytest.raises(ValueError, match="objects"):
        make_clevr_like(tmp_path, num_images=1, min_objects=5, max_objects=2)
