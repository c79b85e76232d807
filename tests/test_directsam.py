"""BoundaryPredictor: loading DirectSAM SegFormer and EdgeNet checkpoints and running them."""

import numpy as np
import pytest
import torch
from transformers import SegformerConfig, SegformerForSemanticSegmentation
from transformers.modeling_outputs import SemanticSegmenterOutput

from subobject_vlm.segmentation import BoundaryPredictor, load_boundary_model, segment
from subobject_vlm.segmentation.predictor import crop_edge_weights, pyramid_crop_boxes

TINY_SEGFORMER = dict(
    num_channels=3,
    num_encoder_blocks=2,
    depths=[1, 1],
    sr_ratios=[2, 1],
    hidden_sizes=[8, 16],
    patch_sizes=[7, 3],
    strides=[4, 2],
    num_attention_heads=[1, 1],
    mlp_ratios=[2, 2],
    decoder_hidden_size=16,
    num_labels=1,
)


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    """A tiny random DirectSAM SegFormer saved the way the public checkpoints are (safetensors + preprocessor config)."""
    from transformers import SegformerImageProcessor

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("tiny-directsam")
    SegformerForSemanticSegmentation(SegformerConfig(**TINY_SEGFORMER)).save_pretrained(path)
    SegformerImageProcessor(size={"height": 64, "width": 64}, do_reduce_labels=True).save_pretrained(path)
    return path


def test_a_locally_saved_checkpoint_loads_and_gives_maps_at_image_size(tiny_checkpoint):
    model = BoundaryPredictor.from_pretrained(tiny_checkpoint)
    assert model.resolution == 64  # read from the checkpoint's preprocessor config
    images = [
        np.full((40, 70, 3), 120, np.uint8),
        np.random.default_rng(0).integers(0, 255, (33, 21, 3), np.uint8),
    ]
    probs = model.predict(images)
    assert [p.shape for p in probs] == [(40, 70), (33, 21)]
    assert all(p.dtype == np.float32 and p.min() >= 0 and p.max() <= 1 for p in probs)


def test_batched_inference_matches_one_image_at_a_time(tiny_checkpoint):
    model = BoundaryPredictor.from_pretrained(tiny_checkpoint, batch_size=3)
    images = [np.random.default_rng(i).integers(0, 255, (48, 48, 3), np.uint8) for i in range(3)]
    together = model.predict(images)
    alone = [model.predict([image])[0] for image in images]
    for a, b in zip(together, alone):
        np.testing.assert_allclose(a, b, atol=1e-5)


@pytest.mark.parametrize("keep_aspect", [False, True])
def test_extreme_aspect_ratios_and_tiny_images_work(tiny_checkpoint, keep_aspect):
    model = BoundaryPredictor.from_pretrained(tiny_checkpoint, keep_aspect=keep_aspect)
    for shape in [(1, 1, 3), (1, 300, 3), (300, 2, 3)]:
        [probs] = model.predict([np.zeros(shape, np.uint8)])
        assert probs.shape == shape[:2] and np.isfinite(probs).all()


def test_half_precision_runs(tiny_checkpoint):
    model = BoundaryPredictor.from_pretrained(tiny_checkpoint, dtype="bfloat16")
    assert model.dtype == torch.bfloat16
    [probs] = model.predict([np.zeros((32, 32, 3), np.uint8)])
    assert probs.dtype == np.float32 and probs.shape == (32, 32)


def test_a_checkpoint_with_several_labels_is_rejected(tmp_path):
    SegformerForSemanticSegmentation(SegformerConfig(**{**TINY_SEGFORMER, "num_labels": 3})).save_pretrained(
        tmp_path
    )
    with pytest.raises(ValueError, match="num_labels=1"):
        BoundaryPredictor.from_pretrained(tmp_path)


