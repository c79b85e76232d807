"""Boundary-model training: targets, augmentation, data sources, the Trainer loop and its config."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from subobject_vlm.segmentation.losses import boundary_loss
from subobject_vlm.training import (
    BoundaryDataset,
    ConfigError,
    annotation_to_boundary,
    combine_annotators,
    folder_items,
    hf_items,
    load_config,
    masks_to_label_map,
    train_boundary,
)
from subobject_vlm.training.boundary_data import IGNORE_INDEX, decode_rle, transform_sample

REPO_ROOT = Path(__file__).resolve().parents[1]
TINY_CONFIG = REPO_ROOT / "configs" / "boundary_tiny_smoke.yaml"


def tiny_config(output_dir: Path, root: Path, **training) -> dict:
    """The tiny smoke config (random 2-stage SegFormer, 3 BSDS images at 64 px) on the BSDS folder ``root``."""
    config = yaml.safe_load(TINY_CONFIG.read_text())
    config["output_dir"] = str(output_dir)
    for source in [*config["data"]["train"], *config["data"]["val"]]:
        source["root"] = str(root)
    config["training"].update(disable_tqdm=True, **training)
    return config


@pytest.fixture(scope="module")
def trained_run(bsds_root, tmp_path_factory) -> Path:
    """One tiny training run (8 steps, checkpoints every 4, best-by-val-loss reloaded at the end)."""
    config = tiny_config(
        tmp_path_factory.mktemp("boundary") / "run",
        bsds_root,
        max_steps=8,
        learning_rate=0.05,
        eval_steps=4,
        save_steps=4,
    )
    return train_boundary(config)


def two_region_label_map(height: int = 40, width: int = 60) -> np.ndarray:
    """``(H, W)`` int32: an L-shaped region (label 1) on background (label 0); not symmetric under a flip."""
    label_map = np.zeros((height, width), dtype=np.int32)
    label_map[5:30, 8:20] = 1
    label_map[22:30, 8:45] = 1
    return label_map


# ------------------------------------------------------------------------------------------------ targets


@pytest.mark.parametrize("thickness", [1, 2, 3, 5])
def test_boundary_line_is_as_wide_as_thickness(thickness):
    label_map = np.zeros((20, 20), dtype=np.int32)
    label_map[:, 10:] = 1
    boundary = annotation_to_boundary(label_map, thickness)
    assert boundary.dtype == np.uint8
    assert (boundary.sum(axis=1) == thickness).all()
    assert boundary[:, 9].all()  # the line straddles the border between columns 9 and 10


def test_uniform_label_map_has_no_boundary_at_the_image_border():
    assert annotation_to_boundary(np.full((16, 16), 7, dtype=np.int32), 3).sum() == 0


def test_union_keeps_every_annotators_boundary_and_soft_averages_them():
    first, second = np.zeros((2, 20, 20), dtype=np.int32)
    first[:, 5:] = 1
    second[:, 12:] = 1
    annotators = np.stack([first, second])
    union = combine_annotators(annotators, thickness=1, mode="union")
    soft = combine_annotators(annotators, thickness=1, mode="soft")
    assert union.dtype == soft.dtype == np.float32
    assert set(np.nonzero(union[0])[0]) == {4, 11}
    assert soft[0, 4] == soft[0, 11] == 0.5 and soft.max() == 0.5


def test_masks_are_painted_largest_first_so_small_masks_stay_on_top():
    big, small = np.zeros((2, 10, 10), dtype=bool)
    big[1:9, 1:9] = True
    small[4:6, 4:6] = True
    label_map = masks_to_label_map([small, big])
    assert label_map[5, 5] == 2 and label_map[2, 2] == 1 and label_map[0, 0] == 0


def _encode_rle_string(counts: list[int]) -> str:
    """pycocotools' ``rleToString``, for building test inputs."""
    chars = []
    for i, count in enumerate(counts):
        value = count - counts[i - 2] if i > 2 else count
        more = True
        while more:
            char = value & 0x1F
            value >>= 5
            more = not ((value == 0 and not char & 0x10) or (value == -1 and char & 0x10))
            chars.append(chr(char + 48 + (0x20 if more else 0)))
    return "".join(chars)


