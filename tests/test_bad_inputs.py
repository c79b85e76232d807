"""Inputs that cannot work are refused at once in one line naming them, and odd ones cost what their pixels do:
strips thousands of times longer than wide, processor sizes of one pixel, boundary maps of another shape."""

import json
import os
import re
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from conftest import REPO_ROOT

from subobject_vlm import SubobjectImageProcessor
from subobject_vlm.segmentation import load_boundary_model, merge_regions, region_adjacency, relabel_by_area

# strips


STRIPS_RUN = """
import json
import numpy as np
from subobject_vlm import SubobjectImageProcessor
from subobject_vlm.segmentation import segment


def status(key):  # KiB
    return next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith(key))


rng = np.random.default_rng(0)
processor = SubobjectImageProcessor()
segment(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8), "default")  # warm-up: model loaded, first pass
growth = {}
for height, width in [(1, 100_000), (1, 300_000), (100_000, 1), (2, 200_000)]:
    image = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    with open("/proc/self/clear_refs", "w") as clear:
        clear.write("5")  # the peak RSS (VmHWM) starts again from the current RSS
    before = status("VmRSS:")
    assert segment(image, "default").shape == (height, width)
    assert processor([image], return_tensors="pt")["label_maps"].shape == (1, 336, 336)
    growth[f"{height}x{width}"] = (status("VmHWM:") - before) / 1024
print(json.dumps(growth))
"""


@pytest.mark.slow  # ~12 s: a fresh interpreter loads torch and the model; the fast check is the next test
@pytest.mark.skipif(not os.access("/proc/self/clear_refs", os.W_OK), reason="needs Linux's peak-RSS reset")
def test_strips_cost_memory_in_proportion_to_their_pixels(tmp_path):
    """A 1 x 300000 PNG (900 KB) needed over 7 GB: a 1-pixel strip ran as 4 x 1.1M padded to 32 rows."""
    script = tmp_path / "strips.py"
    script.write_text(textwrap.dedent(STRIPS_RUN))
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "OMP_NUM_THREADS": "1"}
    result = subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    growth = json.loads(result.stdout.splitlines()[-1])  # MiB of peak RSS above the RSS before each image
    print(growth)
    assert (
        max(growth.values()) < 300
    )  # measured: 80-160 MiB; before: 3.5 GiB at 1 x 100000, 9 GiB at 1 x 300000


@pytest.mark.parametrize("size", [(1, 100_000), (1, 300_000), (100_000, 1), (2, 200_000), (7, 3000)])
def test_a_strip_thinner_than_the_models_input_runs_padded_within_a_photos_pixels(size):
    model = load_boundary_model("default")  # resolution 480: a photo is at most 480 x 480 pixels
    height, width = model._input_size(*size)
    assert max(height, 32) * max(width, 32) <= max(480 * 480, size[0] * size[1])  # padding included


# processor sizes


@pytest.mark.parametrize(
    "kwargs",
    [
        {"size": {"height": 1, "width": 1}},  # was a torch INTERNAL ASSERT at the first image
        {"size": {"height": -1, "width": 5}},
        {"size": {"height": 2.5, "width": 5}},
        {"size": {"shortest_edge": 224}},  # label maps and pixels must cover the same whole image
        {"label_size": {"height": True, "width": 4}},
    ],
)
def test_a_size_that_cannot_work_is_refused_at_construction_in_one_line(kwargs):
    ((key, value),) = kwargs.items()
    with pytest.raises(ValueError, match=rf"^{key} must be \{{'height': h, 'width': w\}}") as error:
        SubobjectImageProcessor(boundary_model="patch", **kwargs)
    assert "\n" not in str(error.value) and repr(dict(value)) in str(error.value)


def test_a_size_of_one_pixel_given_to_a_call_is_refused_before_resizing():
    processor = SubobjectImageProcessor(boundary_model="patch")
    with pytest.raises(ValueError, match=r"size must be .* >= 2 \(the vision backbone's input"):
        processor([np.zeros((8, 8, 3), np.uint8)], size={"height": 1, "width": 1})


# label-map functions


def test_merge_regions_refuses_a_boundary_map_of_another_shape_naming_both():
    label_map = np.repeat(np.arange(4), 5).reshape(4, 5)  # (4, 5): four rows, one region each
    for probs in (np.zeros((5, 4), np.float32), np.zeros((4, 6), np.float32)):
        shapes = rf"boundary_probs has shape {re.escape(str(probs.shape))}.* label_map has shape \(4, 5\)"
        with pytest.raises(ValueError, match=shapes):
            merge_regions(label_map, probs, max_tokens=2)
    with pytest.raises(ValueError, match="boundary_probs has shape"):
        merge_regions(label_map, np.zeros((2, 10), np.float32))  # nothing to merge: refused all the same


def test_region_adjacency_refuses_another_shape_and_ids_beyond_num_labels():
    label_map = np.array([[0, 1], [2, 3]])
    with pytest.raises(
        ValueError, match=r"boundary_probs has shape \(2, 3\) but label_map has shape \(2, 2\)"
    ):
        region_adjacency(label_map, np.zeros((2, 3)))
    with pytest.raises(ValueError, match=r"ids must be in 0..num_labels-1 \(num_labels=3\), got 0..3"):
        region_adjacency(label_map, np.zeros((2, 2)), num_labels=3)  # ids 3 and 2 would share a key


@pytest.mark.parametrize(
    "label_map, message",
    [
        (np.zeros((2, 3), np.float32), "label_map must hold integer labels, got dtype float32"),
        (np.zeros((1, 2, 3), int), r"label_map must be a 2-D \(H, W\) array, got shape \(1, 2, 3\)"),
    ],
)
def test_label_map_functions_refuse_maps_that_are_not_2d_integer_labels(label_map, message):
    with pytest.raises((ValueError, TypeError), match=message):
        relabel_by_area(label_map)
    with pytest.raises((ValueError, TypeError), match=message):
        merge_regions(label_map, np.zeros(label_map.shape, np.float32), max_tokens=1)
