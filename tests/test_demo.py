"""The demo's work as plain functions (``subobject_vlm.demo.pipeline``), its command and its Space file; the page
itself is driven in a real browser by ``test_demo_browser.py``."""

import runpy

import numpy as np
import pytest
from conftest import REPO_ROOT, Stripes, write_tiny_bsds
from PIL import Image

from subobject_vlm.demo.pipeline import (
    add_baselines,
    check_boundary_model_name,
    comparison_names,
    demo_segmenter,
    example_photos,
    highlight_region,
    pictures,
    prepare_image,
    read_ground_truth,
    region_at,
    tokenize,
    write_downloads,
)
from subobject_vlm.evaluation import segmentation_boundaries
from subobject_vlm.segmentation import SegmentationSettings, gradient_boundary_probs


class CountingModel:
    """A boundary model (classical gradients) that counts its calls."""

    name = "test-demo-counting"

    def __init__(self):
        self.calls = 0

    def predict(self, images):
        self.calls += 1
        return [gradient_boundary_probs(image) for image in images]


@pytest.fixture
def counting_model(scratch_registry):
    model = CountingModel()
    scratch_registry.register_boundary_model(model.name, lambda **options: model)
    return model


@pytest.fixture
def stripes(scratch_registry):
    def make_stripes(**options):
        """Vertical stripes."""
        return Stripes()

    scratch_registry.register_label_map_tokenizer("test-stripes", make_stripes)


@pytest.fixture
def photo(astronaut):
    return np.ascontiguousarray(astronaut[::4, ::4])  # 128x128


def settings(**changes) -> SegmentationSettings:
    return SegmentationSettings(
        CountingModel.name, **{"max_tokens": 24, "seeds": "minima", "min_area": 20, **changes}
    )


# --- bad input: one clear line naming the file by its own name -----------------------------------------------


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"this is not a JPEG", "upload.jpg: not an image file Pillow can read"),
        (b"\xff\xd8\xff\xe0 truncated", "upload.jpg: cannot decode image"),
        (b"", "upload.jpg: file is empty"),
    ],
)
def test_a_broken_file_is_named_without_its_temporary_folder(tmp_path, content, message):
    path = tmp_path / "upload.jpg"
    path.write_bytes(content)
    with pytest.raises(ValueError) as raised:
        prepare_image(path)
    assert str(raised.value).startswith(message)
    assert str(tmp_path) not in str(raised.value)


@pytest.mark.parametrize(
    ("size", "message"),
    [((10000, 1), "the image is 10000×1 px; its shorter side"), ((2000, 20), "more elongated than 16:1")],
)
def test_strips_are_refused_with_their_size(tmp_path, size, message):
    path = tmp_path / "strip.png"
    Image.new("RGB", size, (10, 200, 30)).save(path)
    with pytest.raises(ValueError, match=message):
        prepare_image(path)


def test_a_large_image_is_downscaled_with_a_note(tmp_path):
    path = tmp_path / "big.png"
    Image.new("RGB", (3000, 2000), (10, 200, 30)).save(path)
    image, original_shape, notes = prepare_image(path)
    assert image.shape == (683, 1024, 3) and original_shape == (2000, 3000)
    assert notes == ["big.png is 3000×2000 px: tokenized and shown at 1024×683"]


def test_a_decompression_bomb_is_refused_by_name(tmp_path, monkeypatch):
    path = tmp_path / "huge.png"
    Image.new("RGB", (400, 300)).save(path)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 10_000)  # as if the file were gigapixels
    with pytest.raises(ValueError, match="huge.png: too large to decode safely"):
        prepare_image(path)


def test_a_label_map_tokenizer_or_nothing_is_not_a_boundary_model(stripes):
    for name in ("slic", "test-stripes"):
        with pytest.raises(ValueError, match=f"'{name}' is a label-map tokenizer"):
            check_boundary_model_name(name)
    with pytest.raises(ValueError, match="choose a boundary model"):
        check_boundary_model_name("  ")
    assert check_boundary_model_name(" default ") == "default"