def test_coco_rle_decodes_to_the_same_mask_compressed_or_not():
    mask = two_region_label_map().astype(bool)
    flat = mask.T.ravel()  # column-major, as COCO
    changes = np.flatnonzero(np.diff(flat)) + 1
    counts = np.diff(
        np.concatenate([[0], changes, [flat.size]])
    ).tolist()  # mask[0, 0] is 0: starts with zeros
    size = list(mask.shape)
    assert (decode_rle({"size": size, "counts": counts}) == mask).all()
    assert (decode_rle({"size": size, "counts": _encode_rle_string(counts)}) == mask).all()


# ----------------------------------------------------------------------------------------- data sources


def test_hf_masks_column_and_label_map_column_give_the_same_target():
    import datasets

    label_map = two_region_label_map()
    image = np.zeros((*label_map.shape, 3), dtype=np.uint8)
    rows = {
        "image": [image],
        "masks": [[label_map == 1, np.ones_like(label_map, dtype=bool)]],
        "label_map": [label_map],
    }
    dataset = datasets.Dataset.from_dict(rows)
    from_masks = BoundaryDataset(hf_items(dataset, masks_column="masks"), 64, thickness=2).sample(0)[1]
    from_label_map = BoundaryDataset(hf_items(dataset, label_map_column="label_map"), 64, thickness=2).sample(
        0
    )[1]
    assert from_masks.max() == 1 and (from_masks == from_label_map).all()


def test_folder_items_pair_images_and_label_maps_by_stem(tmp_path):
    from PIL import Image

    (tmp_path / "images").mkdir()
    (tmp_path / "labels").mkdir()
    for stem in ("a", "b"):
        Image.new("RGB", (60, 40)).save(tmp_path / "images" / f"{stem}.jpg")
    Image.fromarray(two_region_label_map().astype(np.uint8)).save(tmp_path / "labels" / "b.png")
    items = folder_items(tmp_path / "images", tmp_path / "labels")
    load_image, load_labels = items[0]
    assert len(items) == 1 and load_image().shape == (40, 60, 3)
    assert (load_labels()[0] == two_region_label_map()).all()


# --------------------------------------------------------------------------------------------- augmentation


@pytest.mark.parametrize("seed", range(4))
def test_augmentation_moves_image_and_label_maps_together(seed):
    label_map = two_region_label_map(80, 120)
    image = np.repeat((label_map * 255).astype(np.uint8)[..., None], 3, axis=-1)  # white where label 1
    rng = np.random.default_rng(seed)
    out_image, out_labels, valid = transform_sample(image, label_map[None], 64, rng, scale_range=(0.5, 2.0))
    assert out_image.shape == (64, 64, 3) and out_labels.shape == (1, 64, 64)
    white = out_image[..., 0] > 127
    agreement = (white == (out_labels[0] == 1))[valid].mean()
    assert agreement > 0.97


def test_augmentation_is_reproducible_per_seed_and_index():
    label_map = two_region_label_map(80, 120)
    image = np.random.default_rng(0).integers(0, 255, (80, 120, 3), dtype=np.uint8)
    items = [(lambda: image, lambda: label_map[None])]
    dataset = BoundaryDataset(items, 64, augment=True, seed=3, repeats=4)
    again = BoundaryDataset(items, 64, augment=True, seed=3, repeats=4)
    assert torch.equal(dataset[1]["pixel_values"], again[1]["pixel_values"])
    assert not torch.equal(dataset[1]["pixel_values"], dataset[2]["pixel_values"])  # each repeat differs


def test_padding_is_ignored_and_draws_no_boundary():
    label_map = two_region_label_map(40, 60)
    image = np.full((40, 60, 3), 200, dtype=np.uint8)
    sample = BoundaryDataset([(lambda: image, lambda: label_map[None])], 64, thickness=1)[0]
    labels = sample["labels"]  # validation transform: longer side fit to 64, pad below
    assert (labels[43:] == IGNORE_INDEX).all() and (sample["pixel_values"][:, 43:] == 0).all()
    assert (labels[:42] >= 0).all() and labels[41, :].sum() == 0  # no line along the padding edge


