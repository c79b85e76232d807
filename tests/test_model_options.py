"""A tokenizer's own options reach it from every door: ``--model-option KEY=VALUE`` on the commands that segment,
``--baseline-option`` on eval-bsds, ``--compare-option`` on the demo, ``boundary_model_options`` in Python; and every
tokenizer refuses an option it does not have, listing the ones it has (none is dropped silently)."""

import argparse
import json

import numpy as np
import pytest
from conftest import Stripes, write_tiny_bsds
from PIL import Image

from subobject_vlm.cli import main
from subobject_vlm.commands._options import key_value, named_options
from subobject_vlm.segmentation import SegmentationSettings, segment
from subobject_vlm.segmentation.registry import create_tokenizer, register_label_map_tokenizer
from subobject_vlm.tiny_mask_models import save_tiny_mask_model


@pytest.fixture(scope="module")
def tiny_sam(tmp_path_factory):
    return save_tiny_mask_model("sam", tmp_path_factory.mktemp("sam") / "sam")


@pytest.fixture
def photo_folder(tmp_path, astronaut):
    folder = tmp_path / "in"
    folder.mkdir()
    Image.fromarray(astronaut[::8, ::8]).save(folder / "a.png")  # 64 x 64
    return folder


@pytest.mark.parametrize(
    ("text", "parsed"),
    [
        ("points_per_side=16", ("points_per_side", 16)),
        ("pred_iou_thresh=0.86", ("pred_iou_thresh", 0.86)),
        ("keep_aspect=true", ("keep_aspect", True)),
        ("keep_aspect=False", ("keep_aspect", False)),
        ("resolution=None", ("resolution", None)),
        ("sigmas=[1, 2.5]", ("sigmas", (1, 2.5))),  # a tuple: settings are hashable cache keys
        ("device=cuda:1", ("device", "cuda:1")),
        (" dtype = bfloat16 ", ("dtype", "bfloat16")),
    ],
)
def test_key_value_reads_python_literals_and_keeps_other_text(text, parsed):
    assert key_value(text) == parsed


@pytest.mark.parametrize("text", ["points_per_side", "=3", "2x=3", "a-b=1"])
def test_key_value_refuses_what_is_not_key_equals_value(text):
    with pytest.raises(argparse.ArgumentTypeError, match="expected KEY=VALUE"):
        key_value(text)


def test_named_options_group_by_tokenizer_and_refuse_strangers_and_contradictions():
    pairs = [["sam:x", "points_per_side=8"], ["sam:x", "crops_n_layers=1"], ["slic", "a=1"]]
    assert named_options(pairs, "--flag") == {
        "sam:x": {"points_per_side": 8, "crops_n_layers": 1},
        "slic": {"a": 1},
    }
    with pytest.raises(ValueError, match="'slic' is not among the tokenizers \\(sam:x\\)"):
        named_options(pairs, "--flag", ["sam:x"])
    with pytest.raises(ValueError, match="points_per_side given twice \\(8 and 9\\)"):
        named_options([["s", "points_per_side=8"], ["s", "points_per_side=9"]], "--flag")
    with pytest.raises(ValueError, match="--flag s: expected KEY=VALUE"):
        named_options([["s", "oops"]], "--flag")


def test_segment_passes_model_options_to_a_mask_tokenizer_and_records_them(
    tiny_sam, photo_folder, tmp_path, capsys
):
    out = tmp_path / "out"
    argv = [
        "segment",
        str(photo_folder),
        "--out",
        str(out),
        "--model",
        f"sam:{tiny_sam}",
        "--max-tokens",
        "8",
        "--save-labels",
        "npy",
    ]
    argv += ["--model-option", "points_per_side=2", "--model-option", "pred_iou_thresh=0"]
    argv += ["--model-option", "stability_score_thresh=0", "--model-option", "box_nms_thresh=1.0"]
    assert main(argv) == 0
    summary = json.loads((out / "summary.json").read_text())
    options = {"points_per_side": 2, "pred_iou_thresh": 0, "stability_score_thresh": 0, "box_nms_thresh": 1.0}
    assert summary["runs"][-1]["settings"]["boundary_model_options"] == options
    image = np.asarray(Image.open(photo_folder / "a.png").convert("RGB"))
    expected = create_tokenizer(f"sam:{tiny_sam}", **options).label_maps([image], 8)[0]
    np.testing.assert_array_equal(np.load(out / "a.npy"), expected)