def test_a_boundary_family_checkpoint_is_a_boundary_model_and_a_label_map_family_is_not(
    scratch_registry, tmp_path
):
    scratch_registry.register_tokenizer_family("test-edges", "boundary", lambda checkpoint, **options: None)
    scratch_registry.register_tokenizer_family("test-masks", "label_map", lambda checkpoint, **options: None)
    assert check_boundary_model_name(f"test-edges:{tmp_path}") == f"test-edges:{tmp_path}"
    with pytest.raises(ValueError, match="is a label-map tokenizer"):
        check_boundary_model_name(f"test-masks:{tmp_path}")


# --- tokenizing: one boundary map per image, the baselines at our count ----------------------------------------


def test_the_baselines_get_exactly_our_token_count(photo, counting_model):
    result = tokenize(photo, settings(), demo_segmenter())
    counts = result.tokens
    assert set(counts) == {"ours", "patch", "slic", "felzenszwalb"}
    assert 2 <= counts["ours"] <= 24 and len(set(counts.values())) == 1
    for label_map in result.label_maps.values():
        assert label_map.shape == photo.shape[:2] and label_map.dtype == np.int32
    assert result.recall is None and result.model_seconds is not None


def test_a_new_budget_reuses_the_boundary_map(photo, counting_model):
    segmenter = demo_segmenter()
    first = tokenize(photo, settings(max_tokens=24), segmenter)
    for budget in (8, 16, 24):  # the slider moving
        again = tokenize(photo, settings(max_tokens=budget, threshold=0.2), segmenter)
        assert again.tokens["ours"] <= budget and again.model_seconds is None
    assert counting_model.calls == segmenter.model_runs == 1
    assert np.array_equal(again.boundary_probs, first.boundary_probs)
    tokenize(photo[:, ::-1].copy(), settings(), segmenter)  # another image
    tokenize(photo, settings(boundary_model_options={"max_side": 64}), segmenter)  # other model options
    tokenize(photo, settings(boundary_model_options={"device": "cpu"}), segmenter)  # the same output
    assert counting_model.calls == segmenter.model_runs == 3


def test_a_registered_label_map_tokenizer_joins_the_comparison_at_our_count(photo, counting_model, stripes):
    assert comparison_names() == ["patch", "slic", "felzenszwalb", "test-stripes"]
    result = tokenize(photo, settings(), demo_segmenter())
    assert result.tokens["test-stripes"] == result.tokens["ours"]
    assert "test-stripes" in pictures(result)


@pytest.fixture(scope="module")
def tiny_mask2former(tmp_path_factory) -> str:
    """``mask2former:FOLDER`` of a tiny random Mask2Former saved here (never downloaded)."""
    from subobject_vlm.tiny_mask_models import save_tiny_mask_model

    return f"mask2former:{save_tiny_mask_model('mask2former', tmp_path_factory.mktemp('masks') / 'm2f')}"


@pytest.mark.parametrize("kind", ["mask2former", "oneformer", "sam", "sam_hq", "sam2", "edgetam"])
def test_a_mask_tokenizer_asked_for_joins_the_comparison_at_most_at_our_count(
    photo, counting_model, kind, tmp_path
):
    from subobject_vlm.tiny_mask_models import save_tiny_mask_model

    name = f"{kind}:{save_tiny_mask_model(kind, tmp_path / kind)}"
    names = comparison_names([name])
    assert names == ["patch", "slic", "felzenszwalb", name]
    segmenter = demo_segmenter()
    result = add_baselines(tokenize(photo, settings(), segmenter, baselines=False), segmenter, names, "cpu")
    label_map = result.label_maps[name]
    assert label_map.shape == photo.shape[:2] and 1 <= result.tokens[name] <= result.tokens["ours"]
    assert len(np.unique(label_map)) == label_map.max() + 1 and name in pictures(result)


def test_recall_against_a_ground_truth_scores_every_tokenizer(photo, counting_model):
    result = tokenize(photo, settings(), demo_segmenter())
    own = [segmentation_boundaries(result.label_maps["ours"])]
    scored = tokenize(photo, settings(), demo_segmenter(), gt_boundaries=own)
    assert scored.recall["ours"] == 1.0  # its own boundaries, all found
    assert all(0.0 <= r < 1.0 for name, r in scored.recall.items() if name != "ours")


