"""SegmentationSettings: one validated description of a tokenizer; segment_image: the one path to a label map."""

import dataclasses

import numpy as np
import pytest

from subobject_vlm import SubobjectImageProcessor, epoc
from subobject_vlm.cli import main
from subobject_vlm.segmentation import SegmentationSettings, load_boundary_model, segment, segment_image
from subobject_vlm.segmentation.settings import DEFAULT_MAX_TOKENS


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"threshold": 1.5}, "threshold"),
        ({"threshold": float("nan")}, "threshold"),
        ({"threshold": "0.1"}, "threshold"),
        ({"max_tokens": 0}, "max_tokens"),
        ({"max_tokens": 2.5}, "max_tokens"),
        ({"max_tokens": True}, "max_tokens"),
        ({"min_area": -1}, "min_area"),
        ({"merge": "largest"}, "merge"),
        ({"assign": "random"}, "assign"),
        ({"seeds": "maxima"}, "seeds"),
        ({"boundary_model": ""}, "boundary_model"),
        ({"boundary_model_options": [1, 2]}, "boundary_model_options"),
    ],
)
def test_every_setting_is_checked_once_with_the_same_message_everywhere(changes, message):
    with pytest.raises(ValueError, match=message):
        SegmentationSettings(**changes)
    with pytest.raises(ValueError, match=message):
        SubobjectImageProcessor(**changes)
    epoc_only = {
        k: v
        for k, v in changes.items()
        if k in ("threshold", "max_tokens", "min_area", "merge", "assign", "seeds")
    }
    if epoc_only:
        with pytest.raises(ValueError, match=message):
            epoc(np.zeros((4, 4), np.float32), **{"threshold": 0.1, **epoc_only})


def test_settings_are_frozen_hashable_and_their_repr_names_every_option():
    settings = SegmentationSettings("default", {"resolution": 256, "device": "cpu"}, max_tokens=32)
    assert settings.boundary_model_options == (("device", "cpu"), ("resolution", 256))
    assert settings == SegmentationSettings("default", {"device": "cpu", "resolution": 256}, max_tokens=32)
    assert hash(settings) == hash(
        SegmentationSettings("default", {"resolution": 256, "device": "cpu"}, max_tokens=32)
    )
    assert "max_tokens=32" in repr(settings) and "resolution" in repr(settings)
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.max_tokens = 8
    with pytest.raises(ValueError, match="max_tokens"):
        dataclasses.replace(settings, max_tokens=-3)  # a variant is validated again
    assert settings.to_dict()["boundary_model_options"] == {"device": "cpu", "resolution": 256}


def test_a_computed_boundary_map_is_used_instead_of_running_the_model(astronaut):
    image = astronaut[::4, ::4]
    settings = SegmentationSettings("default", max_tokens=24)
    [probs] = load_boundary_model("default").predict([image])
    np.testing.assert_array_equal(
        segment_image(image, settings, boundary_probs=probs), segment(image, max_tokens=24)
    )
    np.testing.assert_array_equal(
        segment_image(None, settings, boundary_probs=probs), epoc(probs, max_tokens=24, seeds=settings.seeds)
    )
    with pytest.raises(ValueError, match="image"):
        segment_image(None, settings)
    with pytest.raises(ValueError, match="image"):
        segment_image(None, SegmentationSettings("slic"), boundary_probs=probs)


def test_baselines_take_max_tokens_as_their_exact_count(astronaut):
    image = astronaut[::4, ::4]
    for name in ("patch", "slic", "felzenszwalb"):
        assert segment_image(image, SegmentationSettings(name, max_tokens=9)).max() == 8
    default_count = segment_image(image, SegmentationSettings("patch", max_tokens=None)).max() + 1
    assert default_count == DEFAULT_MAX_TOKENS


def test_the_cli_rejects_a_bad_threshold_in_one_line_before_reading_any_file(tmp_path, capsys):
    assert main(["segment", str(tmp_path / "missing.jpg"), "--out", str(tmp_path), "--threshold", "1.5"]) == 2
    error = capsys.readouterr().err.strip()
    assert (
        error.startswith("subobject-vlm segment: error: threshold must be a number in [0, 1]")
        and "\n" not in error
    )
