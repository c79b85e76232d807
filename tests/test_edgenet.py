"""EdgeNet: its fixed colour-gradient channels, the model, loading through the Auto classes and BoundaryPredictor,
training it with train-boundary, and the non-maximum suppression used by the boundary benchmark."""

import dataclasses

import cv2
import numpy as np
import pytest
import torch
from transformers import AutoConfig, AutoModelForSemanticSegmentation

from subobject_vlm.evaluation import non_maximum_suppression
from subobject_vlm.segmentation import (
    BoundaryPredictor,
    EdgeNetConfig,
    EdgeNetForBoundaryDetection,
    gradient_boundary_probs,
)
from subobject_vlm.segmentation.edgenet import gaussian_blur, handcrafted_features, rgb_to_lab
from subobject_vlm.segmentation.losses import boundary_loss
from subobject_vlm.training.boundary_config import load_config
from subobject_vlm.training.boundary_data import IGNORE_INDEX, transform_sample


def tiny_edgenet(**overrides) -> EdgeNetForBoundaryDetection:
    torch.manual_seed(0)
    return EdgeNetForBoundaryDetection(EdgeNetConfig(widths=(4, 4, 8, 8), **overrides)).eval()


def as_batch(image: np.ndarray) -> torch.Tensor:
    """``(H, W, 3)`` uint8 -> ``(1, 3, H, W)`` float in [0, 1]."""
    return torch.from_numpy(image).permute(2, 0, 1)[None].float() / 255.0


# -------------------------------------------------------------------------------------------- features


def test_lab_conversion_matches_opencv():
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, size=(16, 16, 3), dtype=np.uint8)
    reference = cv2.cvtColor(rgb.astype(np.float32) / 255.0, cv2.COLOR_RGB2LAB)  # L 0..100, a/b signed
    ours = rgb_to_lab(as_batch(rgb))[0].permute(1, 2, 0).numpy()
    # OpenCV tabulates the sRGB gamma curve: agreement to a few tenths of a Lab unit
    np.testing.assert_allclose(ours[..., 0] / 2.55, reference[..., 0], atol=0.3)
    np.testing.assert_allclose(ours[..., 1:] - 128, reference[..., 1:], atol=0.5)


@pytest.mark.parametrize("sigma", [1.0, 2.5])
def test_gaussian_blur_matches_opencv_with_reflected_borders(sigma):
    rng = np.random.default_rng(1)
    image = rng.random((40, 50)).astype(np.float32)
    radius = int(np.ceil(4 * sigma))
    reference = cv2.GaussianBlur(
        image, (2 * radius + 1, 2 * radius + 1), sigma, borderType=cv2.BORDER_REFLECT_101
    )
    ours = gaussian_blur(torch.from_numpy(image)[None, None], sigma)[0, 0].numpy()
    np.testing.assert_allclose(ours, reference, atol=1e-4)


def test_first_channel_is_the_classical_gradient_map(astronaut):
    image = astronaut[::2, ::2]  # 256 x 256
    features = handcrafted_features(as_batch(image))  # (1, 16, H, W)
    assert features.shape == (1, 16, 256, 256) and torch.isfinite(features).all()
    classical = (features[0, 0].numpy() + 1) / 2
    reference = gradient_boundary_probs(image)
    assert np.abs(classical - reference).mean() < 0.01
    assert np.corrcoef(classical.ravel(), reference.ravel())[0, 1] > 0.99


def test_orientation_channels_follow_the_edge_direction():
    image = np.zeros((64, 64, 3), np.uint8)
    image[:, 32:] = 255  # a vertical edge: gradient along x, so (Jxx - Jyy) / trace is +1 at the edge
    vertical = handcrafted_features(as_batch(image))[0]
    horizontal = handcrafted_features(as_batch(np.ascontiguousarray(image.transpose(1, 0, 2))))[0]
    assert vertical[3, 32, 31] > 0.9 and horizontal[3, 31, 32] < -0.9


def test_features_of_a_flat_image_are_zero_gradients_without_nans():
    features = handcrafted_features(torch.full((2, 3, 20, 30), 0.5))
    assert torch.isfinite(features).all()
    assert torch.all(features[:, 0] == -1)  # classical map 0 everywhere -> -1


# ----------------------------------------------------------------------------------------------- model


@pytest.mark.parametrize("size", [(1, 1), (5, 37), (64, 96), (33, 17)])
def test_logits_have_the_input_size_whatever_it_is(size):
    model = tiny_edgenet()
    with torch.no_grad():
        output = model(pixel_values=torch.randn(2, 3, *size))
    assert output.logits.shape == (2, 1, *size)
    assert len(output.side_logits) == 4 and all(s.shape == (2, 1, *size) for s in output.side_logits)
    assert torch.isfinite(output.logits).all()


def test_rgb_only_variant_has_three_input_channels_and_no_classical_fusion():
    model = tiny_edgenet(handcrafted_features=False)
    assert model.stage1[0][0].in_channels == 3 and model.fuse.in_channels == 4
    assert tiny_edgenet().stage1[0][0].in_channels == 19 and tiny_edgenet().fuse.in_channels == 5