# --- ground truth files ----------------------------------------------------------------------------------------


def test_ground_truth_reads_label_maps_as_npy_and_png(tmp_path):
    label_map = np.zeros((40, 60), np.int32)
    label_map[:, 30:] = 1
    label_map[20:, :] = 2
    np.save(tmp_path / "gt.npy", label_map)
    Image.fromarray(label_map.astype(np.uint16)).save(tmp_path / "gt16.png")
    colours = np.array([[255, 0, 0], [0, 255, 0], [0, 0, 255]], np.uint8)[label_map]
    Image.fromarray(colours).save(tmp_path / "gt_colour.png")
    expected = segmentation_boundaries(label_map)
    for name in ("gt.npy", "gt16.png", "gt_colour.png"):
        [boundaries] = read_ground_truth(tmp_path / name, (40, 60), (40, 60))
        assert np.array_equal(boundaries, expected), name
    [small] = read_ground_truth(tmp_path / "gt.npy", (40, 60), (20, 30))  # the image was downscaled
    assert small.shape == (20, 30) and small.any()


def test_ground_truth_reads_every_annotator_of_a_bsds_mat(tmp_path):
    root = write_tiny_bsds(tmp_path, counts={"val": 1}, size=64)
    boundaries = read_ground_truth(root / "groundTruth" / "val" / "100.mat", (64, 64), (64, 64))
    assert len(boundaries) == 2 and all(b.shape == (64, 64) and b.any() for b in boundaries)


def test_ground_truth_of_another_size_or_kind_is_refused(tmp_path):
    np.save(tmp_path / "gt.npy", np.zeros((10, 10), np.int32))
    with pytest.raises(ValueError, match="gt.npy: the ground truth is 10×10 px, the image 60×40 px"):
        read_ground_truth(tmp_path / "gt.npy", (40, 60), (40, 60))
    np.save(tmp_path / "float.npy", np.zeros((40, 60), np.float32))
    with pytest.raises(ValueError, match="an \\(H, W\\) integer array"):
        read_ground_truth(tmp_path / "float.npy", (40, 60), (40, 60))
    (tmp_path / "broken.mat").write_bytes(b"MATLAB 5.0 truncated")
    with pytest.raises(ValueError, match="broken.mat: not a readable BSDS .mat file"):
        read_ground_truth(tmp_path / "broken.mat", (40, 60), (40, 60))
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(ValueError, match="must be a label map"):
        read_ground_truth(tmp_path / "notes.txt", (40, 60), (40, 60))


# --- what the page shows and offers -----------------------------------------------------------------------------


def test_a_click_finds_the_token_its_area_and_box():
    label_map = np.zeros((10, 20), np.int32)
    label_map[2:5, 3:9] = 1
    assert region_at(label_map, 4, 3) == {"index": 1, "area": 18, "area_fraction": 0.09, "box": (3, 2, 8, 4)}
    assert region_at(label_map, 0, 0)["area"] == 182
    with pytest.raises(ValueError, match="outside the 20×10 image"):
        region_at(label_map, 20, 0)


def test_pictures_show_ours_and_every_baseline(photo, counting_model):
    result = tokenize(photo, settings(), demo_segmenter())
    for view in ("overlay", "mean colour"):
        shown = pictures(result, view)
        assert set(shown) == {"boundary_map", "overlay", "mean_colour", "patch", "slic", "felzenszwalb"}
        assert all(p.shape == photo.shape and p.dtype == np.uint8 for p in shown.values())
    with pytest.raises(ValueError, match="view must be"):
        pictures(result, "sideways")
    outside = result.label_maps["ours"] != 0
    marked = highlight_region(shown["overlay"], result.label_maps["ours"], 0)
    assert marked[outside].mean() < shown["overlay"][outside].mean()  # the rest dimmed
    outlined = (marked != shown["overlay"]).any(axis=2) & ~outside
    assert outlined.any() and (marked[outlined] == (255, 210, 0)).all()  # region 0 outlined in yellow