@pytest.mark.parametrize(
    ("model", "option", "message"),
    [
        (
            "sam",
            "bogus=1",
            "the sam tokenizer has no option 'bogus'; its options: device, dtype, points_per_side",
        ),
        (
            "default",
            "bogus=1",
            "a DirectSAM / EdgeNet boundary model has no option 'bogus'; its options: resolution",
        ),
        (
            "gradient",
            "bogus=1",
            "the gradient tokenizer has no option 'bogus'; its options: sigmas, max_side",
        ),
        ("slic", "n_segments=9", "the slic tokenizer has no option 'n_segments'; its options: none"),
        (
            "default",
            "threshold=0.3",
            "--model-option threshold: EPOC's option, not the model's: pass --threshold",
        ),
        ("default", "device=gpu", "device must be cpu, cuda, cuda:N, mps or xpu, got 'gpu'"),
    ],
)
def test_an_option_a_tokenizer_lacks_is_refused_in_one_line_naming_its_options(
    tiny_sam, photo_folder, tmp_path, capsys, model, option, message
):
    model = f"sam:{tiny_sam}" if model == "sam" else model
    argv = [
        "segment",
        str(photo_folder),
        "--out",
        str(tmp_path / "out"),
        "--model",
        model,
        "--model-option",
        option,
    ]
    assert main(argv) == 2
    error = capsys.readouterr().err
    assert message in error and error.count("\n") == 1
    assert not list((tmp_path / "out").glob("*.png")) if (tmp_path / "out").exists() else True


def test_a_model_option_that_contradicts_its_flag_is_refused(photo_folder, tmp_path, capsys):
    argv = ["segment", str(photo_folder), "--out", str(tmp_path / "out"), "--resolution", "64"]
    assert main([*argv, "--model-option", "resolution=128"]) == 2
    assert "--model-option resolution=128 contradicts resolution=64, given too" in capsys.readouterr().err
    assert main([*argv, "--model-option", "resolution=64", "--max-tokens", "8"]) == 0  # the same value: fine


def test_a_boundary_model_option_reaches_the_model(photo_folder, tmp_path, astronaut):
    out = tmp_path / "out"
    argv = ["segment", str(photo_folder), "--out", str(out), "--model", "gradient", "--max-tokens", "16"]
    argv += ["--save-labels", "npy"]
    assert main([*argv, "--model-option", "sigmas=[4.0]", "--model-option", "max_side=32"]) == 0
    image = np.asarray(Image.open(photo_folder / "a.png").convert("RGB"))
    expected = segment(image, "gradient", max_tokens=16, sigmas=(4.0,), max_side=32)
    np.testing.assert_array_equal(np.load(out / "a.npy"), expected)
    assert not np.array_equal(expected, segment(image, "gradient", max_tokens=16))


def test_cpu_tokenizers_take_and_ignore_where_they_run(astronaut):
    image = astronaut[:64, :64]
    plain = segment(image, "slic", max_tokens=8)
    given = {"device": "cpu", "dtype": "float32", "batch_size": 2}
    np.testing.assert_array_equal(segment(image, "slic", max_tokens=8, **given), plain)
    both = {
        "resolution": 256,
        "keep_aspect": True,
        "pyramid_layers": 1,
    }  # every boundary model's: ignored here
    np.testing.assert_array_equal(
        segment(image, "gradient", max_tokens=8, **both),
        segment(image, "gradient", max_tokens=8),
    )


