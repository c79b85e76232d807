"""Mask-model tokenizers (issue 22): masks -> label maps by the stated rules, and the SAM, SAM 2, Mask2Former and
OneFormer tokenizers on tiny random models built here (never downloaded), plus the real public configs of one
checkpoint per family, built on the meta device."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from test_properties import assert_label_map

from subobject_vlm.segmentation import mask_models
from subobject_vlm.segmentation.masks import mask_edge_probs, masks_to_label_map, paint_masks
from subobject_vlm.tiny_mask_models import MASK_KINDS, save_tiny_mask_model

CONFIGS = Path(__file__).parent / "data" / "mask_configs"
ODD_SIZES = [(37, 53), (1, 40), (40, 1), (64, 64)]
# Options that make the tiny random models' masks many, overlapping and leaving holes (see tiny_mask_models).
TINY_OPTIONS = {
    "sam": dict(points_per_side=4, pred_iou_thresh=0.0, stability_score_thresh=0.0, box_nms_thresh=1.0),
    "sam_hq": dict(points_per_side=4, pred_iou_thresh=0.0, stability_score_thresh=0.0, box_nms_thresh=1.0),
    "sam2": dict(points_per_side=4, pred_iou_thresh=0.0, stability_score_thresh=0.0, crops_n_layers=1),
    "edgetam": dict(points_per_side=4, pred_iou_thresh=0.0, stability_score_thresh=0.0),
    "mask2former": dict(overlap_mask_area_threshold=0.2),
    "oneformer": dict(),
}


def rectangles(shape, boxes) -> np.ndarray:
    """``(N, H, W)`` bool masks, one filled rectangle ``(y0, y1, x0, x1)`` each."""
    masks = np.zeros((len(boxes), *shape), dtype=bool)
    for mask, (y0, y1, x0, x1) in zip(masks, boxes):
        mask[y0:y1, x0:x1] = True
    return masks


def random_images(seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (*size, 3), dtype=np.uint8) for size in ODD_SIZES]


# --- masks -> label map ------------------------------------------------------------------------------------


def test_a_pixel_under_two_masks_goes_to_the_smaller_one():
    masks = rectangles((10, 10), [(0, 10, 0, 10), (2, 5, 2, 5)])  # a part on top of its whole
    label_map = masks_to_label_map(masks, [0.99, 0.5])
    assert_label_map(label_map, (10, 10), connected=0)
    assert len(np.unique(label_map)) == 2 and (label_map[2:5, 2:5] == label_map[3, 3]).all()
    assert np.count_nonzero(label_map == label_map[3, 3]) == 9


def test_equal_masks_go_to_the_higher_score():
    masks = rectangles((6, 6), [(0, 6, 0, 3), (0, 6, 0, 3), (0, 6, 3, 6)])
    owner = paint_masks(masks, np.array([0.2, 0.9, 0.5]))
    assert (owner[:, :3] == 1).all() and (owner[:, 3:] == 2).all()
    assert len(np.unique(masks_to_label_map(masks, [0.2, 0.9, 0.5]))) == 2  # the duplicate adds no region


def test_uncovered_components_become_regions_of_their_own():
    masks = rectangles((9, 9), [(0, 9, 3, 6)])  # a vertical band: two uncovered sides
    label_map = masks_to_label_map(masks, min_hole_area=1)
    assert_label_map(label_map, (9, 9))
    assert len(np.unique(label_map)) == 3


def test_holes_smaller_than_min_hole_area_join_the_nearest_region():
    masks = rectangles((10, 20), [(0, 10, 0, 9), (0, 10, 10, 20)])  # a one-pixel sliver between two masks
    label_map = masks_to_label_map(masks, min_hole_area=11)
    assert_label_map(label_map, (10, 20))
    assert len(np.unique(label_map)) == 2
    assert len(np.unique(masks_to_label_map(masks, min_hole_area=10))) == 3  # 10 pixels: a region


def test_no_masks_make_one_region():
    for shape in [(5, 7), (1, 40), (1, 1)]:
        label_map = masks_to_label_map(np.zeros((0, *shape), dtype=bool), max_tokens=3)
        assert_label_map(label_map, shape)
        assert label_map.max() == 0


def test_the_budget_merges_across_the_border_fewest_masks_draw():
    # A whole object (left) with two parts, and a second object (right): the parts' shared border is drawn by
    # the parts alone, the objects' border by every mask; at two tokens the parts merge, the objects stay apart.
    masks = rectangles((8, 16), [(0, 8, 0, 8), (0, 8, 0, 4), (0, 8, 4, 8), (0, 8, 8, 16)])
    label_map = masks_to_label_map(masks, [0.9, 0.8, 0.8, 0.9], max_tokens=2)
    assert_label_map(label_map, (8, 16), max_tokens=2)
    assert (label_map[:, :8] == label_map[0, 0]).all() and (label_map[:, 8:] == label_map[0, 15]).all()
    assert label_map[0, 0] != label_map[0, 15]


def test_a_given_boundary_map_decides_the_budget_merge_instead():
    masks = rectangles((8, 16), [(0, 8, 0, 8), (0, 8, 0, 4), (0, 8, 4, 8), (0, 8, 8, 16)])
    probs = np.zeros((8, 16), dtype=np.float32)
    probs[:, 3:5] = 1.0  # a strong edge between the parts, none between the objects
    label_map = masks_to_label_map(masks, max_tokens=2, boundary_probs=probs)
    assert_label_map(label_map, (8, 16), max_tokens=2)
    assert label_map[0, 0] != label_map[0, 7] and label_map[0, 7] == label_map[0, 15]


def test_mask_edge_evidence_sums_the_scores_of_the_masks_drawing_an_edge():
    masks = rectangles((4, 8), [(0, 4, 0, 4), (0, 4, 0, 2)])
    probs = mask_edge_probs(masks, np.array([1.0, 0.0]))
    assert probs.max() == 1.0 and probs[0, 0] == 0.0
    assert probs[0, 3] == pytest.approx(1.0) and probs[0, 1] == pytest.approx(0.01 / 1.01)


@settings(max_examples=60, deadline=None, derandomize=True)
@given(st.data())
def test_any_masks_give_a_full_coverage_map_within_budget(data):
    height, width = data.draw(st.integers(1, 12)), data.draw(st.integers(1, 12))
    count = data.draw(st.integers(0, 7))
    masks = data.draw(arrays(bool, (count, height, width)))
    scores = data.draw(arrays(np.float64, (count,), elements=st.floats(-1, 2)))
    max_tokens = data.draw(st.one_of(st.none(), st.integers(1, 10)))
    min_hole_area = data.draw(st.one_of(st.none(), st.integers(0, 6)))
    label_map = masks_to_label_map(masks, scores, max_tokens=max_tokens, min_hole_area=min_hole_area)
    assert_label_map(label_map, (height, width), max_tokens, connected=0)


def test_masks_of_the_wrong_shape_are_refused_in_one_line():
    with pytest.raises(ValueError, match=r"masks must be an \(N, H, W\) array, got shape \(4, 4\)"):
        masks_to_label_map(np.zeros((4, 4), dtype=bool))
    with pytest.raises(ValueError, match="one number per mask"):
        masks_to_label_map(np.zeros((2, 4, 4), dtype=bool), [0.5])


# --- the tokenizers on tiny random models ------------------------------------------------------------------


@pytest.fixture(scope="session")
def tiny_mask_folders(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("tiny-mask-models")
    return {kind: save_tiny_mask_model(kind, root / kind) for kind in MASK_KINDS}


@pytest.fixture(scope="session")
def tiny_tokenizers(tiny_mask_folders) -> dict:
    return {
        kind: getattr(mask_models, f"create_{kind}_tokenizer")(str(folder), **TINY_OPTIONS[kind])
        for kind, folder in tiny_mask_folders.items()
    }


@pytest.mark.parametrize("kind", MASK_KINDS)
@pytest.mark.parametrize("max_tokens", [1, 5, 128, None])
def test_each_mask_tokenizer_gives_valid_label_maps_on_odd_sizes_and_budgets(
    tiny_tokenizers, kind, max_tokens
):
    images = random_images()
    label_maps = tiny_tokenizers[kind].label_maps(images, max_tokens)
    assert len(label_maps) == len(images)
    for image, label_map in zip(images, label_maps):
        assert_label_map(label_map, image.shape[:2], max_tokens, connected=0)


@pytest.mark.parametrize("kind", MASK_KINDS)
def test_each_mask_tokenizer_is_named_by_its_family_and_checkpoint(tiny_tokenizers, tiny_mask_folders, kind):
    assert tiny_tokenizers[kind].name == f"{kind}:{tiny_mask_folders[kind]}"


def test_sam_masks_that_overlap_and_outnumber_the_budget_still_cover_every_pixel(tiny_tokenizers):
    image = random_images()[0]
    [(masks, scores)] = tiny_tokenizers["sam"].masks([image])
    assert len(masks) > 5 and masks.sum(axis=0).max() > 1  # overlapping, more than the budget
    [label_map] = tiny_tokenizers["sam"].label_maps([image], max_tokens=5)
    assert_label_map(label_map, image.shape[:2], 5, connected=0)


@pytest.mark.parametrize(
    "kind, size, iou",
    [
        ("sam", (37, 53), 5e-5),
        ("sam_hq", (37, 53), 1e-5),
        ("sam2", (48, 48), 0.5),
        ("edgetam", (48, 48), 0.5),
    ],
)
def test_automatic_masks_equal_the_transformers_mask_generation_pipeline(kind, size, iou, tiny_mask_folders):
    # (SAM 2 / EdgeTAM on a square image: the pipeline places their points as SAM's, off on other shapes)
    from PIL import Image
    from transformers import AutoImageProcessor, AutoModel, pipeline

    folder = str(tiny_mask_folders[kind])
    image = np.random.default_rng(1).integers(0, 256, (*size, 3), dtype=np.uint8)
    knobs = dict(pred_iou_thresh=iou, stability_score_thresh=0.0)  # ~ the median IoU the tiny model predicts
    tokenizer = getattr(mask_models, f"create_{kind}_tokenizer")(
        folder, points_per_side=4, box_nms_thresh=1.0, **knobs
    )
    [(ours, our_scores)] = tokenizer.masks([image])
    generator = pipeline(
        "mask-generation",
        model=AutoModel.from_pretrained(folder),
        image_processor=AutoImageProcessor.from_pretrained(folder),
        device="cpu",
    )
    theirs = generator(Image.fromarray(image), points_per_crop=4, crops_nms_thresh=1.0, **knobs)
    assert 0 < len(ours) < 3 * 16  # the IoU filter kept some masks, not all
    assert np.array_equal(ours, np.stack([mask.numpy() for mask in theirs["masks"]]))
    assert np.allclose(our_scores, theirs["scores"].numpy())


def test_panoptic_pixels_left_unlabelled_become_regions(tiny_tokenizers):
    image = random_images()[0]
    [(masks, _)] = tiny_tokenizers["oneformer"].masks([image])
    assert len(masks) and not masks.any(axis=0).all()  # segments that leave holes
    [label_map] = tiny_tokenizers["oneformer"].label_maps([image])
    assert len(np.unique(label_map)) > len(masks)


def test_a_batch_of_mixed_sizes_gives_the_maps_of_single_images(tiny_tokenizers):
    images = random_images()
    for kind in ("mask2former", "sam2"):
        together = tiny_tokenizers[kind].label_maps(images, 5)
        alone = [tiny_tokenizers[kind].label_maps([image], 5)[0] for image in images]
        assert all(np.array_equal(a, b) for a, b in zip(together, alone))


@pytest.mark.parametrize("kind", MASK_KINDS)
def test_each_mask_tokenizer_runs_in_half_precision(kind, tiny_mask_folders):
    with pytest.warns(UserWarning, match="on CPU is emulated"):
        tokenizer = getattr(mask_models, f"create_{kind}_tokenizer")(
            str(tiny_mask_folders[kind]), dtype="bfloat16", **TINY_OPTIONS[kind]
        )
    assert tokenizer.dtype == torch.bfloat16
    [label_map] = tokenizer.label_maps(random_images()[:1], 5)
    assert_label_map(label_map, ODD_SIZES[0], 5, connected=0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (CI and tests never require one)")
@pytest.mark.parametrize("kind", MASK_KINDS)
def test_each_mask_tokenizer_on_cuda_gives_the_label_maps_of_the_cpu(
    kind, tiny_mask_folders, tiny_tokenizers, monkeypatch
):
    # full float32 on the GPU (cuDNN's convolutions default to TF32, ~1e-3 off): the test is of where tensors
    # live, not of TF32's rounding, which can flip a tiny random model's near-threshold masks
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)
    monkeypatch.setattr(torch.backends.cuda.matmul, "allow_tf32", False)
    create = getattr(mask_models, f"create_{kind}_tokenizer")
    on_gpu = create(str(tiny_mask_folders[kind]), device="cuda", **TINY_OPTIONS[kind])
    images = random_images()
    for cpu_map, gpu_map in zip(tiny_tokenizers[kind].label_maps(images, 5), on_gpu.label_maps(images, 5)):
        assert (cpu_map == gpu_map).mean() > 0.95  # other kernels, other float order: nearly the same pixels


@pytest.mark.parametrize(("kind", "video"), [("sam2", "Sam2VideoModel"), ("edgetam", "EdgeTamVideoModel")])
def test_sam2_and_edgetam_load_a_checkpoint_saved_as_the_video_model(
    tiny_mask_folders, tmp_path, kind, video
):
    folder = shutil.copytree(tiny_mask_folders[kind], tmp_path / f"{kind}-video")
    config = json.loads((folder / "config.json").read_text())
    config.update(model_type=f"{kind}_video", architectures=[video])  # as the SAM 2.1 hub checkpoints
    (folder / "config.json").write_text(json.dumps(config))
    tokenizer = getattr(mask_models, f"create_{kind}_tokenizer")(str(folder), points_per_side=2)
    [label_map] = tokenizer.label_maps(random_images()[:1], 4)
    assert_label_map(label_map, ODD_SIZES[0], 4, connected=0)


def test_oneformer_never_fetches_its_class_metadata(tiny_mask_folders, tmp_path):
    folder = shutil.copytree(tiny_mask_folders["oneformer"], tmp_path / "oneformer")
    saved = json.loads((folder / "processor_config.json").read_text())
    saved["image_processor"].update(
        class_info_file="ade20k_panoptic.json", repo_path="shi-labs/oneformer_demo"
    )
    (folder / "processor_config.json").write_text(json.dumps(saved))  # as the hub checkpoints name it
    tokenizer = mask_models.create_oneformer_tokenizer(str(folder))  # offline: a fetch would fail
    assert tokenizer.label_maps(random_images()[:1], 3)[0].max() < 3


def test_a_checkpoint_of_another_architecture_is_refused_by_name(tiny_mask_folders):
    with pytest.raises(
        ValueError, match=r"is a 'mask2former' checkpoint; the sam tokenizer needs one of \['sam'\]"
    ):
        mask_models.create_sam_tokenizer(str(tiny_mask_folders["mask2former"]))


def test_an_unknown_option_is_refused_with_the_options_there_are(tiny_mask_folders):
    with pytest.raises(
        ValueError, match="the sam tokenizer has no option 'threshold'; its options: device, dtype, "
    ):
        mask_models.create_sam_tokenizer(str(tiny_mask_folders["sam"]), threshold=0.5)
    with pytest.raises(ValueError, match="points_per_side must be an integer >= 1, got 0"):
        mask_models.create_sam_tokenizer("no/such-checkpoint", points_per_side=0)  # before any load


def test_a_missing_folder_that_is_no_hub_id_is_refused(tmp_path):
    with pytest.raises(ValueError, match="neither a local checkpoint folder nor a hub id"):
        mask_models.create_mask2former_tokenizer(str(tmp_path / "no" / "such" / "folder"))


def test_images_that_are_not_rgb_are_refused_by_index(tiny_tokenizers):
    with pytest.raises(ValueError, match=r"images\[1\] must be an \(H, W, 3\) uint8 RGB array"):
        tiny_tokenizers["mask2former"].label_maps([random_images()[0], np.zeros((4, 4), np.uint8)], 3)


# --- the real public configs -------------------------------------------------------------------------------

# Parameters of the published checkpoints: SAM ViT-B 93.7M; SAM-HQ ViT-B 94.8M; SAM 2.1 Hiera-T 38.9M with its video memory, of which
# Sam2Model (the image model) holds 31.4M; EdgeTAM's image model 9.1M (RepViT-M1 4.9M); Mask2Former Swin-T 47.4M;
# OneFormer Swin-T (ADE20K) 50.7M.
REAL_CONFIGS = {
    "sam-vit-base.json": (mask_models.SamTokenizer, 90e6, 97e6),
    "sam-hq-vit-base.json": (mask_models.SamHqTokenizer, 94e6, 96e6),
    "sam2.1-hiera-tiny.json": (mask_models.Sam2Tokenizer, 30e6, 39e6),
    "edgetam.json": (mask_models.EdgeTamTokenizer, 8.5e6, 10e6),
    "mask2former-swin-tiny-coco-panoptic.json": (mask_models.Mask2FormerTokenizer, 45e6, 50e6),
    "oneformer_ade20k_swin_tiny.json": (mask_models.OneFormerTokenizer, 48e6, 53e6),
}


@pytest.mark.parametrize("name", REAL_CONFIGS)
def test_the_real_public_configs_build_their_models_on_the_meta_device(name, tmp_path):
    import transformers

    tokenizer_class, low, high = REAL_CONFIGS[name]
    shutil.copy(CONFIGS / name, tmp_path / "config.json")
    config_dict = mask_models._check_model_type(
        str(tmp_path), name, tokenizer_class.kind, tokenizer_class.model_types
    )
    model_class = getattr(transformers, tokenizer_class._model_class)
    config = model_class.config_class.from_pretrained(tmp_path)
    with torch.device("meta"):
        model = model_class(config)
    assert config_dict["model_type"] in tokenizer_class.model_types
    assert low <= sum(p.numel() for p in model.parameters()) <= high


# --- every entry point, through the registry -------------------------------------------------------------


def family_name(kind: str, folders: dict[str, Path]) -> str:
    return f"{kind}:{folders[kind]}"


@pytest.mark.parametrize("kind", MASK_KINDS)
def test_each_family_is_a_label_map_tokenizer_in_the_registry(kind, tiny_mask_folders):
    from subobject_vlm.segmentation.registry import LABEL_MAP, registered_names, tokenizer_kind

    assert tokenizer_kind(family_name(kind, tiny_mask_folders)) == LABEL_MAP
    assert f"{kind}:" in registered_names(LABEL_MAP)


@pytest.mark.parametrize("kind", MASK_KINDS)
def test_segment_runs_each_mask_tokenizer_by_name_with_its_options(kind, tiny_mask_folders):
    from subobject_vlm.segmentation import segment

    image = random_images()[0]
    label_map = segment(image, family_name(kind, tiny_mask_folders), max_tokens=6, **TINY_OPTIONS[kind])
    assert_label_map(label_map, image.shape[:2], 6, connected=0)


@pytest.mark.parametrize("kind", MASK_KINDS)
def test_the_segmenter_batches_each_mask_tokenizer_at_label_size(kind, tiny_mask_folders):
    from subobject_vlm.segmentation import SegmentationSettings, Segmenter

    settings = SegmentationSettings(family_name(kind, tiny_mask_folders), TINY_OPTIONS[kind], max_tokens=7)
    label_maps = Segmenter(settings, label_size=(24, 40)).label_maps(random_images())
    for label_map in label_maps:
        assert_label_map(label_map, (24, 40), 7, connected=0)


@pytest.mark.parametrize("kind", MASK_KINDS)
def test_the_image_processor_takes_a_mask_tokenizer_as_its_boundary_model(kind, tiny_mask_folders):
    from subobject_vlm import SubobjectImageProcessor

    processor = SubobjectImageProcessor(
        boundary_model=family_name(kind, tiny_mask_folders),
        boundary_model_options=TINY_OPTIONS[kind],
        max_tokens=9,
        label_size={"height": 16, "width": 16},
    )
    batch = processor(random_images()[:2], return_tensors="pt")
    assert batch["label_maps"].shape == (2, 16, 16)
    assert all(1 <= n <= 9 for n in batch["num_tokens"].tolist())
    assert batch["boxes"].shape == (int(batch["num_tokens"].sum()), 4)


@pytest.fixture
def photo_folder(tmp_path, astronaut) -> Path:
    folder = tmp_path / "photos"
    folder.mkdir()
    from PIL import Image

    Image.fromarray(astronaut[::8, ::8]).save(folder / "astronaut.png")  # 64 x 64
    Image.fromarray(astronaut[:40, :1]).save(folder / "strip.png")  # 40 x 1
    return folder


@pytest.mark.parametrize("kind", MASK_KINDS)
def test_the_segment_command_runs_each_mask_tokenizer(kind, tiny_mask_folders, photo_folder, tmp_path):
    from subobject_vlm.cli import main

    out = tmp_path / "out"
    model = family_name(kind, tiny_mask_folders)
    argv = ["segment", str(photo_folder), "--out", str(out), "--model", model, "--max-tokens", "5"]
    assert main([*argv, "--save-labels", "npy"]) == 0
    assert_label_map(np.load(out / "astronaut.npy"), (64, 64), 5, connected=0)
    assert_label_map(np.load(out / "strip.npy"), (40, 1), 5, connected=0)
    summary = json.loads((out / "summary.json").read_text())
    assert all(1 <= record["tokens"] <= 5 for record in summary["images"])


@pytest.mark.parametrize("kind", MASK_KINDS)
def test_precompute_writes_the_label_maps_of_each_mask_tokenizer(
    kind, tiny_mask_folders, photo_folder, tmp_path
):
    from subobject_vlm.commands import main
    from subobject_vlm.data.precompute import decode_label_map, load_precomputed

    out = tmp_path / "pre"
    model = family_name(kind, tiny_mask_folders)
    argv = ["precompute", str(photo_folder), "--out", str(out), "--model", model, "--max-tokens", "6"]
    assert main([*argv, "--label-size", "24"]) == 0
    rows = list(load_precomputed(out))
    assert len(rows) == 2
    for row in rows:
        assert_label_map(decode_label_map(row["label_map"]), (24, 24), 6, connected=0)


@pytest.mark.parametrize("kind", MASK_KINDS)
def test_eval_bsds_compares_each_mask_tokenizer_at_our_token_counts(kind, tiny_mask_folders, tmp_path):
    from conftest import write_tiny_bsds

    from subobject_vlm.cli import main

    root = write_tiny_bsds(tmp_path / "bsds", {"val": 1}, size=48)
    out = tmp_path / "eval"
    model = family_name(kind, tiny_mask_folders)
    argv = ["eval-bsds", "--root", str(root), "--limit", "1", "--max-tokens", "8", "--workers", "1"]
    assert (
        main([*argv, "--model", "gradient", "--baselines", model, "--thresholds", "3", "--out", str(out)])
        == 0
    )
    report = json.loads((out / "metrics.json").read_text())
    [image] = report["per_image"]
    assert 1 <= image["tokens"]["8"][model]["tokens"] <= image["tokens"]["8"]["gradient"]["tokens"]


def test_eval_bsds_takes_a_mask_tokenizer_as_the_model(tiny_mask_folders, tmp_path):
    from conftest import write_tiny_bsds

    from subobject_vlm.cli import main

    root = write_tiny_bsds(tmp_path / "bsds", {"val": 1}, size=48)
    model = family_name("sam", tiny_mask_folders)
    argv = ["eval-bsds", "--root", str(root), "--limit", "1", "--max-tokens", "8", "--workers", "1"]
    assert main([*argv, "--model", model, "--baselines", "--out", str(tmp_path / "eval")]) == 0
    report = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert report["boundary"] is None and 1 <= report["tokens"][model]["8"]["tokens"] <= 8