def test_loss_ignores_padded_pixels():
    labels = torch.zeros(1, 8, 8)
    labels[:, 4:] = IGNORE_INDEX
    logits = torch.zeros(1, 1, 8, 8)
    changed = logits.clone()
    changed[..., 4:, :] = 50.0  # confidently wrong, but only where ignored
    assert boundary_loss(logits, labels) == boundary_loss(changed, labels)


def test_pos_weight_balance_raises_the_cost_of_missed_boundaries():
    labels = torch.zeros(1, 8, 8)
    labels[:, :, 3] = 1.0
    logits = torch.full((1, 1, 8, 8), -2.0)
    assert boundary_loss(logits, labels, "pos_weight") > boundary_loss(logits, labels, "none")


# ------------------------------------------------------------------------------------------------ training


def test_training_loss_is_finite_and_decreases(trained_run):
    history = json.loads((trained_run / "log_history.json").read_text())
    losses = [entry["loss"] for entry in history if "loss" in entry]
    assert len(losses) == 8 and all(np.isfinite(losses))
    assert np.mean(losses[-3:]) < np.mean(losses[:3])


def test_saved_model_reloads_with_segformer_from_pretrained(trained_run):
    from transformers import SegformerForSemanticSegmentation, SegformerImageProcessor

    model = SegformerForSemanticSegmentation.from_pretrained(trained_run)
    processor = SegformerImageProcessor.from_pretrained(trained_run)
    assert model.config.num_labels == 1 and (trained_run / "model.safetensors").exists()
    assert processor.size == {"height": 64, "width": 64} and processor.do_reduce_labels is False
    assert model(pixel_values=torch.zeros(1, 3, 64, 64)).logits.shape == (1, 1, 16, 16)


def test_saved_model_loads_as_a_directsam_boundary_model(trained_run, astronaut):
    from subobject_vlm.segmentation.predictor import BoundaryPredictor

    model = BoundaryPredictor.from_pretrained(trained_run)
    [probs] = model.predict([astronaut[:100, :150]])
    assert model.resolution == 64 and probs.shape == (100, 150)


def test_best_checkpoint_by_val_loss_is_the_final_model(trained_run):
    from transformers import SegformerForSemanticSegmentation

    state = json.loads((trained_run / "checkpoint-8" / "trainer_state.json").read_text())
    best = Path(state["best_model_checkpoint"]).name
    final = SegformerForSemanticSegmentation.from_pretrained(trained_run).state_dict()
    reference = SegformerForSemanticSegmentation.from_pretrained(trained_run / best).state_dict()
    assert all(torch.equal(final[key], reference[key]) for key in final)


def test_loss_curve_png_is_written(trained_run):
    from PIL import Image

    with Image.open(trained_run / "loss_curve.png") as image:
        assert image.size == (800, 480)


def test_resuming_halfway_reproduces_the_uninterrupted_run(trained_run, tmp_path, bsds_root):
    from transformers import SegformerForSemanticSegmentation

    # same config as ``trained_run`` (8 steps), restarted from its checkpoint-4: weights, optimizer, scheduler,
    # RNG and data order are restored, so step 8 matches the uninterrupted run's checkpoint-8
    config = tiny_config(
        tmp_path / "resumed", bsds_root, max_steps=8, learning_rate=0.05, eval_steps=4, save_steps=4
    )
    config["training"]["load_best_model_at_end"] = False
    config["resume_from_checkpoint"] = str(trained_run / "checkpoint-4")
    final = SegformerForSemanticSegmentation.from_pretrained(train_boundary(config)).state_dict()
    reference = SegformerForSemanticSegmentation.from_pretrained(trained_run / "checkpoint-8").state_dict()
    assert all(torch.allclose(final[key], reference[key], atol=1e-6) for key in final)


