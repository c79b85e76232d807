"""compare-tokenizers: a toy comparison end to end, its outputs, resuming, matched counts, user data, errors."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from subobject_vlm.cli import main
from subobject_vlm.evaluation import token_efficiency
from subobject_vlm.evaluation.token_efficiency import (
    RESULT_FIELDS,
    compare_tokenizers,
    load_config,
    results_table,
)
from subobject_vlm.modeling_pixel_features import PixelFeaturesConfig, PixelFeaturesModel
from subobject_vlm.training.config import ConfigError


def toy_config(out_dir, **changes) -> dict:
    config = {
        "output_dir": str(out_dir),
        "data": {"synthetic": {"train": 10, "val": 4}},
        "image_size": 32,
        "label_size": 32,
        "tokenizers": {
            "patch": {"boundary_model": "patch"},
            "ours": {"boundary_model": "default", "boundary_model_options": {"resolution": 64}},
        },
        "budgets": [4],
        "seeds": [0],
        "model": {"vision": "pixels", "text": {"hidden_size": 32, "num_hidden_layers": 1}},
        "training": {"steps": 4, "batch_size": 4, "eval_every": 2, "eval_batch_size": 8},
    }
    config.update(changes)
    return config


@pytest.fixture(scope="module")
def toy_run(tmp_path_factory):
    out_dir = tmp_path_factory.mktemp("compare")
    compare_tokenizers(toy_config(out_dir))
    return out_dir


def test_a_toy_comparison_writes_results_table_and_plots(toy_run):
    runs = [json.loads(line) for line in (toy_run / "results.jsonl").read_text().splitlines()]
    assert [(r["tokenizer"], r["budget"], r["seed"]) for r in runs] == [("patch", 4, 0), ("ours", 4, 0)]
    for run in runs:
        assert set(RESULT_FIELDS) <= set(run)
        assert run["steps"] == 4 and run["batch_size"] == 4
        assert np.isfinite(run["val_loss"]) and run["val_perplexity"] == pytest.approx(
            np.exp(run["val_loss"])
        )
        assert 0.0 <= run["accuracy"] <= 1.0 and run["accuracy_by_task"]
        assert 0.0 <= run["attribute_accuracy"] <= 1.0  # counts, sizes, materials, colours, shapes
        assert [point[0] for point in run["curve"]] == [2, 4]  # evaluated every eval_every steps
        assert run["step_seconds"] > 0 and run["train_seconds"] > 0
    assert runs[0]["mean_tokens"] == 4.0  # a 2x2 grid
    assert 1.0 <= runs[1]["mean_tokens"] <= 4.0  # EPOC's count adapts to the image, capped by the budget
    table = (toy_run / "results.md").read_text()
    assert table.startswith(results_table(runs)) and results_table(runs).count("\n") == 4
    assert "| patch | 4 | 4.0 |" in table
    for name in (
        "perplexity_vs_tokens.png",
        "val_loss_vs_steps.png",
        "val_loss_vs_time.png",
        "tokens_examples.png",
    ):
        with Image.open(toy_run / name) as picture:
            assert picture.size[0] > 300


def test_a_rerun_resumes_from_the_runs_already_done(toy_run, monkeypatch):
    def no_training(*args, **kwargs):
        raise AssertionError("a finished run was trained again")

    monkeypatch.setattr(token_efficiency.run, "train_run", no_training)
    before = (toy_run / "results.jsonl").read_text()
    compare_tokenizers(toy_config(toy_run))
    assert (toy_run / "results.jsonl").read_text() == before


def test_a_torn_last_line_is_ignored_and_the_run_redone(tmp_path):
    config = toy_config(tmp_path, tokenizers={"patch": {"boundary_model": "patch"}})
    compare_tokenizers(config)
    path = tmp_path / "results.jsonl"
    whole = path.read_text()
    path.write_text(whole[: len(whole) // 2])  # killed while writing the line
    compare_tokenizers(config)
    lines = path.read_text().splitlines()
    assert len(lines) == 1 and json.loads(lines[0])["tokenizer"] == "patch"


def test_same_seed_gives_the_same_run_and_changed_settings_are_redone(tmp_path):
    config = toy_config(tmp_path, tokenizers={"patch": {"boundary_model": "patch"}})
    compare_tokenizers(config)
    compare_tokenizers({**config, "output_dir": str(tmp_path / "again")})
    first, second = (json.loads((d / "results.jsonl").read_text()) for d in (tmp_path, tmp_path / "again"))
    assert first["val_loss"] == second["val_loss"] and first["curve"][-1][2] == second["curve"][-1][2]
    compare_tokenizers({**config, "tokenizers": {"patch": {"boundary_model": "patch", "threshold": 0.2}}})
    assert len((tmp_path / "results.jsonl").read_text().splitlines()) == 2


def test_matched_baselines_get_exactly_the_per_image_counts_of_the_tokenizer_they_match(tmp_path):
    config = toy_config(tmp_path)
    config["tokenizers"]["slic"] = {"boundary_model": "slic", "match": "ours"}
    config["training"]["steps"] = 1
    compare_tokenizers(config)
    folder = tmp_path / "segmentations"
    for split in ("train", "val"):
        [ours] = [np.load(p) for p in folder.glob(f"ours-4-{split}-*.npy")]
        [slic] = [np.load(p) for p in folder.glob(f"slic-4-{split}-*.npy")]
        counts = [m.max() + 1 for m in ours]
        assert [m.max() + 1 for m in slic] == counts
        assert all(len(np.unique(m)) == m.max() + 1 for m in slic)  # every label present


def test_the_same_command_runs_on_a_users_llava_json(tmp_path, capsys):
    rng = np.random.default_rng(0)
    (tmp_path / "images").mkdir()
    records = []
    for i in range(6):
        image = np.full((40, 52, 3), 30, np.uint8)
        colour = ["red", "blue"][i % 2]
        image[8:30, 10 + i : 34 + i] = (200, 30, 30) if colour == "red" else (30, 30, 200)
        image = np.clip(image + rng.integers(0, 10, image.shape), 0, 255).astype(np.uint8)
        Image.fromarray(image).save(tmp_path / "images" / f"{i}.png")
        records.append(
            {
                "image": f"{i}.png",
                "conversations": [
                    {"from": "human", "value": "<image>\nWhat colour is the box?"},
                    {"from": "gpt", "value": f"The box is {colour}."},
                ],
            }
        )
    (tmp_path / "train.json").write_text(json.dumps(records[:4]))
    (tmp_path / "val.jsonl").write_text("\n".join(json.dumps(r) for r in records[4:]))
    config = toy_config(tmp_path / "out")
    config["data"] = {
        "train": {"path": str(tmp_path / "train.json"), "image_folder": str(tmp_path / "images")},
        "val": {"path": str(tmp_path / "val.jsonl"), "image_folder": str(tmp_path / "images")},
        "attribute_words": ["red", "blue"],
    }
    config_path = tmp_path / "compare.yaml"
    import yaml

    config_path.write_text(yaml.safe_dump(config))
    assert main(["compare-tokenizers", "--config", str(config_path), "--steps", "2"]) == 0
    runs = [json.loads(line) for line in (tmp_path / "out" / "results.jsonl").read_text().splitlines()]
    assert len(runs) == 2 and all(np.isfinite(r["val_loss"]) for r in runs)
    assert all(r["accuracy"] is None for r in runs)  # user captions only: no questions to score
    assert all(0.0 <= r["attribute_accuracy"] <= 1.0 for r in runs)  # "red" / "blue" after "is"


@pytest.mark.parametrize(
    "change, message",
    [
        ({"tokenizers": {"x": {"boundary_model": "slic", "match": "nope"}}}, "match"),
        ({"tokenizers": {"x": {"boundary_model": "default", "treshold": 0.1}}}, "treshold"),
        ({"tokenizers": {"x": {"seeds": "minima"}}}, "boundary_model"),
        ({"budgets": []}, "budgets"),
        ({"model": {"vision": "vit"}}, "model.vision"),
        ({"training": {"steps": 0}}, "training.steps"),
        ({"training": {"stepz": 3}}, "stepz"),
        ({"data": {"synthetic": {"train": 3}, "train": {"path": "x.json"}}}, "data"),
        ({"device": "cuda:7"} if not torch.cuda.is_available() else {"budgets": [0]}, "device|budgets"),
    ],
)
def test_config_errors_name_the_key(tmp_path, change, message):
    with pytest.raises(ConfigError, match=message):
        load_config(toy_config(tmp_path, **change))


def test_the_cli_reports_a_bad_config_in_one_line(tmp_path, capsys):
    path = tmp_path / "bad.yaml"
    path.write_text(
        "output_dir: x\ndata: {synthetic: {}}\ntokenizers: {a: {boundary_model: patch}}\nbudgets: [0]\n"
    )
    assert main(["compare-tokenizers", "--config", str(path)]) == 2
    error = capsys.readouterr().err.strip()
    assert (
        error.startswith("subobject-vlm compare-tokenizers: error:")
        and "budgets" in error
        and "\n" not in error
    )
    path.write_text("output_dir: [unclosed\n")
    assert main(["compare-tokenizers", "--config", str(path)]) == 2


def test_results_table_reports_mean_and_spread_over_seeds():
    runs = [
        {
            "tokenizer": "a",
            "budget": 8,
            "seed": s,
            "mean_tokens": 8.0,
            "val_loss": loss,
            "val_perplexity": np.exp(loss),
            "accuracy": 0.5,
            "step_seconds": 0.01,
            "train_seconds": 1.0,
        }
        for s, loss in enumerate([1.0, 1.2])
    ]
    assert "| a | 8 | 8.0 | 1.1000 ± 0.1000 |" in results_table(runs)


def test_pixel_features_are_the_pixels_and_their_coordinates():
    model = PixelFeaturesModel(PixelFeaturesConfig())
    pixels = torch.rand(2, 3, 4, 6)
    features = model(pixels).last_hidden_state
    assert features.shape == (2, 5, 4, 6) and model.config.hidden_size == 5
    assert torch.equal(features[:, :3], pixels)
    assert features[0, 3, :, 0].tolist() == pytest.approx([-1, -1 / 3, 1 / 3, 1])  # y
    assert features[1, 4, 0, [0, -1]].tolist() == [-1, 1]  # x
    with pytest.raises(ValueError, match="pixel_values"):
        model(torch.rand(2, 4, 4, 4))


def test_an_hf_dataset_a_directsam_checkpoint_and_a_cnn_encoder_work_the_same_way(tmp_path):
    import datasets
    from test_directsam import TINY_SEGFORMER
    from transformers import SegformerConfig, SegformerForSemanticSegmentation, SegformerImageProcessor

    from subobject_vlm.data.clevr_like import CAPTION_PROMPT, caption, generate_scene

    torch.manual_seed(0)
    checkpoint = tmp_path / "tiny-directsam"
    SegformerForSemanticSegmentation(SegformerConfig(**TINY_SEGFORMER)).save_pretrained(checkpoint)
    SegformerImageProcessor(size={"height": 64, "width": 64}).save_pretrained(checkpoint)
    for split, count in (("train", 6), ("val", 3)):
        scenes = [generate_scene(0, split, i, 40) for i in range(count)]
        datasets.Dataset.from_dict(
            {
                "image": [Image.fromarray(s.image) for s in scenes],
                "conversations": [
                    [
                        {"from": "human", "value": f"<image>\n{CAPTION_PROMPT}"},
                        {"from": "gpt", "value": caption(s.objects)},
                    ]
                    for s in scenes
                ],
            }
        ).save_to_disk(str(tmp_path / split))
    config = toy_config(
        tmp_path / "out",
        data={"train": {"path": str(tmp_path / "train")}, "val": {"path": str(tmp_path / "val")}},
        tokenizers={"directsam": {"boundary_model": str(checkpoint)}},
        model={"vision": "cnn", "text": {"hidden_size": 32, "num_hidden_layers": 1}},
    )
    compare_tokenizers(config)
    [run] = [json.loads(line) for line in (tmp_path / "out" / "results.jsonl").read_text().splitlines()]
    assert run["tokenizer"] == "directsam" and 1 <= run["mean_tokens"] <= 4 and np.isfinite(run["val_loss"])


def test_pretrained_parts_load_from_local_checkpoints(tmp_path):
    """The GPU preset's path (a pretrained HF vision model and causal LM), on tiny checkpoints saved here."""
    from transformers import CLIPVisionModel, LlamaForCausalLM

    from subobject_vlm.evaluation.token_efficiency import build_model
    from subobject_vlm.tiny import tiny_text_config, tiny_tokenizer, tiny_vision_config

    tokenizer = tiny_tokenizer(["a", "red", "box"])
    torch.manual_seed(0)
    text = LlamaForCausalLM(tiny_text_config(len(tokenizer), pad_token_id=tokenizer.pad_token_id))
    text.save_pretrained(tmp_path / "lm")
    tokenizer.save_pretrained(tmp_path / "lm")
    vision = CLIPVisionModel(tiny_vision_config(image_size=32))
    vision.save_pretrained(tmp_path / "vision")
    config = load_config(
        toy_config(
            tmp_path / "out",
            model={"vision": {"hf": str(tmp_path / "vision")}, "text": {"pretrained": str(tmp_path / "lm")}},
        )
    )
    model = build_model(config, tokenizer, max_tokens=8)
    for name, weight in text.model.state_dict().items():
        assert torch.equal(model.model.language_model.state_dict()[name], weight)
    for name, weight in vision.state_dict().items():
        assert torch.equal(model.model.vision_tower.state_dict()[name], weight)