def test_gradients_reach_every_parameter_but_not_the_fixed_features():
    model = tiny_edgenet().train()
    pixel_values = torch.randn(2, 3, 32, 32, requires_grad=True)
    model(pixel_values=pixel_values, labels=torch.rand(2, 32, 32)).loss.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())


def test_a_wrong_input_shape_is_named():
    with pytest.raises(ValueError, match=r"pixel_values must be \(B, 3, H, W\)"):
        tiny_edgenet()(pixel_values=torch.zeros(1, 4, 8, 8))


def test_bad_config_values_are_rejected():
    with pytest.raises(ValueError, match="widths"):
        EdgeNetConfig(widths=(8, 8))
    with pytest.raises(ValueError, match="feature_sigmas"):
        EdgeNetConfig(feature_sigmas=(0.0,))


def test_saved_model_loads_through_the_auto_classes(tmp_path):
    model = tiny_edgenet()
    model.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").exists()
    assert isinstance(AutoConfig.from_pretrained(tmp_path), EdgeNetConfig)
    loaded = AutoModelForSemanticSegmentation.from_pretrained(tmp_path).eval()
    assert isinstance(loaded, EdgeNetForBoundaryDetection) and loaded.config.num_labels == 1
    pixel_values = torch.randn(1, 3, 24, 40)
    with torch.no_grad():
        torch.testing.assert_close(
            loaded(pixel_values=pixel_values).logits, model(pixel_values=pixel_values).logits
        )


def test_directsam_runs_an_edgenet_checkpoint_at_its_trained_scale(tmp_path, astronaut):
    tiny_edgenet(resolution=96, keep_aspect=True).save_pretrained(tmp_path)
    boundary_model = BoundaryPredictor.from_pretrained(tmp_path)
    assert boundary_model.resolution == 96 and boundary_model.keep_aspect
    [probs] = boundary_model.predict([astronaut[:100, :150]])
    assert probs.shape == (100, 150) and probs.dtype == np.float32 and 0 <= probs.min() <= probs.max() <= 1
    assert BoundaryPredictor.from_pretrained(tmp_path, resolution=None, keep_aspect=False).resolution is None


# ---------------------------------------------------------------------------------------------- training


def test_rcf_loss_ignores_pixels_few_annotators_marked():
    labels = torch.zeros(1, 8, 8)
    labels[:, :, 3] = 1.0
    labels[:, :, 4] = 0.2  # marked by too few annotators: neither boundary nor background
    labels[:, :, 7] = IGNORE_INDEX
    logits = torch.zeros(1, 1, 8, 8)
    changed = logits.clone()
    changed[..., :, 4] = 30.0
    changed[..., :, 7] = -30.0
    assert boundary_loss(logits, labels, "rcf") == boundary_loss(changed, labels, "rcf")
    confident = logits.clone()
    confident[..., :, 3] = 5.0
    assert boundary_loss(confident, labels, "rcf") < boundary_loss(logits, labels, "rcf")


def test_crop_size_crops_a_window_of_the_scaled_image():
    image = np.random.default_rng(0).integers(0, 255, (120, 200, 3), dtype=np.uint8)
    label_maps = np.zeros((1, 120, 200), np.int32)
    label_maps[0, :, 100:] = 1
    crop, labels, valid = transform_sample(
        image, label_maps, 160, np.random.default_rng(0), (1.0, 1.0), crop_size=64
    )
    assert crop.shape == (64, 64, 3) and labels.shape == (1, 64, 64) and valid.all()


def test_edgenet_trains_with_train_boundary_and_loads_as_a_boundary_model(bsds_root, tmp_path, astronaut):
    from subobject_vlm.training import train_boundary

    config = {
        "output_dir": str(tmp_path / "run"),
        "model": {"architecture": "edgenet", "overrides": {"widths": [4, 4, 8, 8], "resolution": 64}},
        "data": {
            "train": [{"kind": "bsds", "root": str(bsds_root), "split": "train", "limit": 2}],
            "resolution": 96,
            "crop_size": 64,
            "thickness": 3,
            "annotators": "soft",
        },
        "loss": {"class_balance": "rcf", "positive_threshold": 0.3, "side_weight": 0.5},
        "training": {
            "max_steps": 12,
            "per_device_train_batch_size": 2,
            "learning_rate": 0.01,
            "logging_steps": 1,
            "max_grad_norm": 0.0,
            "use_cpu": True,
            "disable_tqdm": True,
        },
    }
    output_dir = train_boundary(config)
    import json

    losses = [e["loss"] for e in json.loads((output_dir / "log_history.json").read_text()) if "loss" in e]
    assert len(losses) == 12 and np.isfinite(losses).all() and np.mean(losses[-4:]) < np.mean(losses[:4])
    boundary_model = BoundaryPredictor.from_pretrained(output_dir)
    assert isinstance(boundary_model.model, EdgeNetForBoundaryDetection) and boundary_model.resolution == 64
    [probs] = boundary_model.predict([astronaut[:50, :70]])
    assert probs.shape == (50, 70)