def test_resume_continues_counting_steps(trained_run, tmp_path, bsds_root):
    import shutil

    output = tmp_path / "continued"
    shutil.copytree(trained_run / "checkpoint-4", output / "checkpoint-4")
    config = tiny_config(
        output, bsds_root, max_steps=6, save_steps=6, eval_steps=6, load_best_model_at_end=False
    )
    config["resume_from_checkpoint"] = True
    train_boundary(config)
    steps = [e["step"] for e in json.loads((output / "log_history.json").read_text()) if "loss" in e]
    assert steps[-2:] == [5, 6]


def test_fine_tuning_replaces_the_classifier_of_a_multi_label_checkpoint(bsds_root, tmp_path):
    from transformers import SegformerConfig, SegformerForSemanticSegmentation

    overrides = yaml.safe_load(TINY_CONFIG.read_text())["model"]["overrides"]
    SegformerForSemanticSegmentation(SegformerConfig(num_labels=3, **overrides)).save_pretrained(
        tmp_path / "ade"
    )
    config = tiny_config(tmp_path / "run", bsds_root, max_steps=2, save_steps=2, eval_steps=2)
    config["model"] = {"pretrained": str(tmp_path / "ade")}
    model = SegformerForSemanticSegmentation.from_pretrained(train_boundary(config))
    assert model.config.num_labels == 1 and model.config.hidden_sizes == [8, 16]


# --------------------------------------------------------------------------------------------------- config


def test_unknown_config_key_is_named(tmp_path, bsds_root):
    config = tiny_config(tmp_path, bsds_root)
    config["data"]["thicknes"] = 2
    with pytest.raises(ConfigError, match="thicknes"):
        load_config(config)


def test_unknown_training_argument_is_named(tmp_path, bsds_root):
    config = tiny_config(tmp_path, bsds_root, learnin_rate=0.1)
    with pytest.raises(ConfigError, match="learnin_rate"):
        load_config(config)


def test_missing_data_folder_is_reported(tmp_path, bsds_root):
    config = tiny_config(tmp_path, bsds_root)
    config["data"]["train"] = [{"kind": "folders", "images": str(tmp_path / "nope"), "labels": str(tmp_path)}]
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(config)


def test_resolution_must_be_a_multiple_of_32(tmp_path, bsds_root):
    config = tiny_config(tmp_path, bsds_root)
    config["data"]["resolution"] = 100
    with pytest.raises(ConfigError, match="multiple of 32"):
        load_config(config)


def test_command_line_reports_a_bad_config_and_exits_with_status_2(tmp_path, capsys):
    from subobject_vlm.commands import run_as_script

    assert run_as_script("train_boundary", ["--config", str(tmp_path / "missing.yaml")]) == 2
    assert "missing.yaml" in capsys.readouterr().err


def test_shipped_configs_are_valid(bsds_root, monkeypatch):
    monkeypatch.setenv("BSDS500_ROOT", str(bsds_root))  # the shipped configs find BSDS500 by themselves
    for name in (
        "boundary_tiny_smoke",
        "boundary_bsds_b0",
        "boundary_finetune_directsam",
        "boundary_bsds_edgenet",
    ):
        assert load_config(REPO_ROOT / "configs" / f"{name}.yaml").data.train


# ------------------------------------------------------------------------------------------- distributed


def test_training_runs_under_torchrun_with_two_cpu_processes(bsds_root, tmp_path):
    config_path = tmp_path / "config.yaml"
    config_path.write_text(
        yaml.safe_dump(tiny_config(tmp_path / "ddp", bsds_root, max_steps=4, save_steps=4, eval_steps=4))
    )
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO_ROOT)}
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2"]
    command += ["-m", "subobject_vlm.commands.train_boundary", "--config", str(config_path)]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    state = json.loads((tmp_path / "ddp" / "checkpoint-4" / "trainer_state.json").read_text())
    assert state["global_step"] == 4 and (tmp_path / "ddp" / "model.safetensors").exists()