def test_a_broken_checkpoint_gives_a_clear_error(tmp_path, tiny_checkpoint):
    (tmp_path / "config.json").write_text((tiny_checkpoint / "config.json").read_text())
    (tmp_path / "model.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(ValueError, match="cannot load boundary model checkpoint"):
        BoundaryPredictor.from_pretrained(tmp_path)
    (tmp_path / "config.json").write_text("{ broken json")
    with pytest.raises(ValueError, match="cannot load boundary model checkpoint"):
        BoundaryPredictor.from_pretrained(tmp_path)


def test_a_folder_without_config_is_not_taken_for_a_checkpoint(tmp_path):
    with pytest.raises(ValueError, match="config.json"):
        load_boundary_model(str(tmp_path))


def test_loaded_models_are_cached(tiny_checkpoint):
    assert load_boundary_model(str(tiny_checkpoint)) is load_boundary_model(str(tiny_checkpoint))


def test_segment_runs_a_checkpoint_end_to_end(tiny_checkpoint):
    label_map = segment(
        np.random.default_rng(1).integers(0, 255, (50, 60, 3), np.uint8), str(tiny_checkpoint), max_tokens=8
    )
    assert label_map.shape == (50, 60) and label_map.max() < 8


class PointwiseBoundary(torch.nn.Module):
    """A 'SegFormer' whose logit at each pixel depends on that pixel only (full-resolution output)."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 1, 1)

    def forward(self, pixel_values):
        return SemanticSegmenterOutput(logits=self.conv(pixel_values))


def test_pyramid_crops_agree_with_a_single_pass_for_a_translation_equivariant_model():
    torch.manual_seed(0)
    model = PointwiseBoundary()
    image = np.random.default_rng(0).integers(0, 255, (90, 130, 3), np.uint8)
    single = BoundaryPredictor(model, resolution=None).predict([image])[0]
    for layers in (1, 2):
        pyramid = BoundaryPredictor(model, resolution=None, pyramid_layers=layers, overlap=12).predict(
            [image]
        )[0]
        np.testing.assert_allclose(pyramid, single, atol=1e-5)


def test_pyramid_crops_cover_the_image_with_the_requested_overlap():
    boxes = pyramid_crop_boxes(100, 60, layer=1, overlap=10)
    assert len(boxes) == 4
    covered = np.zeros((60, 100), int)
    for x0, y0, x1, y1 in boxes:
        covered[y0:y1, x0:x1] += 1
        assert crop_edge_weights((x0, y0, x1, y1), 100, 60, 9).shape == (y1 - y0, x1 - x0)
    assert covered.min() >= 1 and covered.max() == 4


def test_crop_edges_inside_the_image_are_down_weighted_and_image_borders_are_not():
    weights = crop_edge_weights((0, 0, 50, 50), 100, 100, padding=9)  # top-left crop
    assert weights[0, 0] == 1 and weights[25, 49] == 0 and weights[25, 44] == 0.5 and weights[25, 40] == 1


def test_default_loads_the_embedded_weights_and_a_missing_one_is_an_error_never_a_swap(
    tiny_checkpoint, monkeypatch
):
    from subobject_vlm.segmentation import api, registry

    monkeypatch.setattr(api, "_CACHE", {})  # not the model an earlier test loaded
    monkeypatch.setattr(registry, "DEFAULT_WEIGHTS_DIR", tiny_checkpoint.parent / "no-weights-here")
    with pytest.raises(FileNotFoundError, match=r"default boundary model is missing from .*no-weights-here"):
        api.load_boundary_model("default")  # (it used to become the gradient model without a word)
    monkeypatch.setattr(registry, "DEFAULT_WEIGHTS_DIR", tiny_checkpoint)
    model = api.load_boundary_model("default")
    assert isinstance(model, BoundaryPredictor) and model.resolution == 64


def test_a_panorama_keeps_the_detail_of_a_normal_photo():
    """Eight photos side by side (300 x 3302): scaled as its 2:1 windows, not squashed to a 36-pixel strip."""
    import cv2
    from conftest import REPO_ROOT
    from PIL import Image

    tiles = []
    for name in ("astronaut", "chelsea", "coffee", "rocket"):
        image = np.array(Image.open(REPO_ROOT / "examples" / "images" / f"{name}.jpg").convert("RGB"))
        tiles.append(
            cv2.resize(
                image, (round(image.shape[1] * 300 / image.shape[0]), 300), interpolation=cv2.INTER_AREA
            )
        )
    panorama = np.concatenate(tiles * 2, axis=1)  # (300, 3302, 3)
    model = load_boundary_model("default")
    assert model._input_size(*panorama.shape[:2]) == (240, 2642)  # a 2:1 window at the model's 480
    assert model._input_size(321, 481) == (320, 480)  # ordinary photos exactly as before
    assert model._input_size(1, 10000)[1] <= 4 * 480 * 480  # a 1-pixel strip stays bounded
    tokens = int(segment(panorama, "default", max_tokens=2000).max()) + 1
    per_tile = sum(int(segment(tile, "default", max_tokens=2000).max()) + 1 for tile in tiles) * 2
    assert tokens >= 0.4 * per_tile  # run at 480 x 44, as before, it gave 38 (400 for the tiles)


def test_small_images_are_enlarged_at_most_four_times():
    model = load_boundary_model("default")  # resolution 480, keep_aspect
    assert model._input_size(1, 1) == (4, 4)
    assert model._input_size(8, 12) == (32, 48)
    assert model._input_size(321, 481) == (320, 480)  # ordinary photos as before
    square = BoundaryPredictor(model.model, resolution=1024, keep_aspect=False)
    assert square._input_size(10, 10) == (40, 40) and square._input_size(600, 500) == (1024, 1024)
