"""compare-tokenizers with mask tokenizers (issue 22): tiny random SAM, SAM 2, Mask2Former and OneFormer in the grid, checkpoints
relative to the config's folder, matched to our per-image counts (at most them), and the errors."""

import json
import re

import numpy as np
import pytest
import yaml
from test_token_efficiency import toy_config
from test_token_efficiency_own_data import run_command

from subobject_vlm.evaluation.token_efficiency import load_config
from subobject_vlm.tiny_mask_models import save_tiny_mask_model
from subobject_vlm.training.config import ConfigError

KINDS = ("mask2former", "sam", "sam_hq", "sam2", "edgetam", "oneformer")


@pytest.fixture(scope="module")
def mask_grid(tmp_path_factory):
    """The toy grid plus a tiny Mask2Former (checkpoint folder named relative to the config) matched to ``ours``,
    run through the command from another folder: output folder and stderr."""
    folder = tmp_path_factory.mktemp("mask-grid")
    for kind in KINDS:
        save_tiny_mask_model(kind, folder / "models" / kind)
    config = toy_config("out", budgets=[32])  # more than the tiny model's masks: some images get fewer
    config["tokenizers"]["m2f"] = {
        "boundary_model": "mask2former:models/mask2former",
        "boundary_model_options": {"overlap_mask_area_threshold": 0.2},
        "match": "ours",
    }
    for kind in (
        "sam",
        "sam_hq",
        "sam2",
        "edgetam",
        "oneformer",
    ):  # every family in the grid (small point grids)
        options = {} if kind == "oneformer" else {"points_per_side": 4}
        config["tokenizers"][kind] = {
            "boundary_model": f"{kind}:models/{kind}",
            "boundary_model_options": options,
        }
    config["training"]["steps"] = 2
    (folder / "compare.yaml").write_text(yaml.safe_dump(config))
    elsewhere = tmp_path_factory.mktemp("elsewhere")
    status, stderr = run_command(folder / "compare.yaml", elsewhere)
    assert status == 0, stderr
    return elsewhere / "out", stderr


def test_every_mask_tokenizer_with_a_checkpoint_relative_to_the_config_runs_in_the_grid(mask_grid):
    out_dir, _ = mask_grid
    runs = [json.loads(line) for line in (out_dir / "results.jsonl").read_text().splitlines()]
    for name in ("m2f", "sam", "sam_hq", "sam2", "edgetam", "oneformer"):
        [run] = [r for r in runs if r["tokenizer"] == name]
        assert run["budget"] == 32 and 1 <= run["mean_tokens"] <= 32 and np.isfinite(run["val_loss"])


def test_a_matched_mask_tokenizer_gets_at_most_the_per_image_counts_and_says_how_many_got_fewer(mask_grid):
    out_dir, stderr = mask_grid
    fewer = total = 0
    for split in ("train", "val"):
        [ours] = [np.load(p) for p in (out_dir / "segmentations").glob(f"ours-32-{split}-*.npy")]
        [m2f] = [np.load(p) for p in (out_dir / "segmentations").glob(f"m2f-32-{split}-*.npy")]
        ours_counts, m2f_counts = ours.reshape(len(ours), -1).max(1), m2f.reshape(len(m2f), -1).max(1)
        assert (m2f_counts <= ours_counts).all()
        fewer, total = fewer + int((m2f_counts < ours_counts).sum()), total + len(ours)
    assert fewer > 0
    [line] = [
        line for line in stderr.splitlines() if line.startswith("compare-tokenizers: label maps m2f@32")
    ]
    assert re.search(rf"; matched to ours: {fewer} of {total} images got fewer tokens than it$", line)


def test_a_relative_mask_checkpoint_found_nowhere_is_a_config_error_naming_the_key(tmp_path):
    config = toy_config(tmp_path, tokenizers={"sam": {"boundary_model": "sam:missing"}})
    with pytest.raises(ConfigError, match=r"tokenizers\.sam\.boundary_model: no checkpoint folder .*missing"):
        load_config(config, base_dir=tmp_path)


def test_a_boundary_model_cannot_match_another_tokenizer(tmp_path):
    tokenizers = {
        "ours": {"boundary_model": "default"},
        "grad": {"boundary_model": "gradient", "match": "ours"},
    }
    with pytest.raises(
        ConfigError, match=r"tokenizers\.grad\.match: only label-map tokenizers .* 'gradient'"
    ):
        load_config(toy_config(tmp_path, tokenizers=tokenizers))