def test_downloads_are_the_label_map_in_16_bit_png_and_npy_and_the_composite(photo, counting_model, tmp_path):
    result = tokenize(photo, settings(), demo_segmenter())
    paths = write_downloads(result, "my photo", tmp_path)
    assert [p.name for p in paths] == [
        "my_photo_labels.png",
        "my_photo_labels.npy",
        "my_photo_subobjects.png",
    ]
    with Image.open(paths[0]) as png:
        assert png.mode.startswith("I") and np.array_equal(np.asarray(png), result.label_maps["ours"])
    assert (
        np.array_equal(np.load(paths[1]), result.label_maps["ours"]) and np.load(paths[1]).dtype == np.int32
    )
    with Image.open(paths[2]) as picture:
        assert picture.size[0] > 4 * photo.shape[1]  # four panels
    assert not list(tmp_path.glob(".*.tmp"))  # written atomically: no temporaries left


def test_example_photos_are_written_once_from_scikit_image(tmp_path):
    paths = example_photos(tmp_path)
    assert [p.name for p in paths] == ["astronaut.jpg", "coffee.jpg", "chelsea.jpg", "rocket.jpg"]
    stamp = paths[0].stat().st_mtime_ns
    assert example_photos(tmp_path)[0].stat().st_mtime_ns == stamp
    assert prepare_image(paths[1])[0].shape == (400, 600, 3)


# --- the page's handler, without a browser ----------------------------------------------------------------------


def page_handler(**options):
    """The tokenize handler of a page built with ``options``."""
    from subobject_vlm.demo import build_demo

    [function] = [f.fn for f in build_demo(**options).fns.values() if f.api_name == "tokenize"]
    return function


@pytest.fixture(scope="module")
def page_update():
    """The page's tokenize handler (a generator of output tuples) from a built page, on the gradient model."""
    return page_handler(model="gradient")


def run_page(page_update, photo_path, model="gradient", budget=16, ground_truth=None):
    """The last outputs of the handler: (state, 6 images, summary, status, downloads, region info)."""
    outputs = list(page_update(photo_path, model, budget, 0.1, "minima", 20, 0, ground_truth, "overlay"))
    return outputs[-1]


def test_the_page_shows_ours_first_then_every_tokenizer(page_update, photo, tmp_path):
    path = tmp_path / "photo.png"
    Image.fromarray(photo).save(path)
    steps = list(page_update(str(path), "gradient", 16, 0.1, "minima", 20, 0, None, "overlay"))
    assert len(steps) == 2  # ours, then the baselines
    first, last = steps
    assert "computing" in first[4].label and "**photo.png** · 128×128 px" in first[8]
    state, *images = last[:7]
    count = state["result"].tokens["ours"]
    assert all(f" {count} tokens" in image.label for image in images[1:])
    assert [p.split("/")[-1] for p in last[9]] == [
        "photo_labels.png",
        "photo_labels.npy",
        "photo_subobjects.png",
    ]


def test_the_page_runs_the_boundary_model_once_for_several_budgets(photo, tmp_path, counting_model):
    path = tmp_path / "photo.png"
    Image.fromarray(photo).save(path)
    segmenter = demo_segmenter()
    update = page_handler(model=CountingModel.name, segmenter=segmenter)
    statuses = [run_page(update, str(path), CountingModel.name, budget)[8] for budget in (16, 8, 24, 16)]
    assert counting_model.calls == segmenter.model_runs == 1
    assert "ran in" in statuses[0] and all("reused from the cache" in status for status in statuses[1:])


def test_the_page_shows_a_registered_label_map_tokenizer_titled_by_its_summary(photo, tmp_path, stripes):
    path = tmp_path / "photo.png"
    Image.fromarray(photo).save(path)
    state, *images, summary, status, downloads, _ = run_page(page_handler(model="gradient"), str(path))
    count = state["result"].tokens["ours"]
    assert len(images) == 7 and images[-1].label == f"Vertical stripes · {count} tokens"
    assert f"| Vertical stripes | {count} |" in summary