def _register_rows(scratch_registry):
    """A label-map tokenizer with an option: ``horizontal`` turns its stripes into rows."""

    class Rows(Stripes):
        def __init__(self, horizontal: bool = False):
            self.horizontal = horizontal

        def label_maps(self, images, max_tokens):
            if not self.horizontal:
                return super().label_maps(images, max_tokens)
            flipped = super().label_maps([im.transpose(1, 0, 2) for im in images], max_tokens)
            return [np.ascontiguousarray(m.T) for m in flipped]

    register_label_map_tokenizer("test-rows", lambda horizontal=False: Rows(horizontal))


def test_eval_bsds_passes_each_baseline_its_options_and_records_them(scratch_registry, tmp_path, capsys):
    _register_rows(scratch_registry)
    root = write_tiny_bsds(tmp_path / "bsds", {"val": 1})
    argv = ["eval-bsds", "--root", str(root), "--limit", "1", "--thresholds", "0", "--max-tokens", "8"]
    argv += ["--baselines", "test-rows", "--workers", "0", "--model", "gradient"]
    assert main([*argv, "--out", str(tmp_path / "plain")]) == 0
    assert (
        main([*argv, "--out", str(tmp_path / "rows"), "--baseline-option", "test-rows", "horizontal=true"])
        == 0
    )
    plain, rows = (json.loads((tmp_path / d / "metrics.json").read_text()) for d in ("plain", "rows"))
    assert "baseline_options" not in plain["config"]
    assert rows["config"]["baseline_options"] == {"test-rows": {"horizontal": True}}
    assert plain["tokens"]["gradient"] == rows["tokens"]["gradient"]
    assert plain["tokens"]["test-rows"] != rows["tokens"]["test-rows"]  # rows, not columns: other metrics
    capsys.readouterr()
    assert main([*argv, "--out", str(tmp_path / "x"), "--baseline-option", "slic", "horizontal=true"]) == 2
    assert (
        "baseline_options names 'slic', which is not among the baselines (test-rows)"
        in capsys.readouterr().err
    )


def test_the_demo_takes_options_for_its_comparisons_and_fails_before_serving_on_a_bad_one(
    tiny_sam, monkeypatch, capsys
):
    pytest.importorskip("gradio")
    from subobject_vlm.demo import page

    served = {}
    monkeypatch.setattr(page, "build_demo", lambda **kwargs: served.update(kwargs) or "page")
    monkeypatch.setattr(page, "launch", lambda demo, **kwargs: served.update(launched=demo))
    name = f"sam:{tiny_sam}"
    argv = ["demo", "--compare", name, "--port", "7861"]
    assert main([*argv, "--compare-option", name, "points_per_side=2"]) == 0
    assert served["compare_options"] == {name: {"points_per_side": 2}} and served["launched"] == "page"
    served.clear()
    assert main([*argv, "--compare-option", name, "bogus=1"]) == 2
    assert "the sam tokenizer has no option 'bogus'" in capsys.readouterr().err and not served
    assert main([*argv, "--compare-option", "slic", "a=1"]) == 2
    assert f"'slic' is not among the tokenizers ({name})" in capsys.readouterr().err


def test_the_demo_comparison_row_runs_each_tokenizer_with_its_options(scratch_registry, astronaut):
    from subobject_vlm.demo.pipeline import add_baselines, demo_segmenter, tokenize

    _register_rows(scratch_registry)
    segmenter = demo_segmenter()
    result = tokenize(
        astronaut[:64, :96], SegmentationSettings("gradient", max_tokens=8), segmenter, baselines=False
    )
    add_baselines(result, segmenter, ["test-rows"], options={"test-rows": {"horizontal": True}})
    count = result.tokens["ours"]
    rows = result.label_maps["test-rows"]
    assert (rows == rows[:, :1]).all() and rows.max() + 1 == count  # constant along each row: rows, as asked