def test_unknown_architecture_and_edgenet_fields_are_named(bsds_root, tmp_path):
    from subobject_vlm.training import ConfigError

    base = {"output_dir": str(tmp_path), "data": {"train": [{"kind": "bsds", "root": str(bsds_root)}]}}
    with pytest.raises(ConfigError, match="model.architecture"):
        load_config({**base, "model": {"architecture": "unet"}})
    with pytest.raises(ConfigError, match=r"EdgeNetConfig fields \['depth'\]"):
        load_config({**base, "model": {"architecture": "edgenet", "overrides": {"depth": 3}}})
    with pytest.raises(ConfigError, match="loss.positive_threshold"):
        load_config({**base, "loss": {"positive_threshold": 0.0}})


# --------------------------------------------------------------------------------- non-maximum suppression


@pytest.mark.parametrize("angle", [0, 30, 90, 135])
def test_nms_thins_a_blurred_line_to_its_ridge(angle):
    image = np.zeros((81, 81), np.float32)
    direction = np.array([np.cos(np.radians(angle)), np.sin(np.radians(angle))])
    rows, cols = np.mgrid[0:81, 0:81] - 40.0
    distance = np.abs(-direction[1] * cols + direction[0] * rows)  # distance to the line through the centre
    image = np.exp(-0.5 * (distance / 2.0) ** 2).astype(np.float32)
    thinned = non_maximum_suppression(image)
    inner = (slice(10, -10), slice(10, -10))
    kept = thinned[inner] > 0
    assert kept[distance[inner] < 0.5].all()  # the ridge stays
    flanks = (distance[inner] > 1.5) & (distance[inner] < 8)  # beyond, the map underflows to ~0 anyway
    assert not kept[flanks].any()
    assert np.array_equal(thinned[kept.nonzero()[0] + 10, kept.nonzero()[1] + 10], image[inner][kept])


def test_nms_keeps_a_flat_map_and_rejects_bad_shapes():
    flat = np.full((20, 30), 0.3, np.float32)
    np.testing.assert_array_equal(non_maximum_suppression(flat), flat)
    assert non_maximum_suppression(np.ones((1, 5), np.float32)).shape == (1, 5)
    with pytest.raises(ValueError, match=r"\(H, W\)"):
        non_maximum_suppression(np.zeros((2, 3, 3)))


# ------------------------------------------------------------------------------------ the shipped default


def test_the_shipped_default_is_a_small_learned_edgenet_that_loads_offline(astronaut):
    from subobject_vlm.segmentation import DEFAULT_WEIGHTS_DIR, has_embedded_weights, load_boundary_model

    assert has_embedded_weights()
    assert (DEFAULT_WEIGHTS_DIR / "model.safetensors").stat().st_size <= 20 * 2**20
    assert (DEFAULT_WEIGHTS_DIR / "README.md").is_file()  # the model card
    model = load_boundary_model("default")
    assert isinstance(model, BoundaryPredictor) and isinstance(model.model, EdgeNetForBoundaryDetection)
    assert model.keep_aspect and model.resolution == model.model.config.resolution
    [probs] = model.predict([astronaut])
    assert probs.shape == astronaut.shape[:2] and probs.dtype == np.float32
    # a real photo: most pixels are confidently interior, and boundaries exist
    assert np.median(probs) < 0.1 and (probs > 0.5).mean() > 0.01


@pytest.mark.slow
def test_the_shipped_default_reaches_ods_0_70_on_bsds_val(tmp_path):
    """The card's headline figure, re-measured (about 3 minutes on 2 cores): ``pytest -m slow``."""
    from subobject_vlm.evaluation import eval_bsds

    report = eval_bsds(
        split="val", max_tokens=(64,), baselines=(), out_dir=tmp_path, thresholds=33, progress=False
    )
    assert report["boundary"]["ODS"]["f"] >= 0.70


def test_forward_with_labels_computes_the_loss_training_optimises():
    from types import SimpleNamespace

    from subobject_vlm.training.boundary_config import LossSection
    from subobject_vlm.training.train_boundary import _trainer_class

    section = LossSection(class_balance="rcf", positive_threshold=0.4, side_weight=0.3)
    torch.manual_seed(0)
    model = EdgeNetForBoundaryDetection(EdgeNetConfig(widths=[4, 4, 8, 8], loss=dataclasses.asdict(section)))
    pixels, labels = torch.randn(2, 3, 32, 40), torch.rand(2, 32, 40)
    labels[:, :3] = IGNORE_INDEX  # padding
    trained = _trainer_class().compute_loss(
        SimpleNamespace(loss_section=section), model, {"pixel_values": pixels, "labels": labels}
    )
    assert torch.allclose(model(pixel_values=pixels, labels=labels).loss, trained)
    plain = EdgeNetForBoundaryDetection(model.config.__class__(widths=[4, 4, 8, 8]))  # no recipe: plain BCE
    plain.load_state_dict(model.state_dict())
    assert not torch.allclose(plain(pixel_values=pixels, labels=labels).loss, trained)