def test_the_page_shows_a_mask_tokenizer_titled_by_its_family_and_checkpoint(
    photo, tmp_path, tiny_mask2former
):
    path = tmp_path / "photo.png"
    Image.fromarray(photo).save(path)
    update = page_handler(model="gradient", compare=[tiny_mask2former])
    state, *images, summary, status, downloads, _ = run_page(update, str(path))
    count = state["result"].tokens[tiny_mask2former]
    assert count <= state["result"].tokens["ours"]
    assert images[-1].label == f"Mask2Former's panoptic segments as label maps (m2f) · {count} tokens"
    assert f"| Mask2Former's panoptic segments as label maps (m2f) | {count} |" in summary


@pytest.mark.parametrize(
    ("model", "message"),
    [
        ("/no/such/checkpoint", "unknown tokenizer '/no/such/checkpoint'"),
        ("slic", "'slic' is a label-map tokenizer"),
        ("{tmp}", "is not a checkpoint folder (no config.json)"),
    ],
)
def test_a_bad_model_is_a_message_in_the_page(page_update, photo, tmp_path, model, message):
    path = tmp_path / "photo.png"
    Image.fromarray(photo).save(path)
    with pytest.warns(UserWarning):  # gr.Warning outside a request: a Python warning
        state, *_, status, downloads, _ = run_page(page_update, str(path), model=model.format(tmp=tmp_path))
    assert state is None and downloads is None and message in status


def test_a_ground_truth_of_the_wrong_size_is_ignored_with_a_warning(page_update, photo, tmp_path):
    path, gt = tmp_path / "photo.png", tmp_path / "gt.npy"
    Image.fromarray(photo).save(path)
    np.save(gt, np.zeros((5, 5), np.int32))
    with pytest.warns(UserWarning, match="ground truth ignored"):
        state, *_ = run_page(page_update, str(path), ground_truth=str(gt))
    assert state["result"].recall is None


# --- the command and the Space ----------------------------------------------------------------------------------


def test_the_demo_command_refuses_a_mistyped_model_before_serving(capsys):
    from subobject_vlm.cli import main

    assert main(["demo", "--model", "no-such-model", "--port", "1"]) == 2
    assert "unknown tokenizer 'no-such-model'" in capsys.readouterr().err


def test_the_demo_command_refuses_a_label_map_tokenizer_as_its_model(capsys):
    from subobject_vlm.cli import main

    assert main(["demo", "--model", "slic", "--port", "1"]) == 2
    assert "'slic' is a label-map tokenizer" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("name", "message"),
    [("gradient", "--compare 'gradient' is a boundary model"), ("sam", "unknown tokenizer 'sam'")],
)
def test_the_demo_command_refuses_a_comparison_that_is_not_a_label_map_tokenizer(capsys, name, message):
    from subobject_vlm.cli import main

    assert main(["demo", "--compare", name, "--port", "1"]) == 2
    error = capsys.readouterr().err
    assert message in error and error.count("\n") == 1


def test_the_demo_command_without_gradio_says_how_to_install_it(monkeypatch, capsys):
    import sys

    from subobject_vlm.cli import main

    monkeypatch.setitem(sys.modules, "gradio", None)  # as if the demo extra were not installed
    monkeypatch.delitem(sys.modules, "subobject_vlm.demo.page", raising=False)
    assert main(["demo"]) == 2
    assert 'pip install -e ".[demo]"' in capsys.readouterr().err


def test_the_space_file_builds_the_page_without_serving():
    import gradio

    space = runpy.run_path(str(REPO_ROOT / "app.py"), run_name="space")  # not __main__: no launch
    assert isinstance(space["demo"], gradio.Blocks)


def test_the_space_requirements_are_the_package_dependencies_and_gradio():
    tomllib = pytest.importorskip("tomllib", reason="Python 3.11+ reads pyproject.toml")
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    wanted = {*project["dependencies"], *project["optional-dependencies"]["demo"]}
    lines = (REPO_ROOT / "requirements.txt").read_text().splitlines()
    listed = {line.strip() for line in lines if line.strip() and not line.startswith("#")}
    assert listed == wanted
